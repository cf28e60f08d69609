"""Week 6 self-checks: each passes the reference and fails a plausible wrong answer with a useful message."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medseg_edu.checks import week6


# ---------------------------------------------------------------- references against hand/independent values
def test_reference_dice_per_group_hand_case():
    df = pd.DataFrame({"fitzpatrick": [2, 1, 2, 1, 2], "dice": [0.5, 1.0, 0.7, 0.8, 0.9]})
    table = week6.reference_dice_per_group(df)
    assert list(table["fitzpatrick"]) == [1, 2]
    assert list(table["n"]) == [2, 3]
    assert np.allclose(table["mean"], [0.9, 0.7])


def test_reference_bootstrap_matches_scipy():
    values = np.array([0.9, 0.8, 0.85, 0.2, 0.95, 0.7, 0.88, 0.91])
    est, low, high = week6._reference_bootstrap_mean_ci(values, n_resamples=999, seed=3)
    ref = stats.bootstrap((values,), np.mean, n_resamples=999, method="percentile",
                          rng=np.random.default_rng(3), vectorized=True)
    assert est == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_reference_weights_hand_case():
    weights = week6.reference_inverse_frequency_weights([1, 1, 1, 2])
    # 4 samples, 2 groups: group 1 -> 4 / (2 * 3), group 2 -> 4 / (2 * 1)
    assert np.allclose(weights, [2 / 3, 2 / 3, 2 / 3, 2.0])


def test_reference_gap_constant_groups():
    gap, low, high = week6.reference_gap_ci([0.9] * 5, [0.6] * 3, n_resamples=100)
    assert gap == pytest.approx(0.3) and low == pytest.approx(0.3) and high == pytest.approx(0.3)


def test_reference_pairwise_dice_hand_case():
    a = np.zeros((4, 4), np.uint8); a[:2] = 1          # 8 pixels
    b = np.zeros((4, 4), np.uint8); b[:1] = 1          # 4 pixels, all inside a: Dice 8/12
    table = week6.reference_pairwise_dice({"A": [a, a], "B": [b, a]})
    assert table.loc["A", "B"] == pytest.approx((8 / 12 + 1.0) / 2)
    assert table.loc["B", "A"] == pytest.approx(table.loc["A", "B"]) and table.loc["A", "A"] == pytest.approx(1.0)


# ---------------------------------------------------------------- checks pass the references
@pytest.mark.parametrize("check, reference, tag", [
    (week6.check_dice_per_group, week6.reference_dice_per_group, "ex1"),
    (week6.check_bootstrap_mean_ci, week6._reference_bootstrap_mean_ci, "ex2"),
    (week6.check_inverse_frequency_weights, week6.reference_inverse_frequency_weights, "ex3"),
    (week6.check_gap_ci, week6.reference_gap_ci, "ex4"),
    (week6.check_pairwise_dice, week6.reference_pairwise_dice, "ex5"),
])
def test_checks_pass_reference(check, reference, tag, capsys):
    for seed in range(3):
        check(reference, seed=seed)
    assert f"{tag} looks right" in capsys.readouterr().out


# ---------------------------------------------------------------- checks fail plausible mistakes
def test_ex1_group_as_index():
    def wrong(df, *, by, value):
        return df.groupby(by)[value].agg(n="size", mean="mean")
    with pytest.raises(AssertionError, match="reset_index"):
        week6.check_dice_per_group(wrong, seed=0)


def test_ex1_median_instead_of_mean():
    def wrong(df, *, by, value):
        return df.groupby(by)[value].agg(n="size", mean="median").reset_index()
    with pytest.raises(AssertionError, match="'mean' must be the mean"):
        week6.check_dice_per_group(wrong, seed=0)


def test_ex2_normal_approximation():
    def wrong(values, *, n_resamples, confidence, seed):
        values = np.asarray(values)
        half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
        return values.mean(), values.mean() - half, values.mean() + half
    with pytest.raises(AssertionError, match="50 %|does not agree"):
        week6.check_bootstrap_mean_ci(wrong, seed=0)


def test_ex2_without_replacement():
    def wrong(values, *, n_resamples, confidence, seed):
        values = np.asarray(values)
        rng = np.random.default_rng(seed)
        means = [rng.permutation(values).mean() for _ in range(n_resamples)]
        return values.mean(), *np.percentile(means, [2.5, 97.5])
    with pytest.raises(AssertionError, match="WITH replacement"):
        week6.check_bootstrap_mean_ci(wrong, seed=0)


def test_ex2_wrong_percentiles():
    def wrong(values, *, n_resamples, confidence, seed):
        values = np.asarray(values)
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
        return values.mean(), *np.percentile(means, [100 * (1 - confidence), 100 * confidence])
    with pytest.raises(AssertionError, match="bootstrap.bootstrap_ci"):
        week6.check_bootstrap_mean_ci(wrong, seed=1)


def test_ex2_one_resample_at_a_time_is_fine(capsys):
    def loop(values, *, n_resamples, confidence, seed):
        values = np.asarray(values)
        rng = np.random.default_rng(seed)
        means = [values[rng.integers(0, values.size, size=values.size)].mean() for _ in range(n_resamples)]
        alpha = (1 - confidence) / 2
        return values.mean(), *np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    week6.check_bootstrap_mean_ci(loop, seed=1)
    assert "ex2 looks right" in capsys.readouterr().out


def test_ex3_unnormalised_weights():
    def wrong(groups):
        groups = pd.Series(np.asarray(groups))
        return 1.0 / groups.map(groups.value_counts()).to_numpy(dtype=float)
    with pytest.raises(AssertionError, match="mean is 1"):
        week6.check_inverse_frequency_weights(wrong, seed=0)


def test_ex3_frequency_instead_of_inverse():
    def wrong(groups):
        groups = pd.Series(np.asarray(groups))
        w = groups.map(groups.value_counts()).to_numpy(dtype=float)
        return w / w.mean()
    with pytest.raises(AssertionError, match="same total weight"):
        week6.check_inverse_frequency_weights(wrong, seed=0)


def test_ex4_only_worst_group_resampled():
    def wrong(best, worst, *, n_resamples, confidence, seed):
        best, worst = np.asarray(best), np.asarray(worst)
        rng = np.random.default_rng(seed)
        worst_means = worst[rng.integers(0, worst.size, size=(n_resamples, worst.size))].mean(1)
        gaps = best.mean() - worst_means
        alpha = (1 - confidence) / 2
        return best.mean() - worst.mean(), *np.percentile(gaps, [100 * alpha, 100 * (1 - alpha)])
    def pooled(best, worst, *, n_resamples, confidence, seed):
        best, worst = np.asarray(best), np.asarray(worst)
        both = np.concatenate([best, worst])
        rng = np.random.default_rng(seed)
        gaps = [rng.choice(both, best.size).mean() - rng.choice(both, worst.size).mean()
                for _ in range(n_resamples)]
        alpha = (1 - confidence) / 2
        return best.mean() - worst.mean(), *np.percentile(gaps, [100 * alpha, 100 * (1 - alpha)])
    with pytest.raises(AssertionError, match="does not contain the observed gap|not where"):
        week6.check_gap_ci(pooled, seed=0)
    with pytest.raises(AssertionError, match="too narrow"):
        week6.check_gap_ci(wrong, seed=0)


def test_ex4_sum_of_intervals_too_wide():
    def wrong(best, worst, *, n_resamples, confidence, seed):
        _, bl, bh = week6._reference_bootstrap_mean_ci(best, n_resamples=n_resamples, seed=seed)
        _, wl, wh = week6._reference_bootstrap_mean_ci(worst, n_resamples=n_resamples, seed=seed)
        return np.mean(best) - np.mean(worst), bl - wh, bh - wl
    with pytest.raises(AssertionError, match="too wide"):
        week6.check_gap_ci(wrong, seed=0)


def test_ex5_pooled_dice():
    def wrong(masks):
        names = list(masks)
        out = pd.DataFrame(1.0, index=names, columns=names)
        for a in names:
            for b in names:
                if a != b:
                    x = np.stack(masks[a]).astype(bool); y = np.stack(masks[b]).astype(bool)
                    out.loc[a, b] = 2 * (x & y).sum() / (x.sum() + y.sum())
        return out
    with pytest.raises(AssertionError, match="MEAN over images"):
        week6.check_pairwise_dice(wrong, seed=0)


def test_ex5_not_symmetric_names():
    with pytest.raises(AssertionError, match="index and columns"):
        week6.check_pairwise_dice(lambda masks: week6.reference_pairwise_dice(masks).reset_index(drop=True), seed=0)
