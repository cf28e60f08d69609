"""Patient-level data splits: train/val/test, k-fold cross-validation and site (external) splits.

Several scans of one patient are far more alike than scans of two patients. If one patient's scans
end up in both training and test data, the test score measures memory, not generalisation
("leakage"). Every split here is therefore made over *patients*, and returns row indices of the
case table, so all cases of one patient always land in the same part.

Taught in week 2 (splits and leakage) and week 5 (external validation across sites).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

__all__ = ["patient_split", "patient_kfold", "check_no_leakage", "site_split"]

PART_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}


def _as_ids(values: Any, name: str) -> np.ndarray:
    ids = np.asarray(values, dtype=object)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D sequence (one entry per case), got shape {ids.shape}")
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in ids):
        raise ValueError(f"{name} must not contain missing values (None/NaN)")
    return ids.astype(str)


def _patient_counts(n_patients: int, fractions: Sequence[float]) -> list[int]:
    """Number of patients per part: floor of n * fraction, the rest given by largest remainder."""
    exact = [n_patients * f for f in fractions]
    counts = [int(np.floor(e)) for e in exact]
    order = np.argsort([-(e - c) for e, c in zip(exact, counts)], kind="stable")
    for i in order[: n_patients - sum(counts)]:
        counts[i] += 1
    # every part gets at least one patient: take from the largest part
    for i in range(len(counts)):
        if counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return counts


def patient_split(patient_ids: Sequence[Any], *, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                  seed: int) -> dict[str, np.ndarray]:
    """Split cases into train/val/test (or train/test) so that no patient is in two parts.

    Patients (not cases) are shuffled with ``seed`` and dealt out according to ``fractions``; the
    number of patients per part is ``fraction * n_patients`` rounded so the counts add up, and
    every part gets at least one patient. Fractions therefore hold at the patient level; the case
    counts follow from how many cases each patient has.

    Shape: patient_ids (N,) one entry per case; each returned array holds sorted row indices
    into that sequence.

    Example:
        >>> parts = patient_split(["p1", "p1", "p2", "p3", "p4"], fractions=(0.5, 0.5), seed=0)
        >>> sorted(parts)
        ['test', 'train']

    Taught in week 2.
    """
    ids = _as_ids(patient_ids, "patient_ids")
    fractions = [float(f) for f in fractions]
    if len(fractions) not in PART_NAMES:
        raise ValueError(f"fractions must have 2 (train, test) or 3 (train, val, test) entries, got {len(fractions)}")
    if any(not np.isfinite(f) or f <= 0 for f in fractions):
        raise ValueError(f"fractions must all be positive, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions} (sum {sum(fractions):.6g})")
    patients = np.unique(ids)
    if len(patients) < len(fractions):
        raise ValueError(f"need at least one patient per part: {len(fractions)} parts, got only "
                         f"{len(patients)} distinct patients in patient_ids")
    shuffled = np.random.default_rng(seed).permutation(patients)
    counts = _patient_counts(len(patients), fractions)
    bounds = np.cumsum([0] + counts)
    parts = {}
    for name, start, stop in zip(PART_NAMES[len(fractions)], bounds[:-1], bounds[1:]):
        parts[name] = np.flatnonzero(np.isin(ids, shuffled[start:stop]))
    return parts


def patient_kfold(patient_ids: Sequence[Any], *, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold cross-validation over patients (scikit-learn ``GroupKFold`` with patients as groups).

    Each patient is in the held-out part of exactly one fold. GroupKFold balances the number of
    cases per fold; it is deterministic (no seed).

    Shape: patient_ids (N,); returns ``n_splits`` pairs (train_indices, test_indices) of row indices.

    Taught in week 5.
    """
    ids = _as_ids(patient_ids, "patient_ids")
    if not isinstance(n_splits, (int, np.integer)) or isinstance(n_splits, bool) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    n_patients = len(np.unique(ids))
    if n_patients < n_splits:
        raise ValueError(f"n_splits={n_splits} folds need at least {n_splits} distinct patients, "
                         f"got {n_patients} in patient_ids")
    folds = GroupKFold(n_splits=n_splits).split(np.zeros(len(ids)), groups=ids)
    return [(np.sort(train), np.sort(test)) for train, test in folds]


def check_no_leakage(patient_ids: Sequence[Any], *index_arrays: Sequence[int]) -> None:
    """Raise ValueError if any patient has cases in two of the given parts (or a row is in two parts).

    Shape: patient_ids (N,); each index array holds row indices into it.

    Example:
        >>> check_no_leakage(["p1", "p1", "p2"], [0, 1], [2])   # fine, returns None
        >>> check_no_leakage(["p1", "p1", "p2"], [0], [1, 2])
        Traceback (most recent call last):
        ...
        ValueError: patient leakage: patient 'p1' is in part 0 and part 1

    Taught in week 2.
    """
    ids = _as_ids(patient_ids, "patient_ids")
    if len(index_arrays) < 2:
        raise ValueError(f"check_no_leakage needs at least 2 index arrays to compare, got {len(index_arrays)}")
    owner: dict[str, int] = {}
    for part, indices in enumerate(index_arrays):
        indices = np.asarray(indices)
        if indices.size and (not np.issubdtype(indices.dtype, np.integer)
                             or indices.min() < 0 or indices.max() >= len(ids)):
            raise ValueError(f"index array {part} must hold integer row indices in 0..{len(ids) - 1}, "
                             f"got {indices[:10].tolist()}")
        for patient in np.unique(ids[indices.astype(int)]).tolist():
            if patient in owner and owner[patient] != part:
                raise ValueError(f"patient leakage: patient {patient!r} is in part {owner[patient]} and part {part}")
            owner[patient] = part


def site_split(sites: Sequence[Any], *, train_sites: Sequence[str],
               test_sites: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """Split cases by acquisition site, for external validation (train on some sites, test on others).

    ``test_sites`` defaults to every site not in ``train_sites``. A site may not be in both.

    Shape: sites (N,) one entry per case; returns {"train": indices, "test": indices}.
    """
    site_array = _as_ids(sites, "sites")
    known = set(site_array.tolist())
    train = {str(s) for s in ([train_sites] if isinstance(train_sites, str) else train_sites)}
    if not train:
        raise ValueError("train_sites must name at least one site, got none")
    if test_sites is None:
        test = known - train
    else:
        test = {str(s) for s in ([test_sites] if isinstance(test_sites, str) else test_sites)}
    unknown = sorted((train | test) - known)
    if unknown:
        raise ValueError(f"train_sites/test_sites name sites not in sites: {unknown}; known sites {sorted(known)}")
    if train & test:
        raise ValueError(f"a site cannot be in train_sites and test_sites, got {sorted(train & test)} in both")
    if not test:
        raise ValueError(f"no site left for testing: train_sites covers all sites {sorted(known)}")
    return {"train": np.flatnonzero(np.isin(site_array, list(train))),
            "test": np.flatnonzero(np.isin(site_array, list(test)))}
