"""Self-checks for the week 9 exercises (DICOM geometry, a QC rule, inter-rater Dice, a model-card section,
majority vote).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it
with the reference below and prints "exN looks right", or raises AssertionError saying *what* is wrong
(an order, a column, a rule) without giving away an expected number.

Taught in week 9.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from medseg_edu.checks import answer_array, self_check
from medseg_edu.metrics import dice_score

__all__ = [
    "reference_slice_order_and_affine",
    "reference_volume_flag",
    "reference_pairwise_rater_dice",
    "reference_performance_rows",
    "reference_majority_vote",
    "check_slice_order_and_affine",
    "check_volume_flag",
    "check_pairwise_rater_dice",
    "check_performance_rows",
    "check_majority_vote",
]


# ----------------------------------------------------------------------------------------------
# reference solutions
# ----------------------------------------------------------------------------------------------
def reference_slice_order_and_affine(positions: Any, orientation: Any,
                                     pixel_spacing: Any) -> tuple[np.ndarray, np.ndarray]:
    """Slice order along the normal and the 4x4 LPS affine of a DICOM series.

    ``positions`` are the ImagePositionPatient of the files (in file order), ``orientation`` the six
    ImageOrientationPatient values (row direction cosine, then column direction cosine),
    ``pixel_spacing`` the PixelSpacing (spacing between rows, spacing between columns). Voxel (i, j, k)
    is column i, row j of the k-th slice in sorted order.

    Shape: positions (n, 3), orientation (6,), pixel_spacing (2,) -> order (n,) int, affine (4, 4).

    Used in week 9 through `check_slice_order_and_affine`.
    """
    positions = np.asarray(positions, dtype=np.float64)
    orientation = np.asarray(orientation, dtype=np.float64)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    order = np.argsort(positions @ normal, kind="stable")
    ordered = positions[order]
    affine = np.eye(4)
    affine[:3, 0] = row * float(pixel_spacing[1])
    affine[:3, 1] = column * float(pixel_spacing[0])
    affine[:3, 2] = (ordered[-1] - ordered[0]) / max(len(ordered) - 1, 1)
    affine[:3, 3] = ordered[0]
    return order, affine


def reference_volume_flag(pred: Any, spacing_mm: Sequence[float], reference_volumes_ml: Any, *,
                          low_percentile: float = 2.5, high_percentile: float = 97.5) -> str:
    """The volume rule of quality control: "empty", "small_volume", "large_volume" or "" (no flag).

    The training range is the ``low_percentile`` and ``high_percentile`` of the reference volumes
    that are above 0; a volume strictly outside it raises the flag of that side.

    Shape: pred (*spatial) binary, spacing_mm one per axis, reference_volumes_ml (m,) -> a string.

    Used in week 9 through `check_volume_flag`.
    """
    volume = float(np.count_nonzero(pred) * np.prod(spacing_mm) / 1000.0)
    if volume == 0:
        return "empty"
    reference = np.asarray(reference_volumes_ml, dtype=np.float64)
    reference = reference[reference > 0]
    low, high = np.percentile(reference, [low_percentile, high_percentile])
    if volume < low:
        return "small_volume"
    if volume > high:
        return "large_volume"
    return ""


def reference_pairwise_rater_dice(masks: Sequence[Any]) -> np.ndarray:
    """Dice of every pair of raters, pairs in the order (0, 1), (0, 2), ..., (1, 2), ... (itertools.combinations).

    Shape: a list of R binary masks (*spatial) -> (R (R - 1) / 2,) float64.

    Used in week 9 through `check_pairwise_rater_dice`.
    """
    return np.array([dice_score(np.asarray(masks[a]) > 0, np.asarray(masks[b]) > 0)
                     for a, b in combinations(range(len(masks)), 2)], dtype=np.float64)


def _percentile_ci(values: np.ndarray, rng: np.random.Generator, n_resamples: int,
                   confidence: float) -> tuple[float, float]:
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def reference_performance_rows(table: pd.DataFrame, *, by: str, metric: str = "dice", n_resamples: int = 2000,
                               confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The rows of a model card's "Performance by <group>" section: one per group, sorted.

    Columns ``by``, ``n`` (cases with a defined metric), ``mean``, ``ci_low``, ``ci_high`` (percentile
    bootstrap of the mean, each group resampled on its own); cases whose metric is NaN are left out.

    Shape: table (N rows) -> one row per group (index 0..G-1).

    Used in week 9 through `check_performance_rows`.
    """
    values = pd.to_numeric(table[metric], errors="coerce")
    defined = table[values.notna()].assign(**{metric: values[values.notna()]})
    rng = np.random.default_rng(seed)
    rows = []
    for group, part in defined.groupby(by, sort=True):
        data = part[metric].to_numpy(dtype=np.float64)
        low, high = _percentile_ci(data, rng, n_resamples, confidence)
        rows.append({by: group, "n": len(data), "mean": float(data.mean()), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[by, "n", "mean", "ci_low", "ci_high"])


def reference_majority_vote(masks: Sequence[Any]) -> np.ndarray:
    """A voxel is foreground when strictly more than half of the raters marked it (a tie is background).

    Shape: a list of R binary masks (*spatial) -> (*spatial) bool.

    Used in week 9 through `check_majority_vote`.
    """
    stack = np.stack([np.asarray(m) > 0 for m in masks])
    return stack.sum(axis=0) * 2 > len(stack)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 2] *= -1
    return q


def _random_series(rng: np.random.Generator, *, oblique: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shuffled series: positions (n, 3), orientation (6,), pixel spacing (2,)."""
    rotation = _random_rotation(rng) if oblique else np.eye(3)
    row, column, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    spacing = rng.uniform(0.4, 2.0, 2)
    step = rng.uniform(1.0, 6.0)
    n = int(rng.integers(5, 16))
    origin = rng.uniform(-120, 120, 3)
    positions = origin + np.outer(np.arange(n) * step, normal)
    return positions[rng.permutation(n)], np.concatenate([row, column]), spacing


def _random_mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    centre = [rng.uniform(0.35, 0.65) * s for s in shape]
    radii = [rng.uniform(0.15, 0.3) * s for s in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1


def _call_name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
@self_check("ex1")
def check_slice_order_and_affine(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(positions, orientation, pixel_spacing) -> (order, affine)`` on shuffled random series.

    Shape: fn maps positions (n, 3), orientation (6,), pixel_spacing (2,) to order (n,) and affine (4, 4).

    Taught in week 9.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(4):
        positions, orientation, spacing = _random_series(rng, oblique=trial > 0)
        result = fn(positions.copy(), orientation.copy(), spacing.copy())
        if not isinstance(result, tuple) or len(result) != 2:
            raise AssertionError(f"{name} must return a tuple (order, affine)")
        order = answer_array(result[0], "order", "ex1").astype(np.int64).ravel()
        affine = answer_array(result[1], "affine", "ex1").astype(np.float64)
        expected_order, expected_affine = reference_slice_order_and_affine(positions, orientation, spacing)
        if affine.shape != (4, 4):
            raise AssertionError(f"affine must be a 4x4 matrix, got shape {affine.shape}")
        if sorted(order.tolist()) != list(range(len(positions))):
            raise AssertionError("order must hold every file index once (a permutation, as np.argsort gives)")
        # exact: indices are integers
        if not np.array_equal(order, expected_order):
            if np.array_equal(order, expected_order[::-1]):  # exact: indices are integers
                raise AssertionError("the slices come out in reverse: sort by increasing distance along the "
                                     "normal cross(row cosine, column cosine)")
            if np.array_equal(order, np.argsort(positions[:, 2], kind="stable")):  # exact: indices
                raise AssertionError("that is the order of the z coordinate; on an oblique series sort by "
                                     "the distance along the slice normal, positions @ normal")
            raise AssertionError("the slice order is wrong: sort by positions @ normal, "
                                 "normal = np.cross(row cosine, column cosine)")
        # 1e-6 mm: the reference and a correct answer differ only by rounding of a few products
        if not np.allclose(affine[:3, 3], expected_affine[:3, 3], atol=1e-6):
            raise AssertionError("the last column must be the position of the FIRST slice in sorted order")
        if not np.allclose(affine[:3, 2], expected_affine[:3, 2], atol=1e-6):
            raise AssertionError("the third column must be the step from one sorted slice to the next "
                                 "(last position - first position) / (n - 1)")
        if not np.allclose(affine[:3, :2], expected_affine[:3, :2], atol=1e-6):
            if np.allclose(affine[:3, :2], expected_affine[:3, :2] * (spacing / spacing[::-1]), atol=1e-6):
                raise AssertionError("PixelSpacing is (spacing between rows, spacing between columns): the "
                                     "column index i moves along the row cosine by PixelSpacing[1]")
            raise AssertionError("the first two columns must be the row cosine and the column cosine, "
                                 "each times its pixel spacing")
        if not np.allclose(affine[3], [0, 0, 0, 1]):
            raise AssertionError("the last row of an affine is (0, 0, 0, 1)")
    print("ex1 looks right")


@self_check("ex2")
def check_volume_flag(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(pred, spacing_mm, reference_volumes_ml)`` against :func:`reference_volume_flag`.

    Shape: fn maps a binary mask, a spacing and reference volumes (m,) to one string.

    Taught in week 9.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    cases = [("empty", 0.0), ("", 1.0), ("small", 0.3), ("large", 3.0)]
    for trial in range(2):
        for kind, scale in cases:
            shape = (int(rng.integers(16, 28)), int(rng.integers(16, 28)), int(rng.integers(8, 16)))
            spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, 3))
            mask = _random_mask(rng, shape)
            if kind == "empty":
                mask[:] = False
            volume = float(mask.sum() * np.prod(spacing) / 1000.0) or 1.0
            reference = volume / scale if scale else volume
            reference_volumes = reference * rng.uniform(0.7, 1.3, int(rng.integers(8, 20)))
            reference_volumes[:2] = 0.0   # two empty training predictions: not part of the range
            got = fn(mask.copy(), spacing, reference_volumes.copy())
            expected = reference_volume_flag(mask, spacing, reference_volumes)
            if not isinstance(got, str):
                raise AssertionError(f"{name} must return a string (a flag name or ''), got {type(got).__name__}")
            if got != expected:
                if expected == "empty":
                    raise AssertionError("an empty prediction must give 'empty' (whatever the range)")
                if trial == 0 and kind == "":
                    raise AssertionError("a volume inside the training range must give '' (no flag); "
                                         "compute the volume in mL: voxels x prod(spacing_mm) / 1000, and leave "
                                         "the reference volumes of 0 out of the range")
                raise AssertionError(f"expected a different flag for a {kind or 'typical'} volume: compare the "
                                     "volume in mL with the 2.5th and 97.5th percentiles of the non-zero "
                                     "reference volumes (strictly outside raises the flag)")
    print("ex2 looks right")


@self_check("ex3")
def check_pairwise_rater_dice(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(masks)`` against :func:`reference_pairwise_rater_dice` on random 2D and 3D raters.

    Shape: fn maps a list of R masks to (R (R - 1) / 2,) Dice values.

    Taught in week 9.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(3):
        shape = (24, 24) if trial == 0 else (16, 16, 10)
        raters = int(rng.integers(3, 6))
        masks = [_random_mask(rng, shape) for _ in range(raters)]
        if trial == 2:
            masks = [m.astype(np.uint8) for m in masks]
        got = answer_array(fn([m.copy() for m in masks]), "the Dice values", "ex3").astype(np.float64).ravel()
        expected = reference_pairwise_rater_dice(masks)
        if got.shape != expected.shape:
            raise AssertionError(f"{name} must return one Dice per PAIR of raters: {raters} raters give "
                                 f"{expected.size} pairs, got {got.size} values")
        if np.any(got < 0) or np.any(got > 1):
            raise AssertionError("Dice values lie in [0, 1]")
        # 1e-9: the same counts give the same ratio up to rounding
        if not np.allclose(got, expected, atol=1e-9):
            if np.allclose(np.sort(got), np.sort(expected), atol=1e-9):
                raise AssertionError("right values, wrong order: list the pairs as itertools.combinations "
                                     "(range(R), 2) does: (0, 1), (0, 2), ..., (1, 2), ...")
            raise AssertionError("the values are not the Dice of each pair: 2 |A and B| / (|A| + |B|)")
    print("ex3 looks right")


@self_check("ex4")
def check_performance_rows(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(table, by=, metric=, n_resamples=, confidence=, seed=)`` against
    :func:`reference_performance_rows`.

    The student's random draws may differ from the reference's, so intervals are compared with a
    tolerance (15 % of the reference width) on 4000 resamples; counts exactly, means to 1e-9.

    Shape: fn maps a per-case table to one row per group.

    Taught in week 9.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(3):
        n_groups = int(rng.integers(2, 5))
        sizes = rng.integers(6, 20, n_groups)
        groups = np.repeat(np.array(["A", "B", "C", "D"][:n_groups]), sizes)
        dice = np.clip(rng.beta(8, 2, groups.size) - 0.1 * (groups == "B"), 0, 1)
        if trial > 0:
            dice[rng.choice(groups.size, 2, replace=False)] = np.nan   # undefined Dice: left out
        table = pd.DataFrame({"case_id": [f"c{i:03d}" for i in range(groups.size)], "site": groups, "dice": dice})
        table = table.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
        before = table.copy()
        got = fn(table, by="site", metric="dice", n_resamples=4000, confidence=0.95, seed=int(rng.integers(1000)))
        expected = reference_performance_rows(before, by="site", metric="dice", n_resamples=4000, seed=1)
        if not table.equals(before):
            raise AssertionError(f"{name} changed the table it was given; work on a copy")
        if not isinstance(got, pd.DataFrame):
            raise AssertionError(f"{name} must return a pandas DataFrame, got {type(got).__name__}")
        missing = [c for c in ("site", "n", "mean", "ci_low", "ci_high") if c not in got.columns]
        if missing:
            hint = " (the group is the index: call .reset_index())" if got.index.name == "site" else ""
            raise AssertionError(f"the result needs the columns {missing}{hint}; got {list(got.columns)}")
        if list(got["site"]) != list(expected["site"]):
            raise AssertionError("one row per group, sorted by the group")
        # exact: counts are integers
        if not np.array_equal(got["n"].to_numpy(dtype=np.int64), expected["n"].to_numpy()):
            raise AssertionError("'n' must count the cases of each group whose metric is defined (not NaN)")
        # 1e-9: the same values averaged
        if not np.allclose(got["mean"].to_numpy(dtype=float), expected["mean"].to_numpy(), atol=1e-9):
            raise AssertionError("'mean' must be the mean metric of each group, NaN cases left out")
        for row, ref in zip(got.itertuples(index=False), expected.itertuples(index=False)):
            low, high, mean = float(row.ci_low), float(row.ci_high), float(row.mean)
            width = ref.ci_high - ref.ci_low
            if not low <= mean <= high:
                raise AssertionError("each interval must contain its group's mean")
            if abs(low - ref.ci_low) > 0.15 * width or abs(high - ref.ci_high) > 0.15 * width:
                raise AssertionError("the interval is not where a percentile bootstrap puts it: resample the "
                                     "group's cases with replacement, take the mean of each resample, and the "
                                     "(1 -/+ confidence)/2 percentiles of those means")
    print("ex4 looks right")


@self_check("ex5")
def check_majority_vote(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(masks)`` against :func:`reference_majority_vote` with odd and even numbers of raters.

    Shape: fn maps a list of R masks (*spatial) to one mask (*spatial).

    Taught in week 9.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for raters in (3, 4, 5):
        shape = (20, 20) if raters == 3 else (14, 14, 8)
        masks = [_random_mask(rng, shape) for _ in range(raters)]
        got = answer_array(fn([m.copy() for m in masks]), "the consensus", "ex5")
        expected = reference_majority_vote(masks)
        if got.shape != expected.shape:
            raise AssertionError(f"{name} must return one mask of the raters' shape {expected.shape}, "
                                 f"got {got.shape}")
        got = got > 0.5 if got.dtype.kind == "f" else got.astype(bool)
        # exact: masks are booleans
        if not np.array_equal(got, expected):
            votes = np.stack(masks).sum(axis=0)
            tie = votes * 2 == raters
            if raters % 2 == 0 and np.array_equal(got[~tie], expected[~tie]):  # exact: booleans
                raise AssertionError("with an even number of raters a tie (exactly half) must be background")
            raise AssertionError("a voxel is foreground when MORE than half of the raters marked it")
    print("ex5 looks right")
