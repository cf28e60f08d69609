"""Week 7 self-checks: each passes the reference and fails a plausible wrong answer with a useful message."""
import numpy as np
import pytest

from medseg_edu.checks import week7


# ---------------------------------------------------------------- references against hand-worked cases
def test_reference_target_spacing_median_and_anisotropic_rule():
    # isotropic-ish: the median per axis
    assert np.allclose(week7.reference_target_spacing([[1, 1, 1], [1, 1, 2], [2, 1, 3]],
                                                      [[90, 90, 90]] * 3), [1, 1, 2])
    # z 5 mm vs 1 mm in-plane (5 > 3 * 1) with 20 slices (20 * 3 < 200): the 10th percentile of z
    spacings = [[1, 1, 2], [1, 1, 5], [1, 1, 5], [1, 1, 5], [1, 1, 5]]
    shapes = [[200, 200, 20]] * 5
    # 10th percentile of [2, 5, 5, 5, 5] by linear interpolation: 2 + 0.4 * 3 = 3.2
    assert np.allclose(week7.reference_target_spacing(spacings, shapes), [1, 1, 3.2])
    # the same spacings with many slices: the rule does not apply, the median stays
    assert np.allclose(week7.reference_target_spacing(spacings, [[200, 200, 150]] * 5), [1, 1, 5])


def test_reference_normalise_channel_hand_cases():
    image = np.array([0.0, 2.0, 4.0, 0.0])
    mask = np.array([False, True, True, False])
    # inside the mask: mean 3, std 1 -> -1, 1; outside 0
    assert np.allclose(week7.reference_normalise_channel(image, modality="MR", mask=mask), [0, -1, 1, 0])
    stats = {"mean": 10.0, "std": 5.0, "percentile_00_5": 0.0, "percentile_99_5": 20.0}
    ct = np.array([-100.0, 10.0, 15.0, 500.0])
    # clipped to [0, 20]: 0, 10, 15, 20 -> (x - 10) / 5
    assert np.allclose(week7.reference_normalise_channel(ct, modality="CT", ct_stats=stats), [-2, 0, 1, 2])


def test_reference_pools_hand_cases():
    # isotropic 64^3: 64 -> 32 -> 16 -> 8 -> 4: four pools on every axis
    assert week7.reference_pools_per_axis([1, 1, 1], [64, 64, 64]) == [4, 4, 4]
    # z three times coarser: it waits until x and y reach 2 mm (one pool), 2 / 3 < 2 then all pool
    assert week7.reference_pools_per_axis([1, 1, 3], [64, 64, 16]) == [4, 4, 2]


def test_reference_batch_size_hand_cases():
    # budget 10x the estimate, reference batch 2 -> 20; cap 0.05 * 1e7 / 1e4 = 50: 20
    assert week7.reference_batch_size(1e9, 1e8, reference_batch=2, dataset_voxels=1e7, patch_size=[100, 10, 10]) == 20
    # a small data set: cap 0.05 * 1e6 / 1e4 = 5
    assert week7.reference_batch_size(1e9, 1e8, reference_batch=2, dataset_voxels=1e6, patch_size=[100, 10, 10]) == 5
    # never below 2
    assert week7.reference_batch_size(1e9, 1e8, reference_batch=2, dataset_voxels=1e5, patch_size=[100, 10, 10]) == 2


def test_reference_keep_largest_decision_hand_cases():
    target = np.zeros((10, 10), np.int64)
    target[2:5, 2:5] = 1
    noisy = target.copy()
    noisy[8, 8] = 1                               # a false positive away from the tumour
    assert week7.reference_keep_largest_decision([noisy], [target], classes=[1]) is True
    two = target.copy()
    two[7:9, 7:9] = 1                             # a real second lesion: removing it hurts
    assert week7.reference_keep_largest_decision([two], [two], classes=[1]) is False


# ---------------------------------------------------------------- checks pass the references
@pytest.mark.parametrize("check, reference, tag", [
    (week7.check_target_spacing, week7.reference_target_spacing, "ex1"),
    (week7.check_normalise_channel, week7.reference_normalise_channel, "ex2"),
    (week7.check_pools_per_axis, week7.reference_pools_per_axis, "ex3"),
    (week7.check_batch_size, week7.reference_batch_size, "ex4"),
    (week7.check_keep_largest_decision, week7.reference_keep_largest_decision, "ex5"),
])
def test_checks_pass_reference(check, reference, tag, capsys):
    for seed in range(3):
        check(reference, seed=seed)
    assert f"{tag} looks right" in capsys.readouterr().out


def test_check_decision_sees_both_outcomes():
    seen = set()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for trial in range(12):
            classes = [1, 2] if trial % 2 else [1]
            targets, preds = [], []
            for _ in range(int(rng.integers(2, 6))):
                target = week7._blob_label(rng, (16, 16, 12), classes)
                preds.append(week7._noisy_prediction(rng, target, classes))
                targets.append(target)
            seen.add(week7.reference_keep_largest_decision(preds, targets, classes=classes))
    assert seen == {True, False}


# ---------------------------------------------------------------- plausible wrong answers fail
def test_plain_median_fails_ex1():
    with pytest.raises(AssertionError, match="anisotropic-axis rule"):
        week7.check_target_spacing(lambda s, n: np.median(s, axis=0), seed=0)


def test_whole_image_zscore_fails_ex2():
    def whole(image, *, modality, mask=None, ct_stats=None):
        return (image - image.mean()) / image.std()
    with pytest.raises(AssertionError, match="inside the mask"):
        week7.check_normalise_channel(whole, seed=0)


def test_pooling_every_axis_fails_ex3():
    def naive(spacing, patch):
        return [int(np.floor(np.log2(p / 4))) for p in patch]
    with pytest.raises(AssertionError, match="ex3|wrong for spacing"):
        week7.check_pools_per_axis(naive, seed=0)


def test_uncapped_batch_fails_ex4():
    def uncapped(budget, estimate, *, reference_batch, dataset_voxels, patch_size):
        return int(round(budget / estimate * reference_batch))
    with pytest.raises(AssertionError, match="5% cap"):
        week7.check_batch_size(uncapped, seed=0)


def test_always_keep_fails_ex5():
    with pytest.raises(AssertionError, match="wrong decision"):
        week7.check_keep_largest_decision(lambda preds, targets, classes: True, seed=0)


def test_not_answered_message():
    def blank(*args, **kwargs):
        raise NotImplementedError()
    with pytest.raises(AssertionError, match="ex4 is not answered yet"):
        week7.check_batch_size(blank, seed=0)
