"""Tests for medseg_edu.uncertainty: flip TTA and MC dropout against hand loops, errors."""
import functools

import numpy as np
import pytest
import torch
from torch import nn

from medseg_edu.inference import sliding_window_inference
from medseg_edu.models import UNet
from medseg_edu.uncertainty import flip_tta, mc_dropout


def tiny_unet(spatial_dims, in_channels=2, out_channels=3, **kwargs):
    torch.manual_seed(0)
    return UNet(spatial_dims, in_channels, out_channels, features=(4, 8), **kwargs).eval()


# ----------------------------------------------------------------------------- flip TTA
class PointwiseNet(nn.Module):
    """A 1x1 convolution: commutes with every flip."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return self.conv(x)


def test_flip_tta_of_flip_equivariant_model_is_plain_prediction():
    net = PointwiseNet()
    x = torch.randn(2, 2, 7, 9)
    with torch.no_grad():
        plain = torch.softmax(net(x), dim=1)
    torch.testing.assert_close(flip_tta(net, x), plain)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_flip_tta_equals_hand_loop(activation):
    net = tiny_unet(3)
    torch.manual_seed(5)
    x = torch.randn(1, 2, 4, 6, 8)
    act = (lambda t: torch.softmax(t, 1)) if activation == "softmax" else torch.sigmoid
    expected = torch.zeros(1, 3, 4, 6, 8)
    with torch.no_grad():
        for dims in [(), (2,), (4,), (2, 4)]:                  # all subsets of spatial axes 0, 2
            expected += torch.flip(act(net(torch.flip(x, dims))), dims) / 4
    got = flip_tta(net, x, axes=(0, -1), activation=activation)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # default: all three spatial axes, 8 copies, still a probability map
    assert torch.allclose(flip_tta(net, x).sum(1), torch.ones(1, 4, 6, 8), atol=1e-5)


def test_flip_tta_with_predictor_and_errors():
    net = tiny_unet(2)
    x = torch.randn(1, 2, 12, 10)
    got = flip_tta(net, x, predictor=functools.partial(sliding_window_inference, roi_size=8))   # (model, image)
    assert got.shape == (1, 3, 12, 10)
    with pytest.raises(ValueError, match="axes must be spatial axes"):
        flip_tta(net, x, axes=(2,))
    with pytest.raises(ValueError, match="must not repeat"):
        flip_tta(net, x, axes=(1, -1))
    with pytest.raises(ValueError, match="softmax' needs at least 2 channels"):
        flip_tta(lambda im: im[:, :1], x)


# ----------------------------------------------------------------------------- MC dropout
class DropoutNet(nn.Module):
    def __init__(self, p):
        super().__init__()
        torch.manual_seed(6)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(p)
        self.head = nn.Conv2d(4, 3, 1)
        self.norm_modes = []

    def forward(self, x):
        self.norm_modes.append(self.norm.training)
        return self.head(self.drop(self.norm(self.conv(x))))


@pytest.mark.parametrize("uncertainty", ["variance", "mutual_information"])
def test_mc_dropout_without_dropout_has_zero_uncertainty(uncertainty):
    net = DropoutNet(0.0).eval()
    x = torch.randn(2, 2, 8, 8)
    with pytest.warns(UserWarning, match="no dropout layer"):
        mean, unc = mc_dropout(net, x, samples=4, uncertainty=uncertainty)
    with torch.no_grad():
        torch.testing.assert_close(mean, torch.softmax(net(x), 1))
    assert unc.shape == (2, 1, 8, 8)
    assert unc.abs().max().item() < 1e-6


def test_mc_dropout_with_dropout_and_modes_restored():
    net = DropoutNet(0.5).train()
    net.drop.eval()              # an odd mix of modes: must come back exactly like this
    running_mean = net.norm.running_mean.clone()
    x = torch.randn(2, 2, 8, 8)
    torch.manual_seed(7)
    mean, var = mc_dropout(net, x, samples=6, uncertainty="variance")
    assert var.min().item() >= 0 and var.max().item() > 0
    assert net.norm_modes == [False] * 6                       # batch norm stayed in eval mode
    assert torch.equal(net.norm.running_mean, running_mean)    # and kept its statistics
    assert net.training and net.conv.training and net.norm.training and not net.drop.training
    torch.testing.assert_close(mean.sum(1), torch.ones(2, 8, 8))
    _, mi = mc_dropout(net, x, samples=6, uncertainty="mutual_information")
    assert mi.max().item() > 0


def test_mc_dropout_hand_worked_variance_and_entropy():
    # a fake "model" whose dropout layer alternates between two known outputs
    class Alternating(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            p = 0.9 if self.calls % 2 else 0.5
            return torch.logit(torch.full((1, 1, 2, 2), p))

    mean, var = mc_dropout(Alternating(), torch.zeros(1, 1, 2, 2), samples=4, activation="sigmoid")
    torch.testing.assert_close(mean, torch.full((1, 1, 2, 2), 0.7))
    torch.testing.assert_close(var, torch.full((1, 1, 2, 2), 0.04))        # population variance
    _, ent = mc_dropout(Alternating(), torch.zeros(1, 1, 2, 2), samples=4, activation="sigmoid",
                        uncertainty="entropy")
    h = -(0.7 * np.log(0.7) + 0.3 * np.log(0.3))
    torch.testing.assert_close(ent, torch.full((1, 1, 2, 2), h, dtype=torch.float32))
    _, mi = mc_dropout(Alternating(), torch.zeros(1, 1, 2, 2), samples=4, activation="sigmoid",
                       uncertainty="mutual_information")
    h9 = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    torch.testing.assert_close(mi, torch.full((1, 1, 2, 2), h - (h9 + np.log(2)) / 2,
                                              dtype=torch.float32))


def test_mc_dropout_errors():
    net = UNet(2, 2, 3, features=(4, 8))
    x = torch.randn(1, 2, 8, 8)
    with pytest.warns(UserWarning, match="no dropout layer"):
        mc_dropout(net, x, samples=2)
    with pytest.raises(ValueError, match="samples must be an int >= 2"):
        mc_dropout(net, x, samples=1)
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        mc_dropout(net, x, uncertainty="std")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        mc_dropout(lambda t: t, x)
