"""Rigid and affine image registration in PyTorch: transforms, resampling, similarity, optimisation.

Registration finds the transform that brings a *moving* image onto a *fixed* (reference) image. In
the course the four MRI sequences of one session were acquired minutes apart, so the patient moved a
little between them: a rigid transform (3 rotations, 3 translations) per sequence undoes it.

Coordinates (the same as ``medseg_edu.data.phantoms.make_brain_case``):

* World positions are in millimetres with the origin at the CENTRE of the volume: voxel ``i`` along an
  axis of ``n`` voxels spaced ``s`` mm lies at ``(i - (n - 1) / 2) * s``. ``spacing_mm`` follows the
  array's axis order, so anisotropic voxels are handled in mm, not in voxels.
* A transform is a homogeneous ``(D + 1, D + 1)`` matrix ``M`` (D = 2 or 3) that maps a point of the
  FIXED image to the point of the MOVING image showing the same anatomy: ``p_moving = M @ p_fixed``.
  Resampling pulls values: ``aligned(p) = moving(M @ p)``, so ``resample(moving, M)`` lies on top of
  the fixed image. Rotations turn about the volume centre.
* 3D rotations: first about x, then about y, then about z: ``R = Rz @ Ry @ Rx`` (angles in degrees).

Resampling uses ``torch.nn.functional.grid_sample`` with ``align_corners=True`` (-1 and +1 are the
centres of the first and last voxel), so the whole chain is differentiable and a gradient optimiser
(Adam) can tune the transform parameters by maximising a similarity score: normalised
cross-correlation (NCC) for images of the same sequence, mutual information (MI) across sequences;
the scores live in :mod:`medseg_edu.similarity`.

Taught in week 1.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from medseg_edu.arguments import check_choice, check_spacing, to_tensor
from medseg_edu.similarity import mutual_information_score, ncc_score
from medseg_edu.utils import progress

__all__ = ["rigid_matrix", "affine_grid_from_matrix", "resample", "register_rigid", "register_affine",
           "transform_error"]

ArrayLike = Union[np.ndarray, torch.Tensor]
_METRICS = ("ncc", "mi")


# ------------------------------------------------------------------------------ argument checks
def _check_matrix(matrix: ArrayLike, ndim: int) -> torch.Tensor:
    m = to_tensor(matrix, "matrix")
    if tuple(m.shape) != (ndim + 1, ndim + 1):
        raise ValueError(f"matrix must be ({ndim + 1}, {ndim + 1}) for a {ndim}D image, got {tuple(m.shape)}")
    return m


# ------------------------------------------------------------------------------ transforms
def _rotation(angles_rad: torch.Tensor) -> torch.Tensor:
    """Rotation matrix from 1 angle (2D) or 3 angles about x, y, z (3D): R = Rz @ Ry @ Rx."""
    c, s = torch.cos(angles_rad), torch.sin(angles_rad)
    one, zero = torch.ones_like(c[0]), torch.zeros_like(c[0])
    if angles_rad.numel() == 1:
        return torch.stack([torch.stack([c[0], -s[0]]), torch.stack([s[0], c[0]])])
    rx = torch.stack([torch.stack([one, zero, zero]), torch.stack([zero, c[0], -s[0]]),
                      torch.stack([zero, s[0], c[0]])])
    ry = torch.stack([torch.stack([c[1], zero, s[1]]), torch.stack([zero, one, zero]),
                      torch.stack([-s[1], zero, c[1]])])
    rz = torch.stack([torch.stack([c[2], -s[2], zero]), torch.stack([s[2], c[2], zero]),
                      torch.stack([zero, zero, one])])
    return rz @ ry @ rx


def rigid_matrix(angles_deg: Union[float, Sequence[float], torch.Tensor],
                 translation_mm: Union[Sequence[float], torch.Tensor]) -> ArrayLike:
    """Homogeneous matrix of a rigid transform: rotate about the centre, then translate.

    ``p -> R @ p + translation_mm``. In 3D ``angles_deg`` holds three angles (about x, then y, then z;
    ``R = Rz @ Ry @ Rx``); in 2D a single angle (counter-clockwise from axis 0 towards axis 1). The
    result is a torch tensor when either input is one (keeping the autograd graph, which is how
    ``register_rigid`` optimises the six numbers), otherwise a float64 numpy array.

    Shape: angles (3,) and translation (3,) -> (4, 4); angle () or (1,) and translation (2,) -> (3, 3).

    Example:
        >>> rigid_matrix(90.0, [0.0, 0.0]).round(6)
        array([[ 0., -1.,  0.],
               [ 1.,  0.,  0.],
               [ 0.,  0.,  1.]])

    Taught in week 1.
    """
    as_torch = isinstance(angles_deg, torch.Tensor) or isinstance(translation_mm, torch.Tensor)
    dtype = next((x.dtype for x in (angles_deg, translation_mm) if isinstance(x, torch.Tensor)), torch.float64)
    angles = torch.as_tensor(angles_deg, dtype=dtype).reshape(-1)
    shift = torch.as_tensor(translation_mm, dtype=dtype).reshape(-1)
    if angles.numel() not in (1, 3):
        raise ValueError(f"angles_deg must hold 1 angle (2D) or 3 angles (3D), got {angles.numel()}")
    ndim = 2 if angles.numel() == 1 else 3
    if shift.numel() != ndim:
        raise ValueError(f"translation_mm must have {ndim} values for {angles.numel()} angle(s), "
                         f"got {shift.numel()}")
    top = torch.cat([_rotation(angles * (math.pi / 180.0)), shift[:, None]], dim=1)
    bottom = torch.zeros(1, ndim + 1, dtype=dtype)
    bottom[0, -1] = 1.0
    matrix = torch.cat([top, bottom], dim=0)
    return matrix if as_torch else matrix.detach().numpy()


def _centred_origin(shape: Sequence[int], spacing: Sequence[float]) -> tuple[float, ...]:
    """World position (mm) of voxel (0, ..., 0) when the grid centre is at 0 mm."""
    return tuple(-(n - 1) / 2.0 * s for n, s in zip(shape, spacing))


def _grid_points_mm(geometry: tuple) -> torch.Tensor:
    """World positions (mm) of every voxel of a grid (shape, spacing_mm, origin_mm): (*shape, D)."""
    shape, spacing, origin = geometry
    axes = [o + s * torch.arange(n, dtype=torch.float64) for n, s, o in zip(shape, spacing, origin)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def _to_grid_units(points_mm: torch.Tensor, matrix: torch.Tensor, moving_geometry: tuple) -> torch.Tensor:
    """Map fixed points through ``matrix`` and express them in grid_sample units of the moving grid.

    grid_sample with align_corners=True puts -1 and +1 at the centres of the first and last voxel, so
    a position x (mm) on an axis of n voxels spaced s mm from origin o becomes 2 (x - o) / (s (n - 1)) - 1,
    per axis (anisotropic voxels need their own s). grid_sample wants the axes in REVERSE order.
    Shape: (..., D) mm -> (..., D) normalised, reversed.
    """
    shape, spacing, origin = moving_geometry
    ndim = len(shape)
    m = matrix.to(torch.float64)
    moved = points_mm @ m[:ndim, :ndim].T + m[:ndim, ndim]
    origin_t = torch.tensor(origin, dtype=torch.float64)
    extent = torch.tensor([s * max(n - 1, 1) for n, s in zip(shape, spacing)], dtype=torch.float64)
    return (2.0 * (moved - origin_t) / extent - 1.0).flip(-1)


def affine_grid_from_matrix(matrix: ArrayLike, *, spacing_mm: Sequence[float], moving_shape: Sequence[int],
                            reference_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The ``grid_sample`` grid that resamples a moving volume under ``matrix`` (fixed -> moving, mm).

    Both grids have the voxel size ``spacing_mm`` and their centre at 0 mm; the reference grid (the
    output) has ``reference_shape`` (default: ``moving_shape``). Positions are converted from mm to
    grid_sample's normalised units per axis, so anisotropic voxels rotate correctly. Use it with
    ``F.grid_sample(volume, grid, align_corners=True)``.

    Shape: matrix (D + 1, D + 1) -> grid (1, *reference_shape, D), last axis in reversed axis order.
    Used in week 1 through `resample`.
    """
    moving_shape = tuple(int(n) for n in moving_shape)
    spacing = check_spacing(spacing_mm, len(moving_shape))
    reference = moving_shape if reference_shape is None else tuple(int(n) for n in reference_shape)
    if len(reference) != len(moving_shape):
        raise ValueError(f"reference_shape must have {len(moving_shape)} values, got {reference_shape!r}")
    m = _check_matrix(matrix, len(spacing))
    points = _grid_points_mm((reference, spacing, _centred_origin(reference, spacing)))
    return _to_grid_units(points, m, (moving_shape, spacing, _centred_origin(moving_shape, spacing)))[None]


def _grid_sample(volume: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample (C, *spatial) at ``grid``; zeros outside the moving volume."""
    values = volume[None].to(grid.dtype)
    return F.grid_sample(values, grid, mode=mode, padding_mode="zeros", align_corners=True)[0]


def resample(moving: ArrayLike, matrix: ArrayLike, *, spacing_mm: Sequence[float],
             reference_shape: Optional[Sequence[int]] = None, order: str = "linear") -> ArrayLike:
    """Resample ``moving`` under a world-mm transform: ``out(p) = moving(matrix @ p)``.

    ``matrix`` maps fixed-space points to moving-space points (see the module docstring), rotating
    about the volume centre. ``order="linear"`` interpolates (images), ``"nearest"`` copies the nearest
    voxel (label maps: never interpolate labels). Positions outside ``moving`` read 0. A numpy input
    gives a numpy output of the same dtype; a torch input gives a differentiable tensor.

    Shape: (*spatial) or (C, *spatial) with len(spatial) == len(spacing_mm) -> same, with
    ``reference_shape`` as the spatial shape if given.

    Example:
        >>> volume = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
        >>> shifted = resample(volume, rigid_matrix([0, 0, 0], [2.0, 0, 0]), spacing_mm=(2, 2, 2))
        >>> bool((shifted[:2] == volume[1:]).all())      # one voxel (2 mm) along x
        True

    Taught in week 1.
    """
    check_choice(order, ("linear", "nearest"), "order")
    volume = to_tensor(moving, "moving")
    spacing = check_spacing(spacing_mm)
    ndim = len(spacing)
    if volume.ndim not in (ndim, ndim + 1):
        raise ValueError(f"moving must be (*spatial) or (C, *spatial) with {ndim} spatial axes "
                         f"(len(spacing_mm)), got shape {tuple(volume.shape)}")
    batched = volume.ndim == ndim + 1
    volume = volume if batched else volume[None]
    grid = affine_grid_from_matrix(matrix, spacing_mm=spacing, moving_shape=volume.shape[1:],
                                   reference_shape=reference_shape)
    grid = grid.to(torch.float64 if volume.dtype == torch.float64 else torch.float32)
    out = _grid_sample(volume, grid, "bilinear" if order == "linear" else "nearest")
    out = out if batched else out[0]
    if isinstance(moving, np.ndarray):
        out = out.detach().numpy()
        return np.rint(out).astype(moving.dtype) if moving.dtype.kind in "iub" else out.astype(moving.dtype)
    return out.round().to(moving.dtype) if not moving.is_floating_point() else out.to(moving.dtype)


# ------------------------------------------------------------------------------ optimisation
def _downsample(volume: torch.Tensor, factor: int, spacing: tuple, origin: tuple) -> tuple:
    """Average-pool by ``factor`` (trailing voxels that do not fill a block are dropped), new geometry."""
    ndim = len(spacing)
    if factor == 1:
        return volume, (tuple(volume.shape), spacing, origin)
    pool = F.avg_pool3d if ndim == 3 else F.avg_pool2d
    small = pool(volume[None, None], kernel_size=factor, stride=factor)[0, 0]
    new_spacing = tuple(s * factor for s in spacing)
    new_origin = tuple(o + s * (factor - 1) / 2.0 for o, s in zip(origin, spacing))  # block centres
    return small, (tuple(small.shape), new_spacing, new_origin)


def _register(fixed: ArrayLike, moving: ArrayLike, *, spacing_mm: Sequence[float], model: str, metric: str,
              levels: Sequence[int], iterations: Union[int, Sequence[int]], lr: float,
              bins: int, samples: Optional[int]) -> dict[str, Any]:
    check_choice(metric, _METRICS, "metric")
    f_img = to_tensor(fixed, "fixed").detach().to(torch.float32)
    m_img = to_tensor(moving, "moving").detach().to(torch.float32)
    spacing = check_spacing(spacing_mm)
    ndim = len(spacing)
    if f_img.ndim != ndim or m_img.ndim != ndim:
        raise ValueError(f"fixed and moving must have {ndim} spatial axes (len(spacing_mm)), "
                         f"got shapes {tuple(f_img.shape)} and {tuple(m_img.shape)}")
    levels = tuple(int(f) for f in levels)
    if not levels or min(levels) < 1 or min(min(f_img.shape), min(m_img.shape)) // max(levels) < 4:
        raise ValueError(f"levels must be positive integer factors that leave at least 4 voxels per axis, "
                         f"got {levels!r} for shapes {tuple(f_img.shape)} and {tuple(m_img.shape)}")
    iters = [int(iterations)] * len(levels) if isinstance(iterations, (int, np.integer)) else \
        [int(i) for i in iterations]
    if len(iters) != len(levels) or min(iters) < 0:
        raise ValueError(f"iterations must be one non-negative integer or one per level ({len(levels)}), "
                         f"got {iterations!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if samples is not None and (not isinstance(samples, (int, np.integer)) or samples < 16):
        raise ValueError(f"samples must be None (all voxels) or an integer >= 16, got {samples!r}")

    n_angles = 1 if ndim == 2 else 3
    angles = torch.zeros(n_angles, dtype=torch.float64, requires_grad=True)       # degrees
    shift = torch.zeros(ndim, dtype=torch.float64, requires_grad=True)            # mm
    linear = torch.zeros(ndim, ndim, dtype=torch.float64, requires_grad=(model == "affine"))
    groups = [{"params": [angles, shift], "lr": lr}]
    if model == "affine":
        groups.append({"params": [linear], "lr": lr * 0.01})   # a 1-degree turn changes entries by ~0.017

    def current_matrix() -> torch.Tensor:
        m = rigid_matrix(angles, shift)
        if model == "affine":
            m = m.clone()
            m[:ndim, :ndim] = m[:ndim, :ndim] + linear
        return m

    score_fn = ncc_score if metric == "ncc" else (lambda a, b: mutual_information_score(a, b, bins=bins))
    history: dict[int, list[float]] = {}
    optimiser = torch.optim.Adam(groups)
    base_lrs = [group["lr"] for group in optimiser.param_groups]
    for factor, n_iter in zip(levels, iters):
        fixed_small, f_geom = _downsample(f_img, factor, spacing, _centred_origin(f_img.shape, spacing))
        moving_small, m_geom = _downsample(m_img, factor, spacing, _centred_origin(m_img.shape, spacing))
        points = _grid_points_mm(f_geom).reshape(-1, ndim)             # fixed voxel positions (mm)
        fixed_values = fixed_small.reshape(-1)
        if samples is not None and len(points) > samples:             # a fixed random subset: faster
            keep = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))[:samples]
            points, fixed_values = points[keep], fixed_values[keep]
        for group, base in zip(optimiser.param_groups, base_lrs):     # finer level, smaller steps
            group["lr"] = base * factor / levels[0]
        history[factor] = []
        for _ in progress(range(n_iter), desc=f"{model} {metric} level x{factor}", leave=False):
            optimiser.zero_grad()
            grid = _to_grid_units(points, current_matrix(), m_geom).float()
            grid = grid.reshape(1, *([1] * (ndim - 1)), -1, ndim)        # the points as one row of voxels
            warped = _grid_sample(moving_small[None], grid, "bilinear").reshape(-1)
            score = score_fn(fixed_values, warped)
            (-score).backward()
            optimiser.step()
            history[factor].append(score.item())

    matrix = current_matrix().detach()
    out = resample(m_img, matrix, spacing_mm=spacing, reference_shape=tuple(f_img.shape)).detach().numpy()
    return {"matrix": matrix.numpy(), "angles_deg": angles.detach().numpy().copy(),
            "translation_mm": shift.detach().numpy().copy(), "history": history, "resampled": out,
            "metric": metric}


def register_rigid(fixed: ArrayLike, moving: ArrayLike, *, spacing_mm: Sequence[float], metric: str = "ncc",
                   levels: Sequence[int] = (4, 2, 1), iterations: Union[int, Sequence[int]] = (60, 40, 20),
                   lr: float = 0.3, bins: int = 32, samples: Optional[int] = 20000) -> dict[str, Any]:
    """Find the rigid transform (rotations + translations) that aligns ``moving`` to ``fixed``.

    Multi-resolution: both images are average-pooled by each factor in ``levels`` (coarse to fine);
    at each level Adam runs ``iterations`` steps on the angles (degrees) and translation (mm),
    maximising ``metric`` ("ncc": same sequence; "mi": mutual information, across sequences).
    The score is computed on at most ``samples`` fixed voxels per level (a fixed random subset, as
    ITK's Mattes MI does; None uses every voxel), which keeps each step fast. Starts from the identity; deterministic on CPU (no randomness). Both images share ``spacing_mm``
    and centre; the fixed grid may have another shape.

    Returns a dict: ``matrix`` ((D+1, D+1) numpy, fixed -> moving as in ``resample``), ``angles_deg``,
    ``translation_mm``, ``history`` ({factor: [metric per iteration]}), ``resampled`` (the moving
    image on the fixed grid) and ``metric``.

    Shape: fixed (*spatial), moving (*spatial'), 2 or 3 spatial axes -> resampled (*spatial).

    Example:
        >>> result = register_rigid(fixed, moving, spacing_mm=(3, 3, 3), metric="mi")   # doctest: +SKIP
        >>> transform_error(result["matrix"], true_matrix)                                # doctest: +SKIP

    Taught in week 1.
    """
    return _register(fixed, moving, spacing_mm=spacing_mm, model="rigid", metric=metric, levels=levels,
                     iterations=iterations, lr=lr, bins=bins, samples=samples)


def register_affine(fixed: ArrayLike, moving: ArrayLike, *, spacing_mm: Sequence[float], metric: str = "ncc",
                    levels: Sequence[int] = (4, 2, 1), iterations: Union[int, Sequence[int]] = (60, 40, 20),
                    lr: float = 0.3, bins: int = 32, samples: Optional[int] = 20000) -> dict[str, Any]:
    """Like ``register_rigid`` but with 12 (3D) or 6 (2D) parameters: rotation and translation plus a
    free linear part added to the rotation (scaling and shearing), for e.g. scanner gradient distortion.

    ``angles_deg`` and ``translation_mm`` in the result are the rigid part that the optimiser tuned;
    ``matrix`` is the full affine transform.

    Shape: fixed (*spatial), moving (*spatial'), 2 or 3 spatial axes -> resampled (*spatial).
    """
    return _register(fixed, moving, spacing_mm=spacing_mm, model="affine", metric=metric, levels=levels,
                     iterations=iterations, lr=lr, bins=bins, samples=samples)


# ------------------------------------------------------------------------------ evaluation
def _box_corners(ndim: int, half_mm: float = 50.0) -> np.ndarray:
    grids = np.meshgrid(*[[-half_mm, half_mm]] * ndim, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def transform_error(estimated: ArrayLike, true: ArrayLike, *, spacing_mm: Optional[Sequence[float]] = None,
                    points: Optional[ArrayLike] = None) -> tuple[float, float]:
    """How far an estimated transform is from the true one: (error in mm, error in degrees).

    The mm error is the mean distance between where the two transforms send a set of points (a
    target registration error). ``points`` is either an (P, D) array of positions in mm (centre at 0),
    a boolean mask (*spatial) whose voxels are used (``spacing_mm`` required, e.g. the brain), or None:
    the corners of a 100 mm cube (square in 2D) around the centre, about the size of a head. The
    degree error is the angle of the relative rotation ``R_est @ R_true^T`` (for an affine estimate,
    its nearest rotation).

    Shape: estimated, true (D + 1, D + 1) -> (float mm, float degrees).
    Taught in week 1.
    """
    est = np.asarray(to_tensor(estimated, "estimated").detach().numpy(), np.float64)
    tru = np.asarray(to_tensor(true, "true").detach().numpy(), np.float64)
    if est.shape != tru.shape or est.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"estimated and true must both be (3, 3) or (4, 4) matrices, got {est.shape} and "
                         f"{tru.shape}")
    ndim = est.shape[0] - 1
    if points is None:
        pts = _box_corners(ndim)
    else:
        pts = np.asarray(to_tensor(points, "points").detach().numpy())
        if pts.dtype == bool:
            if pts.ndim != ndim or spacing_mm is None:
                raise ValueError(f"a boolean points mask must have {ndim} axes and needs spacing_mm, got shape "
                                 f"{pts.shape} and spacing_mm={spacing_mm!r}")
            spacing = np.array(check_spacing(spacing_mm, ndim))
            idx = np.argwhere(pts)
            if len(idx) == 0:
                raise ValueError("points mask is empty: it must select at least one voxel")
            pts = (idx - (np.array(pts.shape) - 1) / 2.0) * spacing
        elif pts.ndim != 2 or pts.shape[1] != ndim or len(pts) == 0:
            raise ValueError(f"points must be (P, {ndim}) positions in mm or a boolean mask, got {pts.shape}")
    diff = pts @ (est[:ndim, :ndim] - tru[:ndim, :ndim]).T + (est[:ndim, ndim] - tru[:ndim, ndim])
    error_mm = float(np.linalg.norm(diff, axis=1).mean())
    u, _, vt = np.linalg.svd(est[:ndim, :ndim])
    rotation = u @ vt                                       # nearest rotation (polar decomposition)
    relative = rotation @ tru[:ndim, :ndim].T
    if ndim == 2:
        error_deg = abs(math.degrees(math.atan2(relative[1, 0], relative[0, 0])))
    else:
        error_deg = math.degrees(math.acos(float(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))))
    return error_mm, error_deg
