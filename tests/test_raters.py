"""Simulated raters, inter-rater agreement, majority vote, and STAPLE against SimpleITK."""
import numpy as np
import pytest

from medseg_edu.raters import (RATER_STYLES, majority_vote, pairwise_agreement, simulate_rater, simulate_raters,
                               staple)


def _square(size=11, low=3, high=8):
    mask = np.zeros((size, size), bool)
    mask[low:high, low:high] = True
    return mask


def _ball(shape=(24, 24, 16), radius=6.0):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).astype(np.float64)
    centre = (np.array(shape) - 1) / 2
    return np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(axis=0)) < radius


def test_generous_and_tight_by_hand():
    square = _square()  # 5 x 5 = 25 pixels
    # dilation with the cross: 7 x 7 without its 4 corners = 45; erosion: the 3 x 3 inside = 9
    assert int(simulate_rater(square, style="generous").sum()) == 45
    assert int(simulate_rater(square, style="tight").sum()) == 9
    assert int(simulate_rater(square, style="tight", strength=2).sum()) == 1


def test_smooth_removes_a_one_pixel_spike_and_keeps_the_body():
    mask = _square()
    mask[2, 5] = True  # a one-pixel spike on the top edge
    smooth = simulate_rater(mask, style="smooth", strength=1.0)
    assert not smooth[2, 5]
    assert smooth[4:7, 4:7].all()


def test_misses_small_drops_the_small_part_only():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True   # 100 pixels
    mask[15:17, 15:17] = True  # 4 pixels, 4 % of the largest: under the 10 % cut-off
    result = simulate_rater(mask, style="misses_small")
    assert int(result.sum()) == 100 and not result[15:17, 15:17].any()


def test_jagged_is_seeded_and_stays_close():
    ball = _ball()
    a = simulate_rater(ball, style="jagged", seed=3)
    b = simulate_rater(ball, style="jagged", seed=3)
    c = simulate_rater(ball, style="jagged", seed=4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any() and (a != ball).any()
    overlap = 2 * (a & ball).sum() / (a.sum() + ball.sum())
    assert overlap > 0.8  # one voxel of boundary noise on a radius-6 ball


def test_simulate_raters_gives_one_mask_per_style():
    masks = simulate_raters(_ball(), styles=list(RATER_STYLES))
    assert len(masks) == len(RATER_STYLES) and all(m.shape == (24, 24, 16) and m.dtype == bool for m in masks)


def test_rater_errors():
    with pytest.raises(ValueError, match="style must be one of"):
        simulate_rater(_square(), style="sloppy")
    with pytest.raises(ValueError, match="strength must be a positive number, got 0"):
        simulate_rater(_square(), style="smooth", strength=0)
    with pytest.raises(ValueError, match="looks like probabilities"):
        simulate_rater(np.full((4, 4), 0.5), style="smooth")
    with pytest.raises(ValueError, match="styles must be a non-empty list"):
        simulate_raters(_square(), styles="smooth")


def test_pairwise_agreement_by_hand():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True       # 16 pixels
    b = np.zeros((10, 10), bool)
    b[2:6, 4:8] = True       # 16 pixels, 8 shared with a
    table = pairwise_agreement([a, b, a], spacing_mm=(1.0, 2.0), names=["A", "B", "C"])
    assert list(table.columns) == ["rater_a", "rater_b", "dice", "hd95_mm"]
    assert list(zip(table.rater_a, table.rater_b)) == [("A", "B"), ("A", "C"), ("B", "C")]
    np.testing.assert_allclose(table.dice, [0.5, 1.0, 0.5], atol=1e-12)  # 2 * 8 / 32
    assert table.hd95_mm[1] == pytest.approx(0.0, abs=1e-12)
    assert table.hd95_mm[0] > 0


def test_majority_vote_by_hand():
    masks = [np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]), np.array([1, 1, 1, 0])]
    np.testing.assert_array_equal(majority_vote(masks), [True, True, True, False])
    two = [np.array([1, 0]), np.array([1, 1])]
    np.testing.assert_array_equal(majority_vote(two), [True, False])  # a tie is background
    with pytest.raises(ValueError, match="at least 2 rater masks"):
        majority_vote([np.array([1, 0])])
    with pytest.raises(ValueError, match="same shape"):
        majority_vote([np.zeros(3), np.zeros(4)])


def test_staple_of_identical_raters_recovers_the_mask():
    ball = _ball()
    result = staple([ball, ball, ball])
    np.testing.assert_array_equal(result["mask"], ball)
    np.testing.assert_allclose(result["sensitivity"], 1.0, atol=1e-6)
    np.testing.assert_allclose(result["specificity"], 1.0, atol=1e-6)


def test_staple_downweights_a_bad_rater():
    ball = _ball()
    rng = np.random.default_rng(0)
    noisy = ball ^ (rng.random(ball.shape) < 0.2)  # flips 20 % of the voxels
    result = staple([ball, ball, noisy])
    assert result["sensitivity"][2] < result["sensitivity"][0]
    assert result["specificity"][2] < result["specificity"][0]
    np.testing.assert_array_equal(result["mask"], ball)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_staple_matches_simpletk(seed):
    sitk = pytest.importorskip("SimpleITK")
    masks = simulate_raters(_ball(), styles=("generous", "tight", "smooth", "jagged"), seed=seed)
    ours = staple(masks)
    stapler = sitk.STAPLEImageFilter()
    stapler.SetForegroundValue(1.0)
    reference = sitk.GetArrayFromImage(stapler.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks]))
    # Both run the same EM from the same start (p = q = 0.99999, the global prior); they stop at
    # slightly different iterations (different convergence tests), which moves probabilities by
    # ~1e-8 in our runs. 1e-4 is far above that and far below any visible difference.
    np.testing.assert_allclose(ours["probability"], reference, atol=1e-4)
    np.testing.assert_allclose(ours["sensitivity"], stapler.GetSensitivity(), atol=1e-4)
    np.testing.assert_allclose(ours["specificity"], stapler.GetSpecificity(), atol=1e-4)
