"""Tests for medseg_edu.inference: sliding window vs MONAI, slices, labels."""
import numpy as np
import pytest
import torch
from torch import nn

from medseg_edu.inference import (predict_slices, probs_to_labels, sliding_window_inference, window_starts,
                                  window_weights)
from medseg_edu.models import UNet


def tiny_unet(spatial_dims, in_channels=2, out_channels=3, **kwargs):
    torch.manual_seed(0)
    return UNet(spatial_dims, in_channels, out_channels, features=(4, 8), **kwargs).eval()


def monai_reference(x, net, roi, *, overlap, mode, sigma_scale=0.125, sw_batch_size=4,
                    padding_mode="constant"):
    monai_inferers = pytest.importorskip("monai.inferers")      # test-only reference
    with torch.no_grad():
        return monai_inferers.sliding_window_inference(
            x, roi, sw_batch_size, net, overlap=overlap, mode=mode, sigma_scale=sigma_scale,
            padding_mode=padding_mode)


# ----------------------------------------------------------------------------- window placement
def test_window_starts_hand_worked():
    # step int(64 * 0.5) = 32: 0, 32, then 64 would overshoot 100 -> last window flush at 36
    assert window_starts(100, 64, overlap=0.5) == [0, 32, 36]
    assert window_starts(128, 64, overlap=0.5) == [0, 32, 64]
    assert window_starts(64, 64, overlap=0.5) == [0]
    assert window_starts(10, 4, overlap=0.0) == [0, 4, 6]
    assert window_starts(5, 4, overlap=0.9) == [0, 1]        # step never below 1


@pytest.mark.parametrize("size,roi,overlap", [(100, 64, 0.5), (37, 8, 0.25), (13, 5, 0.7),
                                              (9, 9, 0.3), (50, 16, 0.0)])
def test_window_starts_match_monai(size, roi, overlap):
    monai_inferers = pytest.importorskip("monai.inferers")
    seen = []

    def record(windows, coords):             # MONAI passes each window's slices with_coord=True
        seen.extend(c[2].start for c in coords)
        return windows

    monai_inferers.sliding_window_inference(torch.zeros(1, 1, size, 3), (roi, 3), 1, record,
                                            overlap=overlap, with_coord=True)
    assert window_starts(size, roi, overlap=overlap) == sorted(set(seen))


@pytest.mark.parametrize("roi,sigma", [((16, 16), 0.125), ((7, 12, 9), 0.25), ((32, 24, 40), 0.125),
                                       ((10, 6), (0.1, 0.3))])
def test_window_weights_match_monai(roi, sigma):
    pytest.importorskip("monai")
    from monai.data.utils import compute_importance_map
    expected = compute_importance_map(roi, mode="gaussian", sigma_scale=sigma)
    got = window_weights(roi, blend="gaussian", sigma_scale=sigma)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_window_weights_hand_worked():
    # 1D, roi 3, sigma = 0.5 * 3 = 1.5: distances -1, 0, 1
    w = window_weights((3,), blend="gaussian", sigma_scale=0.5)
    e = np.exp(-1 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(w.numpy(), [e, 1.0, e], rtol=1e-6)
    assert torch.equal(window_weights((2, 3), blend="constant"), torch.ones(2, 3))
    # tails are clipped at 1e-3
    assert window_weights((64,), sigma_scale=0.05).min().item() == pytest.approx(1e-3)


# ----------------------------------------------------------------------------- sliding window
@pytest.mark.parametrize("shape,roi,overlap,mode,sw", [
    ((2, 2, 12, 9, 11), (8, 8, 8), 0.25, "gaussian", 3),      # not multiples of the roi, N=2
    ((1, 2, 6, 30, 9), (8, 16, 8), 0.5, "constant", 3),       # smaller than the roi: padding
    ((1, 2, 20, 18, 16), 16, 0.6, "gaussian", 1),
])
def test_sliding_window_3d_matches_monai(shape, roi, overlap, mode, sw):
    net = tiny_unet(3)
    torch.manual_seed(1)
    x = torch.randn(shape)
    expected = monai_reference(x, net, roi, overlap=overlap, mode=mode, sw_batch_size=sw)
    got = sliding_window_inference(net, x, roi_size=roi, overlap=overlap, blend=mode,
                                   sw_batch_size=sw)
    assert got.shape == (shape[0], 3) + shape[2:]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape,roi,overlap,mode,sigma,pad", [
    ((1, 2, 37, 50), (16, 16), 0.25, "gaussian", 0.125, "constant"),
    ((3, 2, 30, 21), (16, 8), 0.5, "constant", 0.125, "constant"),
    ((1, 2, 10, 45), (16, 16), 0.3, "gaussian", 0.3, "reflect"),   # padded along x
    ((1, 2, 9, 9), (16, 16), 0.5, "gaussian", 0.125, "replicate"),
])
def test_sliding_window_2d_matches_monai(shape, roi, overlap, mode, sigma, pad):
    net = tiny_unet(2)
    torch.manual_seed(2)
    x = torch.randn(shape)
    expected = monai_reference(x, net, roi, overlap=overlap, mode=mode, sigma_scale=sigma,
                               padding_mode=pad)
    got = sliding_window_inference(net, x, roi_size=roi, overlap=overlap, blend=mode,
                                   sigma_scale=sigma, padding_mode=pad)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_sliding_window_constant_blend_is_average_of_overlaps():
    # a network that returns its input: every blend of identical values gives the input back
    x = torch.randn(1, 2, 23, 19)
    got = sliding_window_inference(nn.Identity().eval(), x, roi_size=8, overlap=0.5, blend="gaussian")
    torch.testing.assert_close(got, x)
    # a network that returns ones: output 1 everywhere whatever the weights
    ones = sliding_window_inference(lambda w: torch.ones_like(w), x, roi_size=(8, 5), overlap=0.4)
    torch.testing.assert_close(ones, torch.ones_like(x))


def test_sliding_window_returns_normal_tensor_on_input_device():
    x = torch.randn(1, 2, 16, 16)
    out = sliding_window_inference(tiny_unet(2), x, roi_size=8)
    out += 1                      # inference tensors would refuse an in-place update here
    assert out.device == x.device and not out.requires_grad


def test_sliding_window_errors_and_warning():
    net = tiny_unet(2)
    x = torch.randn(1, 2, 16, 16)
    with pytest.raises(ValueError, match="roi_size must have one entry per spatial axis"):
        sliding_window_inference(net, x, roi_size=(8, 8, 8))
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        sliding_window_inference(net, x, roi_size=8, overlap=1.0)
    with pytest.raises(ValueError, match="blend must be one of"):
        sliding_window_inference(net, x, roi_size=8, blend="linear")
    with pytest.raises(ValueError, match="missing|one case without batch axis"):
        sliding_window_inference(net, x[0], roi_size=8)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        sliding_window_inference(net, x.numpy(), roi_size=8)
    with pytest.raises(ValueError, match="sw_batch_size must be an int >= 1"):
        sliding_window_inference(net, x, roi_size=8, sw_batch_size=0)
    with pytest.raises(ValueError, match="must keep the spatial size"):
        sliding_window_inference(lambda w: w[..., :4], x, roi_size=8)
    deep = UNet(2, 2, 3, features=(4, 8, 16), deep_supervision=True).train()
    with pytest.warns(UserWarning, match="training mode"), \
            pytest.raises(TypeError, match="call model.eval"):
        sliding_window_inference(deep, x, roi_size=8)


# ----------------------------------------------------------------------------- slices
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_predict_slices_equals_hand_loop(axis):
    net = tiny_unet(2)
    torch.manual_seed(3)
    volume = torch.randn(2, 8, 12, 6)
    got = predict_slices(net, volume, axis=axis, batch_size=5)
    a = axis % 3
    with torch.no_grad():
        expected = torch.stack([net(volume.select(1 + a, i)[None])[0]
                                for i in range(volume.shape[1 + a])], dim=1 + a)
    assert got.shape == (3, 8, 12, 6)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_predict_slices_numpy_and_errors():
    net = tiny_unet(2)
    volume = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    assert predict_slices(net, volume).shape == (3, 4, 4, 3)
    with pytest.raises(ValueError, match=r"one case \(C, X, Y, Z\)"):
        predict_slices(net, volume[None])
    with pytest.raises(ValueError, match="axis must be a spatial axis"):
        predict_slices(net, volume, axis=3)


# ----------------------------------------------------------------------------- labels
def test_probs_to_labels():
    logits = torch.tensor([[[[2.0, -1.0]], [[1.0, 3.0]], [[0.0, 0.0]]]])   # (1, 3, 1, 2)
    assert probs_to_labels(logits, activation="softmax").tolist() == [[[[0, 1]]]]
    assert probs_to_labels(torch.softmax(logits, 1), activation="softmax").tolist() == [[[[0, 1]]]]
    binary = probs_to_labels(torch.tensor([[[-0.1, 0.2]]]), activation="sigmoid")
    assert binary.dtype == torch.uint8 and binary.tolist() == [[[0, 1]]]
    probs = torch.tensor([[[0.3, 0.8]]])
    assert probs_to_labels(probs, activation="none", threshold=0.25).tolist() == [[[1, 1]]]
    with pytest.raises(ValueError, match="needs at least 2 channels"):
        probs_to_labels(probs[:, :1], activation="softmax")
    with pytest.raises(ValueError, match="expects probabilities"):
        probs_to_labels(probs + 1, activation="none")
    with pytest.raises(ValueError, match="activation must be one of"):
        probs_to_labels(probs, activation="relu")


def test_probs_to_labels_none_has_the_losses_meaning():
    # activation="none" with K >= 2: class probabilities, read as softmax's are (argmax), as the
    # losses read them; a per-channel threshold would give two foreground channels at pixel 1.
    probs = torch.tensor([[[[0.2, 0.1]], [[0.7, 0.55]], [[0.1, 0.35]]]])   # (1, 3, 1, 2), sums to 1
    labels = probs_to_labels(probs, activation="none")
    assert labels.dtype == torch.int64 and labels.tolist() == [[[[1, 1]]]]
    assert torch.equal(labels, probs_to_labels(torch.log(probs), activation="softmax"))
    # K = 1: one foreground probability, thresholded (as the losses read it, like sigmoid)
    one = torch.tensor([[[[0.2, 0.6]]]])                                     # (1, 1, 1, 2)
    assert probs_to_labels(one, activation="none").tolist() == [[[[0, 1]]]]
    assert torch.equal(probs_to_labels(one, activation="none"), probs_to_labels(torch.logit(one), activation="sigmoid"))
