"""Surface-distance metrics: HD95, Hausdorff distance, ASSD and normalised surface Dice (NSD).

Overlap scores (Dice, IoU) ignore *where* a mistake is; surface metrics measure it in millimetres.
Taught in week 4.

Definitions (the same as MONAI's ``compute_hausdorff_distance``, ``compute_average_surface_distance``
with ``symmetric=True`` and ``compute_surface_dice``, checked against them in the tests):

- Surface voxels of a mask: foreground voxels with at least one face neighbour (4 in 2D, 6 in 3D) that
  is background or lies outside the image. That is ``mask & ~binary_erosion(mask)`` with a cross-shaped
  structuring element and everything outside the image counted as background.
- Directed surface distances: for every surface voxel of ``pred``, the Euclidean distance in mm
  (voxel index differences times ``spacing_mm``) to the nearest surface voxel of ``target``; and the
  other way round. Both arrays are computed once per case by :func:`surface_distances` and every
  metric below is a summary of them.
- HD95 (default): the larger of the two directed 95th percentiles (numpy's linear interpolation).
  ``pooled=True``: the 95th percentile of both directed sets put together (another definition found
  in papers; it is never larger than the default).
- Hausdorff distance: the largest directed distance in either direction.
- ASSD: the mean of both directed sets put together (sum of all distances / number of surface voxels).
- NSD at ``tolerance_mm``: the fraction of surface voxels of both masks whose distance to the other
  surface is ``<= tolerance_mm``.

Empty masks (``empty=`` policy of the distance functions):

- ``"inf"`` (default): both empty -> NaN (undefined); exactly one empty -> ``inf``. These are MONAI's
  values for Hausdorff and ASSD; MONAI 1.x returns NaN for HD95 when one mask is empty (its percentile
  of all-``inf`` distances is NaN), we return ``inf`` for all three so they agree with each other.
- ``"nan"``: NaN whenever a mask is empty (aggregation then skips and counts these cases).
- ``"brats"`` (BraTS challenge convention): both empty -> 0.0 mm; one empty -> the image diagonal in
  mm (373.13 mm for 240 x 240 x 155 voxels of 1 mm).
- ``"raise"``: ValueError.
For NSD (a score): one empty -> 0.0 always; both empty -> ``"nan"``: NaN, ``"one"``: 1.0,
``"zero"``: 0.0, ``"raise"``: ValueError.

Speed: the masks are cropped to the bounding box of their union, the surfaces are found by comparing
each voxel with its neighbours (array slicing, no scipy erosion), and nearest surface points are found
with a k-d tree (``scipy.spatial.KDTree``) over the surface voxel coordinates in mm.

Input checks come from :mod:`medseg_edu.arguments`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
from scipy.spatial import KDTree

from medseg_edu.arguments import as_binary, binary_pair, check_choice, check_spacing

__all__ = ["surface_voxels", "surface_distances", "hd95_distance", "hausdorff_distance",
           "assd_distance", "surface_dice_score", "surface_metrics"]

DISTANCE_EMPTY_POLICIES = ("inf", "nan", "brats", "raise")
SCORE_EMPTY_POLICIES = ("nan", "one", "zero", "raise")


# ----------------------------------------------------------------------------- surfaces
def _surface_of(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a bool mask; voxels outside the array count as background."""
    padded = np.pad(mask, 1)
    interior = mask.copy()
    for axis in range(mask.ndim):
        for start in (0, 2):  # the neighbour before and the neighbour after along this axis
            window = [slice(1, -1)] * mask.ndim
            window[axis] = slice(start, start + mask.shape[axis])
            interior &= padded[tuple(window)]
    return mask & ~interior


def surface_voxels(mask: Any) -> np.ndarray:
    """The surface voxels of a binary mask: foreground voxels with a background face neighbour.

    Voxels outside the image count as background, so foreground on the image border is surface.

    Shape: mask (*spatial) -> bool array (*spatial).

    Example:
        >>> surface_voxels(np.ones((3, 3), dtype=bool)).astype(int)
        array([[1, 1, 1],
               [1, 0, 1],
               [1, 1, 1]])
    """
    return _surface_of(as_binary(mask, "mask"))


def _union_box(pred: np.ndarray, target: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``pred | target``; None when both are empty.

    Reducing over the first axis is the fast direction in numpy, so we project along it, find the
    box of the projection (recursively), and only then scan the first axis inside that smaller box.
    """
    if pred.ndim == 1:
        hits = np.flatnonzero(pred | target)
        return None if hits.size == 0 else (slice(hits[0], hits[-1] + 1),)
    rest = _union_box(pred.any(axis=0), target.any(axis=0))
    if rest is None:
        return None
    inside = (slice(None),) + rest
    first_axis = (pred[inside] | target[inside]).reshape(pred.shape[0], -1).any(axis=1)
    hits = np.flatnonzero(first_axis)
    return (slice(hits[0], hits[-1] + 1),) + rest


def surface_distances(pred: Any, target: Any, *,
                      spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm, both ways: the one pass every surface metric is built on.

    Returns ``(d_pred_to_target, d_target_to_pred)``: for each surface voxel of ``pred`` the distance
    to the nearest surface voxel of ``target``, and the other way round. An empty mask has no surface
    voxels (an empty array); distances to an empty mask are ``inf``.

    Shape: pred, target (X, Y) or (X, Y, Z) hard masks -> two float64 arrays (n_pred_surface,),
    (n_target_surface,).
    Used in week 4 through `hd95_distance`.
    """
    pred, target = binary_pair(pred, target)
    if pred.ndim not in (2, 3):
        raise ValueError(f"pred and target must be 2D or 3D masks of one case (no batch or channel axis), "
                         f"got shape {pred.shape}")
    spacing = np.asarray(check_spacing(spacing_mm, pred.ndim))
    box = _union_box(pred, target)
    if box is None:
        return np.zeros(0), np.zeros(0)
    # Distances do not change when both masks are cropped the same way.
    pred_points = np.argwhere(_surface_of(pred[box])) * spacing
    target_points = np.argwhere(_surface_of(target[box])) * spacing
    if len(pred_points) == 0 or len(target_points) == 0:
        return np.full(len(pred_points), np.inf), np.full(len(target_points), np.inf)
    pred_to_target = KDTree(target_points, leafsize=32).query(pred_points, k=1)[0]
    target_to_pred = KDTree(pred_points, leafsize=32).query(target_points, k=1)[0]
    return pred_to_target, target_to_pred


# ----------------------------------------------------------------------------- summaries
def _empty_distance(n_pred: int, n_target: int, empty: str, shape: tuple[int, ...],
                    spacing: np.ndarray) -> float | None:
    """The value a distance metric takes when a mask is empty, or None when neither is empty."""
    if n_pred and n_target:
        return None
    both = not n_pred and not n_target
    if empty == "raise":
        which = "pred and target are" if both else ("pred is" if not n_pred else "target is")
        raise ValueError(f"{which} empty, so the surface distance is undefined (empty='raise'); "
                         "use empty='inf', 'nan' or 'brats' to give it a value")
    if empty == "nan":
        return math.nan
    if empty == "brats":
        return 0.0 if both else float(np.sqrt(np.sum((np.asarray(shape) * spacing) ** 2)))
    return math.nan if both else math.inf


def _hd95(d_pt: np.ndarray, d_tp: np.ndarray, pooled: bool) -> float:
    if pooled:
        return float(np.percentile(np.concatenate([d_pt, d_tp]), 95))
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def _nsd(d_pt: np.ndarray, d_tp: np.ndarray, tolerance_mm: float, empty: str) -> float:
    n_surface = len(d_pt) + len(d_tp)
    if n_surface == 0:
        return {"nan": math.nan, "one": 1.0, "zero": 0.0}[_score_policy_or_raise(empty)]
    correct = np.count_nonzero(d_pt <= tolerance_mm) + np.count_nonzero(d_tp <= tolerance_mm)
    return correct / n_surface


def _score_policy_or_raise(empty: str) -> str:
    if empty == "raise":
        raise ValueError("pred and target are both empty, so the surface Dice is undefined "
                         "(empty='raise'); use empty='nan', 'one' or 'zero' to give it a value")
    return empty


def _prepare(pred: Any, target: Any, spacing_mm: Sequence[float], empty: str,
             choices: Sequence[str]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], np.ndarray]:
    check_choice(empty, choices, "empty")
    d_pt, d_tp = surface_distances(pred, target, spacing_mm=spacing_mm)
    shape = tuple(np.shape(pred))
    return d_pt, d_tp, shape, np.asarray(spacing_mm, dtype=np.float64)


def hd95_distance(pred: Any, target: Any, *, spacing_mm: Sequence[float], pooled: bool = False,
                  empty: str = "inf") -> float:
    """95th-percentile Hausdorff distance in mm.

    Default: max of the two directed 95th percentiles (MONAI's definition). ``pooled=True``: the 95th
    percentile of both directed distance sets together. ``empty``: see the module docstring.

    Shape: pred, target (X, Y) or (X, Y, Z) hard masks -> float.
    Taught in week 4.
    """
    d_pt, d_tp, shape, spacing = _prepare(pred, target, spacing_mm, empty, DISTANCE_EMPTY_POLICIES)
    value = _empty_distance(len(d_pt), len(d_tp), empty, shape, spacing)
    return _hd95(d_pt, d_tp, pooled) if value is None else value


def hausdorff_distance(pred: Any, target: Any, *, spacing_mm: Sequence[float], empty: str = "inf") -> float:
    """Hausdorff distance in mm: the largest surface distance in either direction.

    Shape: pred, target (X, Y) or (X, Y, Z) hard masks -> float.
    """
    d_pt, d_tp, shape, spacing = _prepare(pred, target, spacing_mm, empty, DISTANCE_EMPTY_POLICIES)
    value = _empty_distance(len(d_pt), len(d_tp), empty, shape, spacing)
    return float(max(d_pt.max(), d_tp.max())) if value is None else value


def assd_distance(pred: Any, target: Any, *, spacing_mm: Sequence[float], empty: str = "inf") -> float:
    """Average symmetric surface distance in mm: mean of both directed distance sets together.

    Shape: pred, target (X, Y) or (X, Y, Z) hard masks -> float.
    """
    d_pt, d_tp, shape, spacing = _prepare(pred, target, spacing_mm, empty, DISTANCE_EMPTY_POLICIES)
    value = _empty_distance(len(d_pt), len(d_tp), empty, shape, spacing)
    return float((d_pt.sum() + d_tp.sum()) / (len(d_pt) + len(d_tp))) if value is None else value


def surface_dice_score(pred: Any, target: Any, *, spacing_mm: Sequence[float], tolerance_mm: float,
                       empty: str = "nan") -> float:
    """Normalised surface Dice (NSD): fraction of both surfaces within ``tolerance_mm`` of the other.

    One mask empty -> 0.0. Both empty -> ``empty``: "nan" (default), "one", "zero" or "raise".

    Shape: pred, target (X, Y) or (X, Y, Z) hard masks -> float in [0, 1].
    """
    _check_tolerance(tolerance_mm)
    d_pt, d_tp, _, _ = _prepare(pred, target, spacing_mm, empty, SCORE_EMPTY_POLICIES)
    return _nsd(d_pt, d_tp, tolerance_mm, empty)


def _check_tolerance(tolerance_mm: Any) -> None:
    if (not isinstance(tolerance_mm, numbers.Real) or isinstance(tolerance_mm, bool)
            or not math.isfinite(tolerance_mm) or tolerance_mm < 0):
        raise ValueError(f"tolerance_mm must be a finite number >= 0 (in mm), got {tolerance_mm!r}")


def surface_metrics(pred: Any, target: Any, *, spacing_mm: Sequence[float], tolerance_mm: float = 1.0,
                    empty: str = "inf") -> dict[str, float]:
    """All surface metrics from one pass: keys hd95, hd95_pooled, hausdorff, assd, nsd.

    ``empty``: "inf" (default; distances NaN when both are empty and inf when one is), "nan" (distances
    NaN when any mask is empty), "brats" (both empty: distances 0 and NSD 1; one empty: distances = image
    diagonal) or "raise". NSD is 0 when exactly one mask is empty and NaN when both are (1 for "brats").

    Shape: pred, target (X, Y) or (X, Y, Z) hard masks -> dict of floats.
    Used in week 4 through `evaluate`.
    """
    _check_tolerance(tolerance_mm)
    d_pt, d_tp, shape, spacing = _prepare(pred, target, spacing_mm, empty, DISTANCE_EMPTY_POLICIES)
    value = _empty_distance(len(d_pt), len(d_tp), empty, shape, spacing)
    if value is not None:
        nsd = _nsd(d_pt, d_tp, tolerance_mm, "one" if empty == "brats" else "nan")
        return {"hd95": value, "hd95_pooled": value, "hausdorff": value, "assd": value, "nsd": nsd}
    return {"hd95": _hd95(d_pt, d_tp, pooled=False),
            "hd95_pooled": _hd95(d_pt, d_tp, pooled=True),
            "hausdorff": float(max(d_pt.max(), d_tp.max())),
            "assd": float((d_pt.sum() + d_tp.sum()) / (len(d_pt) + len(d_tp))),
            "nsd": _nsd(d_pt, d_tp, tolerance_mm, "nan")}
