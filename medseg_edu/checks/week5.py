"""Self-checks for the week-5 exercises (external validation).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it with the
reference below (or with the package: :func:`medseg_edu.data.splits.check_no_leakage`,
:func:`medseg_edu.intensity.zscore_normalise`, :func:`medseg_edu.clinical.net_benefit`) and prints
``"exN looks right"``. When something is off it raises ``AssertionError`` with a message that says
*what* is wrong (leakage, a range, a property, a sign, the units) -- never the expected number.

Taught in week 5.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from medseg_edu.checks import self_check
from medseg_edu.clinical import net_benefit
from medseg_edu.data.splits import check_no_leakage
from medseg_edu.intensity import zscore_normalise

__all__ = [
    "reference_drop_ci",
    "reference_net_benefit_from_counts",
    "check_patient_split",
    "check_zscore_in_mask",
    "check_drop_ci",
    "check_net_benefit_from_counts",
]


# ----------------------------------------------------------------------------------------------
# reference solutions
# ----------------------------------------------------------------------------------------------
def reference_drop_ci(dice_internal: Sequence[float], dice_external: Sequence[float], *,
                      patients_internal: Optional[Sequence[Any]] = None,
                      patients_external: Optional[Sequence[Any]] = None,
                      n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """Performance drop ``mean(internal) - mean(external)`` with a percentile (cluster) bootstrap interval.

    The two test sets hold different patients, so each is resampled on its own. Within a set the
    unit of resampling is the **patient**: draw as many patients as the set has, with replacement,
    keep all scans of each drawn patient, and take the mean over those scans (a patient drawn twice
    counts twice). Without patient ids every scan is its own patient. The drop is computed on every
    pair of resamples and the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    percentiles of those drops.

    Shape: dice_internal (n1,), dice_external (n2,), patients_* the same lengths or None
    -> (drop, low, high), three floats.

    Example:
        >>> drop, low, high = reference_drop_ci([0.9, 0.8, 0.85, 0.7], [0.5, 0.6], patients_internal=[1, 1, 2, 2],
        ...                                     n_resamples=500)
        >>> low <= drop <= high
        True

    Used in week 5 through `check_drop_ci`.
    """
    a = _one_dimensional(dice_internal, "dice_internal")
    b = _one_dimensional(dice_external, "dice_external")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    means_a = _cluster_means(a, patients_internal, "patients_internal", n_resamples, rng)
    means_b = _cluster_means(b, patients_external, "patients_external", n_resamples, rng)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means_a - means_b, [100 * alpha, 100 * (1 - alpha)])
    return float(a.mean() - b.mean()), float(low), float(high)


def _cluster_means(values: np.ndarray, patients: Optional[Sequence[Any]], name: str, n_resamples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Means over the scans of ``n_resamples`` resamples of the patients (with replacement)."""
    if patients is None:
        codes = np.arange(values.size)
    else:
        ids = np.asarray(patients)
        if ids.shape != values.shape:
            raise ValueError(f"{name} must give one patient id per Dice value, got shape {ids.shape} "
                             f"for {values.size} values")
        _, codes = np.unique(ids, return_inverse=True)
    sums = np.bincount(codes, weights=values)
    counts = np.bincount(codes).astype(np.float64)
    drawn = rng.integers(0, sums.size, size=(n_resamples, sums.size))
    return sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)


def reference_net_benefit_from_counts(tp: int, fp: int, n: int, threshold_probability: float) -> float:
    """Net benefit ``TP / n - FP / n * pt / (1 - pt)`` from counts (Vickers & Elkin 2006).

    Shape: four numbers -> one float.

    Example:
        >>> reference_net_benefit_from_counts(2, 1, 4, 0.25)
        0.4166666666666667
    """
    for name, value in (("tp", tp), ("fp", fp), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if n < 1 or tp + fp > n:
        raise ValueError(f"n must be >= 1 and >= tp + fp, got n={n}, tp={tp}, fp={fp}")
    if not 0.0 < threshold_probability < 1.0:
        raise ValueError(f"threshold_probability must be in (0, 1), got {threshold_probability!r}")
    pt = float(threshold_probability)
    return tp / n - fp / n * pt / (1.0 - pt)


def _one_dimensional(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold finite numbers (drop NaN Dice of empty cases first)")
    return arr


# ----------------------------------------------------------------------------------------------
# helpers shared by the checks
# ----------------------------------------------------------------------------------------------
def _as_float(value: Any, what: str, exercise: str) -> float:
    if hasattr(value, "detach"):                    # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise AssertionError(f"{exercise}: {what} should be one number, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise AssertionError(f"{exercise}: {what} should be a number (float), got {type(value).__name__}")
    return float(value)


def _call(function: Callable, exercise: str, what: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except Exception as err:           # report the student's error as a failed check, with context
        raise AssertionError(f"{exercise}: your function raised {type(err).__name__}: {err} ({what})") from err


def _random_patient_ids(rng: np.random.Generator) -> np.ndarray:
    """Case table column: 6-15 patients with 1-4 scans each, in shuffled order."""
    n_patients = int(rng.integers(6, 16))
    scans = rng.integers(1, 5, size=n_patients)
    ids = np.repeat([f"P{k:03d}" for k in range(n_patients)], scans)
    return ids[rng.permutation(ids.size)]


# ----------------------------------------------------------------------------------------------
# exercise 1: a patient-level train/test split
# ----------------------------------------------------------------------------------------------
def _index_array(value: Any, name: str, n_rows: int, exercise: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise AssertionError(f"{exercise}: {name} should be a 1D array of row indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise AssertionError(f"{exercise}: {name} should hold integer row indices, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_rows):
        raise AssertionError(f"{exercise}: {name} holds indices outside 0..{n_rows - 1} (row numbers of the "
                             f"case table, not patient numbers)")
    return arr.astype(np.int64)


@self_check("ex1")
def check_patient_split(split_patients: Callable, *, seed: int = 0) -> None:
    """Check ``split_patients(patient_ids, test_fraction, seed) -> (train_idx, test_idx)``.

    Properties checked: integer row indices; every row in exactly one part; no patient in both parts
    (:func:`medseg_edu.data.splits.check_no_leakage`); the test part holds ``test_fraction`` of the
    *patients* (rounded, at least one, never all); the same seed gives the same split, other seeds
    other splits.

    Shape: patient_ids (N,) -> two 1D integer arrays of row indices.
    Taught in week 5.
    """
    ex = "ex1"
    rng = np.random.default_rng(seed)
    varied = 0
    for trial in range(8):
        ids = _random_patient_ids(rng)
        fraction = float(rng.choice([0.2, 0.25, 0.3, 0.4, 0.5]))
        split_seed = int(rng.integers(0, 10_000))
        result = _call(split_patients, ex, "on a random case table", ids, fraction, split_seed)
        if not isinstance(result, tuple) or len(result) != 2:
            raise AssertionError(f"{ex}: return a tuple (train_idx, test_idx), got {type(result).__name__}")
        train = _index_array(result[0], "train_idx", ids.size, ex)
        test = _index_array(result[1], "test_idx", ids.size, ex)
        if np.intersect1d(train, test).size:
            raise AssertionError(f"{ex}: some rows are in both train_idx and test_idx")
        if train.size + test.size != ids.size or np.unique(np.concatenate([train, test])).size != ids.size:
            raise AssertionError(f"{ex}: every row (case) must be in exactly one of the two parts; some are "
                                 f"missing or repeated")
        try:
            check_no_leakage(ids, train, test)
        except ValueError as err:
            raise AssertionError(f"{ex}: leakage -- {err}. Shuffle and split the unique patient ids, then take "
                                 f"all rows of each patient (np.isin).") from None
        n_patients = np.unique(ids).size
        n_test = np.unique(ids[test]).size
        wanted = fraction * n_patients
        low, high = max(1, int(np.floor(wanted))), min(n_patients - 1, int(np.ceil(wanted)))
        if not low <= n_test <= high:
            raise AssertionError(f"{ex}: the test part should hold test_fraction of the PATIENTS (rounded, at "
                                 f"least 1, never all); got {n_test} of {n_patients} patients for "
                                 f"test_fraction={fraction} (did you count cases instead of patients?)")
        again = _call(split_patients, ex, "called a second time with the same seed", ids, fraction, split_seed)
        if not np.array_equal(np.sort(np.asarray(again[1])), np.sort(test)):    # exact: row indices
            raise AssertionError(f"{ex}: the same seed must give the same split (use "
                                 f"np.random.default_rng(seed), not the global random state)")
        if trial < 3:
            splits = {tuple(np.sort(test).tolist())}
            for other in range(3):
                alt = _call(split_patients, ex, "with another seed", ids, fraction, split_seed + 1 + other)
                splits.add(tuple(np.sort(np.asarray(alt[1])).tolist()))
            varied += len(splits) > 1
    if varied == 0:
        raise AssertionError(f"{ex}: different seeds always give the same split; the patients must be shuffled "
                             f"with the seed")
    print(f"{ex} looks right")


# ----------------------------------------------------------------------------------------------
# exercise 3: per-case z-score harmonisation inside a mask
# ----------------------------------------------------------------------------------------------
def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (C, *spatial) image with a zero background and a per-channel gain/offset, and its mask."""
    channels = int(rng.integers(1, 5))
    spatial = tuple(int(s) for s in rng.integers(6, 14, size=int(rng.integers(2, 4))))
    mask = np.zeros(spatial, dtype=bool)
    inner = tuple(slice(1, s - 1) for s in spatial)
    mask[inner] = rng.random(mask[inner].shape) < 0.8
    gains = rng.uniform(50, 2000, size=channels)
    offsets = rng.uniform(0, 500, size=channels)
    image = np.zeros((channels, *spatial), dtype=np.float32)
    for c in range(channels):
        image[c][mask] = gains[c] * rng.gamma(3.0, 1.0, size=int(mask.sum())) + offsets[c]
    return image, mask


@self_check("ex3")
def check_zscore_in_mask(zscore_in_mask: Callable, *, seed: int = 0) -> None:
    """Check ``zscore_in_mask(image, mask) -> array``: per channel mean 0 / std 1 inside, 0 outside.

    Compared with :func:`medseg_edu.intensity.zscore_normalise` (population std, ddof=0).

    Shape: image (C, *spatial), mask (*spatial) bool -> (C, *spatial) float.
    Taught in week 5.
    """
    ex = "ex3"
    rng = np.random.default_rng(seed)
    for _ in range(6):
        image, mask = _random_case(rng)
        original = image.copy()
        out = _call(zscore_in_mask, ex, "on a random image and mask", image, mask)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        out = np.asarray(out)
        if not np.array_equal(image, original):     # exact: the input must be untouched (vs its own copy)
            raise AssertionError(f"{ex}: do not change the input image in place; return a new array")
        if out.shape != image.shape:
            raise AssertionError(f"{ex}: the output must have the image's shape (C, *spatial) {image.shape}, "
                                 f"got {out.shape}")
        if not np.issubdtype(out.dtype, np.floating):
            raise AssertionError(f"{ex}: the output must be a float array, got dtype {out.dtype}")
        if np.any(out[:, ~mask] != 0):
            raise AssertionError(f"{ex}: voxels outside the mask must be set to 0")
        want = zscore_normalise(image, mask=mask)
        for c in range(image.shape[0]):
            inside = out[c][mask].astype(np.float64)
            if abs(inside.mean()) > 1e-3:
                raise AssertionError(f"{ex}: channel {c} does not have mean 0 inside the mask; take the mean "
                                     f"over the mask voxels only, one channel at a time")
            if abs(inside.std() - 1.0) > 1e-3:
                n = inside.size
                if abs(inside.std() - np.sqrt((n - 1) / n)) < 1e-4:
                    raise AssertionError(f"{ex}: channel {c} has std != 1 inside the mask: use the population "
                                         f"standard deviation (numpy's default, ddof=0)")
                raise AssertionError(f"{ex}: channel {c} does not have standard deviation 1 inside the mask; "
                                     f"divide by the std of the mask voxels of that channel")
        if not np.allclose(out, want, atol=1e-4):
            raise AssertionError(f"{ex}: mean 0 and std 1 inside the mask, but the values differ from a z-score: "
                                 f"(x - mean) / std, keeping the order of intensities")
    print(f"{ex} looks right")


# ----------------------------------------------------------------------------------------------
# exercise 2: the performance drop with a bootstrap interval
# ----------------------------------------------------------------------------------------------
def _random_dice(rng: np.random.Generator, size: int, centre: float) -> np.ndarray:
    return np.clip(rng.normal(centre, rng.uniform(0.05, 0.15), size=size), 0.0, 1.0)


def _clustered_dice(rng: np.random.Generator, n_patients: int, centre: float, *,
                    skewed: bool) -> tuple[np.ndarray, np.ndarray]:
    """2-3 scans per patient that agree closely (the patient, not the scan, varies); ``skewed``: a few
    patients fail badly, as segmentation models do, so the bootstrap distribution is far from normal."""
    per_patient = np.clip(rng.normal(centre, 0.04, size=n_patients), 0.0, 1.0)
    if skewed:                                             # one patient fails: a long tail of low resample means
        per_patient[rng.integers(n_patients)] = rng.uniform(0.0, 0.1)
    scans = rng.integers(2, 4, size=n_patients)
    patients = np.repeat(np.arange(100, 100 + n_patients), scans)
    dice = np.clip(np.repeat(per_patient, scans) + rng.normal(0.0, 0.01, size=patients.size), 0.0, 1.0)
    order = rng.permutation(patients.size)                 # scans of one patient need not be adjacent
    return dice[order], patients[order]


@self_check("ex2")
def check_drop_ci(drop_with_ci: Callable, *, seed: int = 0) -> None:
    """Check ``drop_with_ci(dice_int, patients_int, dice_ext, patients_ext, n_resamples, seed) -> (drop, low, high)``.

    The drop must be ``mean(internal) - mean(external)`` over the scans exactly; the interval must
    contain it, be reproducible with the seed, and agree within Monte-Carlo error with an independent
    percentile bootstrap that resamples the **patients** of each test set on its own. The random
    data have several scans per patient that agree closely, so resampling scans gives too narrow an
    interval, and some of them have a few failed patients (a skewed distribution), where a normal
    approximation (mean +- 1.96 standard errors) puts both ends in the wrong place.

    Shape: (n1,), (n1,), (n2,), (n2,) arrays -> three floats.
    Taught in week 5.
    """
    ex = "ex2"
    rng = np.random.default_rng(seed)
    for trial in range(4):
        skewed = trial % 2 == 1
        n_int, n_ext = int(rng.integers(8, 12 if skewed else 16)), int(rng.integers(8, 16))
        internal, patients_int = _clustered_dice(rng, n_int, rng.uniform(0.8, 0.9), skewed=skewed)
        external, patients_ext = _clustered_dice(rng, n_ext, rng.uniform(0.5, 0.7), skewed=False)
        boot_seed = int(rng.integers(0, 10_000))
        result = _call(drop_with_ci, ex, f"with {n_int} internal and {n_ext} external patients (2-3 scans each)",
                       internal, patients_int, external, patients_ext, 4000, boot_seed)
        if not isinstance(result, tuple) or len(result) != 3:
            raise AssertionError(f"{ex}: return a tuple (drop, low, high), got {type(result).__name__}")
        drop, low, high = (_as_float(v, name, ex) for v, name in zip(result, ("drop", "low", "high")))
        want, want_low, want_high = reference_drop_ci(internal, external, patients_internal=patients_int,
                                                      patients_external=patients_ext, n_resamples=20_000,
                                                      seed=boot_seed)
        if abs(drop + want) < 1e-9 and abs(want) > 1e-6:
            raise AssertionError(f"{ex}: the sign of the drop is flipped: drop = mean(internal) - mean(external), "
                                 f"positive when the external site does worse")
        if abs(drop - want) > 1e-9:
            raise AssertionError(f"{ex}: drop should be the difference of the two MEANS over the scans "
                                 f"(internal - external), computed on the original values, not on a resample")
        if not low <= drop <= high:
            raise AssertionError(f"{ex}: the interval (low, high) must contain the drop (low <= drop <= high)")
        again = _call(drop_with_ci, ex, "called a second time with the same seed", internal, patients_int,
                      external, patients_ext, 4000, boot_seed)
        if tuple(float(v) for v in again) != (drop, low, high):
            raise AssertionError(f"{ex}: the same seed must give the same interval (use "
                                 f"np.random.default_rng(seed))")
        # Tolerances: with 4000 resamples a 2.5th or 97.5th percentile moves by about 3 % of the interval's
        # width between seeds; resampling scans instead of patients narrows it by 30-40 %, and a normal
        # approximation on the skewed trials moves one end by more than 15 % of the width.
        width = want_high - want_low
        if (high - low) < 0.8 * width:
            raise AssertionError(f"{ex}: the interval is too narrow: scans of one patient are not independent, "
                                 f"and both test sets are samples: resample PATIENTS (all scans of a drawn patient), "
                                 f"in each group on its own")
        if (high - low) > 1.25 * width:
            raise AssertionError(f"{ex}: the interval is too wide: resample each group with its own number of "
                                 f"patients and take the 2.5th and 97.5th percentiles of the bootstrap drops")
        if abs(low - want_low) > 0.12 * width or abs(high - want_high) > 0.12 * width:
            hint = (" (the bootstrap drops are skewed here: a normal approximation, drop +- 1.96 SE, puts the "
                    "ends in the wrong place)") if skewed else ""
            raise AssertionError(f"{ex}: the interval is off-centre: take the 2.5th and 97.5th percentiles "
                                 f"(np.percentile) of the bootstrap drops themselves{hint}")
    print(f"{ex} looks right")


# ----------------------------------------------------------------------------------------------
# exercise 4: net benefit from counts
# ----------------------------------------------------------------------------------------------
@self_check("ex4")
def check_net_benefit_from_counts(net_benefit_from_counts: Callable, *, seed: int = 0) -> None:
    """Check ``net_benefit_from_counts(tp, fp, n, pt) -> float`` against the package's net_benefit.

    Shape: four numbers -> one float.
    Taught in week 5.
    """
    ex = "ex4"
    rng = np.random.default_rng(seed)
    value = _as_float(_call(net_benefit_from_counts, ex, "with tp=0, fp=0", 0, 0, 10, 0.3), "net benefit", ex)
    if abs(value) > 1e-12:
        raise AssertionError(f"{ex}: with no referrals at all (tp = fp = 0) the net benefit must be 0")
    for _ in range(20):
        n = int(rng.integers(5, 200))
        decision = rng.random(n) < rng.uniform(0.1, 0.9)
        outcome = rng.random(n) < rng.uniform(0.1, 0.9)
        tp, fp = int(np.sum(decision & outcome)), int(np.sum(decision & ~outcome))
        pt = float(rng.uniform(0.05, 0.95))
        got = _as_float(_call(net_benefit_from_counts, ex, f"with tp={tp}, fp={fp}, n={n}", tp, fp, n, pt),
                        "net benefit", ex)
        want = net_benefit(decision, outcome, threshold_probability=pt)
        if abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            continue
        if fp > 0 and abs(got - (tp / n - fp / n * pt)) < 1e-9:
            raise AssertionError(f"{ex}: weight the false positives by the ODDS at the threshold, pt / (1 - pt), "
                                 f"not by pt")
        if fp == 0 and abs(got - want) > 1e-9:
            raise AssertionError(f"{ex}: with no false positives the net benefit is the share of true positives "
                                 f"among ALL n cases")
        raise AssertionError(f"{ex}: wrong value; NB = TP/n - FP/n * pt/(1 - pt), both terms divided by the "
                             f"number of ALL cases n")
    print(f"{ex} looks right")
