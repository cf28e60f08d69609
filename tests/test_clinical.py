"""Tests for medseg_edu.clinical: hand-worked cases, sklearn and scipy as references, bad input."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from medseg_edu.clinical import (
    average_precision_score, bootstrap_ci, decision_curve, find_optimal_threshold, net_benefit,
    pr_curve_points, roc_auc_score, roc_curve_points, subgroup_gap, subgroup_table,
    threshold_for_sensitivity,
)


def _random_map(seed, n=5000, ties=False):
    rng = np.random.default_rng(seed)
    target = rng.random(n) < 0.2
    probs = np.clip(rng.normal(0.35 + 0.3 * target, 0.2), 0, 1)
    if ties:
        probs = np.round(probs, 2)
    return probs, target.astype(np.uint8)


# ---------------------------------------------------------------- ROC / PR (week 4)

def test_roc_hand_case():
    probs = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    target = np.array([0, 0, 1, 1, 1])
    curve = roc_curve_points(probs, target)
    assert curve["threshold"].tolist() == [np.inf, 0.8, 0.4, 0.35, 0.1]
    assert curve["tp"].tolist() == [0, 1, 2, 3, 3]
    assert curve["fp"].tolist() == [0, 0, 1, 1, 2]
    assert curve["tn"].tolist() == [2, 2, 1, 1, 0]
    assert curve["fn"].tolist() == [3, 2, 1, 0, 0]
    assert np.allclose(curve["sensitivity"], [0, 1 / 3, 2 / 3, 1, 1])
    assert np.allclose(curve["specificity"], [1, 1, 0.5, 0.5, 0])
    assert np.allclose(curve["precision"], [1, 1, 2 / 3, 3 / 4, 3 / 5])
    assert np.allclose(curve["dice"], [0, 2 / 4, 4 / 6, 6 / 7, 6 / 8])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roc_matches_sklearn(ties, dtype):
    probs, target = _random_map(0, ties=ties)
    probs = probs.astype(dtype)
    probs[:3] = [0.0, -0.0, 1.0]
    curve = roc_curve_points(probs, target)
    fpr, tpr, thr = skm.roc_curve(target, probs, drop_intermediate=False)
    assert np.allclose(curve["false_positive_rate"], fpr)
    assert np.allclose(curve["sensitivity"], tpr)
    assert np.allclose(curve["threshold"].to_numpy()[1:], thr[1:])
    assert math.isclose(roc_auc_score(probs, target), skm.roc_auc_score(target, probs), abs_tol=1e-12)
    assert math.isclose(average_precision_score(probs, target),
                        skm.average_precision_score(target, probs), abs_tol=1e-12)


def test_given_thresholds_match_brute_force():
    probs, target = _random_map(1, ties=True)
    thresholds = [0.0, 0.25, 0.5, 0.3, 0.99, 1.0]
    curve = roc_curve_points(probs, target, thresholds=thresholds)
    assert curve["threshold"].tolist() == sorted(thresholds, reverse=True)
    for row in curve.itertuples():
        mask = probs >= row.threshold
        assert row.tp == np.sum(mask & (target == 1))
        assert row.fp == np.sum(mask & (target == 0))
        assert math.isclose(row.specificity, skm.recall_score(target, mask, pos_label=0))
        if mask.any():
            assert math.isclose(row.precision, skm.precision_score(target, mask))
    pr = pr_curve_points(probs, target, thresholds=thresholds)
    assert list(pr.columns) == ["threshold", "recall", "precision"]
    assert np.allclose(pr["recall"], curve["sensitivity"])


def test_large_volume_is_fast():
    import time
    rng = np.random.default_rng(2)
    probs = rng.random(10_000_000).astype(np.float32)
    target = probs > 0.7
    start = time.perf_counter()
    curve = roc_curve_points(probs, target, thresholds=np.linspace(0, 1, 101))
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0                              # about 0.3 s on one core
    assert len(curve) == 101
    row = curve.iloc[int(np.argmin(np.abs(curve["threshold"] - 0.71)))]
    assert row["specificity"] == 1.0
    assert row["sensitivity"] == pytest.approx(np.mean(probs[target] >= row["threshold"]))


# ---------------------------------------------------------------- thresholds (week 4)

def test_threshold_for_sensitivity_hand_case():
    probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.55]
    target = [1, 1, 1, 0, 0, 1]
    # positives sorted: 0.9, 0.8, 0.55, 0.3 -> need 3 of 4 for 0.75, 4 of 4 for 0.95
    assert threshold_for_sensitivity(probs, target, target_sensitivity=0.75) == 0.55
    assert threshold_for_sensitivity(probs, target, target_sensitivity=0.95) == 0.3
    assert threshold_for_sensitivity(probs, target, target_sensitivity=0.5) == 0.8
    assert threshold_for_sensitivity(np.full(10, 0.5) + np.arange(10) / 100, np.ones(10),
                                     target_sensitivity=0.7) == pytest.approx(0.53)


def test_threshold_for_sensitivity_is_largest_brute_force():
    probs, target = _random_map(3, n=800, ties=True)
    for s in (0.5, 0.8, 0.95, 1.0):
        t = threshold_for_sensitivity(probs, target, target_sensitivity=s)
        sens = lambda thr: np.mean(probs[target == 1] >= thr)
        assert sens(t) >= s
        larger = np.unique(probs[probs > t])
        assert larger.size == 0 or sens(larger.min()) < s


def test_find_optimal_threshold_brute_force():
    probs, target = _random_map(4, n=600, ties=True)
    candidates = np.unique(probs)[::-1]
    y = target == 1
    youden = [np.mean(probs[y] >= c) + np.mean(probs[~y] < c) - 1 for c in candidates]
    f1 = [skm.f1_score(y, probs >= c) for c in candidates]
    assert find_optimal_threshold(probs, target) == candidates[int(np.argmax(youden))]
    assert find_optimal_threshold(probs, target, criterion="dice") == candidates[int(np.argmax(f1))]
    assert find_optimal_threshold(probs, target, criterion="f1") == candidates[int(np.argmax(f1))]


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


# ---------------------------------------------------------------- decision curves (week 5)

def test_net_benefit_hand_case():
    # 10 patients, 3 with disease; the rule refers 4: 2 true positives, 2 false positives
    decision = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    outcome = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    assert net_benefit(decision, outcome, threshold_probability=0.2) == pytest.approx(
        2 / 10 - 2 / 10 * 0.25)
    assert net_benefit(decision, outcome, threshold_probability=0.5) == pytest.approx(0.0)


def test_decision_curve_hand_case():
    scores = np.array([0.9, 0.7, 0.4, 0.3, 0.2, 0.1])
    outcome = np.array([1, 0, 1, 0, 0, 0])
    curve = decision_curve(scores, outcome, thresholds=[0.25, 0.5])
    # pt = 0.25: treat scores >= 0.25 -> 4 cases, TP 2, FP 2 -> 2/6 - 2/6 * 1/3
    # pt = 0.5: treat 2 cases, TP 1, FP 1 -> 1/6 - 1/6 * 1
    assert np.allclose(curve["net_benefit_model"], [2 / 6 - 2 / 6 / 3, 0.0])
    assert np.allclose(curve["net_benefit_treat_all"], [2 / 6 - 4 / 6 / 3, 2 / 6 - 4 / 6])
    assert np.allclose(curve["net_benefit_treat_none"], 0.0)
    default = decision_curve(scores, outcome)
    assert len(default) == 99 and default["threshold"].iloc[0] == 0.01
    fixed = decision_curve((scores > 0.5).astype(float), outcome, thresholds=[0.1, 0.9])
    assert fixed["net_benefit_model"].iloc[0] == pytest.approx(1 / 6 - 1 / 6 / 9)


# ---------------------------------------------------------------- bad input

def test_bad_probabilities_and_targets():
    with pytest.raises(ValueError, match="probs contains 1 NaN"):
        roc_curve_points([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*logits"):
        threshold_for_sensitivity([-2.0, 3.0], [0, 1])
    with pytest.raises(ValueError, match=r"target must be binary \{0, 1\}.*\[2\]"):
        roc_curve_points([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(2,\)"):
        pr_curve_points([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="no positive voxels"):
        roc_curve_points([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="criterion must be one of"):
        find_optimal_threshold([0.1, 0.2], [0, 1], criterion="accuracy")
    with pytest.raises(ValueError, match=r"target_sensitivity must be in \(0, 1\]"):
        threshold_for_sensitivity([0.1, 0.2], [0, 1], target_sensitivity=95)


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


def test_bad_decision_curve_input():
    with pytest.raises(ValueError, match=r"threshold_probability must be in \(0, 1\)"):
        net_benefit([1, 0], [1, 0], threshold_probability=1.0)
    with pytest.raises(ValueError, match="decision must be binary"):
        net_benefit([0.3, 0.0], [1, 0], threshold_probability=0.2)
    with pytest.raises(ValueError, match=r"same shape"):
        decision_curve([0.3, 0.1], [1, 0, 1])
    with pytest.raises(ValueError, match=r"each threshold must be in \(0, 1\)"):
        decision_curve([0.3, 0.1], [1, 0], thresholds=[0.0, 0.5])


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
