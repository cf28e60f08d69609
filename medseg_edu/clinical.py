"""Clinical analysis helpers: thresholds, ROC/PR sweeps and decision curves.

* Week 4: a probability map becomes a mask only after a threshold. :func:`roc_curve_points` and
  :func:`pr_curve_points` sweep the threshold over every voxel; :func:`threshold_for_sensitivity`
  picks the largest threshold that still finds (say) 95 % of the tumour voxels ("missing a tumour
  is worse than a false alarm"); :func:`find_optimal_threshold` maximises Youden's J or Dice.
* Week 5: :func:`net_benefit` and :func:`decision_curve` (Vickers & Elkin 2006) ask whether acting
  on the model's output does more good than harm at a given threshold probability.

How sure we are about a mean (bootstrap confidence intervals, subgroup gaps) is in
:mod:`medseg_edu.bootstrap`. Everything here is numpy/pandas; torch tensors are accepted and
converted. Probabilities must lie in [0, 1] and targets must be binary {0, 1}; anything else is a
ValueError.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from medseg_edu.arguments import (as_binary, check_choice, check_probabilities, check_same_shape,
                                  check_unit_interval, to_numpy)
from medseg_edu.metrics import dice_from_counts

__all__ = [
    "roc_curve_points",
    "pr_curve_points",
    "roc_auc_score",
    "average_precision_score",
    "threshold_for_sensitivity",
    "find_optimal_threshold",
    "net_benefit",
    "decision_curve",
]


# --------------------------------------------------------------------------------------------
# Input checks (private)
# --------------------------------------------------------------------------------------------

def _check_probabilities(x: Any, name: str) -> np.ndarray:
    arr = to_numpy(x, name, allow_lists=True)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold numbers (probabilities), got dtype {arr.dtype}")
    # float32 stays float32 (whole volumes: half the memory); everything else becomes float64
    arr = arr.ravel() if arr.dtype == np.float32 else arr.astype(np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s); expected probabilities in [0, 1]")
    return check_probabilities(arr, name, hint="apply a sigmoid (or softmax) to logits first")


def _probs_and_target(probs: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    check_same_shape(probs, target, "probs", "target")
    return _check_probabilities(probs, "probs"), as_binary(target, "target", allow_lists=True).ravel()


# --------------------------------------------------------------------------------------------
# Threshold sweeps (week 4)
# --------------------------------------------------------------------------------------------

def _counts_at_all_thresholds(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Exact sweep: thresholds = +inf, then every distinct value of p, descending.

    One sort of all voxels by probability gives, by cumulative sums, the number of positives
    above every threshold. To sort fast (numpy sorts integers much faster than it argsorts
    floats) we pack probability and target into one integer: for floats >= 0 the bit pattern
    read as an integer sorts in the same order as the float, so ``2 * bits + target`` sorts by
    probability and keeps the target in its lowest bit.
    """
    int_type = np.int32 if p.dtype == np.float32 else np.int64
    bits = (p + p.dtype.type(0.0)).view(int_type)        # + 0.0 turns -0.0 into 0.0
    key = bits.astype(np.int64) * 2 + t
    key.sort()
    key = key[::-1]                                      # descending probability
    value_bits = key >> 1
    tp_cum = np.cumsum(key & 1)
    # last index of each run of equal probabilities: predicting p >= value includes the whole run
    last = np.flatnonzero(value_bits[1:] != value_bits[:-1])
    last = np.append(last, key.size - 1)
    values = value_bits[last].astype(int_type).view(p.dtype).astype(np.float64)
    thresholds = np.concatenate([[np.inf], values])
    tp = np.concatenate([[0], tp_cum[last]])
    predicted = np.concatenate([[0], last + 1])
    return thresholds, tp, predicted - tp


def _counts_at_given_thresholds(p: np.ndarray, t: np.ndarray,
                                thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Counts at chosen thresholds: sort positives and negatives, then binary-search each threshold."""
    thresholds = np.unique(thresholds)[::-1]                       # distinct, descending
    positives, negatives = np.sort(p[t]), np.sort(p[~t])
    # number of values >= threshold = size - number of values < threshold
    tp = positives.size - np.searchsorted(positives, thresholds, side="left")
    fp = negatives.size - np.searchsorted(negatives, thresholds, side="left")
    return thresholds, tp, fp


def roc_curve_points(probs: Any, target: Any, *,
                     thresholds: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """Voxel-level confusion counts and rates at every threshold (prediction = ``probs >= threshold``).

    With ``thresholds=None`` the sweep is exact: one row per distinct probability plus a first row
    at ``+inf`` (nothing predicted), like ``sklearn.metrics.roc_curve(drop_intermediate=False)``.
    With given thresholds (e.g. ``np.linspace(0, 1, 101)``) you get one row per threshold; use
    them for plots of whole volumes: on 10^7 voxels they take about 0.3 s, while the exact
    sweep takes a few seconds and returns up to 10^7 rows.

    Columns: ``threshold`` (descending), ``tp``, ``fp``, ``fn``, ``tn``, ``sensitivity`` (recall,
    true positive rate), ``specificity``, ``false_positive_rate`` (1 - specificity), ``precision``
    (1.0 by convention where nothing is predicted positive), ``dice`` (= F1 for binary masks).

    Shape:
        probs and target: any shape, the same for both (e.g. ``(X, Y, Z)``); flattened.
        Returns a DataFrame with one row per threshold.

    Example:
        >>> curve = roc_curve_points([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        >>> curve["sensitivity"].tolist()
        [0.0, 0.5, 0.5, 1.0, 1.0]

    Taught in week 4.
    """
    p, t = _probs_and_target(probs, target)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        missing = "positive" if n_pos == 0 else "negative"
        raise ValueError(f"target has no {missing} voxels, so sensitivity/specificity are undefined")
    if thresholds is None:
        thr, tp, fp = _counts_at_all_thresholds(p, t)
    else:
        thr_arr = np.asarray(thresholds, dtype=np.float64).ravel()
        if thr_arr.size == 0 or np.isnan(thr_arr).any():
            raise ValueError("thresholds must be a non-empty sequence of numbers without NaN")
        thr, tp, fp = _counts_at_given_thresholds(p, t, thr_arr)
    fn = n_pos - tp
    tn = n_neg - fp
    predicted = tp + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 1.0)
    return pd.DataFrame({
        "threshold": thr,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "sensitivity": tp / n_pos,
        "specificity": tn / n_neg,
        "false_positive_rate": fp / n_neg,
        "precision": precision,
        "dice": dice_from_counts(tp, fp, fn),
    })


def pr_curve_points(probs: Any, target: Any, *,
                    thresholds: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """Precision-recall curve: columns ``threshold`` (descending), ``recall``, ``precision``.

    Same sweep as :func:`roc_curve_points` (precision is 1.0 where nothing is predicted). Prefer it
    to ROC when positives are rare (a small tumour in a large volume): specificity stays near 1
    for almost any threshold, precision does not.

    Shape:
        probs and target: any shape, the same for both; returns one row per threshold.
    """
    curve = roc_curve_points(probs, target, thresholds=thresholds)
    return curve[["threshold", "sensitivity", "precision"]].rename(columns={"sensitivity": "recall"})


def _exact_sweep(probs: Any, target: Any, *columns: str) -> list[np.ndarray]:
    """Columns of the exact :func:`roc_curve_points` sweep, as arrays (first row: threshold +inf)."""
    curve = roc_curve_points(probs, target)
    return [curve[column].to_numpy() for column in columns]


def roc_auc_score(probs: Any, target: Any) -> float:
    """Area under the voxel-level ROC curve (trapezoids over the exact sweep; equals sklearn's).

    It is the probability that a random tumour voxel gets a higher probability than a random
    background voxel (ties count half), so 0.5 is chance whatever the class balance.

    Shape: probs and target any shape, the same for both -> a float in [0, 1].

    Taught in week 4.
    """
    tpr, fpr = _exact_sweep(probs, target, "sensitivity", "false_positive_rate")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision_score(probs: Any, target: Any) -> float:
    """Average precision: sum over thresholds of (recall gain) x precision (equals sklearn's).

    A step-wise area under the precision-recall curve, without interpolation; chance level is the
    fraction of tumour voxels, not 0.5, which is why it is the better summary for small lesions.

    Shape: probs and target any shape, the same for both -> a float in [0, 1].
    """
    recall, precision = _exact_sweep(probs, target, "sensitivity", "precision")
    return float(np.sum(np.diff(recall) * precision[1:]))


def threshold_for_sensitivity(probs: Any, target: Any, *, target_sensitivity: float = 0.95) -> float:
    """The largest threshold whose mask ``probs >= threshold`` reaches ``target_sensitivity``.

    Sensitivity only depends on the positive (tumour) voxels: to find a fraction s of the n
    positives we need the ``ceil(s * n)``-th largest positive probability as the threshold.
    A larger threshold would miss at least one more of them.

    Shape:
        probs and target: any shape, the same for both; returns a float.

    Example:
        >>> threshold_for_sensitivity([0.9, 0.8, 0.3, 0.6, 0.2], [1, 1, 1, 0, 0],
        ...                           target_sensitivity=0.6)
        0.8

    Taught in week 4.
    """
    s = check_unit_interval(target_sensitivity, "target_sensitivity", open_low=True, open_high=False)
    p, t = _probs_and_target(probs, target)
    positives = p[t]
    n_pos = positives.size
    if n_pos == 0:
        raise ValueError("target has no positive voxels, so sensitivity is undefined")
    k = max(1, math.ceil(s * n_pos - 1e-9))          # tolerance: 0.7 * 10 is 7.000000000000001
    kth_largest = np.partition(positives, n_pos - k)[n_pos - k]
    return float(kth_largest)


CRITERIA = ("youden", "dice", "f1")


def find_optimal_threshold(probs: Any, target: Any, *, criterion: str = "youden") -> float:
    """The threshold that maximises a criterion over the exact voxel-level sweep.

    * ``"youden"``: Youden's J = sensitivity + specificity - 1 (the ROC point farthest above
      the diagonal).
    * ``"dice"`` or ``"f1"``: the Dice coefficient of the thresholded mask. For binary masks
      Dice and F1 are the same number; both names are accepted because both are in use.

    Ties go to the largest threshold (the sparsest mask).

    Shape:
        probs and target: any shape, the same for both; returns a float.

    Taught in week 4.
    """
    check_choice(criterion, CRITERIA, "criterion")
    curve = roc_curve_points(probs, target).iloc[1:]          # drop the +inf row
    if criterion == "youden":
        score = curve["sensitivity"] + curve["specificity"] - 1.0
    else:
        score = curve["dice"]
    return float(curve["threshold"].to_numpy()[int(np.argmax(score.to_numpy()))])


# --------------------------------------------------------------------------------------------
# Decision curves (week 5)
# --------------------------------------------------------------------------------------------

def net_benefit(decision: Any, outcome: Any, *, threshold_probability: float) -> float:
    """Net benefit of acting on ``decision`` (Vickers & Elkin 2006).

    ``NB = TP / n - FP / n * pt / (1 - pt)``: true positives are worth 1, and a false positive
    costs ``pt / (1 - pt)``, the odds at the threshold probability ``pt`` at which a clinician
    is indifferent between acting and not (pt = 0.2: one missed tumour is as bad as four
    unnecessary referrals). Treating nobody has NB = 0.

    Shape:
        decision and outcome: ``(n,)`` binary, one per case (1 = act, e.g. refer; 1 = disease).
        Returns a float.

    Example:
        >>> net_benefit([1, 1, 1, 0], [1, 0, 1, 0], threshold_probability=0.25)
        0.4166666666666667

    Taught in week 5.
    """
    check_same_shape(decision, outcome, "decision", "outcome")
    d = as_binary(decision, "decision", allow_lists=True).ravel()
    y = as_binary(outcome, "outcome", allow_lists=True).ravel()
    if d.size == 0:
        raise ValueError("decision is empty")
    pt = check_unit_interval(threshold_probability, "threshold_probability",
                              open_low=True, open_high=True)
    n = d.size
    tp = int(np.sum(d & y))
    fp = int(np.sum(d & ~y))
    return tp / n - fp / n * pt / (1.0 - pt)


def decision_curve(scores: Any, outcome: Any, *,
                   thresholds: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """Decision curve: net benefit of the model, of treating all and of treating none per threshold.

    At threshold probability ``pt`` the model acts on the cases with ``scores >= pt`` (scores are
    predicted probabilities). A fixed rule such as "tumour volume above 10 ml -> refer" can be
    passed as binary scores (0/1): it then acts on the same cases at every ``pt``. Treat-all has
    ``NB = prevalence - (1 - prevalence) * pt / (1 - pt)``; treat-none has NB = 0. A model is
    useful at ``pt`` only where its curve lies above both.

    Columns: ``threshold``, ``net_benefit_model``, ``net_benefit_treat_all``,
    ``net_benefit_treat_none``.

    Shape:
        scores: ``(n,)`` probabilities in [0, 1]; outcome: ``(n,)`` binary; thresholds: ``(T,)``
        in (0, 1), default 0.01, 0.02, ..., 0.99. Returns one row per threshold.

    Taught in week 5.
    """
    check_same_shape(scores, outcome, "scores", "outcome")
    s = _check_probabilities(scores, "scores")
    y = as_binary(outcome, "outcome", allow_lists=True).ravel()
    if thresholds is None:
        pts = np.round(np.arange(1, 100) / 100.0, 2)
    else:
        pts = np.asarray(thresholds, dtype=np.float64).ravel()
        for pt in pts:
            check_unit_interval(pt, "each threshold", open_low=True, open_high=True)
    n = s.size
    prevalence = y.mean()
    model, treat_all = [], []
    for pt in pts:
        act = s >= pt
        odds = pt / (1.0 - pt)
        model.append(np.sum(act & y) / n - np.sum(act & ~y) / n * odds)
        treat_all.append(prevalence - (1.0 - prevalence) * odds)
    return pd.DataFrame({"threshold": pts, "net_benefit_model": model,
                         "net_benefit_treat_all": treat_all,
                         "net_benefit_treat_none": np.zeros(pts.size)})
