"""Tests for medseg_edu.losses: hand-worked numbers, MONAI as reference, gradients, AMP, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from medseg_edu.losses import (
    DiceBCELoss, DiceCELoss, DiceLoss, FocalLoss, TverskyLoss, dice_bce_loss, dice_ce_loss,
    focal_loss, soft_dice_loss, tversky_loss,
)


@pytest.fixture
def monai_losses():
    """MONAI is a test-only reference: only the tests that compare with it skip when it is missing."""
    return pytest.importorskip("monai.losses")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: thread start-up dominates, and on a busy 2-core machine it costs 10-50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- hand-worked soft Dice (week 4)

def _worked_example():
    """P and G (3 x 3) with sum(p*g) = 2.2, sum(p^2) = 2.47, sum(g^2) = 3, sum(p) = 3.7."""
    p = torch.tensor([[0.9, 0.8, 0.5], [0.6, 0.4, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    assert math.isclose(float((p * g).sum()), 2.2)
    assert math.isclose(float((p * p).sum()), 2.47)
    assert math.isclose(float(p.sum()), 3.7)
    return p[None, None], g[None, None]


def test_squared_dice_worked_example():
    p, g = _worked_example()
    loss = soft_dice_loss(p, g, activation="none", squared=True, smooth=0.0)
    assert math.isclose(float(loss), 1 - 4.4 / 5.47, abs_tol=1e-12)
    assert math.isclose(float(loss), 0.19561, abs_tol=5e-6)       # 1 - 4.4 / 5.47 to 5 decimals


def test_plain_dice_worked_example():
    p, g = _worked_example()
    loss = soft_dice_loss(p, g, activation="none", squared=False, smooth=0.0)
    assert math.isclose(float(loss), 1 - 4.4 / 6.7, abs_tol=1e-12)
    # with smoothing 1: 1 - (4.4 + 1) / (6.7 + 1)
    loss = soft_dice_loss(p, g, activation="none", squared=False, smooth=1.0)
    assert math.isclose(float(loss), 1 - 5.4 / 7.7, abs_tol=1e-12)


def test_two_channel_probabilities_drop_background():
    p, g = _worked_example()
    two = torch.cat([1 - p, p], dim=1)
    loss = soft_dice_loss(two, g, activation="none", smooth=0.0)              # background dropped
    assert math.isclose(float(loss), 1 - 4.4 / 5.47, abs_tol=1e-12)
    both = soft_dice_loss(two, g, activation="none", smooth=0.0, include_background=True)
    # background channel: p_bg = 1 - p, g_bg = 1 - g; hand sums: sum(p_bg g_bg) = 0.4+0.6+0.5+3 = 4.5
    bg = 1 - 2 * 4.5 / ((0.01 + 0.04 + 0.25 + 0.16 + 0.36 + 0.25 + 3.0) + 6)
    assert math.isclose(float(both), (bg + (1 - 4.4 / 5.47)) / 2, abs_tol=1e-12)


def test_all_background_prediction_scores_near_one():
    labels = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    labels[..., 6:9, 6:9] = 1
    logits = torch.zeros(1, 2, 16, 16)
    logits[:, 0] = 20.0                                     # confident background everywhere
    assert float(soft_dice_loss(logits, labels, smooth=1e-5)) > 0.99


def test_tversky_half_half_equals_plain_dice():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 8, 8))
    t = tversky_loss(logits, labels, alpha=0.5, beta=0.5, smooth=0.0)
    d = soft_dice_loss(logits, labels, squared=False, smooth=0.0)
    assert torch.allclose(t, d, atol=1e-12)


def test_tversky_hand_case():
    p, g = _worked_example()
    # TP = 2.2, FP = sum(p (1 - g)) = 1.5, FN = sum((1 - p) g) = 0.8
    loss = tversky_loss(p, g, activation="none", alpha=0.3, beta=0.7, smooth=0.0)
    assert math.isclose(float(loss), 1 - 2.2 / (2.2 + 0.3 * 1.5 + 0.7 * 0.8), abs_tol=1e-12)


def test_focal_gamma0_is_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 6, 6))
    assert torch.allclose(focal_loss(logits, labels, gamma=0.0), F.cross_entropy(logits, labels))
    binary = torch.randint(0, 2, (2, 1, 6, 6)).double()
    assert torch.allclose(focal_loss(logits[:, :1], binary, gamma=0.0, activation="sigmoid"),
                          F.binary_cross_entropy_with_logits(logits[:, :1], binary))


def test_dice_ce_class_weights_match_torch():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 5, 5))
    w = [0.2, 1.0, 3.0]
    got = dice_ce_loss(logits, labels, dice_weight=0.0, class_weights=w)
    ref = F.cross_entropy(logits, labels[:, 0], weight=torch.tensor(w, dtype=torch.float64))
    assert torch.allclose(got, ref)


# ---------------------------------------------------------------- reference: MONAI

def _random_case(seed, num_classes=3, shape=(2, 3, 7, 6)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], num_classes, *shape[2:], generator=g, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (shape[0], 1, *shape[2:]), generator=g)
    return logits, labels


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch_dice", [True, False])
def test_soft_dice_matches_monai_softmax(squared, include_background, batch_dice, monai_losses):
    logits, labels = _random_case(3)
    ref = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, squared_pred=squared,
                                include_background=include_background, smooth_nr=0.5,
                                smooth_dr=0.5, batch=batch_dice)(logits, labels)
    got = soft_dice_loss(logits, labels, squared=squared, include_background=include_background,
                         smooth=0.5, batch_dice=batch_dice)
    assert abs(float(got) - float(ref)) < 1e-5


@pytest.mark.parametrize("squared", [True, False])
def test_soft_dice_matches_monai_sigmoid(squared, monai_losses):
    logits, _ = _random_case(4)
    target = (torch.rand(logits.shape, generator=torch.Generator().manual_seed(5)) > 0.6).double()
    ref = monai_losses.DiceLoss(sigmoid=True, squared_pred=squared, include_background=True,
                                smooth_nr=1.0, smooth_dr=1.0)(logits, target)
    got = soft_dice_loss(logits, target, activation="sigmoid", squared=squared, smooth=1.0)
    assert abs(float(got) - float(ref)) < 1e-5


@pytest.mark.parametrize("include_background", [True, False])
def test_dice_ce_matches_monai(include_background, monai_losses):
    logits, labels = _random_case(6, num_classes=4)
    ref = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, squared_pred=True,
                                  include_background=include_background, smooth_nr=1.0,
                                  smooth_dr=1.0, lambda_dice=0.7, lambda_ce=1.3)(logits, labels)
    got = dice_ce_loss(logits, labels, include_background=include_background, smooth=1.0,
                       dice_weight=0.7, ce_weight=1.3)
    assert abs(float(got) - float(ref)) < 1e-5


def test_dice_bce_matches_monai(monai_losses):
    logits, _ = _random_case(7, num_classes=1)       # MONAI switches to BCE for one channel only
    target = (torch.rand(logits.shape, generator=torch.Generator().manual_seed(8)) > 0.5).double()
    ref = monai_losses.DiceCELoss(sigmoid=True, squared_pred=False, include_background=True,
                                  smooth_nr=1.0, smooth_dr=1.0)(logits, target)
    got = dice_bce_loss(logits, target, squared=False, smooth=1.0)
    assert abs(float(got) - float(ref)) < 1e-5


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_sigmoid_matches_monai(alpha, monai_losses):
    logits, _ = _random_case(9, num_classes=2)
    target = (torch.rand(logits.shape, generator=torch.Generator().manual_seed(10)) > 0.7).double()
    ref = monai_losses.FocalLoss(gamma=2.0, alpha=alpha, use_softmax=False)(logits, target)
    got = focal_loss(logits, target, gamma=2.0, alpha=alpha, activation="sigmoid")
    assert abs(float(got) - float(ref)) < 1e-5


@pytest.mark.parametrize("alpha", [None, [0.1, 0.5, 0.4]])
def test_focal_softmax_matches_monai(alpha, monai_losses):
    logits, labels = _random_case(11)
    ref = monai_losses.FocalLoss(gamma=1.5, alpha=alpha, use_softmax=True, to_onehot_y=True)(
        logits, labels)
    got = focal_loss(logits, labels, gamma=1.5, alpha=alpha)
    # MONAI averages over the K channels as well as the voxels; we average over voxels only.
    assert abs(float(got) / logits.shape[1] - float(ref)) < 1e-5


def test_tversky_matches_monai(monai_losses):
    logits, labels = _random_case(12)
    ref = monai_losses.TverskyLoss(softmax=True, to_onehot_y=True, include_background=False,
                                   alpha=0.3, beta=0.7, smooth_nr=1.0, smooth_dr=1.0)(logits, labels)
    got = tversky_loss(logits, labels, alpha=0.3, beta=0.7, smooth=1.0)
    assert abs(float(got) - float(ref)) < 1e-5


# ---------------------------------------------------------------- gradients and mixed precision

LOSSES = {
    "dice_squared": lambda x, y: soft_dice_loss(x, y, squared=True),
    "dice_plain": lambda x, y: soft_dice_loss(x, y, squared=False, include_background=True),
    "dice_ce": lambda x, y: dice_ce_loss(x, y, class_weights=[1.0, 2.0, 0.5]),
    "dice_bce": lambda x, y: dice_bce_loss(x, (y > 0).double().expand_as(x).contiguous()),
    "focal": lambda x, y: focal_loss(x, y, alpha=0.25),
    "focal_sigmoid": lambda x, y: focal_loss(x, (y > 0).double().expand_as(x).contiguous(),
                                             activation="sigmoid", alpha=0.25),
    "tversky": lambda x, y: tversky_loss(x, y),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name):
    logits, labels = _random_case(13, shape=(2, 3, 2, 3))
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, labels), (logits,))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float16_matches_float32(name):
    g = torch.Generator().manual_seed(14)
    logits16 = (3 * torch.randn(1, 3, 512, 512, generator=g)).half()
    labels = torch.randint(0, 3, (1, 1, 512, 512), generator=g)
    loss16 = LOSSES[name](logits16, labels)
    loss32 = LOSSES[name](logits16.float(), labels)
    assert loss16.dtype == torch.float32
    assert torch.isfinite(loss16)
    assert abs(float(loss16) - float(loss32)) < 1e-3


def test_modules_call_functions():
    logits, labels = _random_case(15)
    assert torch.equal(DiceLoss(squared=False)(logits, labels),
                       soft_dice_loss(logits, labels, squared=False))
    assert torch.equal(DiceCELoss(ce_weight=2.0)(logits, labels),
                       dice_ce_loss(logits, labels, ce_weight=2.0))
    binary = (labels > 0).double()
    assert torch.equal(DiceBCELoss()(logits[:, :1], binary), dice_bce_loss(logits[:, :1], binary))
    assert torch.equal(FocalLoss(gamma=1.0)(logits, labels), focal_loss(logits, labels, gamma=1.0))
    assert torch.equal(TverskyLoss(beta=0.9, alpha=0.1)(logits, labels),
                       tversky_loss(logits, labels, alpha=0.1, beta=0.9))
    with pytest.raises(TypeError, match="unknown option 'smoth'"):
        DiceLoss(smoth=1.0)


def test_reduction_none_shapes():
    logits, labels = _random_case(16)
    assert soft_dice_loss(logits, labels, reduction="none").shape == (2, 2)
    assert soft_dice_loss(logits, labels, reduction="none", batch_dice=True).shape == (2,)
    assert focal_loss(logits, labels, reduction="none").shape == (2, 7, 6)
    total = soft_dice_loss(logits, labels, reduction="sum")
    assert torch.allclose(total, soft_dice_loss(logits, labels, reduction="none").sum())


def test_integer_labels_without_channel_axis():
    logits, labels = _random_case(17)
    assert torch.equal(soft_dice_loss(logits, labels[:, 0]), soft_dice_loss(logits, labels))
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1)
    assert torch.allclose(soft_dice_loss(logits, onehot), soft_dice_loss(logits, labels))
    assert torch.allclose(soft_dice_loss(logits, onehot.double()), soft_dice_loss(logits, labels))


# ---------------------------------------------------------------- bad input

def test_softmax_needs_two_channels():
    with pytest.raises(ValueError, match="softmax.*at least 2 channels"):
        soft_dice_loss(torch.randn(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_none_rejects_logits():
    with pytest.raises(ValueError, match="look like logits"):
        soft_dice_loss(torch.randn(1, 2, 4, 4) * 5, torch.zeros(1, 1, 4, 4, dtype=torch.long),
                       activation="none")


def test_unknown_activation_and_reduction():
    x, y = torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="activation must be one of"):
        soft_dice_loss(x, y, activation="relu")
    with pytest.raises(ValueError, match="reduction must be one of"):
        tversky_loss(x, y, reduction="avg")


def test_shape_mismatch_names_both_shapes():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\) and \(2, 1, 8, 7\)"):
        soft_dice_loss(x, torch.zeros(2, 1, 8, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\) and \(2, 1, 8, 8\)"):
        soft_dice_loss(x, torch.zeros(2, 1, 8, 8))           # float labels: need .long()


def test_labels_out_of_range():
    x = torch.randn(1, 3, 4, 4)
    y = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    y[0, 0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*0 to 3"):
        dice_ce_loss(x, y)
    with pytest.raises(ValueError, match="binary"):
        dice_bce_loss(torch.randn(1, 1, 4, 4), y)


def test_bad_alpha_and_class_weights():
    x, y = torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="alpha must have one weight per channel"):
        focal_loss(x, y, alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="class_weights must have one weight per channel"):
        dice_ce_loss(x, y, class_weights=[1.0, 2.0])
    with pytest.raises(TypeError, match="pred must be a floating-point"):
        soft_dice_loss(y, y)


def test_activation_none_matches_logit_forms():
    logits, labels = _random_case(18)
    probs = torch.softmax(logits, dim=1)
    assert torch.allclose(focal_loss(probs, labels, activation="none"), focal_loss(logits, labels))
    assert torch.allclose(soft_dice_loss(probs, labels, activation="none"),
                          soft_dice_loss(logits, labels))
    binary = (labels > 0).long()
    one = logits[:, :1]
    assert torch.allclose(focal_loss(torch.sigmoid(one), binary, activation="none", alpha=0.3),
                          focal_loss(one, binary, activation="sigmoid", alpha=0.3))
    # sigmoid: every channel is foreground, so include_background changes nothing
    assert torch.equal(soft_dice_loss(one, binary, activation="sigmoid", include_background=False),
                       soft_dice_loss(one, binary, activation="sigmoid", include_background=True))
