"""Intensity: normalisation of MRI volumes and random intensity augmentation, in numpy.

Every function works on ONE case, image ``(C, *spatial)`` channel first (2D ``(C, H, W)`` or 3D
``(C, X, Y, Z)``), and changes intensities only:

- normalisation, ``f(image, *, options) -> image``: :func:`zscore_normalise` (mean 0, std 1 per
  channel inside the brain) and :func:`percentile_clip` (tame outliers). Deterministic; use them on
  whole volumes, before slicing or cutting patches, and on the images you predict on;
- random intensity augmentation, ``f(image, label, rng, *, p=..., options) -> (image, label)``:
  :func:`random_gamma`, :func:`random_noise`, :func:`random_bias_field`. They follow the course's
  transform protocol (documented once, in :mod:`medseg_edu.transforms`) and return the label
  unchanged; bind options with ``functools.partial`` and chain them with ``compose``.

A normaliser becomes a protocol transform with one line, e.g. as the ``volume_transform`` of
:class:`medseg_edu.data.datasets.BrainSlices`::

    def standardise(image, label, rng):
        return zscore_normalise(image), label

Taught in weeks 2 and 5.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from medseg_edu._pairs import Pair, _apply, _check_image, _check_pair, _smooth_random_field

__all__ = ["zscore_normalise", "percentile_clip", "random_gamma", "random_noise", "random_bias_field"]


# --------------------------------------------------------------------------------- normalisation
def _check_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A non-empty boolean (*spatial) mask matching image (C, *spatial), else ValueError."""
    mask = np.asarray(mask)
    if mask.shape != image.shape[1:]:
        raise ValueError(f"mask must have the spatial shape of image, got mask shape {mask.shape} "
                         f"and image shape {image.shape}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask is empty (no foreground voxel): no voxels to compute statistics over")
    return mask


def zscore_normalise(image: np.ndarray, *, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Standardise each channel to mean 0, standard deviation 1 inside ``mask``; outside set to 0.

    ``mask`` (*spatial, bool) is the brain (foreground) mask; by default the voxels where any channel
    is > 0 (skull-stripped MRI has an exact 0 background). Statistics are taken inside the mask only,
    so the amount of background does not change them.

    Shape: image (C, *spatial), mask (*spatial) -> (C, *spatial) float32.
    Taught in weeks 2 and 5.
    """
    image = _check_image(image)
    mask = _check_mask(np.any(image > 0, axis=0) if mask is None else mask, image)
    out = np.zeros_like(image)
    for c, channel in enumerate(image):
        values = channel[mask].astype(np.float64)
        std = values.std()
        if std < 1e-8 * max(1.0, abs(values.mean())):
            raise ValueError(f"image channel {c} is constant inside the mask (value {values.mean():g}); "
                             "cannot normalise a constant image")
        out[c][mask] = (values - values.mean()) / std
    return out


def percentile_clip(image: np.ndarray, *, lower: float = 0.5, upper: float = 99.5,
                    mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Clip each channel to its ``lower`` and ``upper`` percentiles (tames outliers).

    The percentiles are taken over the voxels in ``mask`` (*spatial, bool), or over all voxels when
    ``mask`` is None. For skull-stripped MRI pass the brain mask (e.g. ``np.any(image > 0, axis=0)``):
    otherwise the zero background dominates the low percentiles and the lower clip is always 0.
    Every voxel is clipped, inside the mask or not.

    Shape: image (C, *spatial), mask (*spatial) -> (C, *spatial) float32.
    Taught in week 5.
    """
    image = _check_image(image)
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"lower and upper must satisfy 0 <= lower < upper <= 100, got {lower} and {upper}")
    if mask is not None:
        mask = _check_mask(mask, image)
    out = np.empty_like(image)
    for c, channel in enumerate(image):
        values = channel[mask] if mask is not None else channel
        low, high = np.percentile(values, [lower, upper])
        out[c] = np.clip(channel, low, high)
    return out


# ------------------------------------------------------------------------ random augmentation
def _each_channel(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float,
                  change: Callable[[np.ndarray], np.ndarray]) -> Pair:
    """Check the pair; with probability ``p`` apply ``change`` to every channel, in channel order (so
    its random draws come in a fixed order). The label is returned unchanged."""
    image, label = _check_pair(image, label)
    if not _apply(rng, p):
        return image, label
    out = np.empty_like(image)
    for c, channel in enumerate(image):
        out[c] = change(channel)
    return out, label


def random_gamma(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
                 max_log_gamma: float = 0.3) -> Pair:
    """Random gamma (contrast) change per channel: rescale to [0, 1], raise to ``gamma``, scale back.

    ``log(gamma)`` is uniform in ``[-max_log_gamma, max_log_gamma]``; minimum and maximum of each
    channel are kept. The label is returned unchanged.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Used in week 2 through `brain_augmentation`.
    """
    def change(channel: np.ndarray) -> np.ndarray:
        gamma = np.exp(rng.uniform(-max_log_gamma, max_log_gamma))
        low, high = channel.min(), channel.max()
        if high - low <= 0:
            return channel
        return low + (high - low) * ((channel - low) / (high - low)) ** gamma

    return _each_channel(image, label, rng, p, change)


def random_noise(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
                 max_relative_std: float = 0.1) -> Pair:
    """Add Gaussian noise to each channel, its std a random fraction of that channel's std.

    The fraction is uniform in ``[0, max_relative_std]``. The label is returned unchanged.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Used in week 2 through `brain_augmentation`.
    """
    def change(channel: np.ndarray) -> np.ndarray:
        sigma = rng.uniform(0.0, max_relative_std) * float(channel.std())
        return channel + rng.normal(0.0, sigma, size=channel.shape).astype(np.float32)

    return _each_channel(image, label, rng, p, change)


def random_bias_field(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
                      max_log_gain: float = 0.3, grid_spacing_voxels: float = 32.0) -> Pair:
    """Multiply each channel by a smooth random gain field, as an MRI coil bias field does.

    The field is ``exp(f)`` with ``f`` smooth, drawn uniformly in ``[-max_log_gain, max_log_gain]``
    on a coarse grid (one control point every ``grid_spacing_voxels``). The label is unchanged.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Used in week 2 through `brain_augmentation`.
    """
    def change(channel: np.ndarray) -> np.ndarray:
        log_gain = _smooth_random_field(channel.shape, grid_spacing=grid_spacing_voxels, rng=rng,
                                        amplitude=max_log_gain)
        return channel * np.exp(log_gain).astype(np.float32)

    return _each_channel(image, label, rng, p, change)
