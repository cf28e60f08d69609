"""Bootstrap confidence intervals: for one mean, per subgroup, and for the gap between subgroups.

A mean Dice over 20 test cases is itself a random number: another 20 cases would give another mean.
The percentile bootstrap says how much: resample the cases with replacement many times, compute the
statistic on each resample, and read the interval off the spread of those values.

* :func:`bootstrap_ci`: the interval of one statistic (resampling cases, or whole patients).
* :func:`subgroup_table` and :func:`subgroup_gap`: a mean Dice per skin type (or site, or age
  group) with intervals, and whether the gap between the best and the worst group is more than noise.

Taught in week 5 (the drop of Dice on an external site) and week 6 (subgroups).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from medseg_edu.arguments import check_int, check_unit_interval, to_numpy

__all__ = ["bootstrap_ci", "subgroup_table", "subgroup_gap"]


def _check_values(values: Any, name: str = "values") -> np.ndarray:
    arr = to_numpy(values, name, allow_lists=True)
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
    check_int(n_resamples, "n_resamples", minimum=1)
    check_unit_interval(confidence, "confidence", open_low=True, open_high=True)


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
        group_arr = to_numpy(groups, "groups", allow_lists=True).ravel()
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
