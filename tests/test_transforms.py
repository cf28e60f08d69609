"""Tests for medseg_edu.transforms: the transform protocol, alignment of paired transforms, label safety, errors."""
import functools

import numpy as np
import pytest
from scipy import ndimage

from medseg_edu import intensity as I
from medseg_edu import transforms as T


def blob_case(spatial=(24, 20, 16), *, seed=0, channels=2):
    """A label with three nested blobs (values 1, 2, 3) and an image whose channel 0 is label * 10."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n) for n in spatial], indexing="ij")
    centre = [n / 2 + rng.uniform(-1, 1) for n in spatial]
    radius = np.sqrt(sum(((g - c) / (n / 4)) ** 2 for g, c, n in zip(grid, centre, spatial)))
    label = np.zeros(spatial, dtype=np.uint8)
    label[radius < 1.6] = 1
    label[radius < 1.0] = 2
    label[radius < 0.5] = 3
    image = np.zeros((channels, *spatial), dtype=np.float32)
    image[0] = label * 10.0
    for c in range(1, channels):
        image[c] = rng.uniform(1, 2, size=spatial)
    return image, label


def threshold_back(channel0):
    """Recover the label from an image whose channel 0 was label * 10 (after linear interpolation)."""
    return np.clip(np.rint(channel0 / 10.0), 0, 3).astype(np.uint8)


SPATIAL_SHAPES = [(24, 20), (24, 20, 16)]


# ------------------------------------------------------------------ exact spatial transforms
@pytest.mark.parametrize("spatial", SPATIAL_SHAPES)
@pytest.mark.parametrize("seed", range(4))
def test_flip_keeps_alignment_exactly(spatial, seed):
    image, label = blob_case(spatial, seed=seed)
    new_image, new_label = T.random_flip(image, label, rng=np.random.default_rng(seed), p=0.5)
    assert new_label.dtype == label.dtype and new_image.dtype == np.float32
    np.testing.assert_array_equal(threshold_back(new_image[0]), new_label)
    np.testing.assert_array_equal(new_image[0], new_label * 10.0)


def test_flip_with_p1_flips_every_axis():
    image, label = blob_case((6, 5, 4))
    label = np.arange(label.size, dtype=np.int64).reshape(label.shape)   # all values distinct
    _, new_label = T.random_flip(image, label, rng=np.random.default_rng(0), p=1.0)
    np.testing.assert_array_equal(new_label, label[::-1, ::-1, ::-1])
    _, same = T.random_flip(image, label, rng=np.random.default_rng(0), p=0.0)
    np.testing.assert_array_equal(same, label)


@pytest.mark.parametrize("spatial,plane", [((24, 20), (0, 1)), ((24, 20, 16), (0, 1)),
                                           ((24, 20, 16), (1, 2)), ((24, 20, 16), (2, 0))])
def test_rot90_keeps_alignment_and_matches_numpy(spatial, plane):
    image, label = blob_case(spatial)
    for seed in range(5):
        new_image, new_label = T.random_rot90(image, label, rng=np.random.default_rng(seed), p=1.0, plane=plane)
        np.testing.assert_array_equal(threshold_back(new_image[0]), new_label)
        # the result must be one of the three non-trivial rotations computed by numpy directly
        options = [np.rot90(label, k=k, axes=plane) for k in (1, 2, 3)]
        assert any(o.shape == new_label.shape and np.array_equal(o, new_label) for o in options)


# ---------------------------------------------------------------- interpolating transforms
@pytest.mark.parametrize("spatial", SPATIAL_SHAPES)
@pytest.mark.parametrize("name", ["affine", "elastic"])
def test_interpolating_transforms_keep_alignment_up_to_boundary(spatial, name):
    image, label = blob_case(spatial)
    fn = {"affine": functools.partial(T.random_affine, max_rotation_deg=15, max_translation_voxels=3),
          "elastic": functools.partial(T.random_elastic, grid_spacing_voxels=6, max_displacement_voxels=3)}[name]
    changed = False
    for seed in range(3):
        new_image, new_label = fn(image, label, rng=np.random.default_rng(seed), p=1.0)
        assert new_image.shape == image.shape and new_label.shape == label.shape
        assert new_label.dtype == label.dtype
        assert set(np.unique(new_label)) <= set(np.unique(label))
        mismatch = threshold_back(new_image[0]) != new_label
        # disagreements only where the label changes (a voxel next to a different label value)
        boundary = ndimage.grey_dilation(new_label, size=3) != ndimage.grey_erosion(new_label, size=3)
        assert not np.any(mismatch & ~boundary)
        assert mismatch.mean() < 0.05
        changed |= not np.array_equal(new_label, label)
    assert changed


def test_affine_identity_settings_change_nothing():
    image, label = blob_case((24, 20, 16))
    new_image, new_label = T.random_affine(image, label, rng=np.random.default_rng(0), p=1.0,
                                           max_rotation_deg=0, max_scale=0, max_translation_voxels=0)
    np.testing.assert_allclose(new_image, image, atol=1e-5)
    np.testing.assert_array_equal(new_label, label)


def test_affine_pure_translation_matches_scipy_shift():
    # with rotation and scale off, the transform is a shift; compare with scipy.ndimage.shift (reference)
    image, label = blob_case((24, 20))
    rng = np.random.default_rng(3)
    new_image, new_label = T.random_affine(image, label, rng=rng, p=1.0, max_rotation_deg=0, max_scale=0,
                                           max_translation_voxels=3)
    # replay the draws: apply-decision, one angle (2D), scale, shift
    replay = np.random.default_rng(3)
    replay.random(); replay.uniform(0, 0, size=1); replay.uniform(1, 1)
    shift = replay.uniform(-3, 3, size=2)
    expected = ndimage.shift(label, -shift, order=0, mode="nearest")
    np.testing.assert_array_equal(new_label, expected)


@pytest.mark.parametrize("padding_mode", ["nearest", "reflect", "constant"])
def test_label_values_never_invented(padding_mode):
    # a label without background: only "constant" padding may add the value 0
    image, label = blob_case((20, 20))
    label = (label + 1).astype(np.int32)
    image[0] = label * 10.0
    _, new_label = T.random_affine(image, label, rng=np.random.default_rng(1), p=1.0, max_rotation_deg=30,
                                   max_translation_voxels=5, padding_mode=padding_mode)
    allowed = set(np.unique(label)) | ({0} if padding_mode == "constant" else set())
    assert set(np.unique(new_label)) <= allowed
    assert new_label.dtype == np.int32


def test_seeded_rng_is_deterministic():
    image, label = blob_case((24, 20, 16))
    augment = T.brain_augmentation(spatial_dims=3)
    a = augment(image, label, np.random.default_rng(42))
    b = augment(image, label, np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    outs = [T.random_elastic(image, label, rng=np.random.default_rng(s), p=1.0)[0] for s in (1, 1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_brain_preset_keeps_labels_and_dtype(spatial_dims):
    image, label = blob_case(SPATIAL_SHAPES[spatial_dims - 2], channels=4)
    augment = T.brain_augmentation(spatial_dims)
    for seed in range(6):
        new_image, new_label = augment(image, label, np.random.default_rng(seed))
        assert new_label.dtype == np.uint8 and new_image.dtype == np.float32
        assert set(np.unique(new_label)) <= {0, 1, 2, 3}
        assert np.isfinite(new_image).all()


def test_skin_preset_stays_in_unit_range():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, size=(3, 32, 32)).astype(np.float32)
    label = (rng.uniform(size=(32, 32)) > 0.5).astype(np.uint8)
    for seed in range(5):
        new_image, new_label = T.skin_augmentation()(image, label, np.random.default_rng(seed))
        assert new_image.min() >= 0 and new_image.max() <= 1
        assert new_label.dtype == np.uint8 and set(np.unique(new_label)) <= {0, 1}


def test_compose_applies_in_order_and_rejects_non_callables():
    calls = []

    def record(name):
        def t(image, label, rng):
            calls.append(name)
            return image + 1, label
        return t

    image, label = blob_case((8, 8))
    out, _ = T.compose(record("a"), record("b"))(image, label, np.random.default_rng(0))
    assert calls == ["a", "b"]
    np.testing.assert_allclose(out, image + 2)
    with pytest.raises(TypeError, match=r"compose step 1 must be a callable transform\(image, label, rng\)"):
        T.compose(record("a"), 3)


# ------------------------------------------------------------------------------ the protocol
def test_random_transforms_with_bound_options_follow_the_protocol():
    # transform(image, label, rng) with rng positional: what datasets and compose call
    image, label = blob_case((6, 5, 4))
    label = np.arange(label.size, dtype=np.int64).reshape(label.shape)   # all values distinct
    flip_all = functools.partial(T.random_flip, p=1.0)
    _, new_label = flip_all(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(new_label, label[::-1, ::-1, ::-1])
    for fn in (T.random_rot90, T.random_affine, T.random_elastic, I.random_gamma, I.random_noise,
               I.random_bias_field):
        out = functools.partial(fn, p=1.0)(image + 1, label, np.random.default_rng(0))
        assert len(out) == 2 and out[0].shape[0] == image.shape[0]


def test_wrong_signature_is_a_type_error_naming_the_protocol():
    image, label = blob_case((8, 8))

    def two_arguments(image, label):
        return image, label

    def keyword_rng(image, label, *, rng):
        return image, label

    for bad in (two_arguments, keyword_rng, lambda image: image):
        with pytest.raises(TypeError, match=r"must follow the transform protocol transform\(image, label, rng\) "
                                            r"-> \(image, label\).*medseg_edu.transforms"):
            T.compose(bad)
    with pytest.raises(TypeError, match=r"compose step 0 must return a pair \(image, label\).*got ndarray"):
        T.compose(lambda image, label, rng: image)(image, label, np.random.default_rng(0))


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_raises(bad):
    image, label = blob_case((8, 8))
    image[0, 2, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        T.random_flip(image, label, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN or Inf"):
        I.zscore_normalise(image)


def test_channels_last_raises_with_both_shapes():
    image, label = blob_case((8, 10), channels=3)
    with pytest.raises(ValueError, match=r"\(8, 10, 3\) and label shape \(8, 10\).*channels-last"):
        T.random_affine(np.moveaxis(image, 0, -1).copy(), label, rng=np.random.default_rng(0))


def test_missing_channel_axis_raises_with_both_shapes():
    image, label = blob_case((8, 10))
    with pytest.raises(ValueError, match=r"image shape \(8, 10\) and label shape \(8, 10\)"):
        T.random_rot90(image[0], label, rng=np.random.default_rng(0))


def test_spatial_mismatch_raises():
    image, label = blob_case((8, 10))
    with pytest.raises(ValueError, match=r"image spatial shape must equal label shape.*\(9, 10\)"):
        T.random_elastic(image, np.zeros((9, 10), dtype=np.uint8), rng=np.random.default_rng(0))


def test_other_bad_arguments_raise():
    image, label = blob_case((8, 10))
    with pytest.raises(TypeError, match="label must be an integer array"):
        T.random_flip(image, label.astype(np.float32), rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        T.random_flip(image, label, rng=0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        I.random_gamma(image, label, rng=np.random.default_rng(0), p=1.5)
    with pytest.raises(TypeError, match=r"p must be a number in \[0, 1\], got str '0.5'"):
        T.random_flip(image, label, rng=np.random.default_rng(0), p="0.5")
    with pytest.raises(ValueError, match="plane must be two different spatial axes"):
        T.random_rot90(image, label, rng=np.random.default_rng(0), plane=(0, 2))
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        T.random_affine(image, label, rng=np.random.default_rng(0), padding_mode="wrap")
    with pytest.raises(ValueError, match="mask must have the spatial shape"):
        I.zscore_normalise(image + 1, mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="lower and upper"):
        I.percentile_clip(image, lower=50, upper=10)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        T.brain_augmentation(4)


def test_brain_preset_refuses_wrong_spatial_dims():
    image, label = blob_case((24, 20))
    with pytest.raises(ValueError, match=r"built for spatial_dims=3, got a label of shape \(24, 20\)"):
        T.brain_augmentation(3)(image, label, np.random.default_rng(0))
