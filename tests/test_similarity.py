"""Tests for medseg_edu.similarity: NCC against numpy, histograms and mutual information against
sklearn, symmetry and gradients of the Parzen score, the checkerboard by hand."""
import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from medseg_edu.similarity import (checkerboard, histogram_mutual_information, joint_histogram,
                                   mutual_information_score, ncc_score)


def smooth_volume(shape=(16, 16, 16), seed=0):
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(rng.random(shape), 1.5).astype(np.float32)


def test_ncc_self_affine_negative_and_numpy_reference():
    a = smooth_volume(seed=5)
    b = smooth_volume(seed=6)
    assert ncc_score(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ncc_score(a, 3.0 * a + 7.0) == pytest.approx(1.0, abs=1e-5)
    assert ncc_score(a, -a) == pytest.approx(-1.0, abs=1e-6)
    assert ncc_score(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-5)
    mask = a > np.median(a)
    assert ncc_score(a, b, mask=mask) == pytest.approx(np.corrcoef(a[mask], b[mask])[0, 1], abs=1e-5)
    assert ncc_score(a, np.ones_like(a)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        ncc_score(a, a[:-1])


def test_joint_histogram_marginals_are_the_1d_histograms():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=500), rng.random(500)
    hist = joint_histogram(a, b, bins=10)
    assert hist.shape == (10, 10) and hist.sum() == 500
    np.testing.assert_array_equal(hist.sum(1), np.histogram(a, bins=10)[0])
    np.testing.assert_array_equal(hist.sum(0), np.histogram(b, bins=10)[0])
    with pytest.raises(ValueError, match="bins must be an int >= 2"):
        joint_histogram(a, b, bins=1)


def test_histogram_mutual_information_matches_sklearn():
    rng = np.random.default_rng(8)
    a = smooth_volume(seed=9)
    b = np.sqrt(a) + 0.05 * rng.random(a.shape)          # a related, non-linearly mapped image
    bins = 16

    def binned(x):
        edges = np.histogram_bin_edges(x, bins=bins)
        return np.clip(np.digitize(x.ravel(), edges[1:-1]), 0, bins - 1)

    expected = mutual_info_score(binned(a), binned(b))
    assert histogram_mutual_information(joint_histogram(a, b, bins=bins)) == pytest.approx(expected, rel=1e-6)
    independent = joint_histogram(rng.random(20000), rng.random(20000), bins=8)
    assert histogram_mutual_information(independent) < 0.01


def test_parzen_mi_symmetric_maximal_at_alignment_and_contrast_invariant():
    a = smooth_volume((24, 24, 24), seed=10)
    b = np.exp(-3 * a)                                      # another "sequence": reversed contrast
    mi = mutual_information_score(a, b, bins=16)
    assert mi == pytest.approx(mutual_information_score(b, a, bins=16), rel=1e-5)
    assert mi == pytest.approx(mutual_information_score(a, 4.0 * b + 2.0, bins=16), rel=1e-4)
    shifted = [mutual_information_score(a, np.roll(b, k, axis=0), bins=16) for k in range(4)]
    assert shifted == sorted(shifted, reverse=True) and shifted[0] > shifted[-1] + 0.1
    rng = np.random.default_rng(14)
    assert mutual_information_score(rng.random(20000), rng.random(20000), bins=8) < 0.01
    # the Gaussian kernel blurs the joint histogram, so it scores below the hard-binned MI
    assert 0 < mi < histogram_mutual_information(joint_histogram(a, b, bins=16))


def test_parzen_mi_gradient_flows():
    a = torch.from_numpy(smooth_volume(seed=11))
    b = (a ** 2).clone().requires_grad_(True)
    mutual_information_score(a, b).backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_checkerboard_alternates_tiles():
    rng = np.random.default_rng(15)
    a, b = rng.random((8, 8)), 10 + 3 * rng.random((8, 8))
    unit_a, unit_b = (a - a.min()) / np.ptp(a), (b - b.min()) / np.ptp(b)
    board = checkerboard(a, b, tiles=2)
    np.testing.assert_allclose(board[:4, :4], unit_a[:4, :4], atol=1e-6)      # top-left tile: a
    np.testing.assert_allclose(board[:4, 4:], unit_b[:4, 4:], atol=1e-6)      # its neighbour: b
    np.testing.assert_allclose(board[4:, 4:], unit_a[4:, 4:], atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        checkerboard(a, b[:-1])
