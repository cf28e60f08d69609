"""Tests for medseg_edu.interactive.prompts: encodings and the simulated user, on hand-worked cases."""
import math

import numpy as np
import pytest
from scipy import ndimage

from medseg_edu.interactive.prompts import (PROMPT_CHANNELS, Click, box_from_mask, box_map, click_map,
                                            encode_prompts, next_click)

TOL = 1e-6  # float32 values of exp() computed once; far below any difference tested


def test_box_map_is_one_inside_the_box_edges_included():
    expected = np.array([[0, 1, 1, 0],
                         [0, 1, 1, 0],
                         [0, 0, 0, 0]], dtype=np.float32)
    out = box_map((1, 0, 2, 1), (3, 4))
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_allclose(out, expected, atol=TOL)
    np.testing.assert_allclose(box_map(None, (3, 4)), np.zeros((3, 4)), atol=TOL)


@pytest.mark.parametrize("box, match", [((0, 0, 4, 1), "x1 < 4"), ((2, 0, 1, 1), "x0 <= x1"),
                                        ((0, 0, 1), "four whole pixel"), ((0.5, 0, 1, 1), "four whole pixel")])
def test_box_map_refuses_boxes_outside_or_malformed(box, match):
    with pytest.raises(ValueError, match=match):
        box_map(box, (3, 4))


def test_click_map_is_a_gaussian_disk_with_sigma_in_pixels():
    out = click_map([Click(x=2, y=1, positive=True)], (3, 5), sigma_px=1.0)
    assert out.shape == (3, 5) and out.dtype == np.float32
    assert abs(out[1, 2] - 1.0) < TOL                       # on the click
    assert abs(out[1, 3] - math.exp(-0.5)) < TOL            # one pixel (= one sigma) to the right
    assert abs(out[2, 3] - math.exp(-1.0)) < TOL            # diagonal: d^2 = 2
    assert abs(out[0, 0] - math.exp(-2.5)) < TOL            # d^2 = 1 + 4


def test_click_map_combines_clicks_by_their_maximum():
    both = click_map([Click(0, 0, True), Click(1, 0, True)], (1, 2), sigma_px=1.0)
    np.testing.assert_allclose(both, [[1.0, 1.0]], atol=TOL)   # a sum would give 1 + exp(-0.5)


def test_encode_prompts_puts_box_positive_negative_in_that_order():
    assert PROMPT_CHANNELS == ("box", "positive clicks", "negative clicks")
    prompts = encode_prompts((6, 8), clicks=[Click(1, 2, True), Click(6, 4, False)], box=(0, 0, 3, 3), sigma_px=1.0)
    assert prompts.shape == (3, 6, 8) and prompts.dtype == np.float32
    assert abs(prompts[0, 3, 3] - 1) < TOL and abs(prompts[0, 4, 4]) < TOL
    assert abs(prompts[1, 2, 1] - 1) < TOL and prompts[1, 4, 6] < 1e-4     # exp(-(25+4)/2) ~ 5e-7
    assert abs(prompts[2, 4, 6] - 1) < TOL and prompts[2, 2, 1] < 1e-4
    np.testing.assert_allclose(encode_prompts((6, 8)), np.zeros((3, 6, 8)), atol=TOL)


def test_clicks_are_checked():
    with pytest.raises(ValueError, match=r"clicks\[0\] = \(x=8, y=0\) lies outside"):
        encode_prompts((6, 8), clicks=[Click(8, 0, True)])
    with pytest.raises(TypeError, match=r"clicks\[0\].positive must be True or False"):
        encode_prompts((6, 8), clicks=[(1, 1, 1)])
    with pytest.raises(ValueError, match="sigma_px must be a number of pixels > 0"):
        click_map([], (6, 8), sigma_px=0)


def test_box_from_mask_hand_worked_and_empty():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    assert box_from_mask(mask) == (2, 1, 4, 2)
    assert box_from_mask(np.zeros((5, 6), bool)) is None


def test_box_from_mask_jitter_stays_within_the_jitter_and_the_image():
    mask = np.zeros((20, 30), bool)
    mask[1:10, 5:25] = True                                  # tight box (5, 1, 24, 9)
    seen = set()
    for seed in range(50):
        box = box_from_mask(mask, jitter_px=3, rng=np.random.default_rng(seed))
        x0, y0, x1, y1 = box
        assert 2 <= x0 <= 8 and 0 <= y0 <= 4 and 21 <= x1 <= 27 and 6 <= y1 <= 12   # y0 clipped at 0
        seen.add(box)
    assert len(seen) > 10                                    # it does move
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    assert box_from_mask(mask, jitter_px=3, rng=rng_a) == box_from_mask(mask, jitter_px=3, rng=rng_b)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator when jitter_px > 0"):
        box_from_mask(mask, jitter_px=2)


def test_next_click_none_for_a_perfect_mask():
    target = np.zeros((8, 8), bool)
    target[2:5, 2:6] = True
    assert next_click(target.copy(), target) is None
    assert next_click(np.zeros((8, 8)), np.zeros((8, 8))) is None


def test_next_click_centre_of_a_missed_square_is_positive():
    target = np.zeros((11, 11), bool)
    target[2:7, 2:7] = True                                  # 5x5 square, centre (x=4, y=4)
    assert next_click(np.zeros_like(target), target) == Click(4, 4, True)


def test_next_click_goes_to_the_largest_error_region_negative_for_false_positives():
    target = np.zeros((12, 12), bool)
    target[1:3, 8:10] = True                                 # 2x2 object, missed: FN region of 4 pixels
    pred = np.zeros_like(target)
    pred[6:11, 1:6] = True                                   # 5x5 false positive, centre (x=3, y=8)
    assert next_click(pred, target) == Click(3, 8, False)


def test_next_click_image_border_counts_as_boundary():
    target = np.zeros((5, 9), bool)
    target[:, :5] = True                                     # touches the top, bottom and left borders
    # without the border the farthest pixel would be on the left edge; with it, the centre (x=2, y=2)
    assert next_click(np.zeros_like(target), target) == Click(2, 2, True)


def test_next_click_tie_between_fn_and_fp_goes_to_the_missed_object():
    target = np.zeros((9, 9), bool)
    target[0:3, 0:3] = True
    pred = np.zeros_like(target)
    pred[6:9, 6:9] = True                                    # FN and FP both 9 pixels
    assert next_click(pred, target) == Click(1, 1, True)


@pytest.mark.parametrize("seed", range(10))
def test_next_click_lies_in_a_largest_error_component(seed):
    rng = np.random.default_rng(seed)
    target = ndimage.binary_opening(rng.random((24, 24)) < 0.5)
    pred = ndimage.binary_opening(rng.random((24, 24)) < 0.5)
    click = next_click(pred, target)
    fn_labels, _ = ndimage.label(target & ~pred)             # FN and FP labelled apart: they may touch
    fp_labels, _ = ndimage.label(pred & ~target)
    largest = max(np.bincount(fn_labels.ravel())[1:].max(initial=0), np.bincount(fp_labels.ravel())[1:].max(initial=0))
    labels = fn_labels if click.positive else fp_labels
    assert labels[click.y, click.x] > 0
    assert np.count_nonzero(labels == labels[click.y, click.x]) == largest
    assert click.positive == bool(target[click.y, click.x])


def test_next_click_refuses_probabilities_and_mismatched_shapes():
    with pytest.raises(ValueError, match="looks like probabilities"):
        next_click(np.full((4, 4), 0.3), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        next_click(np.zeros((4, 4)), np.zeros((4, 5)))
