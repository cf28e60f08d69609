"""The week-5 self-checks pass correct solutions and fail plausible wrong ones with a useful message.

Correct solutions here are written from the textbook definitions (not from the package under test).
"""
import numpy as np
import pytest
import torch

from medseg_edu.checks import week5


# ---------------------------------------------------------------- correct solutions
def split_ok(patient_ids, test_fraction, seed):
    ids = np.asarray(patient_ids)
    patients = np.random.default_rng(seed).permutation(np.unique(ids))
    n_test = min(max(int(round(test_fraction * len(patients))), 1), len(patients) - 1)
    is_test = np.isin(ids, patients[:n_test])
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def zscore_ok(image, mask):
    out = np.zeros(image.shape, dtype=np.float64)
    for c in range(image.shape[0]):
        v = image[c][mask].astype(np.float64)
        out[c][mask] = (v - v.mean()) / v.std()
    return out


def _patient_means(values, patients, n_resamples, rng):
    """Cluster bootstrap written out by hand: draw patients with replacement, pool all their scans."""
    values, patients = np.asarray(values, float), np.asarray(patients)
    ids = np.unique(patients)
    scans = {i: values[patients == i] for i in ids}
    return np.array([np.concatenate([scans[i] for i in rng.choice(ids, ids.size)]).mean()
                     for _ in range(n_resamples)])


def drop_ok(a, pa, b, pb, n_resamples=2000, seed=0):
    rng = np.random.default_rng(seed)
    drops = _patient_means(a, pa, n_resamples, rng) - _patient_means(b, pb, n_resamples, rng)
    low, high = np.percentile(drops, [2.5, 97.5])
    return float(np.mean(a) - np.mean(b)), float(low), float(high)


def nb_ok(tp, fp, n, pt):
    return tp / n - fp / n * pt / (1 - pt)


def test_correct_solutions_pass(capsys):
    week5.check_patient_split(split_ok, seed=0)
    week5.check_drop_ci(drop_ok, seed=0)
    week5.check_zscore_in_mask(zscore_ok, seed=0)
    week5.check_net_benefit_from_counts(nb_ok, seed=0)
    out = capsys.readouterr().out
    for n in range(1, 5):
        assert f"ex{n} looks right" in out


def test_correct_solutions_pass_on_other_seeds_and_other_types():
    for seed in range(1, 4):
        week5.check_patient_split(lambda i, f, s: tuple(list(x) for x in split_ok(i, f, s)), seed=seed)
        week5.check_drop_ci(lambda a, pa, b, pb, n=2000, s=0: tuple(np.float64(v) for v in drop_ok(a, pa, b, pb, n, s)),
                            seed=seed)
        week5.check_zscore_in_mask(lambda x, m: torch.from_numpy(zscore_ok(x, m)), seed=seed)
        week5.check_net_benefit_from_counts(lambda *a: torch.tensor(nb_ok(*a), dtype=torch.float64), seed=seed)


def test_check_without_seed_runs():
    week5.check_net_benefit_from_counts(nb_ok)
    week5.check_zscore_in_mask(zscore_ok)


# ---------------------------------------------------------------- the references agree with hand-worked cases
def test_reference_net_benefit_hand_worked():
    # 2 TP, 1 FP of 4 cases at pt = 0.25: 2/4 - 1/4 * (1/3) = 0.5 - 1/12
    assert np.isclose(week5.reference_net_benefit_from_counts(2, 1, 4, 0.25), 0.5 - 1 / 12)
    with pytest.raises(ValueError, match="threshold_probability"):
        week5.reference_net_benefit_from_counts(1, 1, 4, 1.0)
    with pytest.raises(ValueError, match="n must be"):
        week5.reference_net_benefit_from_counts(3, 2, 4, 0.2)


def test_reference_drop_ci_constant_groups_and_errors():
    # constant groups: every resample has the same means, the interval collapses onto the drop
    drop, low, high = week5.reference_drop_ci([0.8] * 5, [0.5] * 7, n_resamples=200)
    assert np.isclose(drop, 0.3) and np.isclose(low, 0.3) and np.isclose(high, 0.3)
    # independent two-group bootstrap: sd of the drop ~ sqrt(var_a / n_a + var_b / n_b)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.1, 40), rng.normal(0.5, 0.2, 25)
    _, low, high = week5.reference_drop_ci(a, b, n_resamples=20000, seed=1)
    sd = np.sqrt(a.var() / a.size + b.var() / b.size)
    assert abs((high - low) - 2 * 1.96 * sd) < 0.1 * (high - low)
    with pytest.raises(ValueError, match="dice_external"):
        week5.reference_drop_ci([0.5], [np.nan])
    with pytest.raises(ValueError, match="n_resamples"):
        week5.reference_drop_ci([0.5], [0.4], n_resamples=0)
    with pytest.raises(ValueError, match="patients_internal must give one patient id per Dice value"):
        week5.reference_drop_ci([0.5, 0.6], [0.4], patients_internal=[1, 2, 3])


def test_reference_drop_ci_resamples_patients():
    # every patient has 3 identical scans: the cluster bootstrap is the bootstrap of the 12 patient means, whose
    # sd is sqrt(var / 12); resampling the 36 scans would give sqrt(var / 36), an interval sqrt(3) times narrower.
    # 20000 resamples put the width within a few % of 2 x 1.96 x sd, so 10 % is safe and sqrt(3) is far outside.
    rng = np.random.default_rng(2)
    per_patient = rng.normal(0.8, 0.1, 12)
    a, patients = np.repeat(per_patient, 3), np.repeat(np.arange(12), 3)
    b = np.full(5, 0.5)
    drop, low, high = week5.reference_drop_ci(a, b, patients_internal=patients, n_resamples=20000, seed=1)
    assert np.isclose(drop, per_patient.mean() - 0.5)
    assert abs((high - low) - 2 * 1.96 * per_patient.std() / np.sqrt(12)) < 0.1 * (high - low)
    # and it agrees with the hand-written cluster bootstrap of this file (different draws: a Monte-Carlo tolerance)
    _, low_ok, high_ok = drop_ok(a, patients, b, np.arange(5), n_resamples=4000, seed=3)
    assert abs(low_ok - low) < 0.1 * (high - low) and abs(high_ok - high) < 0.1 * (high - low)


# ---------------------------------------------------------------- plausible wrong solutions fail
def _fails(check, function, match):
    with pytest.raises(AssertionError, match=match):
        check(function, seed=0)


def test_split_by_rows_leaks():
    def by_rows(ids, fraction, seed):
        rows = np.random.default_rng(seed).permutation(len(ids))
        n_test = int(round(fraction * len(ids)))
        return np.sort(rows[n_test:]), np.sort(rows[:n_test])
    _fails(week5.check_patient_split, by_rows, "leakage")


def test_split_without_seed_or_with_missing_rows():
    def unseeded(ids, fraction, seed):
        return split_ok(ids, fraction, 0)
    _fails(week5.check_patient_split, unseeded, "different seeds")

    def drops_rows(ids, fraction, seed):
        train, test = split_ok(ids, fraction, seed)
        return train[1:], test
    _fails(week5.check_patient_split, drops_rows, "exactly one")

    def patient_numbers(ids, fraction, seed):
        train, test = split_ok(ids, fraction, seed)
        return train.astype(float), test.astype(float)
    _fails(week5.check_patient_split, patient_numbers, "integer")


def test_split_counting_cases_not_patients():
    def too_many(ids, fraction, seed):
        return split_ok(ids, min(0.95, fraction + 0.3), seed)
    _fails(week5.check_patient_split, too_many, "PATIENTS")


def test_zscore_wrong_versions():
    def whole_image(image, mask):
        out = (image - image.mean(axis=tuple(range(1, image.ndim)), keepdims=True)) \
            / image.std(axis=tuple(range(1, image.ndim)), keepdims=True)
        out[:, ~mask] = 0
        return out
    _fails(week5.check_zscore_in_mask, whole_image, "mean 0 inside the mask")

    def background_left(image, mask):
        out = zscore_ok(image, mask)
        out[:, ~mask] = image[:, ~mask]
        out[:, ~mask] -= 1.0
        return out
    _fails(week5.check_zscore_in_mask, background_left, "outside the mask")

    def sample_std(image, mask):
        out = np.zeros(image.shape)
        for c in range(image.shape[0]):
            v = image[c][mask]
            out[c][mask] = (v - v.mean()) / v.std(ddof=1)
        return out
    _fails(week5.check_zscore_in_mask, sample_std, "population")

    def global_stats(image, mask):
        v = image[:, mask]
        out = np.zeros(image.shape)
        out[:, mask] = (v - v.mean()) / v.std()
        return out
    # fails on images with more than one channel (per-channel statistics are required)
    with pytest.raises(AssertionError, match="channel"):
        for seed in range(5):
            week5.check_zscore_in_mask(global_stats, seed=seed)

    def in_place(image, mask):
        for c in range(image.shape[0]):
            v = image[c][mask]
            image[c][mask] = (v - v.mean()) / v.std()
        image[:, ~mask] = 0
        return image
    _fails(week5.check_zscore_in_mask, in_place, "in place")


def test_drop_ci_wrong_versions():
    def flipped(a, pa, b, pb, n_resamples=2000, seed=0):
        d, lo, hi = drop_ok(a, pa, b, pb, n_resamples, seed)
        return -d, -hi, -lo
    _fails(week5.check_drop_ci, flipped, "sign")

    def only_external(a, pa, b, pb, n_resamples=2000, seed=0):
        rng = np.random.default_rng(seed)
        drops = np.mean(a) - _patient_means(b, pb, n_resamples, rng)
        lo, hi = np.percentile(drops, [2.5, 97.5])
        return float(np.mean(a) - np.mean(b)), float(lo), float(hi)
    _fails(week5.check_drop_ci, only_external, "too narrow")

    def scans_not_patients(a, pa, b, pb, n_resamples=2000, seed=0):
        a, b = np.asarray(a, float), np.asarray(b, float)
        rng = np.random.default_rng(seed)
        drops = rng.choice(a, (n_resamples, a.size)).mean(axis=1) - rng.choice(b, (n_resamples, b.size)).mean(axis=1)
        lo, hi = np.percentile(drops, [2.5, 97.5])
        return float(a.mean() - b.mean()), float(lo), float(hi)
    _fails(week5.check_drop_ci, scans_not_patients, "too narrow: scans of one patient are not independent")

    def normal_approximation(a, pa, b, pb, n_resamples=2000, seed=0):
        rng = np.random.default_rng(seed)       # the right resamples, but a symmetric normal interval from their SD
        drops = _patient_means(a, pa, n_resamples, rng) - _patient_means(b, pb, n_resamples, rng)
        d = float(np.mean(a) - np.mean(b))
        return d, d - 1.96 * drops.std(), d + 1.96 * drops.std()
    _fails(week5.check_drop_ci, normal_approximation, "off-centre.*skewed")

    def unseeded(a, pa, b, pb, n_resamples=2000, seed=0):
        return drop_ok(a, pa, b, pb, n_resamples, None)
    _fails(week5.check_drop_ci, unseeded, "same seed")

    def one_sd(a, pa, b, pb, n_resamples=2000, seed=0):
        d, lo, hi = drop_ok(a, pa, b, pb, n_resamples, seed)
        sd = (hi - lo) / (2 * 1.96)
        return d, d - sd, d + sd                                  # a 68 % interval, not 95 %
    _fails(week5.check_drop_ci, one_sd, "too narrow")

    def bootstrap_mean(a, pa, b, pb, n_resamples=2000, seed=0):
        rng = np.random.default_rng(seed)
        drops = _patient_means(a, pa, n_resamples, rng) - _patient_means(b, pb, n_resamples, rng)
        lo, hi = np.percentile(drops, [2.5, 97.5])
        return float(np.mean(drops)), float(lo), float(hi)
    _fails(week5.check_drop_ci, bootstrap_mean, "original values")


def test_net_benefit_wrong_versions():
    _fails(week5.check_net_benefit_from_counts, lambda tp, fp, n, pt: tp / n - fp / n * pt, "ODDS")
    _fails(week5.check_net_benefit_from_counts, lambda tp, fp, n, pt: (tp - fp * pt / (1 - pt)) / (tp + fp + 1),
           "ALL")
    _fails(week5.check_net_benefit_from_counts, lambda tp, fp, n, pt: [tp / n], "number")
    _fails(week5.check_net_benefit_from_counts, lambda tp, fp, n, pt: 0.1 + tp / n - fp / n * pt / (1 - pt),
           "must be 0")
