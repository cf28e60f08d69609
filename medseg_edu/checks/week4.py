"""Self-checks for the week-4 exercises (losses and clinical metrics).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it with the
package's reference (:mod:`medseg_edu.metrics`, :mod:`medseg_edu.losses`) and prints
``"exN looks right"``. When something is off it raises ``AssertionError`` with a message that says
what is wrong (type, range, a property such as symmetry, the empty-mask rule, the units) -- never
the expected number.

Taught in week 4.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from medseg_edu.checks import self_check
from medseg_edu.losses import soft_dice_loss
from medseg_edu.metrics import dice_score, iou_score, sensitivity_score, specificity_score, volume_error

__all__ = [
    "check_dice_coefficient",
    "check_soft_dice_loss",
    "check_sensitivity_specificity",
    "check_iou",
    "check_volume_error_ml",
]

_TOL = 1e-6


def _rng(seed: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (checks are always seeded), got {seed!r}")
    return np.random.default_rng(int(seed))


def _random_masks(rng: np.random.Generator, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping random binary masks (neither empty)."""
    if shape is None:
        shape = tuple(int(s) for s in rng.integers(4, 12, size=int(rng.integers(2, 4))))
    while True:
        target = rng.random(shape) < rng.uniform(0.1, 0.5)
        pred = np.where(rng.random(shape) < 0.7, target, rng.random(shape) < 0.3)
        if target.any() and pred.any():
            return pred, target


def _as_float(value: Any, what: str, exercise: str) -> float:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.numel() != 1:
            raise AssertionError(f"{exercise}: {what} should be one number, got a tensor of shape "
                                 f"{tuple(value.shape)}")
        value = value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise AssertionError(f"{exercise}: {what} should be one number, got an array of shape {value.shape}")
        value = value.item()
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise AssertionError(f"{exercise}: {what} should be a number (float), got {type(value).__name__}")
    return float(value)


def _close(a: float, b: float, tol: float = _TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


@self_check("ex1")
def check_dice_coefficient(dice_coefficient: Callable, *, seed: int = 0) -> None:
    """Check ``dice_coefficient(pred, target) -> float`` (hard masks; both empty -> 1.0).

    Shape: pred, target boolean arrays of any identical shape -> float in [0, 1].
    Taught in week 4.
    """
    ex = "ex1"
    rng = _rng(seed)
    pred, target = _random_masks(rng)
    if not _close(_as_float(dice_coefficient(target, target), "the Dice of identical masks", ex), 1.0):
        raise AssertionError(f"{ex}: identical masks must have Dice 1")
    if not _close(_as_float(dice_coefficient(target, ~target), "the Dice of disjoint masks", ex), 0.0):
        raise AssertionError(f"{ex}: masks that do not overlap must have Dice 0")
    empty = np.zeros_like(target)
    value = _as_float(dice_coefficient(empty, empty), "the Dice of two empty masks", ex)
    if not _close(value, 1.0):
        raise AssertionError(f"{ex}: when both masks are empty return 1.0 (nothing to find, nothing found); "
                             f"watch out for a division by zero")
    for _ in range(5):
        pred, target = _random_masks(rng)
        value = _as_float(dice_coefficient(pred, target), "the Dice coefficient", ex)
        if not 0.0 <= value <= 1.0:
            raise AssertionError(f"{ex}: the Dice coefficient must lie in [0, 1], got a value outside")
        if not _close(value, _as_float(dice_coefficient(target, pred), "the Dice coefficient", ex)):
            raise AssertionError(f"{ex}: Dice must be symmetric: dice(pred, target) == dice(target, pred)")
        if not _close(value, dice_score(pred, target)):
            raise AssertionError(f"{ex}: wrong value on random masks; Dice is 2 * |overlap| divided by the "
                                 f"sum of the two mask sizes (did you forget the factor 2, or use the union?)")
    print(f"{ex} looks right")


@self_check("ex2")
def check_soft_dice_loss(soft_dice: Callable, *, seed: int = 0) -> None:
    """Check ``soft_dice(probs, onehot, smooth=1.0) -> float``, the AI-for-Medicine soft Dice loss.

    ``1 - mean over classes of (2 sum(p g) + smooth) / (sum(p^2) + sum(g^2) + smooth)``.

    Shape: probs, onehot (K, *spatial) float arrays -> float.
    Taught in week 4.
    """
    ex = "ex2"
    rng = _rng(seed)
    for trial in range(5):
        k = int(rng.integers(1, 4))
        spatial = tuple(int(s) for s in rng.integers(3, 8, size=int(rng.integers(2, 4))))
        probs = rng.random((k, *spatial))
        onehot = (rng.random((k, *spatial)) < 0.4).astype(np.float64)
        smooth = float(rng.choice([0.0, 1.0, 1e-5, 0.5]))
        got = _as_float(soft_dice(probs, onehot, smooth=smooth), "the loss", ex)
        want = soft_dice_loss(torch.from_numpy(probs)[None], torch.from_numpy(onehot)[None], activation="none",
                              squared=True, smooth=smooth, include_background=True).item()
        if _close(got, want):
            continue
        plain = soft_dice_loss(torch.from_numpy(probs)[None], torch.from_numpy(onehot)[None], activation="none",
                               squared=False, smooth=smooth, include_background=True).item()
        if _close(got, plain):
            raise AssertionError(f"{ex}: you used the plain denominator sum(p) + sum(g); this exercise asks for "
                                 f"the squared form sum(p**2) + sum(g**2)")
        if not 0.0 <= got <= 1.0 + _TOL:
            raise AssertionError(f"{ex}: a soft Dice loss of probabilities lies in [0, 1], got a value outside")
        if _close(1.0 - got, want) or _close(got, 1.0 - want):
            raise AssertionError(f"{ex}: this looks like the Dice coefficient, not the loss (loss = 1 - Dice)")
        raise AssertionError(f"{ex}: wrong value on random inputs with {k} class(es) and smooth={smooth}; "
                             f"compute the ratio per class (sum over the spatial axes only), add smooth to both "
                             f"numerator and denominator, then average the classes")
    probs = np.zeros((1, 4, 4))
    got = _as_float(soft_dice(probs, probs.copy(), smooth=1.0), "the loss", ex)
    if not _close(got, 0.0):
        raise AssertionError(f"{ex}: an empty prediction of an empty mask with smooth=1 should give loss 0")
    print(f"{ex} looks right")


@self_check("ex3")
def check_sensitivity_specificity(sens_spec: Callable, *, seed: int = 0) -> None:
    """Check ``sens_spec(pred, target, label) -> (sensitivity, specificity)`` of one class of label maps.

    Shape: pred, target (*spatial) integer label maps -> tuple of two floats.
    Taught in week 4.
    """
    ex = "ex3"
    rng = _rng(seed)
    for _ in range(5):
        shape = tuple(int(s) for s in rng.integers(5, 12, size=3))
        target = rng.integers(0, 4, size=shape)
        pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, 4, size=shape))
        label = int(rng.integers(1, 4))
        result = sens_spec(pred, target, label)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"{ex}: return a tuple (sensitivity, specificity), got {type(result).__name__}"
                                 + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
        sens = _as_float(result[0], "sensitivity", ex)
        spec = _as_float(result[1], "specificity", ex)
        want_sens = sensitivity_score(pred == label, target == label)
        want_spec = specificity_score(pred == label, target == label)
        if _close(sens, want_spec) and _close(spec, want_sens) and not _close(sens, want_sens):
            raise AssertionError(f"{ex}: sensitivity and specificity are swapped")
        if not _close(sens, want_sens):
            raise AssertionError(f"{ex}: sensitivity is wrong for class {label}: it is TP / (TP + FN), the "
                                 f"fraction of the class's true voxels that the prediction finds (other classes "
                                 f"count as negatives)")
        if not _close(spec, want_spec):
            raise AssertionError(f"{ex}: specificity is wrong for class {label}: it is TN / (TN + FP), the "
                                 f"fraction of the voxels NOT of that class that the prediction leaves out")
    print(f"{ex} looks right")


@self_check("ex4")
def check_iou(iou: Callable, iou_from_dice: Callable, *, seed: int = 0) -> None:
    """Check ``iou(pred, target) -> float`` (both empty -> 1.0) and ``iou_from_dice(dice) -> float``.

    Shape: pred, target boolean arrays of any identical shape -> float; dice a float -> float.
    Taught in week 4.
    """
    ex = "ex4"
    rng = _rng(seed)
    empty = np.zeros((5, 5), dtype=bool)
    if not _close(_as_float(iou(empty, empty), "the IoU of two empty masks", ex), 1.0):
        raise AssertionError(f"{ex}: when both masks are empty return 1.0; watch out for a division by zero")
    for _ in range(5):
        pred, target = _random_masks(rng)
        value = _as_float(iou(pred, target), "the IoU", ex)
        if not 0.0 <= value <= 1.0:
            raise AssertionError(f"{ex}: IoU must lie in [0, 1], got a value outside")
        if _close(value, dice_score(pred, target)) and not _close(value, iou_score(pred, target)):
            raise AssertionError(f"{ex}: iou() returns the Dice coefficient; IoU is |overlap| / |union|")
        if not _close(value, iou_score(pred, target)):
            raise AssertionError(f"{ex}: iou() is wrong on random masks; IoU is |overlap| / |union|")
        d = dice_score(pred, target)
        converted = _as_float(iou_from_dice(d), "iou_from_dice(dice)", ex)
        if not _close(converted, value):
            raise AssertionError(f"{ex}: iou_from_dice(dice) does not give the IoU of the same masks; start "
                                 f"from D = 2 TP / (2 TP + FP + FN) and J = TP / (TP + FP + FN) and solve for J")
    for d in (0.0, 1.0):
        if not _close(_as_float(iou_from_dice(d), "iou_from_dice(dice)", ex), d):
            raise AssertionError(f"{ex}: iou_from_dice must map Dice 0 to IoU 0 and Dice 1 to IoU 1")
    print(f"{ex} looks right")


@self_check("ex5")
def check_volume_error_ml(volume_error_ml: Callable, *, seed: int = 0) -> None:
    """Check ``volume_error_ml(pred, target, spacing_mm) -> float``, signed V_pred - V_true in ml.

    Shape: pred, target (X, Y, Z) boolean masks, spacing_mm three floats -> float (ml).
    Taught in week 4.
    """
    ex = "ex5"
    rng = _rng(seed)
    for _ in range(5):
        shape = tuple(int(s) for s in rng.integers(5, 15, size=3))
        pred, target = _random_masks(rng, shape)
        spacing = tuple(float(s) for s in rng.choice([0.5, 0.8, 1.0, 1.5, 3.0, 5.0], size=3))
        if len(set(spacing)) == 1:
            spacing = (spacing[0], spacing[1], spacing[2] * 2.0)
        got = _as_float(volume_error_ml(pred, target, spacing), "the volume error", ex)
        want = volume_error(pred, target, spacing_mm=spacing)["signed_ml"]
        if _close(got, want):
            continue
        if _close(got, -want):
            raise AssertionError(f"{ex}: the sign is reversed; return V_pred - V_true (positive means the "
                                 f"prediction is too large)")
        if _close(abs(got), abs(want)):
            raise AssertionError(f"{ex}: return the signed error V_pred - V_true, not its absolute value")
        if _close(got, want * 1000.0):
            raise AssertionError(f"{ex}: the result looks like cubic millimetres; 1 ml = 1000 mm^3")
        voxels = float(pred.sum()) - float(target.sum())
        if _close(got, voxels) or _close(got, voxels / 1000.0):
            raise AssertionError(f"{ex}: the result ignores spacing_mm: one voxel holds "
                                 f"spacing[0] * spacing[1] * spacing[2] mm^3")
        raise AssertionError(f"{ex}: wrong value on random masks with spacing {spacing} mm")
    print(f"{ex} looks right")
