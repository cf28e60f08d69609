"""Tests of the week-2 self-checks: each passes a correct solution and fails plausible wrong ones
with a message that names the problem."""
import numpy as np
import pytest
import torch

from medseg_edu.checks import week2


# ----------------------------------------------------------------------------- correct solutions
def get_sub_volume(image, label, *, patch_size, min_tumour_fraction, rng, max_tries=1000):
    for _ in range(max_tries):
        corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(label.shape, patch_size)]
        box = tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
        if np.mean(label[box] > 0) >= min_tumour_fraction:
            return image[(slice(None),) + box].copy(), label[box].copy()
    raise ValueError("no patch found")


def standardise(image):
    brain = np.any(image != 0, axis=0)
    out = np.zeros(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        values = image[c][brain].astype(np.float64)
        std = values.std()
        out[c][brain] = (values - values.mean()) / (std if std > 0 else 1.0)
    return out


def rotate_pair(image, label, *, k, plane):
    a, b = plane
    return np.rot90(image, k, axes=(a + 1, b + 1)), np.rot90(label, k, axes=(a, b))


def stack_slices(model, volume, *, axis):
    slices = [model(volume.select(axis + 1, i)[None])[0] for i in range(volume.shape[axis + 1])]
    return torch.stack(slices, dim=axis + 1)


def average_windows(window_logits, corners, *, shape):
    total = np.zeros((window_logits[0].shape[0],) + tuple(shape))
    count = np.zeros(tuple(shape))
    for w, corner in zip(window_logits, corners):
        box = tuple(slice(c, c + r) for c, r in zip(corner, w.shape[1:]))
        total[(slice(None),) + box] += w
        count[box] += 1
    return total / count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_solutions_pass(seed, capsys):
    week2.check_get_sub_volume(get_sub_volume, seed=seed)
    week2.check_standardise(standardise, seed=seed)
    week2.check_rotate_pair(rotate_pair, seed=seed)
    week2.check_stack_slices(stack_slices, seed=seed)
    week2.check_average_windows(average_windows, seed=seed)
    out = capsys.readouterr().out
    for n in range(1, 6):
        assert f"ex{n} looks right" in out


def test_solutions_returning_torch_tensors_pass():
    week2.check_standardise(lambda image: torch.from_numpy(standardise(image)), seed=3)
    week2.check_average_windows(lambda *a, **k: torch.from_numpy(average_windows(*a, **k)), seed=3)


# ----------------------------------------------------------------------------- ex1 wrong versions
def test_sub_volume_channels_last_fails():
    def wrong(image, label, **kw):
        x, y = get_sub_volume(image, label, **kw)
        return np.moveaxis(x, 0, -1), y
    with pytest.raises(AssertionError, match="channel-first"):
        week2.check_get_sub_volume(wrong, seed=0)


def test_sub_volume_ignoring_threshold_fails():
    def wrong(image, label, *, patch_size, min_tumour_fraction, rng):
        return get_sub_volume(image, label, patch_size=patch_size, min_tumour_fraction=0.0, rng=rng)
    with pytest.raises(AssertionError, match="below min_tumour_fraction|raise ValueError"):
        week2.check_get_sub_volume(wrong, seed=0)


def test_sub_volume_label_from_other_corner_fails():
    def wrong(image, label, *, patch_size, min_tumour_fraction, rng):
        x, _ = get_sub_volume(image, label, patch_size=patch_size, min_tumour_fraction=0.0, rng=rng)
        return x, label[tuple(slice(0, p) for p in patch_size)]
    with pytest.raises(AssertionError, match="same place|below"):
        week2.check_get_sub_volume(wrong, seed=0)


def test_sub_volume_off_by_one_upper_bound_fails():
    def wrong(image, label, *, patch_size, min_tumour_fraction, rng, max_tries=1000):
        for _ in range(max_tries):
            corner = [int(rng.integers(0, s - p)) for s, p in zip(label.shape, patch_size)]
            box = tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
            if np.mean(label[box] > 0) >= min_tumour_fraction:
                return image[(slice(None),) + box], label[box]
        raise ValueError("none")
    with pytest.raises(AssertionError, match="last possible"):
        week2.check_get_sub_volume(wrong, seed=0)


def test_sub_volume_fixed_corner_fails():
    def wrong(image, label, *, patch_size, min_tumour_fraction, rng):
        box = tuple(slice(0, p) for p in patch_size)
        return image[(slice(None),) + box], label[box]
    with pytest.raises(AssertionError, match="random|below|ValueError"):
        week2.check_get_sub_volume(wrong, seed=1)


# ----------------------------------------------------------------------------- ex2 wrong versions
def test_standardise_whole_array_statistics_fails():
    def wrong(image):
        return ((image - image.mean(axis=tuple(range(1, image.ndim)), keepdims=True))
                / image.std(axis=tuple(range(1, image.ndim)), keepdims=True))
    with pytest.raises(AssertionError, match="background|mean 0"):
        week2.check_standardise(wrong, seed=0)


def test_standardise_constant_channel_nan_fails():
    def wrong(image):
        brain = np.any(image != 0, axis=0)
        out = np.zeros(image.shape, dtype=np.float32)
        for c in range(image.shape[0]):
            v = image[c][brain]
            with np.errstate(all="ignore"):
                out[c][brain] = (v - v.mean()) / v.std()
        return out
    with pytest.raises(AssertionError, match="constant"):
        week2.check_standardise(wrong, seed=0)


def test_standardise_in_place_fails():
    def wrong(image):
        out = standardise(image)
        image[...] = out
        return image
    with pytest.raises(AssertionError, match="changed its input"):
        week2.check_standardise(wrong, seed=0)


# ----------------------------------------------------------------------------- ex3 wrong versions
def test_rotate_image_plane_not_shifted_fails():
    def wrong(image, label, *, k, plane):
        return np.rot90(image, k, axes=plane), np.rot90(label, k, axes=plane)
    with pytest.raises(AssertionError, match="channel axis|aligned"):
        week2.check_rotate_pair(wrong, seed=0)


def test_rotate_wrong_direction_fails():
    def wrong(image, label, *, k, plane):
        return rotate_pair(image, label, k=-k, plane=plane)
    with pytest.raises(AssertionError, match="other way round|not turned|aligned"):
        week2.check_rotate_pair(wrong, seed=0)


def test_rotate_only_label_fails():
    def wrong(image, label, *, k, plane):
        return image, np.rot90(label, k, axes=plane)
    with pytest.raises(AssertionError, match="shapes|aligned"):
        week2.check_rotate_pair(wrong, seed=0)


# ----------------------------------------------------------------------------- ex4 wrong versions
def test_stack_always_last_axis_fails():
    def wrong(model, volume, *, axis):
        return stack_slices(model, volume, axis=axis).movedim(axis + 1, -1)
    with pytest.raises(AssertionError, match="axis"):
        week2.check_stack_slices(wrong, seed=0)


def test_stack_in_front_of_classes_fails():
    def wrong(model, volume, *, axis):
        return torch.stack([model(volume.select(axis + 1, i)[None])[0] for i in range(volume.shape[axis + 1])])
    with pytest.raises(AssertionError, match="shape"):
        week2.check_stack_slices(wrong, seed=0)


# ----------------------------------------------------------------------------- ex5 wrong versions
def test_average_sum_fails():
    def wrong(window_logits, corners, *, shape):
        total = np.zeros((window_logits[0].shape[0],) + tuple(shape))
        for w, corner in zip(window_logits, corners):
            total[(slice(None),) + tuple(slice(c, c + r) for c, r in zip(corner, w.shape[1:]))] += w
        return total
    with pytest.raises(AssertionError, match="SUM"):
        week2.check_average_windows(wrong, seed=0)


def test_average_last_window_wins_fails():
    def wrong(window_logits, corners, *, shape):
        total = np.zeros((window_logits[0].shape[0],) + tuple(shape))
        for w, corner in zip(window_logits, corners):
            total[(slice(None),) + tuple(slice(c, c + r) for c, r in zip(corner, w.shape[1:]))] = w
        return total
    with pytest.raises(AssertionError, match="overlap"):
        week2.check_average_windows(wrong, seed=0)
