"""Tests for medseg_edu.intensity: z-score and percentile clip by hand, random intensity transforms."""
import numpy as np
import pytest

from medseg_edu import intensity as I
from test_transforms import blob_case


def test_zscore_mean0_std1_inside_mask_and_zero_outside():
    rng = np.random.default_rng(0)
    image = np.zeros((2, 16, 16, 8), dtype=np.float32)
    mask = np.zeros((16, 16, 8), dtype=bool)
    mask[3:13, 2:14, 1:7] = True
    image[0][mask] = rng.normal(100, 20, size=mask.sum())
    image[1][mask] = rng.gamma(2.0, 50.0, size=mask.sum()) + 1
    out = I.zscore_normalise(image, mask=mask)
    for c in range(2):
        values = out[c][mask].astype(np.float64)
        assert abs(values.mean()) < 1e-5 and abs(values.std() - 1) < 1e-5
        # hand check against the definition on one voxel
        ref = image[c][mask].astype(np.float64)
        assert np.isclose(out[c][mask][0], (ref[0] - ref.mean()) / ref.std(), atol=1e-5)
    assert np.all(out[:, ~mask] == 0)
    # the default mask (any channel > 0) is this same mask here
    np.testing.assert_allclose(I.zscore_normalise(image), out, atol=1e-6)


def test_zscore_hand_worked_case():
    image = np.array([[[0.0, 2.0], [4.0, 0.0]]], dtype=np.float32)   # (1, 2, 2); foreground 2 and 4
    out = I.zscore_normalise(image)
    np.testing.assert_allclose(out, [[[0.0, -1.0], [1.0, 0.0]]], atol=1e-6)


def test_percentile_clip_matches_numpy():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 50, 40)).astype(np.float32)
    image[0, 0, 0] = 1e6
    out = I.percentile_clip(image, lower=1, upper=99)
    for c in range(2):
        low, high = np.percentile(image[c], [1, 99])
        np.testing.assert_allclose(out[c], np.clip(image[c], low, high))
    assert out.max() < 10


def test_intensity_transforms_leave_label_and_shape_unchanged():
    image, label = blob_case((24, 20, 16))
    image = image + 1.0
    for fn in (I.random_gamma, I.random_noise, I.random_bias_field):
        new_image, new_label = fn(image, label, rng=np.random.default_rng(0), p=1.0)
        assert new_image.shape == image.shape and new_image.dtype == np.float32
        assert new_label is label
        assert not np.allclose(new_image, image)
        same, _ = fn(image, label, rng=np.random.default_rng(0), p=0.0)
        np.testing.assert_array_equal(same, image)


def test_gamma_keeps_channel_range_and_order():
    image, label = blob_case((16, 16))
    new_image, _ = I.random_gamma(image, label, rng=np.random.default_rng(0), p=1.0)
    for c in range(image.shape[0]):
        assert np.isclose(new_image[c].min(), image[c].min()) and np.isclose(new_image[c].max(), image[c].max())
        order = np.argsort(image[c].ravel(), kind="stable")
        assert np.all(np.diff(new_image[c].ravel()[order]) >= -1e-5)   # monotone map


def test_bias_field_is_smooth_and_bounded():
    image = np.ones((1, 64, 64), dtype=np.float32)
    label = np.zeros((64, 64), dtype=np.uint8)
    out, _ = I.random_bias_field(image, label, rng=np.random.default_rng(0), p=1.0, max_log_gain=0.3)
    assert out.min() > np.exp(-0.45) and out.max() < np.exp(0.45)
    assert np.abs(np.diff(out[0], axis=0)).max() < 0.05



def test_constant_image_to_normalise_raises():
    with pytest.raises(ValueError, match="channel 1 is constant"):
        I.zscore_normalise(np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 3.0)]).astype(np.float32))
    with pytest.raises(ValueError, match="mask is empty"):
        I.zscore_normalise(np.zeros((1, 4, 4), dtype=np.float32))


def test_percentile_clip_with_mask_ignores_the_background():
    # brain values 1..100 inside a mask, zero background outside (most of the image)
    image = np.zeros((1, 20, 20), dtype=np.float32)
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    image[0][mask] = np.arange(1, 101, dtype=np.float32)
    out = I.percentile_clip(image, lower=10, upper=90, mask=mask)
    low, high = np.percentile(np.arange(1, 101), [10, 90])   # 10.9 and 90.1 by numpy's linear rule
    assert np.isclose(out[0][mask].min(), low) and np.isclose(out[0][mask].max(), high)
    assert np.isclose(out[0][~mask].min(), low)              # background is clipped up too
    without = I.percentile_clip(image, lower=10, upper=90)
    assert without[0].min() == 0.0                            # the pitfall the mask avoids
    with pytest.raises(ValueError, match="mask must have the spatial shape"):
        I.percentile_clip(image, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="mask is empty"):
        I.percentile_clip(image, mask=np.zeros((20, 20), bool))
