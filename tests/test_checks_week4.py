"""The week-4 self-checks pass correct solutions and fail plausible wrong ones with a useful message.

Correct solutions here are written from the textbook formulas (not from the package under test).
"""
import numpy as np
import pytest
import torch

from medseg_edu.checks import week4


# ---------------------------------------------------------------- correct solutions
def dice_ok(pred, target):
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    total = pred.sum() + target.sum()
    return 1.0 if total == 0 else float(2 * (pred & target).sum() / total)


def soft_dice_ok(probs, onehot, smooth=1.0):
    axes = tuple(range(1, probs.ndim))
    num = 2 * (probs * onehot).sum(axis=axes) + smooth
    den = (probs ** 2).sum(axis=axes) + (onehot ** 2).sum(axis=axes) + smooth
    return float(1 - np.mean(num / den))


def sens_spec_ok(pred, target, label):
    p, t = pred == label, target == label
    tp, tn = (p & t).sum(), (~p & ~t).sum()
    return float(tp / t.sum()), float(tn / (~t).sum())


def iou_ok(pred, target):
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    union = (pred | target).sum()
    return 1.0 if union == 0 else float((pred & target).sum() / union)


def iou_from_dice_ok(d):
    return d / (2 - d)


def volume_ok(pred, target, spacing_mm):
    return float((pred.sum() - target.sum()) * np.prod(spacing_mm) / 1000.0)


def test_correct_solutions_pass(capsys):
    week4.check_dice_coefficient(dice_ok, seed=0)
    week4.check_soft_dice_loss(soft_dice_ok, seed=0)
    week4.check_sensitivity_specificity(sens_spec_ok, seed=0)
    week4.check_iou(iou_ok, iou_from_dice_ok, seed=0)
    week4.check_volume_error_ml(volume_ok, seed=0)
    out = capsys.readouterr().out
    for n in range(1, 6):
        assert f"ex{n} looks right" in out


def test_correct_solutions_pass_on_other_seeds_and_torch_scalars():
    for seed in range(1, 4):
        week4.check_dice_coefficient(lambda p, t: torch.tensor(dice_ok(p, t)), seed=seed)
        week4.check_soft_dice_loss(lambda p, g, smooth=1.0: np.float32(soft_dice_ok(p, g, smooth)), seed=seed)
        week4.check_iou(iou_ok, iou_from_dice_ok, seed=seed)
        week4.check_volume_error_ml(volume_ok, seed=seed)


# ---------------------------------------------------------------- wrong solutions
def test_dice_without_factor_two_fails():
    def wrong(pred, target):
        total = pred.sum() + target.sum()
        return 1.0 if total == 0 else float((pred & target).sum() / total)
    with pytest.raises(AssertionError, match="identical masks must have Dice 1"):
        week4.check_dice_coefficient(wrong, seed=0)


def test_dice_that_divides_by_zero_fails():
    def wrong(pred, target):
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(2 * (pred & target).sum() / (pred.sum() + target.sum()))
    with pytest.raises(AssertionError, match="both masks are empty"):
        week4.check_dice_coefficient(wrong, seed=0)


def test_dice_using_union_fails_with_hint():
    with pytest.raises(AssertionError, match="factor 2, or use the union"):
        week4.check_dice_coefficient(iou_ok, seed=0)


def test_dice_returning_an_array_fails():
    with pytest.raises(AssertionError, match="should be one number"):
        week4.check_dice_coefficient(lambda p, t: np.array([1.0, 1.0]), seed=0)


def test_soft_dice_plain_denominator_fails():
    def wrong(probs, onehot, smooth=1.0):
        axes = tuple(range(1, probs.ndim))
        num = 2 * (probs * onehot).sum(axis=axes) + smooth
        den = probs.sum(axis=axes) + onehot.sum(axis=axes) + smooth
        return float(1 - np.mean(num / den))
    with pytest.raises(AssertionError, match="plain denominator"):
        week4.check_soft_dice_loss(wrong, seed=0)


def test_soft_dice_returning_coefficient_fails():
    with pytest.raises(AssertionError, match="Dice coefficient, not the loss"):
        week4.check_soft_dice_loss(lambda p, g, smooth=1.0: 1 - soft_dice_ok(p, g, smooth), seed=0)


def test_soft_dice_summing_over_classes_fails():
    def wrong(probs, onehot, smooth=1.0):     # one ratio over everything, classes pooled
        num = 2 * (probs * onehot).sum() + smooth
        den = (probs ** 2).sum() + (onehot ** 2).sum() + smooth
        return float(1 - num / den)
    with pytest.raises(AssertionError, match="per class"):
        week4.check_soft_dice_loss(wrong, seed=1)


def test_sens_spec_swapped_fails():
    def wrong(pred, target, label):
        s, p = sens_spec_ok(pred, target, label)
        return p, s
    with pytest.raises(AssertionError, match="swapped"):
        week4.check_sensitivity_specificity(wrong, seed=0)


def test_specificity_counting_only_background_fails():
    def wrong(pred, target, label):                 # negatives = background only, not "other classes"
        s, _ = sens_spec_ok(pred, target, label)
        neg = target == 0
        return s, float(((pred != label) & neg).sum() / neg.sum())
    with pytest.raises(AssertionError, match="specificity is wrong"):
        week4.check_sensitivity_specificity(wrong, seed=0)


def test_sens_spec_wrong_return_type_fails():
    with pytest.raises(AssertionError, match="return a tuple"):
        week4.check_sensitivity_specificity(lambda p, t, k: 0.5, seed=0)


def test_iou_returning_dice_fails():
    with pytest.raises(AssertionError, match="returns the Dice coefficient"):
        week4.check_iou(dice_ok, iou_from_dice_ok, seed=0)


def test_wrong_iou_dice_relation_fails():
    with pytest.raises(AssertionError, match="does not give the IoU"):
        week4.check_iou(iou_ok, lambda d: d / (1 + d), seed=0)


def test_volume_in_mm3_fails():
    with pytest.raises(AssertionError, match="cubic millimetres"):
        week4.check_volume_error_ml(lambda p, t, s: volume_ok(p, t, s) * 1000, seed=0)


def test_volume_ignoring_spacing_fails():
    with pytest.raises(AssertionError, match="ignores spacing_mm"):
        week4.check_volume_error_ml(lambda p, t, s: float(p.sum() - t.sum()) / 1000.0, seed=0)


def test_volume_sign_reversed_fails():
    with pytest.raises(AssertionError, match="sign is reversed"):
        week4.check_volume_error_ml(lambda p, t, s: -volume_ok(p, t, s), seed=0)


def test_messages_do_not_reveal_numbers():
    def wrong(pred, target):
        return 0.123456
    with pytest.raises(AssertionError) as info:
        week4.check_dice_coefficient(wrong, seed=0)
    assert not any(ch.isdigit() for ch in str(info.value).replace("ex1", "").replace("Dice 1", "").replace("Dice 0", ""))
