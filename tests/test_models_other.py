"""Tests for medseg_edu.models.unetpp and medseg_edu.models.pspnet."""
import pytest
import torch

from medseg_edu.models import PSPNet, UNetPlusPlus, count_parameters
from medseg_edu.models.pspnet import PyramidPooling, ResidualBlock


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 16)])
def test_unetpp_shapes(spatial_dims, size):
    net = UNetPlusPlus(spatial_dims, 2, 3, features=(4, 8, 16))
    assert net(torch.randn(2, 2, *([size] * spatial_dims))).shape == (2, 3, *([size] * spatial_dims))


def test_unetpp_nested_nodes():
    # L = 3 levels -> nested nodes X[i, j] with j >= 1 and i + j <= 3: 3 + 2 + 1 = 6
    net = UNetPlusPlus(2, 1, 2, features=(4, 8, 16, 32))
    assert sorted(net.nested.keys()) == ["0_1", "0_2", "0_3", "1_1", "1_2", "2_1"]
    # X[0, 3] takes X[0, 0..2] (3 x 4 channels) plus upsampled X[1, 2] (8 channels) = 20
    assert net.last_decoder.conv1.in_channels == 20


def test_unetpp_errors():
    net = UNetPlusPlus(2, 1, 2, features=(4, 8, 16))
    with pytest.raises(ValueError, match=r"UNetPlusPlus\(spatial_dims=2\) expects \(N, C, H, W\)"):
        net(torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"divisible by 4 .* got spatial size \(30, 32\)"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="in_channels=1 .* got C=2"):
        net(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="norm must be"):
        UNetPlusPlus(2, 1, 2, norm="layer")


def test_unetpp_hooks():
    net = UNetPlusPlus(2, 1, 2, features=(4, 8, 16))
    shapes = []
    net.bottleneck.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    net.last_decoder.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    net(torch.randn(1, 1, 16, 16))
    assert shapes == [(1, 16, 4, 4), (1, 4, 16, 16)]


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 16)])
def test_pspnet_shapes(spatial_dims, size):
    net = PSPNet(spatial_dims, 3, 2, features=(4, 8, 16, 32))
    net.train()   # batch norm in training mode with batch 2 must work (1x1 bin has no norm)
    assert net(torch.randn(2, 3, *([size] * spatial_dims))).shape == (2, 2, *([size] * spatial_dims))


def test_pspnet_batch_of_one_in_training():
    net = PSPNet(2, 1, 2, features=(4, 8, 16)).train()
    assert net(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_pyramid_pooling_constant_input():
    # on a constant map every bin average equals the constant, so each branch is
    # relu(w . c + b) everywhere: check against the hand computation
    ppm = PyramidPooling(2, 8, bins=(1, 2, 3, 6))
    x = torch.full((1, 8, 12, 12), 2.0)
    out = ppm(x)
    assert out.shape == (1, 8 + 4 * 2, 12, 12)
    torch.testing.assert_close(out[:, :8], x)
    for k, branch in enumerate(ppm.branches):
        conv = branch[1]
        expected = torch.relu(conv.weight[:, :, 0, 0].sum(dim=1) * 2.0 + conv.bias)
        got = out[0, 8 + 2 * k: 8 + 2 * (k + 1)]
        torch.testing.assert_close(got, expected[:, None, None].expand(2, 12, 12).detach())


def test_residual_block_parameters_hand_worked():
    # stride 2, 2 -> 4 channels, batch norm:
    # conv1 2*4*9 = 72, bn 8, conv2 4*4*9 = 144, bn 8, shortcut 1x1 2*4 = 8, bn 8  => 248
    assert count_parameters(ResidualBlock(2, 2, 4, stride=2)) == 248
    assert ResidualBlock(2, 2, 4, stride=2)(torch.randn(2, 2, 8, 8)).shape == (2, 4, 4, 4)


def test_pspnet_errors_and_hooks():
    net = PSPNet(2, 1, 2, features=(4, 8, 16, 32))
    with pytest.raises(ValueError, match=r"divisible by 8 .* got spatial size \(20, 20\).*\(24, 24\)"):
        net(torch.zeros(1, 1, 20, 20))
    with pytest.raises(ValueError, match="bins must be a non-empty sequence"):
        PSPNet(2, 1, 2, bins=())
    shapes = []
    net.bottleneck.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    net.last_decoder.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    net.eval()(torch.randn(1, 1, 32, 32))
    assert shapes == [(1, 32, 4, 4), (1, 32, 4, 4)]
