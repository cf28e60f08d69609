"""Tests for medseg_edu.clinical: hand-worked cases, sklearn as the reference, bad input."""
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from medseg_edu.clinical import (
    average_precision_score, decision_curve, find_optimal_threshold, net_benefit, pr_curve_points,
    roc_auc_score, roc_curve_points, threshold_for_sensitivity,
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


def test_large_volume_with_given_thresholds_matches_counting():
    # 10^7 voxels (the size of a brain volume): the binary-search counts equal direct counting
    rng = np.random.default_rng(2)
    probs = rng.random(10_000_000).astype(np.float32)
    target = probs > 0.7
    curve = roc_curve_points(probs, target, thresholds=np.linspace(0, 1, 101))
    assert len(curve) == 101
    row = curve.iloc[int(np.argmin(np.abs(curve["threshold"] - 0.71)))]
    assert int(row["fp"]) == 0                        # every voxel >= 0.71 is a target voxel
    assert int(row["tp"]) == int(np.count_nonzero(probs[target] >= row["threshold"]))


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
    assert len(default) == 99 and default["threshold"].iloc[0] == pytest.approx(0.01)
    fixed = decision_curve((scores > 0.5).astype(float), outcome, thresholds=[0.1, 0.9])
    assert fixed["net_benefit_model"].iloc[0] == pytest.approx(1 / 6 - 1 / 6 / 9)


# ---------------------------------------------------------------- bad input

def test_bad_probabilities_and_targets():
    with pytest.raises(ValueError, match="probs contains 1 NaN"):
        roc_curve_points([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*logits"):
        threshold_for_sensitivity([-2.0, 3.0], [0, 1])
    with pytest.raises(ValueError, match=r"target must be a binary mask.*2\]"):
        roc_curve_points([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(2,\)"):
        pr_curve_points([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="no positive voxels"):
        roc_curve_points([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="criterion must be one of"):
        find_optimal_threshold([0.1, 0.2], [0, 1], criterion="accuracy")
    with pytest.raises(ValueError, match=r"target_sensitivity must be in \(0, 1\]"):
        threshold_for_sensitivity([0.1, 0.2], [0, 1], target_sensitivity=95)


def test_bad_decision_curve_input():
    with pytest.raises(ValueError, match=r"threshold_probability must be in \(0, 1\)"):
        net_benefit([1, 0], [1, 0], threshold_probability=1.0)
    with pytest.raises(ValueError, match="decision looks like probabilities"):
        net_benefit([0.3, 0.0], [1, 0], threshold_probability=0.2)
    with pytest.raises(ValueError, match=r"same shape"):
        decision_curve([0.3, 0.1], [1, 0, 1])
    with pytest.raises(ValueError, match=r"each threshold must be in \(0, 1\)"):
        decision_curve([0.3, 0.1], [1, 0], thresholds=[0.0, 0.5])
