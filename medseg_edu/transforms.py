"""Paired image + label augmentation (2D and 3D) and intensity normalisation, in numpy.

Every function works on ONE case:

- ``image``: float array ``(C, *spatial)`` (channel first), ``spatial`` 2D ``(H, W)`` or 3D ``(X, Y, Z)``;
- ``label``: integer array ``(*spatial)`` with the same spatial shape.

Spatial transforms move image and label together, so they stay aligned: the image is interpolated
linearly (``order=1``), the label with nearest neighbour only (``order=0``), so a label never gets
values that were not in it (a linear blend of "edema" (1) and "enhancing" (3) would invent a
"non-enhancing" (2) voxel). Intensity transforms change the image and return the label untouched.

Every random transform has the same form
``f(image, label, *, rng, p=..., <options>) -> (image, label)``: with probability ``p`` it draws its
parameters from ``rng`` (a ``numpy.random.Generator``) and applies them, otherwise it returns its
inputs. The same seed therefore gives the same result. ``compose`` chains them.

Example:
    >>> rng = np.random.default_rng(0)
    >>> augment = brain_augmentation(spatial_dims=3)
    >>> image, label = augment(image, label, rng)          # doctest: +SKIP

Taught in week 2.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
from scipy import interpolate, ndimage

__all__ = [
    "random_flip",
    "random_rot90",
    "random_affine",
    "random_elastic",
    "zscore_normalise",
    "percentile_clip",
    "random_gamma",
    "random_noise",
    "random_bias_field",
    "compose",
    "brain_augmentation",
    "skin_augmentation",
]

Pair = Tuple[np.ndarray, np.ndarray]
PairTransform = Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair]

_PADDING_MODES = ("nearest", "reflect", "constant")


# --------------------------------------------------------------------------------------- checks
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


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")


def _check_padding_mode(padding_mode: str) -> None:
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")


def _apply(rng: np.random.Generator, p: float) -> bool:
    """Validate ``rng`` and ``p`` and decide (with one draw) whether to apply a random transform."""
    _check_rng(rng)
    _check_probability(p)
    return bool(rng.random() < p)


# ------------------------------------------------------------------------------ spatial transforms
def random_flip(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                axes: Optional[Sequence[int]] = None) -> Pair:
    """Flip image and label together along each spatial axis, each with probability ``p``.

    ``axes`` are spatial axis numbers (0 = first spatial axis); default all of them. Note that a
    left-right flip of a brain swaps hemispheres, which is harmless for tumour segmentation.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    _check_rng(rng)
    _check_probability(p)
    spatial_dims = label.ndim
    axes = tuple(range(spatial_dims)) if axes is None else tuple(axes)
    for axis in axes:
        if not 0 <= axis < spatial_dims:
            raise ValueError(f"axes must be spatial axis numbers in [0, {spatial_dims - 1}], got {axes}")
    for axis in axes:
        if rng.random() < p:
            image = np.flip(image, axis=axis + 1)
            label = np.flip(label, axis=axis)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def random_rot90(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                 plane: Tuple[int, int] = (0, 1)) -> Pair:
    """Rotate image and label together by 90, 180 or 270 degrees in one spatial ``plane``.

    ``plane`` names two spatial axes, e.g. ``(0, 1)`` = the axial (x, y) plane of a RAS volume.
    A 90-degree rotation swaps the two axes, so a non-square plane changes shape.

    Shape: image (C, *spatial), label (*spatial) -> same, with the two plane axes possibly swapped.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    a, b = plane
    if a == b or not (0 <= a < label.ndim and 0 <= b < label.ndim):
        raise ValueError(f"plane must be two different spatial axes in [0, {label.ndim - 1}], got {plane}")
    if not _apply(rng, p):
        return image, label
    k = int(rng.integers(1, 4))
    image = np.rot90(image, k=k, axes=(a + 1, b + 1))
    label = np.rot90(label, k=k, axes=(a, b))
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def _rotation_matrix(angles_rad: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Rotation matrix: one angle in 2D; in 3D rotations about axis 2, then 1, then 0."""
    if spatial_dims == 2:
        c, s = np.cos(angles_rad[0]), np.sin(angles_rad[0])
        return np.array([[c, -s], [s, c]])
    matrix = np.eye(3)
    for plane, angle in zip([(1, 2), (0, 2), (0, 1)], angles_rad):
        i, j = plane
        r = np.eye(3)
        r[i, i] = r[j, j] = np.cos(angle)
        r[i, j], r[j, i] = -np.sin(angle), np.sin(angle)
        matrix = r @ matrix
    return matrix


def _warp_pair(image: np.ndarray, label: np.ndarray, *, coords=None, matrix=None, offset=None,
               padding_mode: str) -> Pair:
    """Resample every image channel linearly and the label nearest-neighbour at the same positions."""
    def warp(array: np.ndarray, order: int) -> np.ndarray:
        if coords is not None:
            return ndimage.map_coordinates(array, coords, order=order, mode=padding_mode, cval=0)
        return ndimage.affine_transform(array, matrix, offset=offset, order=order, mode=padding_mode, cval=0)

    new_image = np.stack([warp(channel, 1) for channel in image]).astype(np.float32, copy=False)
    new_label = warp(label, 0).astype(label.dtype, copy=False)
    return new_image, new_label


def random_affine(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                  max_rotation_deg: float = 10.0, max_scale: float = 0.1,
                  max_translation_voxels: float = 4.0, padding_mode: str = "nearest") -> Pair:
    """Small random rotation, isotropic scaling and translation about the centre of the image.

    Angles are drawn uniformly in ``[-max_rotation_deg, max_rotation_deg]`` (one in 2D, one per plane
    in 3D), the scale in ``[1 - max_scale, 1 + max_scale]``, the shift per axis in
    ``[-max_translation_voxels, max_translation_voxels]``. The image is interpolated linearly
    (``order=1``), the label nearest-neighbour (``order=0``). The transform acts in voxel units: on
    strongly anisotropic volumes keep rotations small. ``padding_mode`` ("nearest", "reflect" or
    "constant" = 0) fills what comes in from outside, identically for image and label; "nearest"
    and "reflect" never add a label value, "constant" adds background 0.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    _check_padding_mode(padding_mode)
    if not _apply(rng, p):
        return image, label
    dims = label.ndim
    n_angles = 1 if dims == 2 else 3
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, size=n_angles))
    scale = rng.uniform(1.0 - max_scale, 1.0 + max_scale)
    shift = rng.uniform(-max_translation_voxels, max_translation_voxels, size=dims)
    # affine_transform maps each OUTPUT voxel o to the INPUT position matrix @ o + offset.
    matrix = _rotation_matrix(angles, dims) / scale
    centre = (np.array(label.shape) - 1) / 2.0
    offset = centre - matrix @ centre + shift
    return _warp_pair(image, label, matrix=matrix, offset=offset, padding_mode=padding_mode)


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


def random_elastic(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                   grid_spacing_voxels: float = 16.0, max_displacement_voxels: float = 3.0,
                   padding_mode: str = "nearest") -> Pair:
    """Elastic deformation: every voxel moves by a smooth random displacement field.

    For each spatial axis a displacement is drawn uniformly in
    ``[-max_displacement_voxels, max_displacement_voxels]`` at control points every
    ``grid_spacing_voxels`` voxels and interpolated with cubic splines in between (so it is smooth;
    cubic splines may overshoot the maximum by up to about a third). Image linear, label nearest-neighbour.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    _check_padding_mode(padding_mode)
    if grid_spacing_voxels <= 0 or max_displacement_voxels < 0:
        raise ValueError("grid_spacing_voxels must be > 0 and max_displacement_voxels >= 0, got "
                         f"{grid_spacing_voxels} and {max_displacement_voxels}")
    if not _apply(rng, p):
        return image, label
    shape = label.shape
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    coords = np.stack([g + _smooth_random_field(shape, grid_spacing=grid_spacing_voxels, rng=rng,
                                                amplitude=max_displacement_voxels)
                       for g in grid])
    return _warp_pair(image, label, coords=coords, padding_mode=padding_mode)


# ---------------------------------------------------------------------------- intensity transforms
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
    Taught in week 2.
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
    Taught in week 2.
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


def random_gamma(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                 max_log_gamma: float = 0.3) -> Pair:
    """Random gamma (contrast) change per channel: rescale to [0, 1], raise to ``gamma``, scale back.

    ``log(gamma)`` is uniform in ``[-max_log_gamma, max_log_gamma]``; minimum and maximum of each
    channel are kept. The label is returned unchanged.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    if not _apply(rng, p):
        return image, label
    out = np.empty_like(image)
    for c, channel in enumerate(image):
        gamma = np.exp(rng.uniform(-max_log_gamma, max_log_gamma))
        low, high = channel.min(), channel.max()
        if high - low <= 0:
            out[c] = channel
            continue
        out[c] = low + (high - low) * ((channel - low) / (high - low)) ** gamma
    return out, label


def random_noise(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                 max_relative_std: float = 0.1) -> Pair:
    """Add Gaussian noise to each channel, its std a random fraction of that channel's std.

    The fraction is uniform in ``[0, max_relative_std]``. The label is returned unchanged.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    if not _apply(rng, p):
        return image, label
    out = np.empty_like(image)
    for c, channel in enumerate(image):
        sigma = rng.uniform(0.0, max_relative_std) * float(channel.std())
        out[c] = channel + rng.normal(0.0, sigma, size=channel.shape).astype(np.float32)
    return out, label


def random_bias_field(image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator, p: float = 0.5,
                      max_log_gain: float = 0.3, grid_spacing_voxels: float = 32.0) -> Pair:
    """Multiply each channel by a smooth random gain field, as an MRI coil bias field does.

    The field is ``exp(f)`` with ``f`` smooth, drawn uniformly in ``[-max_log_gain, max_log_gain]``
    on a coarse grid (one control point every ``grid_spacing_voxels``). The label is unchanged.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Taught in week 2.
    """
    image, label = _check_pair(image, label)
    if not _apply(rng, p):
        return image, label
    out = np.empty_like(image)
    for c, channel in enumerate(image):
        log_gain = _smooth_random_field(label.shape, grid_spacing=grid_spacing_voxels, rng=rng,
                                        amplitude=max_log_gain)
        out[c] = channel * np.exp(log_gain).astype(np.float32)
    return out, label


# ------------------------------------------------------------------------------------- pipelines
def compose(*transforms: Callable[..., Pair]) -> PairTransform:
    """Chain random transforms into one callable ``(image, label, rng) -> (image, label)``.

    Each transform is called as ``t(image, label, rng=rng)``; bind options with
    ``functools.partial(random_affine, p=0.3, max_rotation_deg=15)``.

    Shape: image (C, *spatial), label (*spatial) -> image (C, *spatial'), label (*spatial').
    Taught in week 2.
    """
    for t in transforms:
        if not callable(t):
            raise TypeError(f"compose expects callables (image, label, *, rng), got {type(t).__name__}")

    def pipeline(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        image, label = _check_pair(image, label)
        for t in transforms:
            image, label = t(image, label, rng=rng)
        return image, label

    return pipeline


def brain_augmentation(spatial_dims: int) -> PairTransform:
    """The course's augmentation for brain MRI (2D slices or 3D volumes/patches), applied after z-scoring.

    Flip left-right (axis 0 of a RAS volume), 90-degree rotations in the axial plane, small affine,
    mild elastic, then gamma, bias field and noise. The pipeline refuses a case whose number of
    spatial dimensions is not ``spatial_dims`` (a 2D slice given to a 3D pipeline, or the reverse).

    Shape: image (C, *spatial), label (*spatial) -> same (the axial plane may swap axes).
    Taught in week 2.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    steps = compose(
        functools.partial(random_flip, p=0.5, axes=(0,)),
        functools.partial(random_rot90, p=0.25, plane=(0, 1)),
        functools.partial(random_affine, p=0.3, max_rotation_deg=10.0, max_scale=0.1),
        functools.partial(random_elastic, p=0.2, grid_spacing_voxels=16.0, max_displacement_voxels=2.0),
        functools.partial(random_gamma, p=0.3),
        functools.partial(random_bias_field, p=0.3),
        functools.partial(random_noise, p=0.3, max_relative_std=0.05),
    )

    def pipeline(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if np.ndim(label) != spatial_dims:
            raise ValueError(f"this pipeline was built for spatial_dims={spatial_dims}, got a label of shape "
                             f"{np.shape(label)} ({np.ndim(label)} spatial dimensions)")
        return steps(image, label, rng)

    return pipeline


def skin_augmentation() -> PairTransform:
    """The course's augmentation for 2D dermoscopy images (3, H, W) in [0, 1].

    Lesions have no preferred orientation, so all flips and 90-degree rotations are allowed; small
    affine and elastic with reflected borders (skin continues past the edge); gamma and a mild bias
    field mimic lighting. Intensities are clipped back to [0, 1].

    Shape: image (3, H, W), label (H, W) -> same (square images keep their shape).
    Taught in week 2.
    """
    steps = compose(
        functools.partial(random_flip, p=0.5),
        functools.partial(random_rot90, p=0.5, plane=(0, 1)),
        functools.partial(random_affine, p=0.5, max_rotation_deg=20.0, max_scale=0.1,
                          padding_mode="reflect"),
        functools.partial(random_elastic, p=0.3, grid_spacing_voxels=32.0, max_displacement_voxels=4.0,
                          padding_mode="reflect"),
        functools.partial(random_gamma, p=0.3, max_log_gamma=0.2),
        functools.partial(random_bias_field, p=0.3, max_log_gain=0.15, grid_spacing_voxels=64.0),
    )

    def pipeline(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        image, label = steps(image, label, rng)
        return np.clip(image, 0.0, 1.0), label

    return pipeline
