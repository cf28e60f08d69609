"""Segmentation metrics: overlap scores, BraTS regions, volumes, and evaluation over many cases.

Taught in week 4.

Every overlap score comes from one confusion count of a binary ``pred`` against a binary ``target``:
TP (both foreground), FP (pred only), FN (target only), TN (both background).

    Dice = 2 TP / (2 TP + FP + FN)        IoU (Jaccard) = TP / (TP + FP + FN)
    sensitivity (recall) = TP / (TP + FN)  specificity = TN / (TN + FP)   precision = TP / (TP + FP)

Empty policy (``empty=``): a score whose denominator is 0 is undefined -- Dice and IoU when pred and
target are both empty, sensitivity when the target is empty, precision when the pred is empty,
specificity when the target covers the whole image. ``empty`` says what to return then:
``"nan"`` (default: NaN, so aggregation can count and skip it), ``"one"`` (1.0: "nothing to find, nothing
found" counts as perfect, as in the BraTS challenge), ``"zero"`` (0.0) or ``"raise"`` (ValueError).

Surface metrics (HD95, Hausdorff, ASSD, NSD) live in :mod:`medseg_edu.surface` and are re-exported here.
Inputs everywhere: numpy arrays or torch tensors holding hard masks (bool or 0/1) or integer label
maps; probabilities, logits, NaN, inf and mismatched shapes are rejected with a ValueError naming the
argument. A float array is accepted as a label map exactly when all its values are whole numbers.
"""
from __future__ import annotations

import math
from typing import Any, Sequence, Union

import numpy as np
import pandas as pd

from medseg_edu.arguments import as_binary, binary_pair, check_choice, check_spacing, to_numpy
from medseg_edu.surface import (SCORE_EMPTY_POLICIES, _check_tolerance, assd_distance, hausdorff_distance,
                                hd95_distance, surface_dice_score, surface_distances, surface_metrics,
                                surface_voxels)
from medseg_edu.utils import progress

__all__ = ["confusion_counts", "dice_score", "dice_from_counts", "iou_score", "sensitivity_score", "specificity_score",
           "precision_score", "per_class_scores", "brats_regions", "volume_ml", "volume_error",
           "evaluate", "surface_voxels", "surface_distances", "hd95_distance", "hausdorff_distance",
           "assd_distance", "surface_dice_score", "surface_metrics"]

_CHUNK = 1 << 17  # elements per block when counting: small enough to stay in the CPU cache


# ----------------------------------------------------------------------------- overlap
def confusion_counts(pred: Any, target: Any) -> tuple[int, int, int, int]:
    """Count (TP, FP, FN, TN) of a binary prediction against a binary target.

    Shape: pred, target any identical shape, bool or 0/1 -> four ints.
    Used in week 4 through `dice_score`.

    Example:
        >>> confusion_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
        (1, 1, 1, 1)
    """
    pred, target = binary_pair(pred, target)
    # One pass over both arrays, block by block: each block of pred and target is read from memory once
    # and stays in the CPU cache for the three counts; TP goes into one small reused buffer instead
    # of a full-size temporary array. About as fast as a single np.count_nonzero(pred & target).
    flat_pred, flat_true = pred.reshape(-1), target.reshape(-1)
    buffer = np.empty(min(_CHUNK, flat_pred.size), dtype=bool)
    tp = n_pred = n_true = 0
    for start in range(0, flat_pred.size, _CHUNK):
        block_pred, block_true = flat_pred[start:start + _CHUNK], flat_true[start:start + _CHUNK]
        n_pred += np.count_nonzero(block_pred)
        n_true += np.count_nonzero(block_true)
        tp += np.count_nonzero(np.logical_and(block_pred, block_true, out=buffer[:block_pred.size]))
    fp, fn = n_pred - tp, n_true - tp
    return int(tp), int(fp), int(fn), int(pred.size - tp - fp - fn)


def _ratio(numerator: int, denominator: int, empty: str, undefined_because: str) -> float:
    """numerator / denominator, or the ``empty`` policy's value when the denominator is 0."""
    check_choice(empty, SCORE_EMPTY_POLICIES, "empty")
    if denominator:
        return numerator / denominator
    if empty == "raise":
        raise ValueError(f"the score is undefined because {undefined_because} (empty='raise'); "
                         "pass empty='nan', 'one' or 'zero' to give it a value")
    return {"nan": math.nan, "one": 1.0, "zero": 0.0}[empty]


def dice_score(pred: Any, target: Any, *, empty: str = "nan") -> float:
    """Dice coefficient 2 TP / (2 TP + FP + FN); undefined (``empty`` policy) when both are empty.

    Shape: pred, target any identical shape, bool or 0/1 -> float in [0, 1].
    Taught in week 4.

    Example:
        >>> dice_score(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
        0.5
    """
    tp, fp, fn, _ = confusion_counts(pred, target)
    return dice_from_counts(tp, fp, fn, empty=empty)


def dice_from_counts(tp: Any, fp: Any, fn: Any, *, empty: str = "nan") -> Union[float, np.ndarray]:
    """Dice 2 TP / (2 TP + FP + FN) from confusion counts: the one Dice formula of the package.

    The counts may be ints, or arrays of one shape (numpy or torch) to get one Dice per element at
    once: per threshold (``roc_curve_points``) or per case and class (the validation Dice of
    ``fit``). Where 2 TP + FP + FN is 0 (pred and target both empty) the ``empty`` policy gives the
    value, as in :func:`dice_score`.

    Shape: tp, fp, fn ints -> float; arrays of one shape -> float64 array of that shape.

    Example:
        >>> dice_from_counts(1, 1, 1)
        0.5
        >>> dice_from_counts(np.array([1, 0]), np.array([1, 0]), np.array([1, 0]), empty="one").tolist()
        [0.5, 1.0]

    Used in week 3 through `fit` and in week 4 through `dice_score` and `roc_curve_points`.
    """
    check_choice(empty, SCORE_EMPTY_POLICIES, "empty")
    counts = [to_numpy(c, name, allow_lists=True) for c, name in ((tp, "tp"), (fp, "fp"), (fn, "fn"))]
    if any(c.shape != counts[0].shape for c in counts):
        raise ValueError(f"tp, fp and fn must have the same shape, got {[c.shape for c in counts]}")
    tp_, fp_, fn_ = (c.astype(np.float64) for c in counts)
    if counts[0].ndim == 0:
        return _ratio(2 * float(tp_), float(2 * tp_ + fp_ + fn_), empty, "pred and target are both empty")
    denominator = 2 * tp_ + fp_ + fn_
    if empty == "raise" and not denominator.all():
        _ratio(0, 0, empty, "pred and target are both empty")
    fill = {"nan": math.nan, "one": 1.0, "zero": 0.0, "raise": math.nan}[empty]
    return np.where(denominator > 0, 2 * tp_ / np.maximum(denominator, 1), fill)


def iou_score(pred: Any, target: Any, *, empty: str = "nan") -> float:
    """Intersection over union (Jaccard) TP / (TP + FP + FN); ``empty`` policy when both are empty.

    Shape: pred, target any identical shape, bool or 0/1 -> float in [0, 1].
    Taught in week 4.
    """
    tp, fp, fn, _ = confusion_counts(pred, target)
    return _ratio(tp, tp + fp + fn, empty, "pred and target are both empty")


def sensitivity_score(pred: Any, target: Any, *, empty: str = "nan") -> float:
    """Sensitivity (recall) TP / (TP + FN); ``empty`` policy when the target is empty.

    Shape: pred, target any identical shape, bool or 0/1 -> float in [0, 1].
    Taught in week 4.
    """
    tp, _, fn, _ = confusion_counts(pred, target)
    return _ratio(tp, tp + fn, empty, "target is empty")


def specificity_score(pred: Any, target: Any, *, empty: str = "nan") -> float:
    """Specificity TN / (TN + FP); ``empty`` policy when the target has no background.

    Shape: pred, target any identical shape, bool or 0/1 -> float in [0, 1].
    Taught in week 4.
    """
    _, fp, _, tn = confusion_counts(pred, target)
    return _ratio(tn, tn + fp, empty, "target has no background voxel")


def precision_score(pred: Any, target: Any, *, empty: str = "nan") -> float:
    """Precision (positive predictive value) TP / (TP + FP); ``empty`` policy when pred is empty.

    Shape: pred, target any identical shape, bool or 0/1 -> float in [0, 1].
    """
    tp, fp, _, _ = confusion_counts(pred, target)
    return _ratio(tp, tp + fp, empty, "pred is empty")


def _scores_from_counts(tp: int, fp: int, fn: int, tn: int, empty: str) -> dict[str, float]:
    return {"dice": dice_from_counts(tp, fp, fn, empty=empty),
            "iou": _ratio(tp, tp + fp + fn, empty, "pred and target are both empty"),
            "sensitivity": _ratio(tp, tp + fn, empty, "target is empty"),
            "specificity": _ratio(tn, tn + fp, empty, "target has no background voxel"),
            "precision": _ratio(tp, tp + fp, empty, "pred is empty")}


# ----------------------------------------------------------------------------- label maps
def _as_labels(x: Any, name: str, num_labels: int | None = None) -> np.ndarray:
    """Check that ``x`` is an integer label map (values in 0 .. num_labels - 1 when given).

    Convention for float arrays: accepted exactly when every value is a whole number (a label map
    that went through ``.float()`` or was read as float64), and then converted to int64; NaN, inf
    and fractional values are rejected with a ValueError naming the argument.
    """
    x = to_numpy(x, name)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            raise ValueError(f"{name} contains NaN or inf ({n_nan} NaN, {n_inf} inf); expected an integer "
                             "label map (is it an image, logits or the result of a division by zero?)")
        if np.any(x != np.round(x)):
            raise ValueError(f"{name} looks like probabilities or logits (non-integer float values); "
                             "take the argmax over classes (or threshold) first")
        x = x.astype(np.int64)
    elif not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise TypeError(f"{name} must be an integer label map, got dtype {x.dtype}")
    if num_labels is not None and x.size and (x.min() < 0 or x.max() >= num_labels):
        raise ValueError(f"{name} must only hold the labels {list(range(num_labels))}, "
                         f"got {np.unique(x)[:10].tolist()}")
    return x


def per_class_scores(pred: Any, target: Any, *, num_classes: int, include_background: bool = False,
                     empty: str = "nan") -> dict[int, dict[str, float]]:
    """Dice, IoU, sensitivity, specificity and precision for each class of two label maps.

    Class k is scored as the binary masks ``pred == k`` against ``target == k``. Background (class 0)
    is left out by default: it is so large that it scores ~1 and hides the classes that matter.

    Shape: pred, target (*spatial) integer labels in [0, num_classes) -> {class: {score name: float}}.
    """
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}")
    pred, target = _as_labels(pred, "pred", num_classes), _as_labels(target, "target", num_classes)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    first = 0 if include_background else 1
    return {k: _scores_from_counts(*confusion_counts(pred == k, target == k), empty)
            for k in range(first, num_classes)}


def brats_regions(label: Any) -> dict[str, np.ndarray]:
    """The three BraTS evaluation regions of a brain label map, as bool masks.

    WT (whole tumour) = labels {1, 2, 3}; TC (tumour core) = {2, 3}; ET (enhancing tumour) = {3}.
    Labels: 0 background, 1 edema, 2 non-enhancing tumour/necrosis, 3 enhancing tumour.

    Shape: label (*spatial) integers in {0, 1, 2, 3} -> {"WT", "TC", "ET"}: bool (*spatial).
    Taught in week 2. Used in week 4 through `evaluate`.
    """
    label = _as_labels(label, "label", num_labels=4)
    return {"WT": label >= 1, "TC": label >= 2, "ET": label == 3}


# ----------------------------------------------------------------------------- volume
def volume_ml(mask: Any, *, spacing_mm: Sequence[float]) -> float:
    """Volume of a binary mask in millilitres: voxel count x voxel volume (mm^3) / 1000.

    Shape: mask (*spatial) bool or 0/1, spacing_mm of length mask.ndim -> float.
    Taught in week 4.
    """
    mask = as_binary(mask, "mask")
    spacing = check_spacing(spacing_mm, mask.ndim)
    return float(np.count_nonzero(mask) * np.prod(spacing) / 1000.0)


def volume_error(pred: Any, target: Any, *, spacing_mm: Sequence[float]) -> dict[str, float]:
    """Volume error of a prediction: abs_ml = |V_pred - V_true| in ml, rel = abs_ml / V_true.

    Also signed_ml = V_pred - V_true (positive: over-segmentation). rel is NaN when the target is empty.

    Shape: pred, target (*spatial) bool or 0/1 -> dict(abs_ml, rel, signed_ml).
    Taught in week 4.
    """
    pred, target = binary_pair(pred, target)
    v_pred, v_true = volume_ml(pred, spacing_mm=spacing_mm), volume_ml(target, spacing_mm=spacing_mm)
    signed = v_pred - v_true
    return {"abs_ml": abs(signed), "rel": abs(signed) / v_true if v_true > 0 else math.nan,
            "signed_ml": signed}


# ----------------------------------------------------------------------------- evaluation
METRIC_COLUMNS = ["dice", "iou", "sensitivity", "specificity", "precision", "hd95", "assd", "nsd",
                  "volume_pred_ml", "volume_true_ml", "volume_error_ml"]
_EVALUATE_POLICIES = ("inf", "nan", "brats", "raise")


def _region_masks(pred: Any, target: Any, regions: Union[str, Sequence[int]]) -> list[tuple[str, Any, Any]]:
    if isinstance(regions, str) and regions == "brats":
        p, t = brats_regions(pred), brats_regions(target)
        return [(name, p[name], t[name]) for name in ("WT", "TC", "ET")]
    if isinstance(regions, str) and regions == "binary":
        return [("foreground", pred, target)]
    p, t = _as_labels(pred, "pred"), _as_labels(target, "target")
    return [(f"label_{k}", p == k, t == k) for k in regions]


def _spacing_per_case(spacing_mm: Any, n_cases: int) -> list[Any]:
    first = spacing_mm[0] if isinstance(spacing_mm, (list, tuple, np.ndarray)) and len(spacing_mm) else None
    if isinstance(first, (list, tuple, np.ndarray)):
        if len(spacing_mm) != n_cases:
            raise ValueError(f"spacing_mm must be one tuple or one tuple per case ({n_cases}), "
                             f"got {len(spacing_mm)} tuples")
        return list(spacing_mm)
    return [spacing_mm] * n_cases


def _check_case(pred: Any, target: Any, i: int, regions: Union[str, Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Case ``i`` checked up front, so that an error names the argument as the caller wrote it (``preds[i]``)."""
    if isinstance(regions, str) and regions == "binary":
        pred, target = as_binary(pred, f"preds[{i}]"), as_binary(target, f"targets[{i}]")
    else:
        num_labels = 4 if isinstance(regions, str) else None          # "brats": labels 0..3
        pred, target = _as_labels(pred, f"preds[{i}]", num_labels), _as_labels(target, f"targets[{i}]", num_labels)
    if pred.shape != target.shape:
        raise ValueError(f"preds[{i}] and targets[{i}] must have the same shape, got {pred.shape} and {target.shape}")
    return pred, target


# which mask is empty, keyed by (pred has foreground, target has foreground)
_EMPTY_KIND = {(True, True): "none", (False, True): "pred", (True, False): "target", (False, False): "both"}


def evaluate(preds: Sequence[Any], targets: Sequence[Any], *, spacing_mm: Any,
             regions: Union[str, Sequence[int]] = "brats", case_ids: Sequence[str] | None = None,
             tolerance_mm: float = 1.0, empty: str = "inf") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score many cases: a tidy table (one row per case and region) and a summary per region.

    ``regions``: "brats" (label maps -> WT, TC, ET), "binary" (binary masks -> "foreground") or a list
    of label ids (label map -> one region "label_k" per id). ``spacing_mm``: one tuple for all cases
    or one tuple per case. ``empty``:

    - "inf" (default): undefined scores are NaN (Dice when both masks are empty, sensitivity when the
      target is empty, ...); distances are NaN when both masks are empty and inf when one is; NSD is
      NaN when both are empty and 0 when one is.
    - "nan": as "inf", but distances are NaN whenever a mask is empty.
    - "brats": both empty -> Dice, IoU and NSD 1, distances 0; one empty -> distances = image
      diagonal; sensitivity/specificity/precision stay NaN when undefined.
    - "raise": ValueError when a target region is empty (otherwise as "inf").

    Table columns: case_id, region, empty ("none", "pred", "target" or "both"), dice, iou,
    sensitivity, specificity, precision, hd95, assd, nsd (at ``tolerance_mm``), volume_pred_ml,
    volume_true_ml, volume_error_ml (pred - true). Summary: one row per region and metric with mean,
    std (sample), median and count over the finite values, n_nan, n_inf, and n_empty (cases where
    pred or target is empty in that region).

    Inputs: each ``preds[i]`` and ``targets[i]`` is a numpy array or torch tensor, a hard binary mask
    (``regions="binary"``) or an integer label map. A float array counts as a label map exactly when
    all its values are whole numbers; NaN, inf and fractional values (probabilities, logits) are a
    ValueError naming ``preds[i]`` or ``targets[i]``.

    Shape: preds, targets sequences of (*spatial) arrays -> (table, summary) DataFrames.
    Taught in weeks 2 and 4.
    """
    check_choice(empty, _EVALUATE_POLICIES, "empty")
    _check_tolerance(tolerance_mm)
    if not (isinstance(regions, str) and regions in ("brats", "binary")):
        if isinstance(regions, str) or not all(isinstance(k, (int, np.integer)) for k in regions):
            raise ValueError(f"regions must be 'brats', 'binary' or a list of label ids, got {regions!r}")
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must hold the same number of cases, "
                         f"got {len(preds)} and {len(targets)}")
    n_cases = len(preds)
    case_ids = [str(i) for i in range(n_cases)] if case_ids is None else [str(c) for c in case_ids]
    if len(case_ids) != n_cases:
        raise ValueError(f"case_ids must have one id per case ({n_cases}), got {len(case_ids)}")
    spacings = _spacing_per_case(spacing_mm, n_cases)
    score_policy = "one" if empty == "brats" else "nan"
    rows = []
    for i in progress(range(n_cases), desc="evaluate", total=n_cases):
        for region, pred, target in _region_masks(*_check_case(preds[i], targets[i], i, regions), regions):
            pred, target = binary_pair(pred, target)
            voxel_ml = float(np.prod(check_spacing(spacings[i], pred.ndim))) / 1000.0
            tp, fp, fn, tn = confusion_counts(pred, target)
            n_pred, n_true = tp + fp, tp + fn          # voxel counts: the volumes come for free
            kind = _EMPTY_KIND[(n_pred > 0, n_true > 0)]
            if empty == "raise" and n_true == 0:
                raise ValueError(f"case {case_ids[i]!r}: the target of region {region!r} is empty "
                                 "(empty='raise'); use empty='inf', 'nan' or 'brats' to score it")
            overlap = _scores_from_counts(tp, fp, fn, tn, "nan")
            if kind == "both":
                both = _scores_from_counts(tp, fp, fn, tn, score_policy)
                overlap.update(dice=both["dice"], iou=both["iou"])
            surface = surface_metrics(pred, target, spacing_mm=spacings[i], tolerance_mm=tolerance_mm,
                                      empty="inf" if empty == "raise" else empty)
            rows.append({"case_id": case_ids[i], "region": region, "empty": kind, **overlap,
                         "hd95": surface["hd95"], "assd": surface["assd"], "nsd": surface["nsd"],
                         "volume_pred_ml": n_pred * voxel_ml, "volume_true_ml": n_true * voxel_ml,
                         "volume_error_ml": (n_pred - n_true) * voxel_ml})
    table = pd.DataFrame(rows, columns=["case_id", "region", "empty"] + METRIC_COLUMNS)
    return table, _summarise(table)


def _summarise(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for region, group in table.groupby("region", sort=False):
        n_empty = int((group["empty"] != "none").sum())
        for metric in METRIC_COLUMNS:
            values = group[metric].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            rows.append({"region": region, "metric": metric,
                         "mean": finite.mean() if finite.size else math.nan,
                         "std": finite.std(ddof=1) if finite.size > 1 else math.nan,
                         "median": float(np.median(finite)) if finite.size else math.nan,
                         "count": int(finite.size), "n_nan": int(np.isnan(values).sum()),
                         "n_inf": int(np.isinf(values).sum()), "n_empty": n_empty})
    return pd.DataFrame(rows, columns=["region", "metric", "mean", "std", "median", "count", "n_nan",
                                       "n_inf", "n_empty"])
