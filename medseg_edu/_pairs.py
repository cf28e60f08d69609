"""Private helpers shared by :mod:`medseg_edu.transforms` and :mod:`medseg_edu.intensity`.

The checks of one ``(image, label)`` case (channel-first float image, integer label of the same
spatial shape), of a random transform's ``rng`` and ``p``, and the smooth random field that both the
elastic deformation and the bias field are made of. Not part of the public API.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import interpolate

from medseg_edu.arguments import check_unit_interval

__all__: list = []

Pair = Tuple[np.ndarray, np.ndarray]


def _check_image(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as float32 ``(C, *spatial)`` after checking rank and finiteness."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (C, *spatial), got {type(image).__name__}")
    if image.ndim not in (3, 4):
        raise ValueError(f"{name} must be (C, H, W) or (C, X, Y, Z) with the channel axis first, "
                         f"got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{name} contains NaN or Inf values ({int((~np.isfinite(image)).sum())} voxels); "
                         "clean or mask them before transforming")
    return image


def _check_pair(image: np.ndarray, label: np.ndarray) -> Pair:
    """Check one (image, label) case and return ``(image as float32, label)``."""
    if not isinstance(label, np.ndarray):
        raise TypeError(f"label must be a numpy integer array (*spatial), got {type(label).__name__}")
    if isinstance(image, np.ndarray) and image.ndim != label.ndim + 1:
        raise ValueError(
            "image must be (C, *spatial) with one more axis than label (*spatial), got image shape "
            f"{image.shape} and label shape {label.shape}; add a channel axis with image[None] if it is missing")
    image = _check_image(image)
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == bool):
        raise TypeError(f"label must be an integer array, got dtype {label.dtype}; "
                        "round and cast it (e.g. label.astype(np.uint8)) first")
    if image.shape[1:] != label.shape:
        hint = ""
        if image.shape[:-1] == label.shape:
            hint = "; image looks channels-last, move the channel axis first with np.moveaxis(image, -1, 0)"
        raise ValueError("image spatial shape must equal label shape, got image shape "
                         f"{image.shape} and label shape {label.shape}{hint}")
    return image, label


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")


def _apply(rng: np.random.Generator, p: float) -> bool:
    """Validate ``rng`` and ``p`` and decide (with one draw) whether to apply a random transform."""
    _check_rng(rng)
    check_unit_interval(p, "p", open_low=False, open_high=False)
    return bool(rng.random() < p)


def _smooth_random_field(shape: Tuple[int, ...], *, grid_spacing: float, rng: np.random.Generator,
                         amplitude: float) -> np.ndarray:
    """A smooth random field: uniform values in [-amplitude, amplitude] on a coarse grid, cubic-interpolated.

    The coarse grid has one control point every ``grid_spacing`` voxels (at least 2 per axis). The
    interpolation is separable: along each axis a cubic spline through the control points, written as
    a small matrix (fine points x control points) that is applied with ``np.tensordot``.
    """
    coarse_shape = tuple(1 if n == 1 else max(2, int(round((n - 1) / grid_spacing)) + 1) for n in shape)
    field = rng.uniform(-amplitude, amplitude, size=coarse_shape)
    for axis, (n, c) in enumerate(zip(shape, coarse_shape)):
        fine = np.arange(n, dtype=np.float64)
        if c == 1:
            weights = np.ones((1, 1))
        elif c == 2:                                   # two control points: a straight line
            t = fine / (n - 1)
            weights = np.stack([1.0 - t, t], axis=1)
        else:                                          # spline through the identity = interpolation weights
            weights = interpolate.CubicSpline(np.linspace(0.0, n - 1.0, c), np.eye(c))(fine)
        field = np.moveaxis(np.tensordot(weights, field, axes=([1], [axis])), 0, axis)
    return field
