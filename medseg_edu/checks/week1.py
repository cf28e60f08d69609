"""Self-checks for the week-1 exercises (resampling, NCC, mutual information, a registration loop).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it with the
package's reference (:func:`medseg_edu.registration.resample`, :func:`~medseg_edu.similarity.ncc_score`,
:func:`~medseg_edu.similarity.histogram_mutual_information`,
:func:`~medseg_edu.registration.transform_error`) and prints ``"exN looks right"``. When something is
off it raises ``AssertionError`` with a message that says what is wrong (shape, direction, a property)
-- never the expected values.

Taught in week 1.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
from scipy.ndimage import gaussian_filter

from medseg_edu.checks import answer_array, self_check
from medseg_edu.registration import resample, rigid_matrix, transform_error
from medseg_edu.similarity import histogram_mutual_information, joint_histogram, ncc_score

__all__ = ["random_slice", "check_resample_2d", "check_ncc", "check_mutual_information", "check_register_2d"]


def random_slice(rng: np.random.Generator, *, shape: Optional[tuple[int, int]] = None,
                 smooth: float = 1.0, border: int = 3) -> np.ndarray:
    """A random smooth 2D image with a zero border (like a head surrounded by air).

    Shape: -> (H, W) float64, H and W between 20 and 32 unless ``shape`` is given.
    Taught in week 1.
    """
    if shape is None:
        shape = tuple(int(s) for s in rng.integers(20, 33, size=2))
    inner = gaussian_filter(rng.random((shape[0] - 2 * border, shape[1] - 2 * border)), smooth) if smooth > 0 \
        else rng.random((shape[0] - 2 * border, shape[1] - 2 * border))
    return np.pad(10.0 * inner, border)


def _as_number(value: Any, what: str, exercise: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AssertionError(f"{exercise}: {what} should be one number, got {type(value).__name__}") from None
    if not math.isfinite(number):
        raise AssertionError(f"{exercise}: {what} is {number} for ordinary images (division by zero or log(0)?)")
    return number


def _reference_resample(image: np.ndarray, angle_deg: float, shift_mm, spacing_mm) -> np.ndarray:
    return resample(image, rigid_matrix(angle_deg, list(shift_mm)), spacing_mm=spacing_mm)


# ------------------------------------------------------------------------------------------ ex1
@self_check("ex1")
def check_resample_2d(resample_2d: Callable[..., Any], *, seed: int = 0, trials: int = 3) -> None:
    """Check ``resample_2d(image, angle_deg, shift_mm, *, spacing_mm)`` (out(p) = image(R p + shift)).

    Shape: the student's function maps (H, W) -> (H, W).
    Taught in week 1.
    """
    ex = "ex1"
    rng = np.random.default_rng(seed)
    image = random_slice(rng)
    same = answer_array(resample_2d(image, 0.0, (0.0, 0.0), spacing_mm=(1.0, 1.0)), "the result", ex)
    if same.shape != image.shape:
        raise AssertionError(f"{ex}: the output should have the input's shape {image.shape}, got {same.shape}")
    if not np.allclose(same, image, atol=1e-6):
        raise AssertionError(f"{ex}: with angle 0 and shift (0, 0) the image should come back unchanged")
    spacing = (2.0, 1.0)
    shifted = answer_array(resample_2d(image, 0.0, (2.0, 0.0), spacing_mm=spacing), "the result", ex)
    if not np.allclose(shifted[:-1], image[1:], atol=1e-6):
        if np.allclose(shifted[1:], image[:-1], atol=1e-6):
            raise AssertionError(f"{ex}: the shift goes the wrong way: out(p) must read the image AT p + shift")
        if np.allclose(shifted[:-2], image[2:], atol=1e-6):
            raise AssertionError(f"{ex}: a shift of 2 mm moved 2 voxels although voxels are 2 mm along axis 0: "
                                 "convert mm to voxels with spacing_mm")
        raise AssertionError(f"{ex}: a shift of exactly one voxel (spacing_mm[0] mm along axis 0) does not give "
                             "the image moved by one voxel")
    for _ in range(trials):
        image = random_slice(rng)
        spacing = tuple(float(s) for s in rng.uniform(0.6, 2.0, size=2))
        angle = float(rng.uniform(-30, 30))
        shift = tuple(float(s) for s in rng.uniform(-3, 3, size=2))
        got = answer_array(resample_2d(image, angle, shift, spacing_mm=spacing), "the result", ex)
        want = _reference_resample(image, angle, shift, spacing)
        if got.shape != want.shape:
            raise AssertionError(f"{ex}: the output should have the input's shape {image.shape}, got {got.shape}")
        if np.allclose(got, want, atol=1e-3 * image.max()):
            continue
        if np.allclose(got, _reference_resample(image, -angle, shift, spacing), atol=1e-3 * image.max()):
            raise AssertionError(f"{ex}: the rotation turns the wrong way (R should turn axis 0 towards axis 1 "
                                 "for a positive angle)")
        if np.allclose(got, _reference_resample(image, angle, shift, (1.0, 1.0)), atol=1e-3 * image.max()):
            raise AssertionError(f"{ex}: the result ignores spacing_mm: rotate positions in mm, not in voxels")
        raise AssertionError(f"{ex}: for a random angle, shift and anisotropic spacing the result differs from "
                             f"the reference by up to {np.abs(got - want).max():.3g} (about the centre? linear "
                             "interpolation? 0 outside?)")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex2
@self_check("ex2")
def check_ncc(ncc: Callable[[np.ndarray, np.ndarray], Any], *, seed: int = 0, trials: int = 5) -> None:
    """Check ``ncc(a, b)`` (global normalised cross-correlation) against ``ncc_score``.

    Shape: the student's function maps two (H, W) arrays -> a number.
    Taught in week 1.
    """
    ex = "ex2"
    rng = np.random.default_rng(seed)
    a = random_slice(rng, border=0) + 1.0
    if abs(_as_number(ncc(a, a), "ncc(a, a)", ex) - 1.0) > 1e-6:
        raise AssertionError(f"{ex}: an image compared with itself should score exactly 1")
    if abs(_as_number(ncc(a, 3.0 * a + 5.0), "ncc(a, 3a + 5)", ex) - 1.0) > 1e-6:
        raise AssertionError(f"{ex}: NCC should ignore brightness and contrast: ncc(a, 3 a + 5) must be 1 "
                             "(subtract each image's mean, divide by its spread)")
    if abs(_as_number(ncc(a, -a), "ncc(a, -a)", ex) + 1.0) > 1e-6:
        raise AssertionError(f"{ex}: an inverted image should score -1")
    for _ in range(trials):
        shape = tuple(int(s) for s in rng.integers(10, 30, size=2))
        a, b = rng.random(shape) + 2.0, rng.random(shape) + 2.0
        b = b + rng.uniform(0, 2) * a
        got, want = _as_number(ncc(a, b), "ncc(a, b)", ex), ncc_score(a, b)
        if abs(got - _as_number(ncc(b, a), "ncc(b, a)", ex)) > 1e-9:
            raise AssertionError(f"{ex}: ncc(a, b) and ncc(b, a) differ: the score should be symmetric")
        if abs(got - want) <= 1e-6:
            continue
        cosine = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
        if abs(got - cosine) < 1e-6:
            raise AssertionError(f"{ex}: this is the cosine of the raw images: subtract the means first")
        if not -1.0 - 1e-9 <= got <= 1.0 + 1e-9:
            raise AssertionError(f"{ex}: NCC must lie in [-1, 1], got {got:.4g}")
        raise AssertionError(f"{ex}: on random images the score differs from the reference NCC by {abs(got - want):.3g}")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex3
@self_check("ex3")
def check_mutual_information(mutual_information: Callable[..., Any], *, seed: int = 0,
                             trials: int = 4) -> None:
    """Check ``mutual_information(a, b, bins=...)`` (nats, from a joint histogram) against the reference.

    Shape: the student's function maps two (H, W) arrays -> a number.
    Taught in week 1.
    """
    ex = "ex3"
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        bins = int(rng.integers(8, 40))
        shape = tuple(int(s) for s in rng.integers(30, 60, size=2))
        a = gaussian_filter(rng.random(shape), 1.0)
        b = np.exp(-rng.uniform(1, 4) * a) + 0.02 * rng.random(shape)   # another "sequence" of the same scene
        got = _as_number(mutual_information(a, b, bins=bins), "mutual_information(a, b)", ex)
        want = histogram_mutual_information(joint_histogram(a, b, bins=bins))
        if got < -1e-9:
            raise AssertionError(f"{ex}: mutual information is never negative, got {got:.4g}")
        if abs(got - _as_number(mutual_information(b, a, bins=bins), "mutual_information(b, a)", ex)) > 1e-6:
            raise AssertionError(f"{ex}: mutual_information(a, b) and (b, a) differ: it should be symmetric")
        if abs(got - want) <= 1e-3 * max(want, 1e-3):
            continue
        if abs(got - want / math.log(2)) <= 1e-3 * want:
            raise AssertionError(f"{ex}: this looks like bits (log2): use the natural log (nats)")
        raise AssertionError(f"{ex}: with bins={bins} the value differs from the reference by {abs(got - want):.3g} "
                             "(equal-width bins over each image's own range? p(i, j) normalised to sum 1? "
                             "log(p(i, j) / (p(i) p(j)))?)")
    x, y = rng.random(20000), rng.random(20000)
    independent = _as_number(mutual_information(x, y, bins=8), "mutual_information", ex)
    if independent > 0.01:
        raise AssertionError(f"{ex}: two independent noise images should share (almost) no information, "
                             f"got {independent:.3g}")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex4
@self_check("ex4")
def check_register_2d(register_2d: Callable[..., Any], *, seed: int = 0, trials: int = 2) -> None:
    """Check ``register_2d(fixed, moving, *, spacing_mm, metric) -> (angle_deg, shift_mm)``.

    The images are a random smooth slice and a copy moved by a random rigid transform; the metric is the
    package's NCC. The recovered transform must be much closer to the truth than the identity.

    Shape: fixed, moving (H, W) -> (float, (2,) mm).
    Taught in week 1.
    """
    ex = "ex4"
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        fixed = random_slice(rng, shape=(48, 48), smooth=3.0, border=8)
        spacing = (2.0, 2.0)
        true = rigid_matrix(float(rng.uniform(-6, 6)), [float(s) for s in rng.uniform(-5, 5, size=2)])
        moving = resample(fixed, np.linalg.inv(true), spacing_mm=spacing)       # moving(true @ p) = fixed(p)
        result = register_2d(fixed, moving, spacing_mm=spacing, metric=ncc_score)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"{ex}: return a tuple (angle_deg, shift_mm), got {type(result).__name__}")
        angle = _as_number(result[0], "angle_deg", ex)
        shift = np.asarray(result[1], dtype=np.float64).ravel()
        if shift.shape != (2,):
            raise AssertionError(f"{ex}: shift_mm should hold 2 numbers, got shape {shift.shape}")
        estimate = rigid_matrix(angle, shift)
        before_mm, _ = transform_error(np.eye(3), true)
        after_mm, after_deg = transform_error(estimate, true)
        if after_mm < 0.5 * before_mm and after_deg < 2.0:
            continue
        if transform_error(np.linalg.inv(estimate), true)[0] < 0.5 * before_mm:
            raise AssertionError(f"{ex}: you found the INVERSE transform: return the fixed -> moving map, the one "
                                 "for which resample_2d(moving, angle, shift) lies on top of fixed")
        raise AssertionError(f"{ex}: the transform found is still {after_mm:.2f} mm / {after_deg:.2f} degrees from "
                             f"the truth (identity: {before_mm:.2f} mm): does the search keep improving the "
                             "metric (higher is better) and make its steps smaller when stuck?")
    print(f"{ex} looks right")
