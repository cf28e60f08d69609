"""Tests for medseg_edu.models.unet: shapes, errors, attention gates, deep supervision."""
import pytest
import torch

from medseg_edu.models import (AttentionGate, DecoderStep, DoubleConv, EncoderStep, UNet,
                               count_parameters, deep_supervision_loss)

TINY = (4, 8, 16)


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (3, 16)])
@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("up", ["transpose", "interp"])
def test_output_shape(spatial_dims, size, attention, up):
    net = UNet(spatial_dims, 3, 5, features=TINY, attention=attention, up=up)
    x = torch.randn(2, 3, *([size] * spatial_dims))
    assert net(x).shape == (2, 5, *([size] * spatial_dims))


def test_non_square_and_batch_norm():
    net = UNet(2, 1, 2, features=TINY, norm="batch", dropout=0.2)
    assert net(torch.randn(3, 1, 16, 40)).shape == (3, 2, 16, 40)


def test_blocks_shapes():
    x = torch.randn(2, 3, 16, 16)
    assert DoubleConv(2, 3, 6)(x).shape == (2, 6, 16, 16)
    assert EncoderStep(2, 3, 6)(x).shape == (2, 6, 8, 8)
    coarse = torch.randn(2, 8, 8, 8)
    assert DecoderStep(2, 8, 3, 4)(coarse, x).shape == (2, 4, 16, 16)
    assert DecoderStep(2, 8, 3, 4, up="interp", attention=True)(coarse, x).shape == (2, 4, 16, 16)


def test_wrong_ndim_message():
    with pytest.raises(ValueError, match=r"UNet\(spatial_dims=3\) expects \(N, C, D, H, W\), "
                                         r"got a 4-D tensor \(2, 4, 64, 64\)"):
        UNet(3, 4, 4, features=TINY)(torch.zeros(2, 4, 64, 64))
    with pytest.raises(ValueError, match=r"UNet\(spatial_dims=2\) expects \(N, C, H, W\), got a 5-D"):
        UNet(2, 4, 4, features=TINY)(torch.zeros(1, 4, 8, 8, 8))
    with pytest.raises(ValueError, match="missing batch axis"):
        UNet(2, 4, 4, features=TINY)(torch.zeros(4, 8, 8))


def test_wrong_channels_message():
    with pytest.raises(ValueError, match=r"in_channels=4 .* got C=3"):
        UNet(2, 4, 4, features=TINY)(torch.zeros(2, 3, 32, 32))


def test_indivisible_size_message():
    # 3 levels of pooling (4 features) -> divisible by 8; 60 is not, 64 is the next that works
    with pytest.raises(ValueError, match=r"divisible by 8 .* got spatial size \(60, 64\).*\(64, 64\)"):
        UNet(2, 1, 2, features=(4, 8, 16, 32))(torch.zeros(1, 1, 60, 64))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="expects a torch.Tensor, got ndarray"):
        import numpy as np
        UNet(2, 1, 2, features=TINY)(np.zeros((1, 1, 32, 32), dtype="float32"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(spatial_dims=1), "spatial_dims must be 2 or 3, got 1"),
    (dict(in_channels=0), "in_channels must be a positive int, got 0"),
    (dict(features=(8,)), "features must be a sequence of at least 2"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (dict(norm="group"), "norm must be one of"),
    (dict(up="nearest"), "up must be one of"),
])
def test_bad_options(kwargs, match):
    args = dict(spatial_dims=2, in_channels=1, out_channels=2, features=TINY)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        UNet(args.pop("spatial_dims"), args.pop("in_channels"), args.pop("out_channels"), **args)


def test_count_parameters_hand_worked():
    # conv1 1->2 3x3 no bias: 18; instance norm affine: 2+2; conv2 2->2: 36; norm: 4  => 62
    assert count_parameters(DoubleConv(2, 1, 2)) == 62
    # 1x1 head 4->3 with bias = 15, frozen parameters not counted unless asked
    head = torch.nn.Conv2d(4, 3, 1)
    head.bias.requires_grad_(False)
    assert count_parameters(head) == 12
    assert count_parameters(head, trainable_only=False) == 15
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        count_parameters("net")


def test_attention_gate_zero_weights_halves_skip():
    # with all weights and biases zero, alpha = sigmoid(0) = 0.5 everywhere
    gate = AttentionGate(2, 3, 6, 2)
    for p in gate.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 3, 8, 8)
    out = gate(x, torch.randn(2, 6, 4, 4))
    torch.testing.assert_close(out, 0.5 * x)
    assert gate.attention_map.shape == (2, 1, 8, 8)


def test_attention_map_in_unit_interval():
    net = UNet(2, 1, 2, features=TINY, attention=True)
    net(torch.randn(1, 1, 32, 32))
    alpha = net.decoders[-1].gate.attention_map
    assert alpha.shape == (1, 1, 32, 32)
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0


def test_deep_supervision_train_list_eval_tensor():
    net = UNet(2, 1, 3, features=(4, 8, 16, 32), deep_supervision=True)
    outs = net.train()(torch.randn(2, 1, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    assert net.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def test_deep_supervision_all_parameters_get_gradients():
    net = UNet(2, 1, 2, features=TINY, deep_supervision=True, attention=True).train()
    target = torch.randint(0, 2, (2, 1, 16, 16))
    def ce(pred, t):
        return torch.nn.functional.cross_entropy(pred, t[:, 0])

    loss = deep_supervision_loss(net(torch.randn(2, 1, 16, 16)), target, ce)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_deep_supervision_loss_hand_worked():
    # target 4x4; nearest downsampling to 2x2 keeps rows/cols 0 and 2
    target = torch.tensor([[1, 0, 1, 0],
                           [0, 0, 0, 0],
                           [0, 0, 1, 1],
                           [0, 0, 0, 0]]).reshape(1, 1, 4, 4)
    outputs = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
    seen = []

    def loss_fn(pred, t):
        seen.append(tuple(t.shape))
        assert t.dtype == torch.int64
        return t.float().sum()          # 2+2 = 4 at full size, 1+1+0+1 = 3 at half size

    loss = deep_supervision_loss(outputs, target, loss_fn)
    assert seen == [(1, 1, 4, 4), (1, 1, 2, 2)]
    assert float(loss) == pytest.approx((1.0 * 4 + 0.5 * 3) / 1.5)
    loss = deep_supervision_loss(outputs, target, loss_fn, weights=[0.0, 2.0])
    assert float(loss) == pytest.approx(3.0)
    # a plain tensor goes straight to the loss
    assert float(deep_supervision_loss(outputs[0], target, loss_fn)) == 4.0
    with pytest.raises(ValueError, match=r"weights must have one entry per output \(2\), got 1"):
        deep_supervision_loss(outputs, target, loss_fn, weights=[1.0])


def test_gradcam_hook_points():
    net = UNet(2, 1, 2, features=TINY)
    shapes = {}
    net.bottleneck.register_forward_hook(lambda m, i, o: shapes.__setitem__("b", tuple(o.shape)))
    net.last_decoder.register_forward_hook(lambda m, i, o: shapes.__setitem__("d", tuple(o.shape)))
    net(torch.randn(2, 1, 32, 32))
    assert shapes == {"b": (2, 16, 8, 8), "d": (2, 4, 32, 32)}


def test_dropout_is_stochastic_in_train_only():
    torch.manual_seed(0)
    net = UNet(2, 1, 2, features=TINY, dropout=0.5)
    x = torch.randn(1, 1, 16, 16)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    assert not torch.allclose(net(x), net(x))



@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_instance_norm_matches_torch_instance_norm(spatial_dims):
    from medseg_edu.models.unet import norm_layer
    x = torch.randn(2, 3, *([6] * spatial_dims))
    ref = {2: torch.nn.InstanceNorm2d, 3: torch.nn.InstanceNorm3d}[spatial_dims](3, affine=True)
    torch.testing.assert_close(norm_layer("instance", spatial_dims, 3)(x), ref(x), atol=1e-5, rtol=1e-5)
