"""The week-1 self-checks pass correct solutions and fail plausible wrong ones with a useful message."""
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from medseg_edu.checks import week1
from medseg_edu.similarity import ncc_score


# ------------------------------------------------------------------------------ solutions written for the test
def resample_2d(image, angle_deg, shift_mm, *, spacing_mm, flip_angle=False, ignore_spacing=False,
                push=False, order=1):
    image = np.asarray(image, dtype=np.float64)
    spacing = np.ones(2) if ignore_spacing else np.asarray(spacing_mm, dtype=np.float64)
    centre = (np.array(image.shape) - 1) / 2.0
    i, j = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    x, y = (i - centre[0]) * spacing[0], (j - centre[1]) * spacing[1]
    a = np.deg2rad(-angle_deg if flip_angle else angle_deg)
    sign = -1.0 if push else 1.0
    qx = np.cos(a) * x - np.sin(a) * y + sign * shift_mm[0]
    qy = np.sin(a) * x + np.cos(a) * y + sign * shift_mm[1]
    return map_coordinates(image, [qx / spacing[0] + centre[0], qy / spacing[1] + centre[1]], order=order,
                           mode="constant", cval=0.0)


def ncc(a, b):
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return float(np.corrcoef(a, b)[0, 1])


def ncc_uncentred(a, b):
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def mutual_information(a, b, bins=32, log=np.log):
    hist, _, _ = np.histogram2d(np.ravel(a), np.ravel(b), bins=bins)
    p = hist / hist.sum()
    outer = p.sum(1)[:, None] * p.sum(0)[None, :]
    nz = p > 0
    return float((p[nz] * log(p[nz] / outer[nz])).sum())


def register_2d(fixed, moving, *, spacing_mm, metric, invert=False, rounds=300):
    params, step = np.zeros(3), np.full(3, 2.0)

    def score(p):
        return metric(fixed, resample_2d(moving, p[0], p[1:], spacing_mm=spacing_mm))

    best = score(params)
    for _ in range(rounds):
        improved = False
        for k in range(3):
            for sign in (1.0, -1.0):
                trial = params.copy()
                trial[k] += sign * step[k]
                value = score(trial)
                if value > best:
                    params, best, improved = trial, value, True
        if not improved:
            step /= 2
            if step.max() < 0.05:
                break
    if invert:      # report the moving -> fixed map instead
        a = np.deg2rad(params[0])
        rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return -params[0], -(rotation.T @ params[1:])
    return params[0], params[1:]


# ------------------------------------------------------------------------------ ex1
def test_check_resample_2d_passes_a_correct_solution(capsys):
    week1.check_resample_2d(resample_2d, seed=0)
    assert "ex1 looks right" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (dict(flip_angle=True), "turns the wrong way"),
    (dict(ignore_spacing=True), "convert mm to voxels"),
    (dict(push=True), "shift goes the wrong way"),
])
def test_check_resample_2d_names_the_mistake(wrong, message):
    def student(image, angle_deg, shift_mm, *, spacing_mm):
        return resample_2d(image, angle_deg, shift_mm, spacing_mm=spacing_mm, **wrong)

    with pytest.raises(AssertionError, match=message):
        week1.check_resample_2d(student, seed=1)


def test_check_resample_2d_rejects_a_wrong_shape_and_nearest_interpolation():
    with pytest.raises(AssertionError, match="shape"):
        week1.check_resample_2d(lambda image, a, s, *, spacing_mm: image[1:], seed=2)

    def nearest(image, angle_deg, shift_mm, *, spacing_mm):
        return resample_2d(image, angle_deg, shift_mm, spacing_mm=spacing_mm, order=0)

    with pytest.raises(AssertionError, match="differs from the reference"):
        week1.check_resample_2d(nearest, seed=3)


# ------------------------------------------------------------------------------ ex2
def test_check_ncc(capsys):
    week1.check_ncc(ncc, seed=0)
    assert "ex2 looks right" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="subtract the means|brightness and contrast"):
        week1.check_ncc(ncc_uncentred, seed=0)
    with pytest.raises(AssertionError, match="should be one number"):
        week1.check_ncc(lambda a, b: None, seed=0)
    with pytest.raises(AssertionError, match="differs from the reference"):
        week1.check_ncc(lambda a, b: ncc(a, b) ** 3 if abs(ncc(a, b)) < 0.999 else ncc(a, b), seed=0)


# ------------------------------------------------------------------------------ ex3
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_mutual_information(capsys):
    week1.check_mutual_information(mutual_information, seed=0)
    assert "ex3 looks right" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="bits"):
        week1.check_mutual_information(lambda a, b, bins=32: mutual_information(a, b, bins, log=np.log2), seed=0)
    with pytest.raises(AssertionError, match="is nan|never negative|differs"):
        # forgot to skip empty cells: 0 * log(0) gives nan
        week1.check_mutual_information(
            lambda a, b, bins=32: float(np.sum((lambda p: p * np.log(p / (p.sum(1)[:, None] * p.sum(0)[None])))(
                np.histogram2d(np.ravel(a), np.ravel(b), bins=bins)[0] / np.size(a)))), seed=0)
    with pytest.raises(AssertionError, match="symmetric"):
        # entropy of a instead of mutual information
        week1.check_mutual_information(
            lambda a, b, bins=32: float(-np.sum((lambda p: p[p > 0] * np.log(p[p > 0]))(
                np.histogram(a, bins=bins)[0] / np.size(a)))), seed=0)


# ------------------------------------------------------------------------------ ex4
def test_check_register_2d(capsys):
    week1.check_register_2d(register_2d, seed=0)
    assert "ex4 looks right" in capsys.readouterr().out


def test_check_register_2d_names_an_inverted_answer_and_a_search_that_stops_early():
    with pytest.raises(AssertionError, match="INVERSE"):
        week1.check_register_2d(lambda f, m, *, spacing_mm, metric: register_2d(f, m, spacing_mm=spacing_mm,
                                                                                  metric=metric, invert=True),
                                seed=0)
    with pytest.raises(AssertionError, match="still"):
        week1.check_register_2d(lambda f, m, *, spacing_mm, metric: register_2d(f, m, spacing_mm=spacing_mm,
                                                                                  metric=metric, rounds=1),
                                seed=0)
    with pytest.raises(AssertionError, match="tuple"):
        week1.check_register_2d(lambda f, m, *, spacing_mm, metric: np.zeros(3), seed=0)


def test_random_slice_has_a_zero_border_and_the_package_ncc_agrees_with_numpy():
    image = week1.random_slice(np.random.default_rng(0), shape=(30, 24), border=4)
    assert image.shape == (30, 24) and image[:4].max() == 0 and image[:, -4:].max() == 0 and image.max() > 0
    other = week1.random_slice(np.random.default_rng(1), shape=(30, 24), border=4)
    assert ncc_score(image, other) == pytest.approx(ncc(image, other), abs=1e-9)
