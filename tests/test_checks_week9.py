"""Week 9 self-checks: each passes the reference and fails a plausible wrong answer with a useful message."""
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from medseg_edu.checks import week9


# ---------------------------------------------------------------- references against hand-worked cases
def test_reference_slice_order_and_affine_hand_case():
    # axial slices (row cosine +x, column cosine +y: normal +z), files in the order z = 4, 0, 2
    positions = np.array([[-10.0, 5.0, 4.0], [-10.0, 5.0, 0.0], [-10.0, 5.0, 2.0]])
    order, affine = week9.reference_slice_order_and_affine(positions, [1, 0, 0, 0, 1, 0], [0.5, 0.8])
    assert order.tolist() == [1, 2, 0]
    expected = np.array([[0.8, 0, 0, -10], [0, 0.5, 0, 5], [0, 0, 2, 0], [0, 0, 0, 1]])
    assert np.allclose(affine, expected)


def test_reference_slice_order_follows_the_normal_not_z():
    # sagittal slices: row cosine +y, column cosine -z, normal = y x (-z) = -x; z is the same in every file
    positions = np.array([[3.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
    order, affine = week9.reference_slice_order_and_affine(positions, [0, 1, 0, 0, 0, -1], [1.0, 1.0])
    assert order.tolist() == [0, 2, 1]                # distance along -x: -3, -2, -1
    assert np.allclose(affine[:3, 2], [-1, 0, 0]) and np.allclose(affine[:3, 3], [3, 0, 0])


def test_reference_volume_flag_hand_cases():
    mask = np.zeros((10, 10, 10), bool)
    mask[:5, :4, :5] = True                         # 100 voxels of 2 x 2 x 2.5 mm = 1000 mm3 = 1 mL
    spacing = (2.0, 2.0, 2.5)
    assert week9.reference_volume_flag(mask, spacing, [0.0, 0.5, 0.9, 1.1, 1.5]) == ""
    assert week9.reference_volume_flag(mask, spacing, [0.0, 1.5, 2.0, 3.0]) == "small_volume"
    assert week9.reference_volume_flag(mask, spacing, [0.2, 0.3, 0.4]) == "large_volume"
    assert week9.reference_volume_flag(np.zeros_like(mask), spacing, [1.0, 2.0]) == "empty"


def test_reference_pairwise_rater_dice_hand_case():
    a = np.zeros((4, 4), bool); a[:2] = True           # 8 pixels
    b = np.zeros((4, 4), bool); b[:1] = True           # 4 pixels inside a: Dice 8 / 12
    c = np.zeros((4, 4), bool); c[3] = True            # 4 pixels, disjoint from a and b
    assert np.allclose(week9.reference_pairwise_rater_dice([a, b, c]), [8 / 12, 0.0, 0.0])


def test_reference_performance_rows_hand_case():
    table = pd.DataFrame({"site": ["B", "A", "A", "B", "A"], "dice": [0.5, 0.9, np.nan, 0.5, 0.7]})
    rows = week9.reference_performance_rows(table, by="site", n_resamples=200)
    assert rows["site"].tolist() == ["A", "B"] and rows["n"].tolist() == [2, 2]
    assert np.allclose(rows["mean"], [0.8, 0.5])
    # B's values are all 0.5: every resample has mean 0.5, so its interval has zero width
    assert rows.loc[1, "ci_low"] == pytest.approx(0.5) and rows.loc[1, "ci_high"] == pytest.approx(0.5)
    assert 0.7 - 1e-12 <= rows.loc[0, "ci_low"] <= rows.loc[0, "ci_high"] <= 0.9 + 1e-12


def test_reference_majority_vote_tie_is_background():
    masks = [np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]), np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0])]
    assert week9.reference_majority_vote(masks).tolist() == [True, False, False, False]
    assert week9.reference_majority_vote(masks[:3]).tolist() == [True, True, True, False]


# ---------------------------------------------------------------- checks pass the references
@pytest.mark.parametrize("check, reference, tag", [
    (week9.check_slice_order_and_affine, week9.reference_slice_order_and_affine, "ex1"),
    (week9.check_volume_flag, week9.reference_volume_flag, "ex2"),
    (week9.check_pairwise_rater_dice, week9.reference_pairwise_rater_dice, "ex3"),
    (week9.check_performance_rows, week9.reference_performance_rows, "ex4"),
    (week9.check_majority_vote, week9.reference_majority_vote, "ex5"),
])
def test_checks_pass_reference(check, reference, tag, capsys):
    for seed in range(3):
        check(reference, seed=seed)
    assert f"{tag} looks right" in capsys.readouterr().out


@pytest.mark.parametrize("check, tag", [
    (week9.check_slice_order_and_affine, "ex1"), (week9.check_volume_flag, "ex2"),
    (week9.check_pairwise_rater_dice, "ex3"), (week9.check_performance_rows, "ex4"),
    (week9.check_majority_vote, "ex5"),
])
def test_unanswered_exercise_gets_the_shared_message(check, tag):
    def unanswered(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match=f"{tag} is not answered yet"):
        check(unanswered)


# ---------------------------------------------------------------- plausible wrong answers
def test_ex1_sorting_by_z_fails():
    def by_z(positions, orientation, spacing):
        _, affine = week9.reference_slice_order_and_affine(positions, orientation, spacing)
        return np.argsort(np.asarray(positions)[:, 2]), affine

    with pytest.raises(AssertionError, match="normal"):
        week9.check_slice_order_and_affine(by_z)


def test_ex1_swapped_pixel_spacing_fails():
    def swapped(positions, orientation, spacing):
        order, affine = week9.reference_slice_order_and_affine(positions, orientation, spacing)
        row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
        affine[:3, 0], affine[:3, 1] = row * spacing[0], column * spacing[1]
        return order, affine

    with pytest.raises(AssertionError, match="PixelSpacing is"):
        week9.check_slice_order_and_affine(swapped)


def test_ex2_zero_reference_volumes_kept_fails():
    def keeps_zeros(pred, spacing, reference):
        volume = np.count_nonzero(pred) * np.prod(spacing) / 1000
        if volume == 0:
            return "empty"
        low, high = np.percentile(reference, [2.5, 97.5])
        return "small_volume" if volume < low else "large_volume" if volume > high else ""

    with pytest.raises(AssertionError, match="expected a different flag|inside the training range"):
        week9.check_volume_flag(keeps_zeros)


def test_ex2_voxel_count_instead_of_ml_fails():
    def voxels(pred, spacing, reference):
        return week9.reference_volume_flag(pred, (10.0, 10.0, 10.0), reference)   # 1 voxel = 1 mL

    with pytest.raises(AssertionError):
        week9.check_volume_flag(voxels)


def test_ex3_wrong_pair_order_fails():
    def reversed_pairs(masks):
        return week9.reference_pairwise_rater_dice(masks)[::-1]

    with pytest.raises(AssertionError, match="wrong order"):
        week9.check_pairwise_rater_dice(reversed_pairs)


def test_ex3_full_matrix_fails():
    def matrix(masks):
        values = week9.reference_pairwise_rater_dice(masks)
        full = np.eye(len(masks))
        for v, (a, b) in zip(values, combinations(range(len(masks)), 2)):
            full[a, b] = full[b, a] = v
        return full

    with pytest.raises(AssertionError, match="one Dice per PAIR"):
        week9.check_pairwise_rater_dice(matrix)


def test_ex4_nan_cases_counted_fails():
    def counts_nan(table, *, by, metric="dice", **kwargs):
        rows = week9.reference_performance_rows(table, by=by, metric=metric, **kwargs)
        rows["n"] = table.groupby(by, sort=True).size().to_numpy()
        return rows

    with pytest.raises(AssertionError, match="defined"):
        week9.check_performance_rows(counts_nan)


def test_ex4_normal_approximation_interval_fails():
    def normal(table, *, by, metric="dice", confidence=0.95, **kwargs):
        rows = []
        for group, part in table.dropna(subset=[metric]).groupby(by, sort=True):
            values = part[metric].to_numpy(dtype=float)
            half = 1.96 * values.std()          # the SD of the values, not of the mean: far too wide
            rows.append({by: group, "n": len(values), "mean": values.mean(),
                         "ci_low": values.mean() - half, "ci_high": values.mean() + half})
        return pd.DataFrame(rows)

    with pytest.raises(AssertionError, match="percentile bootstrap"):
        week9.check_performance_rows(normal)


def test_ex4_group_as_index_gets_a_hint():
    def as_index(table, *, by, **kwargs):
        return week9.reference_performance_rows(table, by=by, **kwargs).set_index(by)

    with pytest.raises(AssertionError, match="reset_index"):
        week9.check_performance_rows(as_index)


def test_ex5_tie_as_foreground_fails():
    def at_least_half(masks):
        stack = np.stack([np.asarray(m) > 0 for m in masks])
        return 2 * stack.sum(axis=0) >= len(masks)

    with pytest.raises(AssertionError, match="tie"):
        week9.check_majority_vote(at_least_half)


def test_ex5_union_fails():
    def union(masks):
        return np.any(np.stack(masks), axis=0)

    with pytest.raises(AssertionError, match="MORE than half"):
        week9.check_majority_vote(union)
