"""Tests for medseg_edu.interpret: CAM and Grad-CAM on toy networks with known answers and on U-Nets."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from medseg_edu.interpret import cam, grad_cam, overlay_cam, resolve_layer  # noqa: E402
from medseg_edu.models import UNet  # noqa: E402


class HalfDetectors(nn.Module):
    """Two feature maps: the positive part of the image in the left half, and in the right half."""

    def forward(self, x):
        width = x.shape[-1]
        left = torch.zeros_like(x)
        left[..., : width // 2] = 1
        positive = F.relu(x)
        return torch.cat([positive * left, positive * (1 - left)], dim=1)


class LeftRightNet(nn.Module):
    """Class 1 reads only the left-half detector, class 0 only the right-half one."""

    def __init__(self):
        super().__init__()
        self.features = HalfDetectors()
        self.head = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]).reshape(2, 2, 1, 1))

    def forward(self, x):
        return self.head(self.features(x))


def positive_image(seed=0, shape=(2, 1, 6, 8)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) + 0.1


def normalise_per_image(maps):
    peak = maps.flatten(1).amax(1).reshape(-1, *([1] * (maps.ndim - 1)))
    return maps / peak


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("method", ["grad_cam_mean", "grad_cam_mask", "cam"])
def test_class_reading_left_half_gets_left_half_map(method):
    net = LeftRightNet()
    x = positive_image()
    if method == "cam":
        maps = cam(net, x, target_class=1, layer="features", head="head")
    else:
        maps = grad_cam(net, x, target_class=1, layer="features", reduce=method.split("_")[-1])
    # by hand: alpha = (positive, 0), so the map is the left-half image divided by its maximum
    expected = x[:, 0].clone()
    expected[..., 4:] = 0
    torch.testing.assert_close(maps, normalise_per_image(expected))
    assert maps[..., 4:].sum() == 0 and maps[..., :4].min() > 0          # all CAM mass on the left
    right = (grad_cam(net, x, target_class=0, layer=net.features, reduce="mean") if method != "cam"
             else cam(net, x, target_class=0, layer=net.features))
    assert right[..., :4].abs().sum() == 0 and right[..., 4:].min() > 0


def test_grad_cam_mask_empty_prediction_gives_zero_map():
    net = LeftRightNet()
    x = positive_image()
    x[1, :, :, :4] = -1.0            # image 1: nothing on the left, so class 1 is never predicted
    maps = grad_cam(net, x, target_class=1, layer="features", reduce="mask")
    assert torch.equal(maps[1], torch.zeros(6, 8)) and maps[0].max().item() == pytest.approx(1.0)


def test_unet_cam_is_clipped_logit_map_minus_bias():
    torch.manual_seed(0)
    net = UNet(2, 2, 3, features=(4, 8, 16)).eval()
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        raw = F.relu(net(x)[:, 2] - net.head.bias[2])
    torch.testing.assert_close(cam(net, x, target_class=2), normalise_per_image(raw))
    # Grad-CAM of the whole-image mean at the layer feeding the head: the gradient is
    # w[c, k] / n_voxels everywhere, so alpha is proportional to the head weights -> same map
    torch.testing.assert_close(grad_cam(net, x, target_class=2, layer="last_decoder", reduce="mean"),
                               cam(net, x, target_class=2), rtol=1e-5, atol=1e-6)


def test_unet_grad_cam_bottleneck_matches_manual_forward():
    torch.manual_seed(1)
    net = UNet(2, 2, 3, features=(4, 8, 16)).eval()
    x = torch.randn(1, 2, 16, 16)
    # the U-Net's forward written out, with the bottleneck output as a leaf tensor
    skips = [net.stem(x)]
    for encoder in net.encoders:
        skips.append(encoder(skips[-1]))
    a = net.bottleneck(skips[-1]).detach().requires_grad_(True)
    h = a
    for decoder, skip in zip(net.decoders, reversed(skips)):
        h = decoder(h, skip)
    logits = net.head(h)
    mask = logits.argmax(1) == 1
    (grad,) = torch.autograd.grad((logits[:, 1] * mask).sum(), a)
    weighted = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True)).detach()
    expected = F.interpolate(weighted, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    got = grad_cam(net, x, target_class=1, layer="bottleneck", reduce="mask")
    torch.testing.assert_close(got, normalise_per_image(expected), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- shapes, hooks, modes
@pytest.mark.parametrize("spatial_dims,size", [(2, (16, 12)), (3, (8, 8, 12))])
@pytest.mark.parametrize("layer", ["bottleneck", "last_decoder"])
def test_unet_shapes_range_hooks_and_modes(spatial_dims, size, layer):
    torch.manual_seed(2)
    net = UNet(spatial_dims, 1, 2, features=(2, 4, 8), dropout=0.2).train()
    x = torch.randn((2, 1) + size)
    maps = grad_cam(net, x, target_class=1, layer=layer)
    assert maps.shape == (2,) + size
    assert maps.min() >= 0 and maps.max() <= 1 and not maps.requires_grad
    assert cam(net, x, target_class=0).shape == (2,) + size
    assert all(m.training for m in net.modules())                       # modes restored
    assert all(not m._forward_hooks for m in net.modules())             # hooks removed
    assert all(p.grad is None for p in net.parameters())                # weights untouched


def test_hooks_removed_and_mode_restored_after_errors():
    net = UNet(2, 1, 2, features=(2, 4)).train()
    net.stem.eval()
    with pytest.raises(ValueError, match="in_channels=1"):
        grad_cam(net, torch.randn(1, 3, 8, 8), target_class=1)          # fails inside forward
    with pytest.raises(ValueError, match=r"target_class must be an int in \[0, 1\]"):
        grad_cam(net, torch.randn(1, 1, 8, 8), target_class=2)
    assert all(not m._forward_hooks for m in net.modules())
    assert net.training and not net.stem.training and net.bottleneck.training


def test_layer_resolution_and_errors():
    net = UNet(2, 1, 2, features=(2, 4, 8))
    assert resolve_layer(net, "bottleneck") is net.bottleneck
    assert resolve_layer(net, "last_decoder") is net.decoders[-1]
    assert resolve_layer(net, "decoders.0") is net.decoders[0]
    x = torch.randn(1, 1, 8, 8)
    assert grad_cam(net, x, target_class=0, layer="decoders.0").shape == (1, 8, 8)
    with pytest.raises(ValueError, match="layer 'decoder' not found"):
        grad_cam(net, x, target_class=0, layer="decoder")
    with pytest.raises(ValueError, match="not a submodule"):
        grad_cam(net, x, target_class=0, layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="reduce must be one of"):
        grad_cam(net, x, target_class=0, reduce="sum")
    with pytest.raises(ValueError, match="CAM needs the layer that feeds the head"):
        cam(net, x, target_class=0, layer="bottleneck")
    with pytest.raises(ValueError, match="one case"):
        grad_cam(net, x[0], target_class=0)


def test_layer_followed_by_inplace_relu_and_unused_layer():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(3, 2, 1))
    for p in net.parameters():
        p.requires_grad_(False)                      # frozen weights: gradients still reach A
    x = torch.randn(1, 1, 6, 6)
    maps = grad_cam(net, x, target_class=1, layer="0", reduce="mean")
    with torch.no_grad():
        a = net[0](x)
    expected = F.relu((net[2].weight[1, :, 0, 0].reshape(1, 3, 1, 1) * (a > 0)).mean((2, 3),
                                                                                  keepdim=True)
                      .mul(a).sum(1)) / 36
    torch.testing.assert_close(maps, normalise_per_image(expected))
    unused = UNet(2, 1, 2, features=(2, 4, 8), deep_supervision=True)
    with pytest.raises(ValueError, match="was not used in the forward pass"):
        grad_cam(unused, torch.randn(1, 1, 8, 8), target_class=0, layer="ds_heads.0")


def test_overlay_cam_draws_two_layers():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    out = overlay_cam(torch.rand(3, 8, 8), torch.rand(8, 8), ax=ax)
    assert out is ax and len(ax.images) == 2
    assert len(overlay_cam(torch.rand(8, 8), torch.rand(8, 8)).images) == 2
    with pytest.raises(ValueError, match="cam2d must have the image's shape"):
        overlay_cam(torch.rand(8, 8), torch.rand(4, 4), ax=ax)
    plt.close("all")
