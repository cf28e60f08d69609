"""Week 8 self-checks: each passes the reference and fails a plausible wrong answer with a useful message."""
import numpy as np
import pytest
from scipy import ndimage

from medseg_edu.checks import week8
from medseg_edu.interactive import Click, encode_prompts, next_click, number_of_clicks, refine


# ---------------------------------------------------------------- reference against a hand-worked case
def test_reference_accept_changes_hand_case():
    previous = np.zeros((6, 8), bool)
    proposed = np.zeros((6, 8), bool)
    proposed[1:3, 1:3] = True          # a new blob with a click in it: taken over
    proposed[4, 6] = True              # a new blob without a click: ignored
    previous[0, 7] = True              # removed by the model, no click there: kept
    out = week8.reference_accept_changes(previous, proposed, [Click(x=2, y=1, positive=True)])
    expected = np.zeros((6, 8), bool)
    expected[1:3, 1:3] = True
    expected[0, 7] = True
    assert np.array_equal(out, expected)


def test_reference_accept_changes_diagonal_neighbours_are_one_region():
    previous = np.zeros((4, 4), bool)
    proposed = np.eye(4, dtype=bool)   # touching only at corners: one region with 8-connectivity
    out = week8.reference_accept_changes(previous, proposed, [Click(x=0, y=0, positive=True)])
    assert np.array_equal(out, np.eye(4, dtype=bool))


# ---------------------------------------------------------------- checks pass the references
def _my_refine(model, image, clicks, previous, *, box=None):
    return refine(model, image, clicks, box=box, previous=previous)


@pytest.mark.parametrize("check, reference, tag", [
    (week8.check_next_click, next_click, "ex1"),
    (week8.check_encode_prompts, encode_prompts, "ex2"),
    (week8.check_number_of_clicks, number_of_clicks, "ex3"),
    (week8.check_refine_step, _my_refine, "ex4"),
])
def test_checks_pass_reference(check, reference, tag, capsys):
    for seed in range(3):
        check(reference, seed=seed)
    assert f"{tag} looks right" in capsys.readouterr().out


def test_ex1_other_deepest_pixel_passes(capsys):
    """A tie between equally deep pixels may go to the last one instead of the first."""
    def last_of_ties(pred, target):
        pred, target = np.asarray(pred, bool), np.asarray(target, bool)
        click = next_click(pred, target)
        if click is None:
            return None
        errors = (target & ~pred) if click.positive else (pred & ~target)
        labels, _ = ndimage.label(errors)
        region = np.pad(labels == labels[click.y, click.x], 1)
        depth = ndimage.distance_transform_edt(region)[1:-1, 1:-1]
        y, x = np.argwhere(np.isclose(depth, depth.max()))[-1]
        return Click(int(x), int(y), click.positive)
    for seed in range(3):
        week8.check_next_click(last_of_ties, seed=seed)
    assert "ex1 looks right" in capsys.readouterr().out


# ---------------------------------------------------------------- checks fail plausible mistakes
def test_ex1_click_on_every_mask():
    def wrong(pred, target):
        return Click(0, 0, True)
    with pytest.raises(AssertionError, match="return None"):
        week8.check_next_click(wrong, seed=0)


def test_ex1_swapped_sign():
    def wrong(pred, target):
        click = next_click(pred, target)
        return None if click is None else Click(click.x, click.y, not click.positive)
    with pytest.raises(AssertionError, match="wrong sign"):
        week8.check_next_click(wrong, seed=0)


def test_ex1_centre_of_mass_instead_of_deepest_pixel():
    def wrong(pred, target):
        click = next_click(pred, target)
        if click is None:
            return None
        errors = (target & ~pred) if click.positive else (pred & ~target)
        labels, _ = ndimage.label(errors)
        y, x = np.argwhere(labels == labels[click.y, click.x])[0]     # the region's first pixel
        return Click(int(x), int(y), click.positive)
    with pytest.raises(AssertionError, match="farthest from its boundary"):
        week8.check_next_click(wrong, seed=0)


def test_ex1_x_and_y_swapped():
    def wrong(pred, target):
        click = next_click(pred, target)
        return None if click is None else Click(click.y, click.x, click.positive)
    with pytest.raises(AssertionError, match="error region|outside the image"):
        week8.check_next_click(wrong, seed=0)


def test_ex2_swapped_click_channels():
    def wrong(shape, *, clicks, box, sigma_px):
        prompts = encode_prompts(shape, clicks=clicks, box=box, sigma_px=sigma_px)
        return prompts[[0, 2, 1]]
    with pytest.raises(AssertionError, match="swapped"):
        week8.check_encode_prompts(wrong, seed=0)


def test_ex2_box_without_its_last_row_and_column():
    def wrong(shape, *, clicks, box, sigma_px):
        prompts = encode_prompts(shape, clicks=clicks, box=None, sigma_px=sigma_px)
        if box is not None:
            x0, y0, x1, y1 = box
            prompts[0, y0:y1, x0:x1] = 1.0
        return prompts
    with pytest.raises(AssertionError, match="both edges included"):
        week8.check_encode_prompts(wrong, seed=0)


def test_ex2_sigma_not_squared():
    def wrong(shape, *, clicks, box, sigma_px):
        return encode_prompts(shape, clicks=clicks, box=box, sigma_px=np.sqrt(sigma_px))
    with pytest.raises(AssertionError, match="exp"):
        week8.check_encode_prompts(wrong, seed=0)


def test_ex3_counts_from_one():
    def wrong(dice, *, target_dice, max_clicks=20):
        return min(number_of_clicks(dice, target_dice=target_dice, max_clicks=max_clicks) + 1, max_clicks)
    with pytest.raises(AssertionError, match="0 clicks|first k"):
        week8.check_number_of_clicks(wrong, seed=0)


def test_ex3_failure_counted_as_length():
    def wrong(dice, *, target_dice, max_clicks=20):
        reached = np.nonzero(np.asarray(dice) >= target_dice)[0]
        return int(reached[0]) if reached.size else len(dice)
    with pytest.raises(AssertionError, match="counts as max_clicks"):
        week8.check_number_of_clicks(wrong, seed=0)


def test_ex3_float_answer():
    def wrong(dice, *, target_dice, max_clicks=20):
        return float(number_of_clicks(dice, target_dice=target_dice, max_clicks=max_clicks))
    with pytest.raises(AssertionError, match="int"):
        week8.check_number_of_clicks(wrong, seed=0)


def test_ex4_whole_new_mask():
    def wrong(model, image, clicks, previous, *, box=None):
        return refine(model, image, clicks, box=box)
    with pytest.raises(AssertionError, match="whole new mask"):
        week8.check_refine_step(wrong, seed=0)


def test_ex4_previous_unchanged():
    def wrong(model, image, clicks, previous, *, box=None):
        return np.asarray(previous, bool)
    with pytest.raises(AssertionError, match="unchanged"):
        week8.check_refine_step(wrong, seed=0)


def test_ex4_prompts_not_given_to_the_model():
    def wrong(model, image, clicks, previous, *, box=None):
        return refine(model, image, [], box=None, previous=previous) | np.asarray(previous, bool)
    with pytest.raises(AssertionError, match="ex4|prompt|unchanged|whole"):
        week8.check_refine_step(wrong, seed=0)
