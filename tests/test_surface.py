"""Tests for medseg_edu.surface: MONAI as the reference, plus a brute-force oracle on analytic shapes."""
import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from medseg_edu.surface import (assd_distance, hausdorff_distance, hd95_distance, surface_dice_score,
                                surface_distances, surface_metrics, surface_voxels)


def _monai_metrics():
    """MONAI is a test-only reference: only the tests that compare with it skip when it is missing."""
    return pytest.importorskip("monai.metrics")


# ----------------------------------------------------------------------------- references
def monai_values(pred, target, spacing, tolerance):
    """HD95, HD, ASSD (symmetric) and NSD from MONAI on one binary pair."""
    p = torch.as_tensor(pred, dtype=torch.float32)[None, None]
    t = torch.as_tensor(target, dtype=torch.float32)[None, None]
    monai_metrics = _monai_metrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = monai_metrics.compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                                        spacing=spacing).item()
        hd = monai_metrics.compute_hausdorff_distance(p, t, include_background=True, spacing=spacing).item()
        assd = monai_metrics.compute_average_surface_distance(p, t, include_background=True, symmetric=True,
                                                              spacing=spacing).item()
        nsd = monai_metrics.compute_surface_dice(p, t, [tolerance], include_background=True,
                                                 spacing=spacing).item()
    return {"hd95": hd95, "hausdorff": hd, "assd": assd, "nsd": nsd}


def brute_surface(mask):
    """Surface voxels by looping over every voxel and its face neighbours (outside = background)."""
    surface = np.zeros_like(mask, dtype=bool)
    for index in zip(*np.nonzero(mask)):
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            neighbour = list(index)
            neighbour[axis] += step
            if not 0 <= neighbour[axis] < mask.shape[axis] or not mask[tuple(neighbour)]:
                surface[index] = True
    return surface


def brute_distances(pred, target, spacing):
    """All pairwise distances between surface voxel coordinates (in mm), minimum per row."""
    p = np.argwhere(brute_surface(pred)) * np.asarray(spacing)
    t = np.argwhere(brute_surface(target)) * np.asarray(spacing)
    pairwise = cdist(p, t)
    return pairwise.min(axis=1), pairwise.min(axis=0)


def random_blobs(shape, seed, fraction=0.5, touch_border=False):
    """Smooth random blobs: thresholded Gaussian-filtered noise."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    mask = noise > np.quantile(noise, 1 - fraction)
    if not touch_border:  # keep a 2-voxel background margin
        inner = np.zeros(shape, dtype=bool)
        inner[tuple(slice(2, -2) for _ in shape)] = True
        mask &= inner
    return mask


def ellipsoid(shape, centre, radii_mm, spacing):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii_mm)) <= 1.0


# ----------------------------------------------------------------------------- against MONAI
CASES = [(dims, spacing_kind, seed) for dims in (2, 3) for spacing_kind in ("iso", "aniso")
         for seed in range(6)]


@pytest.mark.parametrize("dims, spacing_kind, seed", CASES)
def test_surface_metrics_match_monai(dims, spacing_kind, seed):
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(n) for n in rng.integers(20, 44 if dims == 2 else 26, size=dims))
    spacing = (1.0,) * dims if spacing_kind == "iso" else tuple(float(s) for s in rng.uniform(0.4, 2.5, dims))
    touch = seed % 2 == 1  # half of the cases reach the image border
    pred = random_blobs(shape, seed=2 * seed, fraction=rng.uniform(0.2, 0.6), touch_border=touch)
    target = random_blobs(shape, seed=2 * seed + 1, fraction=rng.uniform(0.2, 0.6), touch_border=touch)
    tolerance = float(rng.uniform(0.5, 3.0))
    ours = surface_metrics(pred, target, spacing_mm=spacing, tolerance_mm=tolerance)
    ref = monai_values(pred, target, spacing, tolerance)
    for key in ref:  # MONAI works in float32: compare to 1e-5 (absolute and relative)
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-5, err_msg=key)
    # the one-metric functions agree with surface_metrics
    assert hd95_distance(pred, target, spacing_mm=spacing) == ours["hd95"]
    assert hausdorff_distance(pred, target, spacing_mm=spacing) == ours["hausdorff"]
    assert assd_distance(pred, target, spacing_mm=spacing) == ours["assd"]
    assert surface_dice_score(pred, target, spacing_mm=spacing, tolerance_mm=tolerance) == ours["nsd"]


def test_surface_voxels_match_monai_edges():
    get_mask_edges = pytest.importorskip("monai.metrics.utils").get_mask_edges
    for seed in range(4):
        shape = (30, 27, 22) if seed % 2 else (41, 37)
        pred = random_blobs(shape, seed=seed, touch_border=True)
        target = random_blobs(shape, seed=seed + 50, touch_border=True)
        edges_pred, edges_true = get_mask_edges(pred, target, crop=False)
        np.testing.assert_array_equal(surface_voxels(pred), edges_pred)
        np.testing.assert_array_equal(surface_voxels(target), edges_true)


def test_empty_masks_follow_monai_by_default():
    target = np.zeros((20, 20), dtype=bool)
    target[5:10, 5:12] = True
    empty = np.zeros_like(target)
    for pred, truth in [(empty, target), (target, empty), (empty, empty)]:
        ours = surface_metrics(pred, truth, spacing_mm=(1.0, 2.0), tolerance_mm=1.0)
        ref = monai_values(pred, truth, (1.0, 2.0), 1.0)
        # MONAI gives NaN for HD95 with one empty mask (percentile of all-inf distances); we give inf,
        # like its Hausdorff distance and ASSD. Both empty: NaN everywhere, as MONAI.
        if truth.any() != pred.any():
            assert math.isnan(ref["hd95"]) and ours["hd95"] == math.inf
            del ref["hd95"]
        for key in ref:
            assert ours[key] == ref[key] or (math.isnan(ours[key]) and math.isnan(ref[key])), key


# ----------------------------------------------------------------------------- brute-force oracle
ORACLE_SHAPES = [
    ("ellipsoids", (14, 12, 9), (0.7, 1.1, 2.3)),
    ("ellipsoids", (18, 16), (0.5, 1.7)),
    ("boxes", (12, 14, 10), (2.0, 0.6, 1.3)),
    ("boxes", (15, 11), (1.5, 0.8)),
]


@pytest.mark.parametrize("kind, shape, spacing", ORACLE_SHAPES)
def test_against_brute_force_oracle(kind, shape, spacing):
    if kind == "ellipsoids":
        extent = np.asarray(shape) * np.asarray(spacing)
        pred = ellipsoid(shape, extent * 0.5, extent * 0.35, spacing)
        target = ellipsoid(shape, extent * 0.45, extent * 0.3, spacing)
    else:
        pred, target = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        pred[tuple(slice(2, n - 3) for n in shape)] = True
        target[tuple(slice(3, n - 1) for n in shape)] = True  # reaches the image border
    d_pt, d_tp = brute_distances(pred, target, spacing)
    ours_pt, ours_tp = surface_distances(pred, target, spacing_mm=spacing)
    np.testing.assert_allclose(np.sort(ours_pt), np.sort(d_pt), atol=1e-12)
    np.testing.assert_allclose(np.sort(ours_tp), np.sort(d_tp), atol=1e-12)
    expected_hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    expected_pooled = np.percentile(np.concatenate([d_pt, d_tp]), 95)
    assert hd95_distance(pred, target, spacing_mm=spacing) == pytest.approx(expected_hd95, abs=1e-12)
    assert hd95_distance(pred, target, spacing_mm=spacing, pooled=True) == pytest.approx(expected_pooled,
                                                                                          abs=1e-12)
    assert hausdorff_distance(pred, target, spacing_mm=spacing) == pytest.approx(max(d_pt.max(), d_tp.max()))
    all_d = np.concatenate([d_pt, d_tp])
    assert assd_distance(pred, target, spacing_mm=spacing) == pytest.approx(all_d.mean())
    assert surface_dice_score(pred, target, spacing_mm=spacing, tolerance_mm=1.0) == pytest.approx(
        np.mean(all_d <= 1.0))


def test_hand_worked_line_segments():
    # 1D-like 2D masks: target row 0 columns 0..3, pred row 2 columns 0..3, spacing 2 mm along rows.
    target = np.zeros((3, 4), dtype=bool)
    target[0] = True
    pred = np.zeros((3, 4), dtype=bool)
    pred[2] = True
    d_pt, d_tp = surface_distances(pred, target, spacing_mm=(2.0, 1.0))
    np.testing.assert_array_equal(d_pt, [4.0] * 4)  # every pred voxel is 2 rows x 2 mm away
    np.testing.assert_array_equal(d_tp, [4.0] * 4)
    assert surface_dice_score(pred, target, spacing_mm=(2.0, 1.0), tolerance_mm=4.0) == 1.0
    assert surface_dice_score(pred, target, spacing_mm=(2.0, 1.0), tolerance_mm=3.9) == 0.0


def test_surface_voxels_hand_worked():
    mask = np.zeros((5, 5), dtype=int)
    mask[1:4, 1:4] = 1
    expected = mask.copy()
    expected[2, 2] = 0  # the only voxel whose 4 neighbours are all foreground
    np.testing.assert_array_equal(surface_voxels(mask), expected.astype(bool))
    np.testing.assert_array_equal(surface_voxels(np.ones((3, 3, 3), bool)).sum(), 26)


def test_pooled_hd95_never_exceeds_default():
    for seed in range(5):
        pred = random_blobs((30, 30), seed=seed)
        target = random_blobs((30, 30), seed=seed + 9)
        assert (hd95_distance(pred, target, spacing_mm=(1, 1), pooled=True)
                <= hd95_distance(pred, target, spacing_mm=(1, 1)) + 1e-12)


# ----------------------------------------------------------------------------- empty policies
def _masks():
    target = np.zeros((10, 8, 6), dtype=bool)
    target[2:5, 2:5, 1:4] = True
    return target, np.zeros_like(target)


@pytest.mark.parametrize("fn", [hd95_distance, hausdorff_distance, assd_distance])
def test_distance_empty_policies(fn):
    target, empty = _masks()
    spacing = (1.0, 2.0, 3.0)
    diagonal = math.sqrt(10 ** 2 + 16 ** 2 + 18 ** 2)  # shape x spacing: 10, 16, 18 mm
    assert math.isnan(fn(empty, empty, spacing_mm=spacing))
    assert fn(empty, target, spacing_mm=spacing) == math.inf
    assert fn(target, empty, spacing_mm=spacing) == math.inf
    assert math.isnan(fn(empty, target, spacing_mm=spacing, empty="nan"))
    assert math.isnan(fn(empty, empty, spacing_mm=spacing, empty="nan"))
    assert fn(empty, empty, spacing_mm=spacing, empty="brats") == 0.0
    assert fn(empty, target, spacing_mm=spacing, empty="brats") == pytest.approx(diagonal)
    with pytest.raises(ValueError, match="pred is empty"):
        fn(empty, target, spacing_mm=spacing, empty="raise")
    with pytest.raises(ValueError, match="target is empty"):
        fn(target, empty, spacing_mm=spacing, empty="raise")
    with pytest.raises(ValueError, match="pred and target are empty"):
        fn(empty, empty, spacing_mm=spacing, empty="raise")
    with pytest.raises(ValueError, match="empty must be one of"):
        fn(target, target, spacing_mm=spacing, empty="zero")


def test_nsd_empty_policies():
    target, empty = _masks()
    spacing = (1.0, 1.0, 1.0)
    assert surface_dice_score(empty, target, spacing_mm=spacing, tolerance_mm=2.0) == 0.0
    assert surface_dice_score(target, empty, spacing_mm=spacing, tolerance_mm=2.0, empty="one") == 0.0
    assert math.isnan(surface_dice_score(empty, empty, spacing_mm=spacing, tolerance_mm=2.0))
    assert surface_dice_score(empty, empty, spacing_mm=spacing, tolerance_mm=2.0, empty="one") == 1.0
    assert surface_dice_score(empty, empty, spacing_mm=spacing, tolerance_mm=2.0, empty="zero") == 0.0
    with pytest.raises(ValueError, match="both empty"):
        surface_dice_score(empty, empty, spacing_mm=spacing, tolerance_mm=2.0, empty="raise")


def test_surface_metrics_empty_policies():
    target, empty = _masks()
    both = surface_metrics(empty, empty, spacing_mm=(1, 1, 1), empty="brats")
    assert both == {"hd95": 0.0, "hd95_pooled": 0.0, "hausdorff": 0.0, "assd": 0.0, "nsd": 1.0}
    one = surface_metrics(empty, target, spacing_mm=(1, 1, 1))
    assert one["hd95"] == math.inf and one["assd"] == math.inf and one["nsd"] == 0.0
    with pytest.raises(ValueError, match="pred is empty"):
        surface_metrics(empty, target, spacing_mm=(1, 1, 1), empty="raise")


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 2:5] = True
    with pytest.raises(ValueError, match=r"same shape, got \(8, 8\) and \(8, 9\)"):
        hd95_distance(mask, np.zeros((8, 9), bool), spacing_mm=(1, 1))
    with pytest.raises(ValueError, match="spacing_mm must be a sequence of 2"):
        hd95_distance(mask, mask, spacing_mm=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing_mm must be a sequence of 2"):
        hd95_distance(mask, mask, spacing_mm=1.0)
    with pytest.raises(ValueError, match="spacing_mm must be a sequence of 2"):
        hd95_distance(mask, mask, spacing_mm=None)
    with pytest.raises(ValueError, match="finite and > 0"):
        assd_distance(mask, mask, spacing_mm=(1.0, 0.0))
    with pytest.raises(ValueError, match="finite and > 0"):
        assd_distance(mask, mask, spacing_mm=(1.0, -2.0))
    with pytest.raises(ValueError, match="looks like probabilities"):
        hd95_distance(mask * 0.7, mask, spacing_mm=(1, 1))
    with pytest.raises(ValueError, match="looks like logits"):
        hd95_distance(mask * 3.5 - 1.0, mask, spacing_mm=(1, 1))
    with pytest.raises(ValueError, match="target must be a binary mask"):
        hd95_distance(mask, mask.astype(np.uint8) * 2, spacing_mm=(1, 1))
    with pytest.raises(ValueError, match="contains NaN"):
        hd95_distance(np.where(mask, np.nan, 0.0), mask, spacing_mm=(1, 1))
    with pytest.raises(ValueError, match="2D or 3D"):
        hd95_distance(mask[None, None], mask[None, None], spacing_mm=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="tolerance_mm must be"):
        surface_dice_score(mask, mask, spacing_mm=(1, 1), tolerance_mm=-1.0)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        hd95_distance(mask.tolist(), mask, spacing_mm=(1, 1))


def test_torch_and_float_masks_accepted():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 2:5] = True
    other = np.roll(mask, 1, axis=0)
    expected = hd95_distance(mask, other, spacing_mm=(1, 1))
    assert expected == 1.0  # the square moved by one row
    assert hd95_distance(torch.from_numpy(mask).float(), torch.from_numpy(other).long(),
                         spacing_mm=(1, 1)) == 1.0


@pytest.mark.parametrize("spacing, tolerance", [((1.0, 1.0, 1.0), 1.0), ((0.5, 1.0, 2.0), 2.0)])
def test_nsd_distance_equal_to_tolerance_counts_as_correct_like_monai(spacing, tolerance):
    pred = random_blobs((20, 18, 16), seed=7)
    target = random_blobs((20, 18, 16), seed=8)
    ours = surface_dice_score(pred, target, spacing_mm=spacing, tolerance_mm=tolerance)
    d_pt, d_tp = surface_distances(pred, target, spacing_mm=spacing)
    assert np.any(np.concatenate([d_pt, d_tp]) == tolerance)  # the tie really happens
    assert ours == pytest.approx(monai_values(pred, target, spacing, tolerance)["nsd"], abs=1e-6)
