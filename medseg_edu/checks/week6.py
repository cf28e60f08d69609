"""Self-checks for the week 6 exercises (subgroup bias, bootstrap intervals, inter-rater agreement).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it with the
reference below and prints "exN looks right", or raises AssertionError saying *what* is wrong (a
shape, a property, a column) without giving away an expected number.

Taught in week 6.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from medseg_edu.checks import self_check
from medseg_edu.checks.week5 import reference_drop_ci
from medseg_edu.bootstrap import bootstrap_ci
from medseg_edu.metrics import dice_score

__all__ = [
    "reference_dice_per_group",
    "reference_inverse_frequency_weights",
    "reference_gap_ci",
    "reference_pairwise_dice",
    "check_dice_per_group",
    "check_bootstrap_mean_ci",
    "check_inverse_frequency_weights",
    "check_gap_ci",
    "check_pairwise_dice",
]


# ----------------------------------------------------------------------------------------------
# reference solutions
# ----------------------------------------------------------------------------------------------
def reference_dice_per_group(df: pd.DataFrame, *, by: str = "fitzpatrick", value: str = "dice") -> pd.DataFrame:
    """Number of cases and mean ``value`` per subgroup: columns ``by``, ``n``, ``mean``, sorted by ``by``.

    Shape: df has one row per case; the result has one row per subgroup (index 0..G-1).

    Used in week 6 through `check_dice_per_group`.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    for column in (by, value):
        if column not in df.columns:
            raise ValueError(f"df has no column {column!r}; columns are {list(df.columns)}")
    table = df.groupby(by, sort=True)[value].agg(["size", "mean"]).reset_index()
    return table.rename(columns={"size": "n"})


def _reference_bootstrap_mean_ci(values: Sequence[float], *, n_resamples: int = 2000,
                                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap CI of the mean: ``(mean, low, high)``, the same draws as ``bootstrap_ci``.

    ``rng = np.random.default_rng(seed)``; all resamples at once with
    ``rng.integers(0, n, size=(n_resamples, n))``; percentiles ``(1 -/+ confidence) / 2``.

    Shape: values (n,) -> three floats.
    """
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(n_resamples, values.size))]
    means = samples.mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(values.mean()), float(low), float(high)


def reference_inverse_frequency_weights(groups: Sequence[Any]) -> np.ndarray:
    """One weight per sample, ``n / (G * count of its group)``: every group gets the same total, mean 1.

    Shape: groups (n,) -> weights (n,) float64.

    Used in week 6 through `check_inverse_frequency_weights`.
    """
    groups = pd.Series(np.asarray(groups))
    counts = groups.map(groups.value_counts()).to_numpy(dtype=np.float64)
    n_groups = groups.nunique()
    return len(groups) / (n_groups * counts)


def reference_gap_ci(best: Sequence[float], worst: Sequence[float], *, n_resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Gap ``mean(best) - mean(worst)`` with a percentile bootstrap CI (each group resampled on its own).

    Shape: best (n1,), worst (n2,) -> three floats.

    Used in week 6 through `check_gap_ci`.
    """
    # The same two-group bootstrap as week 5's drop between sites.
    return reference_drop_ci(best, worst, n_resamples=n_resamples, confidence=confidence, seed=seed)


def reference_pairwise_dice(masks: dict) -> pd.DataFrame:
    """Mean Dice between every pair of annotators: a square DataFrame (index = columns = names).

    ``masks`` maps a name ("rater A", "model", ...) to a list of binary masks, one per image, in the
    same order for every name. Two empty masks agree perfectly (Dice 1).

    Shape: masks {name: list of n masks (H, W)} -> DataFrame (names x names).

    Used in week 6 through `check_pairwise_dice`.
    """
    names = list(masks)
    table = pd.DataFrame(np.ones((len(names), len(names))), index=names, columns=names)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            scores = [dice_score(np.asarray(x), np.asarray(y), empty="one")
                      for x, y in zip(masks[a], masks[b])]
            table.loc[a, b] = table.loc[b, a] = float(np.mean(scores))
    return table


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _random_results(rng: np.random.Generator, *, n_groups: int = 4) -> pd.DataFrame:
    """A per-image table like the one in the notebook: unequal group sizes, Dice-like values."""
    sizes = rng.integers(2, 15, size=n_groups)
    labels = rng.permutation(np.arange(1, n_groups + 1))
    groups = np.repeat(labels, sizes)
    dice = np.clip(rng.beta(8, 2, size=groups.size), 0, 1)
    df = pd.DataFrame({"case_id": [f"img{i}" for i in range(groups.size)],
                       "fitzpatrick": groups, "dice": dice})
    return df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def _dice_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly good Dice values with a few failures: a skewed sample (percentile CIs are asymmetric)."""
    values = rng.beta(12, 2, size=n)
    failures = rng.random(n) < 0.15
    values[failures] = rng.uniform(0.0, 0.3, size=int(failures.sum()))
    return values


def _random_mask(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    ry, rx = rng.uniform(0.12, 0.3, 2) * size
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)


def _as_triple(result: Any, name: str) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in result)
    except TypeError:
        raise AssertionError(f"{name} must return three numbers (estimate, low, high), "
                             f"got {type(result).__name__}") from None
    if len(triple) != 3:
        raise AssertionError(f"{name} must return three numbers (estimate, low, high), got {len(triple)}")
    return triple


def _call_name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
@self_check("ex1")
def check_dice_per_group(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(df, by=..., value=...)`` against :func:`reference_dice_per_group` on random tables.

    Shape: fn maps a per-image DataFrame to one row per subgroup.

    Taught in week 6.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(3):
        df = _random_results(rng, n_groups=int(rng.integers(2, 6)))
        if trial == 2:
            df = df.rename(columns={"fitzpatrick": "site", "dice": "hd95"})
            by, value = "site", "hd95"
        else:
            by, value = "fitzpatrick", "dice"
        before = df.copy()
        got = fn(df, by=by, value=value)
        expected = reference_dice_per_group(before, by=by, value=value)
        if not df.equals(before):
            raise AssertionError(f"{name} changed the DataFrame it was given; work on a copy")
        if not isinstance(got, pd.DataFrame):
            raise AssertionError(f"{name} must return a pandas DataFrame, got {type(got).__name__}")
        if by not in got.columns:
            hint = " (it is the index: call .reset_index())" if got.index.name == by else ""
            raise AssertionError(f"the result needs a column {by!r}{hint}; got columns {list(got.columns)}")
        for column in ("n", "mean"):
            if column not in got.columns:
                raise AssertionError(f"the result needs a column {column!r}; got columns {list(got.columns)}")
        if len(got) != len(expected):
            raise AssertionError(f"the result must have one row per subgroup ({len(expected)} here), "
                                 f"got {len(got)} rows")
        if list(got[by]) != list(expected[by]):
            raise AssertionError(f"rows must be sorted by {by!r}, one per subgroup")
        # exact: "n" holds counts (integers)
        if int(got["n"].sum()) != len(df) or not np.array_equal(got["n"].to_numpy(), expected["n"].to_numpy()):
            raise AssertionError("column 'n' must count the rows of each subgroup (they add up to len(df))")
        if not np.allclose(got["mean"].to_numpy(dtype=float), expected["mean"].to_numpy(), atol=1e-9):
            raise AssertionError(f"column 'mean' must be the mean of {value!r} within each subgroup")
    print("ex1 looks right")


@self_check("ex2")
def check_bootstrap_mean_ci(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(values, n_resamples=, confidence=, seed=)`` against ``bootstrap.bootstrap_ci``.

    Shape: fn maps values (n,) to three floats (mean, low, high).

    Taught in week 6.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for _ in range(3):
        values = _dice_like(rng, int(rng.integers(8, 40)))
        draw_seed = int(rng.integers(0, 1000))
        got = _as_triple(fn(values.copy(), n_resamples=1000, confidence=0.95, seed=draw_seed), name)
        est, low, high = got
        if not np.isclose(est, values.mean(), atol=1e-12):
            raise AssertionError("the first number must be the mean of the original values (no resampling)")
        if not low <= high:
            raise AssertionError(f"low must not be above high, got low={low:.4f}, high={high:.4f}")
        if high - low < 1e-9:
            raise AssertionError("the interval has zero width: resample WITH replacement "
                                 "(rng.integers(0, n, size=(n_resamples, n)) gives the indices)")
        again = _as_triple(fn(values.copy(), n_resamples=1000, confidence=0.95, seed=draw_seed), name)
        if again != got:
            raise AssertionError("two calls with the same seed gave different intervals: "
                                 "make the generator with np.random.default_rng(seed) inside the function")
        narrow = _as_triple(fn(values.copy(), n_resamples=1000, confidence=0.5, seed=draw_seed), name)
        if not narrow[2] - narrow[1] < high - low:
            raise AssertionError("a 50 % interval must be narrower than a 95 % one: "
                                 "use the (1 - confidence)/2 and (1 + confidence)/2 percentiles")
        wanted = bootstrap_ci(values, n_resamples=1000, confidence=0.95, seed=draw_seed)
        if not np.allclose(got, wanted, atol=1e-9):
            width = wanted[2] - wanted[1]
            if abs(low - wanted[1]) < 0.15 * width and abs(high - wanted[2]) < 0.15 * width:
                raise AssertionError(
                    "the interval is close to bootstrap.bootstrap_ci but not identical for the same seed: "
                    "draw all resamples at once, rng.integers(0, n, size=(n_resamples, n)), and use "
                    "np.percentile with its default (linear) interpolation")
            raise AssertionError("the interval does not agree with bootstrap.bootstrap_ci(values, seed=...): "
                                 "take percentiles of the means of the resamples (not of the values, "
                                 "and not mean +- 1.96 standard errors)")
    print("ex2 looks right")


@self_check("ex3")
def check_inverse_frequency_weights(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(groups)`` against :func:`reference_inverse_frequency_weights`.

    Shape: fn maps groups (n,) to weights (n,).

    Taught in week 6.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(3):
        sizes = rng.integers(1, 12, size=int(rng.integers(2, 7)))
        groups = rng.permutation(np.repeat(np.arange(1, sizes.size + 1), sizes))
        if trial == 1:
            groups = np.array(["I-II", "III-IV", "V-VI"])[(groups - 1) % 3]
        got = np.asarray(fn(list(groups) if trial == 2 else groups.copy()), dtype=np.float64)
        expected = reference_inverse_frequency_weights(groups)
        if got.shape != expected.shape:
            raise AssertionError(f"{name} must return one weight per sample, shape {expected.shape}, got {got.shape}")
        if not np.all(np.isfinite(got)) or np.any(got <= 0):
            raise AssertionError("every weight must be a positive, finite number")
        totals = pd.Series(got).groupby(groups).sum()
        if not np.allclose(totals.to_numpy(), totals.iloc[0], rtol=1e-9):
            raise AssertionError("every group must get the same total weight (weight of a sample = 1 / size "
                                 "of its group, up to a common factor)")
        if not np.isclose(got.mean(), 1.0, rtol=1e-9):
            raise AssertionError(f"scale the weights so that their mean is 1 (got mean {got.mean():.3g}); "
                                 "then a weighted loss keeps the size of the unweighted one")
        if not np.allclose(got, expected, rtol=1e-9):
            raise AssertionError("weights differ from inverse group frequency; check which group each sample is in")
    print("ex3 looks right")


@self_check("ex4")
def check_gap_ci(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(best, worst, n_resamples=, confidence=, seed=)`` against :func:`reference_gap_ci`.

    The student's random draws may differ from the reference's, so intervals are compared with a
    tolerance (a fraction of the reference width) on 4000 resamples.

    Shape: fn maps best (n1,), worst (n2,) to three floats (gap, low, high).

    Taught in week 6.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for _ in range(3):
        n = int(rng.integers(12, 30))          # similar noise in both groups
        best = _dice_like(rng, n)
        worst = 0.85 * _dice_like(rng, n + int(rng.integers(-2, 3)))
        draw_seed = int(rng.integers(0, 1000))
        got = _as_triple(fn(best.copy(), worst.copy(), n_resamples=4000, confidence=0.95, seed=draw_seed), name)
        gap, low, high = got
        if not np.isclose(gap, best.mean() - worst.mean(), atol=1e-12):
            raise AssertionError("the first number must be mean(best) - mean(worst) on the original values")
        if not low <= high:
            raise AssertionError(f"low must not be above high, got low={low:.4f}, high={high:.4f}")
        swapped = _as_triple(fn(worst.copy(), best.copy(), n_resamples=4000, confidence=0.95, seed=draw_seed), name)
        if not np.isclose(swapped[0], -gap, atol=1e-12):
            raise AssertionError("swapping best and worst must change the sign of the gap")
        _, ref_low, ref_high = reference_gap_ci(best, worst, n_resamples=4000, confidence=0.95, seed=draw_seed)
        width = ref_high - ref_low
        if not low <= gap <= high:
            raise AssertionError("the interval does not contain the observed gap: resample each group on "
                                 "its own (not the pooled values) and subtract the resampled means")
        if (high - low) < 0.8 * width:
            raise AssertionError("the interval is too narrow: both groups' sampling noise must enter "
                                 "(resample best AND worst in every round)")
        if (high - low) > 1.25 * width:
            raise AssertionError("the interval is too wide: use the (1 -/+ confidence)/2 percentiles of the "
                                 "resampled gaps (not the sum of the two groups' intervals)")
        if abs(low - ref_low) > 0.15 * width or abs(high - ref_high) > 0.15 * width:
            raise AssertionError("the interval is not where a percentile bootstrap of the gap puts it: take "
                                 "percentiles of (resampled mean of best - resampled mean of worst)")
    print("ex4 looks right")


@self_check("ex5")
def check_pairwise_dice(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(masks)`` against :func:`reference_pairwise_dice` on random elliptical masks.

    Shape: fn maps {name: list of n masks (H, W)} to a names x names DataFrame.

    Taught in week 6.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(2):
        n_images = int(rng.integers(2, 6))
        names = ["rater A", "rater B", "model"] if trial == 0 else ["R1", "R2", "R3", "net"]
        masks = {who: [_random_mask(rng) for _ in range(n_images)] for who in names}
        got = fn({who: [m.copy() for m in ms] for who, ms in masks.items()})
        expected = reference_pairwise_dice(masks)
        if not isinstance(got, pd.DataFrame):
            raise AssertionError(f"{name} must return a pandas DataFrame, got {type(got).__name__}")
        if list(got.index) != names or list(got.columns) != names:
            raise AssertionError(f"index and columns must both be the names, in the given order {names}; "
                                 f"got index {list(got.index)} and columns {list(got.columns)}")
        values = got.to_numpy(dtype=float)
        if not np.allclose(np.diag(values), 1.0):
            raise AssertionError("the diagonal (an annotator against itself) must be 1")
        if not np.allclose(values, values.T):
            raise AssertionError("the table must be symmetric: Dice(a, b) = Dice(b, a)")
        if values.min() < 0 or values.max() > 1:
            raise AssertionError("Dice values must lie in [0, 1]")
        if not np.allclose(values, expected.to_numpy(), atol=1e-9):
            raise AssertionError("off-diagonal entries must be the MEAN over images of the per-image Dice "
                                 "(not the Dice of all pixels pooled)")
    print("ex5 looks right")
