"""Planning rules (medseg_edu.planning, medseg_edu.unet_plan) against hand-worked cases.

Every expected number below is worked out by hand in the comment next to it (nnU-Net's rules applied
on paper); the comparison with nnunetv2 itself lives in tests/test_nnunet_compare.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from medseg_edu.planning import (dataset_fingerprint, nonzero_mask, normalisation_schemes, normalise_image,
                                 plan_experiment, target_spacing)
from medseg_edu.unet_plan import configure_unet, feature_map_size, pooling_plan

# ------------------------------------------------------------------------------- target spacing


def test_target_spacing_is_the_median_for_isotropic_data():
    spacings = [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    np.testing.assert_allclose(target_spacing(spacings, [[50, 50, 50]] * 3), [2, 2, 2], atol=1e-12)


def test_anisotropic_axis_takes_the_10th_percentile():
    # z spacings 3, 5, 5, 5, 5: median 5 > 3 * 1 and median z size 28 * 3 = 84 < 150 -> anisotropic;
    # 10th percentile (linear): position 0.1 * 4 = 0.4 between 3 and 5 -> 3 + 0.4 * 2 = 3.8
    spacings = [[1, 1, 5]] * 4 + [[1, 1, 3]]
    shapes = [[150, 190, 28]] * 5
    np.testing.assert_allclose(target_spacing(spacings, shapes), [1, 1, 3.8], atol=1e-9)


def test_anisotropic_spacing_with_many_voxels_keeps_the_median():
    # z is 5 times coarser, but its median size 100 * 3 = 300 is not below 100: no special rule
    spacings = [[1, 1, 5]] * 4 + [[1, 1, 3]]
    np.testing.assert_allclose(target_spacing(spacings, [[100, 100, 100]] * 5), [1, 1, 5], atol=1e-12)


def test_anisotropic_axis_never_gets_finer_than_the_others():
    # z spacings 0.5, 0.5 and eight 5s: median 5, 10th percentile (position 0.9) = 0.5 < 1 -> 1 + 1e-5
    spacings = [[1, 1, 0.5]] * 2 + [[1, 1, 5]] * 8
    shapes = [[150, 150, 20]] * 10
    np.testing.assert_allclose(target_spacing(spacings, shapes), [1, 1, 1 + 1e-5], atol=1e-12)


def test_target_spacing_rejects_bad_input():
    with pytest.raises(ValueError, match=r"spacings_mm and shapes must both be \(N, D\)"):
        target_spacing([[1, 1, 1]], [[10, 10]])
    with pytest.raises(ValueError, match="finite and > 0"):
        target_spacing([[1, 0, 1]], [[10, 10, 10]])


# ------------------------------------------------------------------------------- normalisation


def test_normalisation_schemes_by_modality_and_crop():
    assert normalisation_schemes(["CT"], median_relative_size_after_crop=0.5) == (["ct"], [False])
    assert normalisation_schemes(["ct", "T1"], median_relative_size_after_crop=0.9) == (["ct", "zscore"],
                                                                                       [False, False])
    assert normalisation_schemes(["FLAIR", "T2w"], median_relative_size_after_crop=0.74) == (
        ["zscore", "zscore"], [True, True])


def test_ct_normalisation_clips_then_uses_the_data_set_statistics():
    image = np.array([[[-2000.0, 0.0], [100.0, 3000.0]]], dtype=np.float32)      # (1, 2, 2)
    stats = [{"percentile_00_5": -1000.0, "percentile_99_5": 1000.0, "mean": 0.0, "std": 500.0}]
    out = normalise_image(image, schemes=["ct"], use_mask=[False], intensity=stats)
    # clip to [-1000, 1000] then (x - 0) / 500: -2, 0, 0.2, 2 (float32 arithmetic: 1e-6 is ample)
    np.testing.assert_allclose(out, [[[-2.0, 0.0], [0.2, 2.0]]], atol=1e-6)


def test_mr_zscore_inside_the_nonzero_mask_or_over_the_image():
    image = np.array([[[0.0, 0.0], [1.0, 3.0]]], dtype=np.float32)
    masked = normalise_image(image, schemes=["zscore"], use_mask=[True])
    # inside the mask {1, 3}: mean 2, std 1 -> -1, 1; outside stays 0
    np.testing.assert_allclose(masked, [[[0.0, 0.0], [-1.0, 1.0]]], atol=1e-6)
    whole = normalise_image(image, schemes=["zscore"], use_mask=[False])
    # all four: mean 1, std sqrt(1.5)
    np.testing.assert_allclose(whole, (image - 1.0) / np.sqrt(1.5), atol=1e-6)


def test_normalise_image_needs_one_scheme_per_channel_and_stats_for_ct():
    image = np.ones((2, 3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="one scheme and one use_mask per channel"):
        normalise_image(image, schemes=["zscore"], use_mask=[True])
    with pytest.raises(ValueError, match="intensity"):
        normalise_image(image[:1], schemes=["ct"], use_mask=[False])


def test_nonzero_mask_fills_holes():
    image = np.zeros((1, 5, 5))
    image[0, 1:4, 1:4] = 1.0
    image[0, 2, 2] = 0.0                  # a hole inside the object
    mask = nonzero_mask(image)
    assert mask.sum() == 9 and mask[2, 2]


# ------------------------------------------------------------------------------- fingerprint


def test_fingerprint_crops_samples_foreground_and_measures_classes():
    image = np.zeros((1, 10, 10, 4), dtype=np.float32)
    image[0, 2:8, 1:6, :] = 100.0            # non-zero box 6 x 5 x 4
    label = np.zeros((10, 10, 4), dtype=np.uint8)
    label[3:5, 2:4, 1:3] = 1                 # 8 voxels of class 1 ...
    image[0][label == 1] = 200.0             # ... at intensity 200
    label[6, 2, 0] = 2                       # 1 voxel of class 2 at intensity 100
    case = {"image": image, "label": label, "spacing_mm": (1.0, 2.0, 3.0)}
    fp = dataset_fingerprint([case, case], channel_names=["T1"], samples_per_case=900, seed=0)
    assert fp["shapes_after_crop"].tolist() == [[6, 5, 4]] * 2 and fp["num_cases"] == 2
    # relative size 120 / 400 = 0.3
    assert abs(fp["median_relative_size_after_crop"] - 0.3) < 1e-12
    # class volumes: 8 voxels * 6 mm^3 = 0.048 ml, 1 voxel = 0.006 ml
    np.testing.assert_allclose(fp["class_volumes_ml"][0], [(400 - 9) * 0.006, 0.048, 0.006], atol=1e-12)
    assert abs(fp["anisotropy"] - 3.0) < 1e-12
    stats = fp["intensity"][0]
    # foreground intensities: 200 (8 of 9 voxels) and 100 (1 of 9); min/max are exact, the mean is
    # 188.9 in expectation; 1800 draws give a standard error of 100 * sqrt(8/81) / sqrt(1800) = 0.74
    assert stats["min"] == pytest.approx(100.0, abs=1e-9) and stats["max"] == pytest.approx(200.0, abs=1e-9)
    assert abs(stats["mean"] - 1700 / 9) < 4.0
    assert "intensity_samples" not in fp
    kept = dataset_fingerprint([case], channel_names=["T1"], samples_per_case=50, seed=0, keep_samples=True)
    assert kept["intensity_samples"][0].shape == (50,) and set(kept["intensity_samples"][0].tolist()) <= {100.0, 200.0}


def test_fingerprint_checks_the_cases():
    case = {"image": np.ones((2, 4, 4, 4)), "label": np.ones((4, 4, 4), dtype=np.uint8), "spacing_mm": (1, 1, 1)}
    with pytest.raises(ValueError, match="channel_names names 1"):
        dataset_fingerprint([case], channel_names=["T1"])
    with pytest.raises(ValueError, match="at least one case"):
        dataset_fingerprint([], channel_names=["T1"])
    with pytest.raises(ValueError, match="no foreground voxel"):
        dataset_fingerprint([{**case, "label": np.zeros((4, 4, 4), dtype=np.uint8)}], channel_names=["a", "b"])


# ------------------------------------------------------------------------------- network topology


def test_pooling_isotropic_until_the_feature_map_is_4_voxels():
    # 96, 112, 96 -> 48, 56, 48 -> 24, 28, 24 -> 12, 14, 12 -> 6, 7, 6: four pools per axis, five stages
    plan = pooling_plan([1.75] * 3, [96, 112, 96])
    assert plan["pools_per_axis"] == [4, 4, 4] and len(plan["pool_kernels"]) == 5
    assert plan["patch_size"] == [96, 112, 96] and plan["divisible_by"] == [16, 16, 16]
    assert plan["conv_kernels"] == [[3, 3, 3]] * 5


def test_pooling_waits_for_the_coarse_axis():
    # spacing (1, 1, 3.8): round 1 pools x, y only (3.8 >= 2 * 1) -> (2, 2, 3.8); then all three until z
    # is 6 voxels (< 8), a fifth round pools x, y (10, 12 -> 5, 6); z convolutions are 1 wide at first
    plan = pooling_plan([1.0, 1.0, 3.8], [160, 192, 48])
    assert plan["pools_per_axis"] == [5, 5, 3]
    assert plan["pool_kernels"] == [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1]]
    assert plan["conv_kernels"] == [[3, 3, 1]] + [[3, 3, 3]] * 5
    assert plan["patch_size"] == [160, 192, 48]


def test_pooling_pads_the_patch_to_a_multiple():
    # 100, 50 -> 50, 25 -> 25, 13 -> 13, 7 -> x alone (13 >= 12) -> 7: pools (4, 3); 100 -> 112, 50 -> 56
    plan = pooling_plan([1.0, 1.0], [100, 50])
    assert plan["pools_per_axis"] == [4, 3] and plan["patch_size"] == [112, 56]


def test_feature_map_size_counts_encoder_decoder_and_output():
    # patch 4x4, one pool: 2*32*16 + 2*64*4 (encoder) + 3*32*16 (decoder) + 3*16 (output) = 3120
    assert feature_map_size([4, 4], [[1, 1], [2, 2]], num_classes=3) == 3120
    # features capped at 48: 2*(32*8 + 48*4 + 48*2) + 3*(32*8 + 48*4) + 2*8 = 2448
    assert feature_map_size([8], [[1], [2], [2]], num_classes=2, max_features=48) == 2448


# patch 64x64 at 1 mm, five stages (64 .. 4): features 32 .. 512, encoder 2 * 253952, decoder 3 * 245760,
# output 2 * 4096: 1_253_376 values in all
FULL_64 = 1_253_376


def test_configure_unet_batch_from_the_budget_and_the_5_percent_cap():
    huge = configure_unet([1.0, 1.0], [64, 64], num_classes=2, dataset_voxels=1e12)
    assert huge["patch_size"] == [64, 64] and huge["n_stages"] == 5 and huge["feature_map_size"] == FULL_64
    assert huge["batch_size"] == round(85e6 / FULL_64 * 12) == 814
    # 5% of 100 images of 64x64 is 5 patches
    assert configure_unet([1.0, 1.0], [64, 64], num_classes=2, dataset_voxels=64 * 64 * 100)["batch_size"] == 5
    # the cap rounds to 0, but the batch never goes below 2
    assert configure_unet([1.0, 1.0], [64, 64], num_classes=2, dataset_voxels=64 * 64 * 10)["batch_size"] == 2


def test_configure_unet_shrinks_the_patch_to_fit_the_budget():
    # budget 190000 < 1253376 / 6: shrink axis 0 (tie -> first); the smaller patch 48 pools 3 times, so
    # the step is 8: 64 -> 56, with 4 stages: 2*215040 + 3*200704 + 2*3584 = 1039360 / 6 < 190000
    plan = configure_unet([1.0, 1.0], [64, 64], num_classes=2, dataset_voxels=1e12,
                          memory_gb=190_000 * 8 / 85e6)
    assert plan["patch_size"] == [56, 64] and plan["n_stages"] == 4 and plan["pools_per_axis"] == [3, 3]
    assert plan["feature_map_size"] == 1_039_360 and plan["batch_size"] == 2


def test_configure_unet_rejects_bad_input():
    with pytest.raises(ValueError, match="median_shape must be 2 sizes"):
        configure_unet([1.0, 1.0], [64, 64, 64], num_classes=2, dataset_voxels=1e6)
    with pytest.raises(ValueError, match="memory_gb"):
        configure_unet([1.0, 1.0], [64, 64], num_classes=2, dataset_voxels=1e6, memory_gb=0)
    with pytest.raises(TypeError, match="num_classes"):
        configure_unet([1.0, 1.0], [64, 64], num_classes=2.0, dataset_voxels=1e6)


def test_plan_experiment_resamples_the_median_shape_and_picks_the_slice_axis():
    fingerprint = {"spacings": [[1.0, 1.0, 5.0]] * 4 + [[1.0, 1.0, 3.0]],
                   "shapes_after_crop": [[150, 190, 28]] * 4 + [[150, 190, 46]],
                   "channel_names": ["FLAIR"], "median_relative_size_after_crop": 0.5}
    plan = plan_experiment(fingerprint, num_classes=2)
    # target z 3.8 (10th percentile); z sizes 28 * 5 / 3.8 = 36.8 -> 37 (four cases), 46 * 3 / 3.8 -> 36
    assert plan["target_spacing_mm"] == pytest.approx([1.0, 1.0, 3.8], abs=1e-9)
    assert plan["median_shape"] == [150, 190, 37] and plan["slice_axis"] == 2
    assert plan["normalisation"] == ["zscore"] and plan["use_mask_for_norm"] == [True]
    assert plan["2d"]["spacing_mm"] == [1.0, 1.0] and len(plan["3d_fullres"]["patch_size"]) == 3


@pytest.mark.slow
def test_builtin_brain_set_gets_the_3d_plan_nnunetv2_measured_in_issue_15():
    # reference: nnunetv2 2.8.1 on the built-in set (issue 15): 3d_fullres 1.75 mm isotropic, patch
    # 96x112x96, batch 2, z-score in the brain mask, 5 stages; 2d patch 112x96 (nnU-Net's y, x order).
    # The 2d batch size depends on the number of cases (5% cap) and is checked against nnunetv2 itself
    # in tests/test_nnunet_compare.py.
    from medseg_edu.data.io import BRAIN_CHANNELS, list_brain_cases, load_brain_case
    from medseg_edu.data.phantoms import builtin_brain

    table = list_brain_cases(builtin_brain())
    cases = (load_brain_case(row.image_path, row.label_path) for row in table.itertuples())
    plan = plan_experiment(dataset_fingerprint(cases, channel_names=BRAIN_CHANNELS), num_classes=4)
    assert plan["target_spacing_mm"] == pytest.approx([1.75] * 3, abs=1e-9)
    full = plan["3d_fullres"]
    assert full["patch_size"] == [96, 112, 96] and full["batch_size"] == 2 and full["n_stages"] == 5
    assert plan["normalisation"] == ["zscore"] * 4 and plan["use_mask_for_norm"] == [True] * 4
    assert plan["2d"]["patch_size"] == [96, 112] and plan["2d"]["n_stages"] == 5


def test_plan_experiment_on_2d_images_has_no_3d_configuration():
    fingerprint = {"spacings": [[0.5, 0.5]] * 3, "shapes_after_crop": [[64, 64]] * 3, "channel_names": ["R"],
                   "median_relative_size_after_crop": 1.0}
    plan = plan_experiment(fingerprint, num_classes=2)
    assert plan["3d_fullres"] is None and plan["slice_axis"] is None and plan["lowres_advised"] is False
    # 64x64 at 0.5 mm: five stages (64 .. 4); 5% of 3 * 4096 voxels rounds to 0 -> the minimum batch 2
    assert plan["2d"]["patch_size"] == [64, 64] and plan["2d"]["n_stages"] == 5 and plan["2d"]["batch_size"] == 2
    assert plan["normalisation"] == ["zscore"] and plan["use_mask_for_norm"] == [False]


def test_plan_experiment_on_single_slice_volumes_has_no_3d_configuration():
    fingerprint = {"spacings": [[1.0, 1.0, 5.0]] * 3, "shapes_after_crop": [[64, 64, 1]] * 3, "channel_names": ["T1"],
                   "median_relative_size_after_crop": 1.0}
    plan = plan_experiment(fingerprint, num_classes=2)
    assert plan["slice_axis"] == 2 and plan["3d_fullres"] is None and plan["2d"]["patch_size"] == [64, 64]
