"""The course's transform protocol, and paired image + label augmentation (2D and 3D) in numpy.

The transform protocol (the one place it is written down)
---------------------------------------------------------
A *transform* is any callable ::

    transform(image, label, rng) -> (image, label)

- ``image``: numpy float array ``(C, *spatial)``, channel first; ``spatial`` is 2D ``(H, W)`` or 3D
  ``(X, Y, Z)``;
- ``label``: numpy integer array ``(*spatial)`` with the same spatial shape (no channel axis);
- ``rng``: a ``numpy.random.Generator``; a transform takes ALL its randomness from it (never from
  ``np.random`` or ``torch``), so the same rng state gives the same output. A deterministic
  transform (a normalisation) ignores it.

It returns a new ``(image, label)`` pair of the same kinds; shapes may change (a crop, a quarter turn
of a non-square plane). Spatial transforms move image and label together, so they stay aligned: the
image is interpolated linearly, the label with nearest neighbour only, so a label never gets values
that were not in it (a blend of "edema" (1) and "enhancing" (3) would invent "non-enhancing" (2)).

Where transforms come from: the random transforms here and in :mod:`medseg_edu.intensity` are
``f(image, label, rng, *, p=..., <options>)``: with probability ``p`` they draw their parameters from
``rng``, otherwise they return their inputs. Bind the options and you have a transform:
``functools.partial(random_flip, p=0.5, axes=(0,))``. :func:`compose` chains transforms;
:func:`brain_augmentation` and :func:`skin_augmentation` are the course's ready-made pipelines. Your own
function is a transform when it has the signature above: ``lambda image, label, rng:
(zscore_normalise(image), label)`` turns a normaliser into one. A callable that cannot be called as
``transform(image, label, rng)`` (e.g. ``lambda image, label: ...``) is refused with a TypeError that
names this protocol, when the dataset or pipeline is built.

Who calls them, with which rng: every dataset of :mod:`medseg_edu.data.datasets` (``transform=``
argument) calls ``transform(image, label, rng)`` on each item with
``rng = np.random.default_rng([seed, epoch, index])``: ``seed`` is the dataset's ``seed``, ``index``
the item's index and ``epoch`` the value of ``dataset.set_epoch(epoch)`` (0 until it is called;
:func:`medseg_edu.training.fit` calls it at the start of every epoch). So an item depends only on
``(seed, epoch, index)``: the same with 0 or 8 DataLoader workers and whatever the shuffling, the
same when a run is repeated, and different from one epoch to the next. DataLoader workers receive a
copy of the dataset when a loader's iteration starts, so ``set_epoch`` must be called before that (as
``fit`` does); with ``persistent_workers=True`` the workers keep their first copy and every epoch
would repeat epoch 0's augmentation, so do not combine the two. :class:`BrainSlices
<medseg_edu.data.datasets.BrainSlices>` also takes a ``volume_transform``, called once per volume
before slicing with ``rng = np.random.default_rng([seed, case number])``.

Example:
    >>> augment = brain_augmentation(spatial_dims=3)
    >>> image, label = augment(image, label, np.random.default_rng(0))      # doctest: +SKIP
    >>> slices = BrainSlices(root, transform=brain_augmentation(2))         # doctest: +SKIP

Taught in week 2.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from medseg_edu._pairs import Pair, _apply, _check_pair, _check_rng, _smooth_random_field
from medseg_edu.arguments import check_choice, check_unit_interval
from medseg_edu.intensity import random_bias_field, random_gamma, random_noise

__all__ = ["random_flip", "random_rot90", "random_affine", "random_elastic", "compose", "brain_augmentation",
           "skin_augmentation"]

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair]

_PADDING_MODES = ("nearest", "reflect", "constant")
_PROTOCOL = "transform(image, label, rng) -> (image, label) (the protocol of medseg_edu.transforms)"


# ----------------------------------------------------------------------------------- the protocol
def _describe(transform: Any) -> str:
    if isinstance(transform, functools.partial):
        return f"functools.partial({_describe(transform.func)}, ...)"
    return getattr(transform, "__qualname__", type(transform).__name__)


def _check_transform(transform: Optional[Callable], *, name: str = "transform") -> None:
    """TypeError naming the protocol unless ``transform`` is None or callable as ``transform(image, label, rng)``."""
    if transform is None:
        return
    if not callable(transform):
        raise TypeError(f"{name} must be a callable {_PROTOCOL}, got {type(transform).__name__}")
    try:
        signature = inspect.signature(transform)
    except (TypeError, ValueError):       # some builtins have no signature: checked by the call instead
        return
    try:
        signature.bind(None, None, None)
    except TypeError as error:
        raise TypeError(f"{name} must follow the transform protocol {_PROTOCOL}, got {_describe(transform)} "
                        f"with signature {signature} ({error}); e.g. wrap a two-argument f as "
                        "lambda image, label, rng: f(image, label)") from None


def _call_transform(transform: Callable, image: Any, label: Any, rng: np.random.Generator, *,
                    name: str = "transform") -> Tuple[Any, Any]:
    """``transform(image, label, rng)``, checked to return a pair (TypeError naming the protocol if not)."""
    out = transform(image, label, rng)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"{name} must return a pair (image, label) as in {_PROTOCOL}, got "
                        f"{type(out).__name__} from {_describe(transform)}")
    return out[0], out[1]


# ------------------------------------------------------------------------------ spatial transforms
def random_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
                axes: Optional[Sequence[int]] = None) -> Pair:
    """Flip image and label together along each spatial axis, each with probability ``p``.

    ``axes`` are spatial axis numbers (0 = first spatial axis); default all of them. Note that a
    left-right flip of a brain swaps hemispheres, which is harmless for tumour segmentation.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Used in week 2 through `brain_augmentation`.
    """
    image, label = _check_pair(image, label)
    _check_rng(rng)
    check_unit_interval(p, "p", open_low=False, open_high=False)
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


def random_rot90(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
                 plane: Tuple[int, int] = (0, 1)) -> Pair:
    """Rotate image and label together by 90, 180 or 270 degrees in one spatial ``plane``.

    ``plane`` names two spatial axes, e.g. ``(0, 1)`` = the axial (x, y) plane of a RAS volume.
    A 90-degree rotation swaps the two axes, so a non-square plane changes shape.

    Shape: image (C, *spatial), label (*spatial) -> same, with the two plane axes possibly swapped.
    Used in week 2 through `brain_augmentation`.
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


def random_affine(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
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
    Used in week 2 through `brain_augmentation`.
    """
    image, label = _check_pair(image, label)
    check_choice(padding_mode, _PADDING_MODES, "padding_mode")
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


def random_elastic(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, p: float = 0.5,
                   grid_spacing_voxels: float = 16.0, max_displacement_voxels: float = 3.0,
                   padding_mode: str = "nearest") -> Pair:
    """Elastic deformation: every voxel moves by a smooth random displacement field.

    For each spatial axis a displacement is drawn uniformly in
    ``[-max_displacement_voxels, max_displacement_voxels]`` at control points every
    ``grid_spacing_voxels`` voxels and interpolated with cubic splines in between (so it is smooth;
    cubic splines may overshoot the maximum by up to about a third). Image linear, label nearest-neighbour.

    Shape: image (C, *spatial), label (*spatial) -> same shapes.
    Used in week 2 through `brain_augmentation`.
    """
    image, label = _check_pair(image, label)
    check_choice(padding_mode, _PADDING_MODES, "padding_mode")
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


# ------------------------------------------------------------------------------------- pipelines
def compose(*transforms: Transform) -> Transform:
    """Chain transforms into one transform ``(image, label, rng) -> (image, label)``.

    Each step must follow the protocol (module docstring) and is called as ``t(image, label, rng)``
    with the same ``rng``; bind a random transform's options with
    ``functools.partial(random_affine, p=0.3, max_rotation_deg=15)``.

    Shape: image (C, *spatial), label (*spatial) -> image (C, *spatial'), label (*spatial').
    Used in week 2 through `brain_augmentation`.
    """
    for i, t in enumerate(transforms):
        _check_transform(t, name=f"compose step {i}")

    def pipeline(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        image, label = _check_pair(image, label)
        for i, t in enumerate(transforms):
            image, label = _call_transform(t, image, label, rng, name=f"compose step {i}")
        return image, label

    return pipeline


def brain_augmentation(spatial_dims: int) -> Transform:
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


def skin_augmentation() -> Transform:
    """The course's augmentation for 2D dermoscopy images (3, H, W) in [0, 1].

    Lesions have no preferred orientation, so all flips and 90-degree rotations are allowed; small
    affine and elastic with reflected borders (skin continues past the edge); gamma and a mild bias
    field mimic lighting. Intensities are clipped back to [0, 1].

    Shape: image (3, H, W), label (H, W) -> same (square images keep their shape).
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
