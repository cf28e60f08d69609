"""Tests for medseg_edu.data.splits: no patient in two parts, fractions per patient, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from medseg_edu.data.splits import check_no_leakage, patient_kfold, patient_split, site_split


def _ids_with_repeats(n_patients: int, seed: int = 0) -> np.ndarray:
    """Each patient has 1 to 4 cases, rows shuffled."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"pat{i:03d}" for i in range(n_patients)], rng.integers(1, 5, size=n_patients))
    return rng.permutation(ids)


def _patients(ids, indices):
    return set(np.asarray(ids)[indices].tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patient_split_no_patient_in_two_parts_and_all_rows_used(seed):
    ids = _ids_with_repeats(40, seed)
    parts = patient_split(ids, fractions=(0.6, 0.2, 0.2), seed=seed)
    assert list(parts) == ["train", "val", "test"]
    train, val, test = (_patients(ids, parts[k]) for k in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(ids)))
    # fractions hold at the patient level: 40 patients -> 24 / 8 / 8
    assert (len(train), len(val), len(test)) == (24, 8, 8)
    check_no_leakage(ids, parts["train"], parts["val"], parts["test"])


def test_patient_split_rounding_by_hand():
    # 7 patients * (0.6, 0.2, 0.2) = 4.2, 1.4, 1.4 -> floors 4, 1, 1; the one left goes to the first
    # largest remainder (val) -> 4, 2, 1
    ids = [f"p{i}" for i in range(7)]
    parts = patient_split(ids, fractions=(0.6, 0.2, 0.2), seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [4, 2, 1]
    # 3 patients, (0.8, 0.1, 0.1): 2.4, 0.3, 0.3 -> 2, 1, 0 -> every part needs one -> 1, 1, 1
    parts = patient_split(["a", "b", "c"], fractions=(0.8, 0.1, 0.1), seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [1, 1, 1]


def test_patient_split_two_parts_and_determinism():
    ids = _ids_with_repeats(30)
    a = patient_split(ids, fractions=(0.7, 0.3), seed=5)
    b = patient_split(ids, fractions=(0.7, 0.3), seed=5)
    c = patient_split(ids, fractions=(0.7, 0.3), seed=6)
    assert list(a) == ["train", "test"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["test"], c["test"])
    assert len(_patients(ids, a["train"])) == 21


def test_patient_split_errors():
    ids = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match=r"fractions must sum to 1.*sum 0\.9"):
        patient_split(ids, fractions=(0.6, 0.2, 0.1), seed=0)
    with pytest.raises(ValueError, match="fractions must have 2.*or 3.*got 1"):
        patient_split(ids, fractions=(1.0,), seed=0)
    with pytest.raises(ValueError, match="fractions must all be positive"):
        patient_split(ids, fractions=(1.0, 0.0), seed=0)
    with pytest.raises(ValueError, match=r"3 parts, got only 2 distinct patients"):
        patient_split(["a", "a", "b"], fractions=(0.6, 0.2, 0.2), seed=0)
    with pytest.raises(ValueError, match="patient_ids must be a non-empty 1D"):
        patient_split([], seed=0)
    with pytest.raises(ValueError, match="missing values"):
        patient_split(["a", None, "b", "c"], seed=0)


def test_patient_kfold_each_patient_held_out_once():
    ids = _ids_with_repeats(23, seed=3)
    folds = patient_kfold(ids, n_splits=5)
    assert len(folds) == 5
    held_out = []
    for train, test in folds:
        assert not (_patients(ids, train) & _patients(ids, test))
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(ids)))
        held_out.extend(_patients(ids, test))
    assert sorted(held_out) == sorted(set(ids.tolist()))  # every patient exactly once
    check_no_leakage(ids, *[test for _, test in folds])


def test_patient_kfold_errors():
    with pytest.raises(ValueError, match=r"n_splits=4 folds need at least 4 distinct patients, got 3"):
        patient_kfold(["a", "a", "b", "c"], n_splits=4)
    with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
        patient_kfold(["a", "b"], n_splits=1)


def test_check_no_leakage_detects_shared_patient():
    ids = ["p1", "p1", "p2", "p3"]
    check_no_leakage(ids, [0, 1], [2], [3])
    with pytest.raises(ValueError, match=r"patient 'p1' is in part 0 and part 2"):
        check_no_leakage(ids, [0, 2], [3], [1])
    with pytest.raises(ValueError, match=r"patient 'p2' is in part 0 and part 1"):
        check_no_leakage(ids, [2], [2])  # the same row in two parts
    with pytest.raises(ValueError, match=r"index array 1 must hold integer row indices in 0\.\.3"):
        check_no_leakage(ids, [0], [7])
    with pytest.raises(ValueError, match="at least 2 index arrays"):
        check_no_leakage(ids, [0])


def test_site_split():
    sites = ["A", "B", "A", "C", "B"]
    parts = site_split(sites, train_sites=["A", "B"])
    assert parts["train"].tolist() == [0, 1, 2, 4] and parts["test"].tolist() == [3]
    parts = site_split(sites, train_sites="A", test_sites=["C"])
    assert parts["train"].tolist() == [0, 2] and parts["test"].tolist() == [3]
    with pytest.raises(ValueError, match=r"not in sites: \['D'\]"):
        site_split(sites, train_sites=["D"])
    with pytest.raises(ValueError, match=r"both"):
        site_split(sites, train_sites=["A"], test_sites=["A"])
    with pytest.raises(ValueError, match="no site left"):
        site_split(sites, train_sites=["A", "B", "C"])
