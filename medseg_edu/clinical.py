"""Clinical analysis helpers: thresholds, ROC/PR sweeps, bootstrap CIs, subgroup gaps, decision curves.

* Week 4: a probability map becomes a mask only after a threshold. :func:`roc_curve_points` and
  :func:`pr_curve_points` sweep the threshold over every voxel; :func:`threshold_for_sensitivity`
  picks the largest threshold that still finds (say) 95 % of the tumour voxels ("missing a tumour
  is worse than a false alarm"); :func:`find_optimal_threshold` maximises Youden's J or Dice.
* Week 5: :func:`net_benefit` and :func:`decision_curve` (Vickers & Elkin 2006) ask whether acting
  on the model's output does more good than harm at a given threshold probability.
* Week 6: :func:`bootstrap_ci`, :func:`subgroup_table` and :func:`subgroup_gap` say how sure we
  are about a mean Dice per skin type, and whether the gap between subgroups is more than noise.

Everything here is numpy/pandas; torch tensors are accepted and converted. Probabilities must lie
in [0, 1] and targets must be binary {0, 1}; anything else is a ValueError.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "roc_curve_points",
    "pr_curve_points",
    "roc_auc_score",
    "average_precision_score",
    "threshold_for_sensitivity",
    "find_optimal_threshold",
    "bootstrap_ci",
    "subgroup_table",
    "subgroup_gap",
    "net_benefit",
    "decision_curve",
]


# --------------------------------------------------------------------------------------------
# Input checks (private)
# --------------------------------------------------------------------------------------------

def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):                       # torch tensor
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as error:                     # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from error


def _check_probabilities(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold numbers (probabilities), got dtype {arr.dtype}")
    # float32 stays float32 (whole volumes: half the memory); everything else becomes float64
    arr = arr.ravel() if arr.dtype == np.float32 else arr.astype(np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s); expected probabilities in [0, 1]")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got values from {low:.4g} to {high:.4g}; "
            f"if these are logits, apply a sigmoid (or softmax) first")
    return arr


def _check_binary(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.dtype == bool:
        return arr.ravel()
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be binary {{0, 1}}, got dtype {arr.dtype}")
    arr = arr.ravel()
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name} must be binary {{0, 1}}, got other values such as {examples}")
    return arr == 1


def _check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    shape_a, shape_b = np.shape(a), np.shape(b)
    if tuple(shape_a) != tuple(shape_b):
        raise ValueError(f"{name_a} and {name_b} must have the same shape, "
                         f"got {tuple(shape_a)} and {tuple(shape_b)}")


def _probs_and_target(probs: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    _check_same_shape(probs, target, "probs", "target")
    return _check_probabilities(probs, "probs"), _check_binary(target, "target")


def _check_unit_interval(value: float, name: str, *, open_low: bool, open_high: bool) -> float:
    value = float(value)
    ok_low = value > 0.0 if open_low else value >= 0.0
    ok_high = value < 1.0 if open_high else value <= 1.0
    if not (ok_low and ok_high and math.isfinite(value)):
        bounds = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise ValueError(f"{name} must be in {bounds}, got {value}")
    return value


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
        "dice": 2 * tp / (2 * tp + fp + fn),
    })


def pr_curve_points(probs: Any, target: Any, *,
                    thresholds: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """Precision-recall curve: columns ``threshold`` (descending), ``recall``, ``precision``.

    Same sweep as :func:`roc_curve_points` (precision is 1.0 where nothing is predicted). Prefer it
    to ROC when positives are rare (a small tumour in a large volume): specificity stays near 1
    for almost any threshold, precision does not.

    Shape:
        probs and target: any shape, the same for both; returns one row per threshold.

    Taught in week 4.
    """
    curve = roc_curve_points(probs, target, thresholds=thresholds)
    return curve[["threshold", "sensitivity", "precision"]].rename(columns={"sensitivity": "recall"})


def roc_auc_score(probs: Any, target: Any) -> float:
    """Area under the voxel-level ROC curve (trapezoids over the exact sweep; equals sklearn's).

    Shape:
        probs and target: any shape, the same for both; returns a float in [0, 1].

    Taught in week 4.
    """
    curve = roc_curve_points(probs, target)
    tpr = curve["sensitivity"].to_numpy()
    fpr = curve["false_positive_rate"].to_numpy()
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision_score(probs: Any, target: Any) -> float:
    """Average precision: sum over thresholds of (recall gain) x precision (equals sklearn's).

    Shape:
        probs and target: any shape, the same for both; returns a float in [0, 1].

    Taught in week 4.
    """
    curve = pr_curve_points(probs, target)
    recall = curve["recall"].to_numpy()
    precision = curve["precision"].to_numpy()
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
    s = _check_unit_interval(target_sensitivity, "target_sensitivity", open_low=True, open_high=False)
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
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    curve = roc_curve_points(probs, target).iloc[1:]          # drop the +inf row
    if criterion == "youden":
        score = curve["sensitivity"] + curve["specificity"] - 1.0
    else:
        score = curve["dice"]
    return float(curve["threshold"].to_numpy()[int(np.argmax(score.to_numpy()))])


# --------------------------------------------------------------------------------------------
# Bootstrap and subgroups (week 6)
# --------------------------------------------------------------------------------------------

def _check_values(values: Any, name: str = "values") -> np.ndarray:
    arr = _to_numpy(values, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per case), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    arr = arr.astype(np.float64)
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s) (e.g. Dice of empty cases); drop them "
                         f"or set an explicit empty-mask policy first")
    return arr


def _bootstrap_distribution(values: np.ndarray, statistic: Callable, n_resamples: int,
                            rng: np.random.Generator,
                            groups: Optional[np.ndarray] = None) -> np.ndarray:
    """The statistic on ``n_resamples`` resamples drawn with replacement (of cases or of groups)."""
    n = values.size
    if groups is None:
        try:                                         # vectorised: statistic(sample, axis=-1)
            vectorised = np.shape(statistic(values[None, :], axis=-1)) == (1,)
        except TypeError:
            vectorised = False
        rows_per_batch = max(1, 4_000_000 // n)
        out = []
        for start in range(0, n_resamples, rows_per_batch):
            rows = min(rows_per_batch, n_resamples - start)
            samples = values[rng.integers(0, n, size=(rows, n))]
            if vectorised:
                out.append(np.asarray(statistic(samples, axis=-1), dtype=np.float64))
            else:
                out.append(np.array([statistic(row) for row in samples], dtype=np.float64))
        return np.concatenate(out)
    labels, inverse = np.unique(groups, return_inverse=True)
    members = [values[inverse == g] for g in range(labels.size)]
    chosen = rng.integers(0, labels.size, size=(n_resamples, labels.size))
    return np.array([statistic(np.concatenate([members[g] for g in row])) for row in chosen],
                    dtype=np.float64)


def _percentile_interval(distribution: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(distribution, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _check_bootstrap_options(n_resamples: int, confidence: float) -> None:
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    _check_unit_interval(confidence, "confidence", open_low=True, open_high=True)


def bootstrap_ci(values: Any, *, statistic: Callable = np.mean, n_resamples: int = 2000,
                 confidence: float = 0.95, seed: int = 0,
                 groups: Optional[Sequence[Any]] = None) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval: ``(estimate, low, high)``.

    Draw ``n_resamples`` samples of the same size with replacement, compute the statistic on each,
    and take the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of those.
    The estimate is the statistic on the original values. With ``seed`` fixed the draws are
    those of ``scipy.stats.bootstrap(..., method="percentile", rng=np.random.default_rng(seed))``.

    ``groups`` (one label per value, e.g. the patient id) resamples whole groups instead of single
    values: when one patient contributes several images, they are not independent, and a
    per-image bootstrap would give too narrow an interval.

    Shape:
        values: ``(n,)`` one number per case; groups: ``(n,)`` or None. Returns three floats.

    Example:
        >>> est, low, high = bootstrap_ci([0.8, 0.7, 0.9, 0.85, 0.6], n_resamples=1000)
        >>> low <= est <= high
        True

    Taught in week 6.
    """
    arr = _check_values(values)
    _check_bootstrap_options(n_resamples, confidence)
    group_arr = None
    if groups is not None:
        group_arr = _to_numpy(groups, "groups").ravel()
        if group_arr.size != arr.size:
            raise ValueError(f"values and groups must have the same length, "
                             f"got {arr.size} and {group_arr.size}")
    rng = np.random.default_rng(seed)
    distribution = _bootstrap_distribution(arr, statistic, int(n_resamples), rng, group_arr)
    low, high = _percentile_interval(distribution, confidence)
    return float(statistic(arr)), low, high


def subgroup_table(df: pd.DataFrame, *, value: str = "dice", by: str = "fitzpatrick",
                   n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                   groups: Optional[str] = None) -> pd.DataFrame:
    """Mean of ``value`` per subgroup with a percentile-bootstrap confidence interval.

    Columns: ``by`` (the subgroup), ``n``, ``mean``, ``ci_low``, ``ci_high``; one row per
    subgroup, sorted by subgroup. A missing subgroup label (NaN) becomes its own row rather than
    vanishing silently. Each subgroup is resampled independently (its own random stream derived
    from ``seed``); ``groups`` names a column (e.g. ``"patient_id"``) whose groups are resampled
    whole. The bootstrap means are kept in ``table.attrs`` for :func:`subgroup_gap`.

    Shape:
        df: one row per case with columns ``value`` and ``by``; returns one row per subgroup.

    Taught in week 6.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    for column in [value, by] + ([groups] if groups is not None else []):
        if column not in df.columns:
            raise ValueError(f"df has no column {column!r}; columns are {list(df.columns)}")
    _check_bootstrap_options(n_resamples, confidence)
    _check_values(df[value].to_numpy(), name=f"df[{value!r}]")
    grouped = list(df.groupby(by, dropna=False, sort=True))
    streams = np.random.SeedSequence(seed).spawn(len(grouped))
    rows, distributions = [], {}
    for (label, part), stream in zip(grouped, streams):
        values = part[value].to_numpy(dtype=np.float64)
        cluster = part[groups].to_numpy() if groups is not None else None
        dist = _bootstrap_distribution(values, np.mean, int(n_resamples),
                                       np.random.default_rng(stream), cluster)
        low, high = _percentile_interval(dist, confidence)
        rows.append({by: label, "n": values.size, "mean": float(values.mean()),
                     "ci_low": low, "ci_high": high})
        distributions[label] = dist
    table = pd.DataFrame(rows)
    table.attrs = {"bootstrap_means": distributions, "confidence": confidence, "by": by,
                   "value": value}
    return table


def subgroup_gap(table: pd.DataFrame, *, higher_is_better: bool = True) -> dict:
    """The gap between the best and the worst subgroup of a :func:`subgroup_table`, with a CI.

    Returns a dict with ``best``, ``worst`` (subgroup labels), ``best_mean``, ``worst_mean``,
    ``gap`` (best minus worst, >= 0 with ``higher_is_better``, e.g. Dice; use
    ``higher_is_better=False`` for HD95 and the gap is worst minus best), ``ci_low``, ``ci_high``
    (percentile bootstrap of the gap, from the subgroups' independent bootstrap means) and
    ``ci_excludes_zero``: if False, the data are consistent with no real difference.

    Beware: the best and worst groups are chosen after looking at the data, so even groups that
    truly perform the same show a positive gap; the interval (and more data) tells you whether
    the gap is more than noise.

    Shape:
        table: one row per subgroup (from :func:`subgroup_table`); returns a dict.

    Taught in week 6.
    """
    attrs = getattr(table, "attrs", {}) or {}
    if "bootstrap_means" not in attrs:
        raise ValueError("table has no bootstrap samples in table.attrs; pass the DataFrame "
                         "returned by subgroup_table directly")
    if len(table) < 2:
        raise ValueError(f"need at least 2 subgroups for a gap, got {len(table)}")
    by = attrs["by"]
    means = table["mean"].to_numpy()
    best_row = int(np.argmax(means) if higher_is_better else np.argmin(means))
    worst_row = int(np.argmin(means) if higher_is_better else np.argmax(means))
    best, worst = table[by].iloc[best_row], table[by].iloc[worst_row]
    sign = 1.0 if higher_is_better else -1.0
    dists = attrs["bootstrap_means"]
    gap_dist = sign * (dists[best] - dists[worst])
    low, high = _percentile_interval(gap_dist, attrs["confidence"])
    return {"best": best, "worst": worst,
            "best_mean": float(means[best_row]), "worst_mean": float(means[worst_row]),
            "gap": float(sign * (means[best_row] - means[worst_row])),
            "ci_low": low, "ci_high": high, "ci_excludes_zero": bool(low > 0 or high < 0)}


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
    _check_same_shape(decision, outcome, "decision", "outcome")
    d = _check_binary(decision, "decision")
    y = _check_binary(outcome, "outcome")
    if d.size == 0:
        raise ValueError("decision is empty")
    pt = _check_unit_interval(threshold_probability, "threshold_probability",
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
    _check_same_shape(scores, outcome, "scores", "outcome")
    s = _check_probabilities(scores, "scores")
    y = _check_binary(outcome, "outcome")
    if thresholds is None:
        pts = np.round(np.arange(1, 100) / 100.0, 2)
    else:
        pts = np.asarray(thresholds, dtype=np.float64).ravel()
        for pt in pts:
            _check_unit_interval(pt, "each threshold", open_low=True, open_high=True)
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
