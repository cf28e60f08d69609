"""Tests for medseg_edu.bootstrap: scipy's bootstrap and hand-drawn resamples as references, bad input."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medseg_edu.bootstrap import bootstrap_ci, subgroup_gap, subgroup_table


# ---------------------------------------------------------------- bootstrap (week 6)

@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_bootstrap_matches_scipy(statistic):
    values = np.random.default_rng(5).beta(5, 2, size=60)
    est, low, high = bootstrap_ci(values, statistic=statistic, n_resamples=1500, confidence=0.9,
                                  seed=7)
    ref = stats.bootstrap((values,), statistic, n_resamples=1500, confidence_level=0.9,
                          method="percentile", rng=np.random.default_rng(7))
    assert est == pytest.approx(statistic(values))
    assert low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert high == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def test_bootstrap_non_vectorised_statistic_and_hand_case():
    values = np.array([1.0, 2.0, 3.0])
    rng = np.random.default_rng(0)
    draws = values[rng.integers(0, 3, size=(50, 3))].mean(axis=1)
    est, low, high = bootstrap_ci(values, statistic=lambda v: float(np.mean(v)), n_resamples=50)
    assert est == 2.0
    assert (low, high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))


def test_bootstrap_by_group_resamples_whole_groups():
    # every patient's images are identical: resampling patients = resampling 3 values
    values = np.array([0.5, 0.5, 0.5, 0.7, 0.7, 0.9])
    groups = ["a", "a", "a", "b", "b", "c"]
    est, low, high = bootstrap_ci(values, groups=groups, n_resamples=400, seed=1)
    rng = np.random.default_rng(1)
    members = [np.array([0.5] * 3), np.array([0.7] * 2), np.array([0.9])]
    draws = [np.concatenate([members[g] for g in row]).mean()
             for row in rng.integers(0, 3, size=(400, 3))]
    assert est == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))


# ---------------------------------------------------------------- subgroups (week 6)

def _skin_table(seed=0):
    rng = np.random.default_rng(seed)
    skin = np.repeat([1, 2, 5, 6], [40, 40, 15, 10])
    dice = np.clip(rng.normal(np.where(skin >= 5, 0.65, 0.85), 0.08), 0, 1)
    return pd.DataFrame({"fitzpatrick": skin, "dice": dice})


def test_subgroup_table_values():
    df = _skin_table()
    table = subgroup_table(df, n_resamples=3000, seed=3)
    assert list(table.columns) == ["fitzpatrick", "n", "mean", "ci_low", "ci_high"]
    assert table["fitzpatrick"].tolist() == [1, 2, 5, 6]
    assert table["n"].tolist() == [40, 40, 15, 10]
    assert np.allclose(table["mean"], df.groupby("fitzpatrick")["dice"].mean())
    for row in table.itertuples():
        values = df.loc[df["fitzpatrick"] == row.fitzpatrick, "dice"].to_numpy()
        ref = stats.bootstrap((values,), np.mean, n_resamples=3000, method="percentile",
                              rng=np.random.default_rng(0)).confidence_interval
        width = ref.high - ref.low
        assert abs(row.ci_low - ref.low) < 0.15 * width       # Monte Carlo tolerance
        assert abs(row.ci_high - ref.high) < 0.15 * width


def test_subgroup_table_keeps_missing_label():
    df = _skin_table()
    df.loc[:4, "fitzpatrick"] = np.nan
    table = subgroup_table(df, n_resamples=200)
    assert table["fitzpatrick"].isna().sum() == 1
    assert table["n"].sum() == len(df)


def test_subgroup_gap():
    table = subgroup_table(_skin_table(), n_resamples=2000, seed=4)
    gap = subgroup_gap(table)
    means = dict(zip(table["fitzpatrick"], table["mean"]))
    assert gap["best"] == max(means, key=means.get)
    assert gap["worst"] == min(means, key=means.get)
    assert gap["gap"] == pytest.approx(max(means.values()) - min(means.values()))
    assert gap["ci_low"] < gap["gap"] < gap["ci_high"]
    assert gap["ci_excludes_zero"]                 # a true gap of 0.2 with these sizes
    lower = subgroup_gap(table, higher_is_better=False)
    assert lower["best"] == gap["worst"] and lower["gap"] == pytest.approx(gap["gap"])


def test_subgroup_gap_no_real_difference():
    rng = np.random.default_rng(6)
    df = pd.DataFrame({"site": np.repeat(["A", "B"], 12), "dice": rng.normal(0.8, 0.1, 24)})
    gap = subgroup_gap(subgroup_table(df, by="site", n_resamples=2000))
    assert gap["ci_low"] < 0 < gap["ci_high"] and not gap["ci_excludes_zero"]



# ---------------------------------------------------------------- bad input

def test_bad_bootstrap_and_subgroup_input():
    with pytest.raises(ValueError, match="values contains 1 NaN"):
        bootstrap_ci([0.5, np.nan, 0.7])
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        bootstrap_ci([0.5, 0.6, 0.7], groups=["a", "b"])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        bootstrap_ci([0.5, 0.6], confidence=95)
    with pytest.raises(ValueError, match="no column 'skin'"):
        subgroup_table(_skin_table(), by="skin")
    with pytest.raises(ValueError, match="pass the DataFrame returned by subgroup_table"):
        subgroup_gap(pd.DataFrame({"fitzpatrick": [1, 2], "mean": [0.8, 0.7]}))


def test_subgroup_table_resamples_patients():
    # 10 patients per skin type, 5 identical images each: per-image CIs are too narrow (~ sqrt 5)
    rng = np.random.default_rng(8)
    patient_dice = rng.normal(0.8, 0.1, size=20)
    df = pd.DataFrame({"fitzpatrick": np.repeat([2, 5], 50),
                       "patient_id": np.repeat(np.arange(20), 5),
                       "dice": np.repeat(patient_dice, 5)})
    naive = subgroup_table(df, n_resamples=2000)
    by_patient = subgroup_table(df, n_resamples=2000, groups="patient_id")
    assert by_patient["n"].tolist() == [50, 50]
    ratio = (by_patient["ci_high"] - by_patient["ci_low"]) / (naive["ci_high"] - naive["ci_low"])
    assert (ratio > 1.7).all() and (ratio < 3.0).all()


def test_groups_may_be_a_pandas_series_of_strings():
    # patient ids come from a DataFrame column (week 5): a Series of strings is accepted as groups
    values = [0.5, 0.5, 0.7, 0.9]
    as_list = bootstrap_ci(values, groups=["p1", "p1", "p2", "p3"], n_resamples=200, seed=2)
    as_series = bootstrap_ci(values, groups=pd.Series(["p1", "p1", "p2", "p3"]), n_resamples=200, seed=2)
    assert as_series == pytest.approx(as_list, abs=1e-12)     # same draws: only the container differs
