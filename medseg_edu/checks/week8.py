"""Self-checks for the week 8 exercises (promptable and interactive segmentation).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it with
the reference (the functions of :mod:`medseg_edu.interactive`, or the references below) and prints "exN looks
right", or raises AssertionError saying *what* is wrong (the sign of a click, a channel, an off-by-one) without
giving away an expected number.

Taught in week 8.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from medseg_edu.checks import answer_array, self_check
from medseg_edu.interactive.evaluation import number_of_clicks
from medseg_edu.interactive.prompts import Click, encode_prompts, next_click
from medseg_edu.interactive.refine import refine

__all__ = [
    "reference_accept_changes",
    "check_next_click",
    "check_encode_prompts",
    "check_number_of_clicks",
    "check_refine_step",
]


# ----------------------------------------------------------------------------------------------
# reference solutions (the others are the library's next_click, encode_prompts, number_of_clicks, refine)
# ----------------------------------------------------------------------------------------------
def reference_accept_changes(previous: Any, proposed: Any, clicks: Sequence[Click]) -> np.ndarray:
    """The local update of :func:`medseg_edu.interactive.refine.refine`: take over the connected regions
    (8-connectivity) where ``proposed`` differs from ``previous`` that contain a click; keep ``previous``
    everywhere else.

    Shape: previous, proposed (H, W) bool, clicks [Click, ...] -> (H, W) bool.
    """
    previous, proposed = np.asarray(previous, dtype=bool), np.asarray(proposed, dtype=bool)
    if previous.shape != proposed.shape or previous.ndim != 2:
        raise ValueError(f"previous and proposed must be two (H, W) masks of one shape, got {previous.shape} "
                         f"and {proposed.shape}")
    changed, _ = ndimage.label(previous != proposed, structure=np.ones((3, 3)))
    chosen = sorted({int(changed[c.y, c.x]) for c in clicks} - {0})
    out = previous.copy()
    take = np.isin(changed, chosen)
    out[take] = proposed[take]
    return out


# ----------------------------------------------------------------------------------------------
# random inputs
# ----------------------------------------------------------------------------------------------
def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """An ellipse somewhere in a size x size image."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    ry, rx = rng.uniform(0.12, 0.3, 2) * size
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _prediction_pair(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(pred, target): a target ellipse and a prediction that is shifted, shrunk or grown, with a stray blob."""
    target = _blob(rng, size)
    pred = np.roll(target, tuple(int(s) for s in rng.integers(-4, 5, size=2)), axis=(0, 1))
    if rng.random() < 0.5:
        pred = ndimage.binary_erosion(pred, iterations=int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        yy, xx = np.mgrid[:size, :size]
        cy, cx = rng.integers(0, size, size=2)
        pred = pred | ((yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(2, 6) ** 2)
    return pred, target


def _as_click(result: Any, name: str) -> Optional[Click]:
    if result is None:
        return None
    try:
        x, y, positive = result
    except (TypeError, ValueError):
        raise AssertionError(f"{name} must return Click(x, y, positive) or None, got {result!r}") from None
    if not isinstance(positive, (bool, np.bool_)):
        raise AssertionError(f"{name}: the third field, positive, must be True or False, got {positive!r}")
    return Click(int(x), int(y), bool(positive))


class _RuleModel(torch.nn.Module):
    """A promptable "model" without training: foreground logit = image + 2 * positive - 2 * negative clicks
    + box - 0.5 (background logit 0), so its masks have many separate blobs to accept or not."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        foreground = self.gain * (x[:, 0] + 2 * x[:, -2] - 2 * x[:, -1] + x[:, -3] - 0.5)
        return torch.stack([torch.zeros_like(foreground), foreground], dim=1)


def _call_name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
@self_check("ex1")
def check_next_click(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(pred, target) -> Click or None`` against :func:`medseg_edu.interactive.prompts.next_click`.

    A click passes when it has the reference's sign, lies in the largest error region and is as far from
    that region's boundary as the reference click (ties between equally deep pixels may go either way).

    Shape: fn maps two (H, W) bool masks to a Click or None.

    Taught in week 8.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    target = _blob(rng, 24)
    if _as_click(fn(target.copy(), target.copy()), name) is not None:
        raise AssertionError(f"{name}: a perfect prediction leaves nothing to correct; return None")
    for _ in range(6):
        pred, target = _prediction_pair(rng)
        got = _as_click(fn(pred.copy(), target.copy()), name)
        want = next_click(pred, target)
        if got is None:
            raise AssertionError(f"{name} returned None although the prediction has errors")
        if not (0 <= got.x < pred.shape[1] and 0 <= got.y < pred.shape[0]):
            raise AssertionError(f"{name}: the click (x={got.x}, y={got.y}) lies outside the image; x is the "
                                 f"column, y the row")
        if got.positive != want.positive:
            raise AssertionError(f"{name}: wrong sign. A click on a missed part of the object (false negative) "
                                 f"is positive, one on a false positive is negative; compare the sizes of the "
                                 f"largest false-negative and false-positive regions")
        errors = (target & ~pred) if want.positive else (pred & ~target)
        regions, _ = ndimage.label(errors)
        if regions[want.y, want.x] != regions[got.y, got.x]:
            where = "outside every error region" if regions[got.y, got.x] == 0 else "in a smaller error region"
            raise AssertionError(f"{name}: the click lies {where}; it must lie in the LARGEST connected error "
                                 f"region (4-connectivity, ndimage.label)")
        region = np.pad(regions == regions[want.y, want.x], 1)
        depth = ndimage.distance_transform_edt(region)[1:-1, 1:-1]
        # distances are square roots of whole numbers: 1e-6 separates any two different ones
        if abs(depth[got.y, got.x] - depth[want.y, want.x]) > 1e-6:
            raise AssertionError(f"{name}: the click must be the pixel of the region farthest from its boundary "
                                 f"(maximum of the distance transform, the image border counting as boundary: "
                                 f"pad with np.pad(region, 1) first); yours is {depth[got.y, got.x]:.2f} pixels "
                                 f"deep, less than the deepest")
    print("ex1 looks right")


@self_check("ex2")
def check_encode_prompts(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(shape, clicks=..., box=..., sigma_px=...)`` against
    :func:`medseg_edu.interactive.prompts.encode_prompts` on random boxes and clicks.

    Shape: fn maps (H, W), clicks and a box to (3, H, W) floats.

    Taught in week 8.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(5):
        height, width = (int(v) for v in rng.integers(12, 40, size=2))
        clicks = [Click(int(rng.integers(width)), int(rng.integers(height)), bool(rng.random() < 0.5))
                  for _ in range(int(rng.integers(0, 5)))]
        if trial == 0:
            clicks = [Click(1, 2, True), Click(width - 2, height - 3, False)]
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
        box = None if trial == 3 else (x0, y0, x1, y1)
        sigma_px = float(rng.uniform(1.0, 3.0))
        got = answer_array(fn((height, width), clicks=clicks, box=box, sigma_px=sigma_px), "the prompts", "ex2")
        want = encode_prompts((height, width), clicks=clicks, box=box, sigma_px=sigma_px)
        if got.shape != want.shape:
            raise AssertionError(f"{name} must return 3 channels (box, positive, negative) of shape (H, W) = "
                                 f"{(height, width)}, i.e. {want.shape}, got {got.shape}")
        got = got.astype(np.float64)
        # the reference is float32: 1e-5 is far above its rounding and far below any real difference
        tolerance = 1e-5
        if not np.allclose(got[0], want[0], atol=tolerance):
            if box is not None and height == width and np.allclose(got[0].T, want[0], atol=tolerance):
                raise AssertionError(f"{name}: box channel transposed; box = (x0, y0, x1, y1), x is the column")
            raise AssertionError(f"{name}: the box channel must be 1 inside the box (both edges included) and 0 "
                                 f"outside, all 0 without a box")
        if not np.allclose(got[1:], want[1:], atol=tolerance):
            if np.allclose(got[[2, 1]], want[1:], atol=tolerance):
                raise AssertionError(f"{name}: positive and negative clicks are in swapped channels")
            raise AssertionError(f"{name}: a click channel must hold exp(-d^2 / (2 sigma_px^2)) around each of its "
                                 f"clicks (d in pixels, x = column, y = row), combined by the maximum")
    print("ex2 looks right")


@self_check("ex3")
def check_number_of_clicks(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(dice_per_click, target_dice=..., max_clicks=...)`` against
    :func:`medseg_edu.interactive.evaluation.number_of_clicks` on random Dice-per-click curves.

    Shape: fn maps a (K,) sequence of Dice values to an int.

    Taught in week 8.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    cases = [([0.95, 0.97], 0.9, 20), ([0.2, 0.5, 0.85, 0.9], 0.85, 20), ([0.1, 0.3], 0.85, 20)]
    for _ in range(12):
        k = int(rng.integers(1, 26))
        curve = np.clip(np.cumsum(rng.uniform(-0.05, 0.15, size=k)) + rng.uniform(0.0, 0.6), 0, 1)
        cases.append((curve.tolist(), float(rng.choice([0.85, 0.9])), int(rng.integers(3, 21))))
    for curve, target, max_clicks in cases:
        got = fn(list(curve), target_dice=target, max_clicks=max_clicks)
        want = number_of_clicks(curve, target_dice=target, max_clicks=max_clicks)
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
            raise AssertionError(f"{name} must return a whole number of clicks (int), got {type(got).__name__}")
        if int(got) != want:
            if want == 0:
                raise AssertionError(f"{name}: when the Dice before any click (entry 0) already reaches the "
                                     f"target, 0 clicks are needed")
            if want == max_clicks:
                raise AssertionError(f"{name}: a session that does not reach the target within max_clicks "
                                     f"clicks counts as max_clicks (entries after max_clicks do not count)")
            raise AssertionError(f"{name}: entry k of the curve is the Dice after k clicks; return the first k "
                                 f"whose Dice is at least the target (>=)")
    print("ex3 looks right")


@self_check("ex4")
def check_refine_step(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(model, image, clicks, previous, box=None)`` against
    :func:`medseg_edu.interactive.refine.refine` (with ``previous``) for a rule-based promptable model.

    Shape: fn maps a model, an image (C, H, W), clicks and a previous mask (H, W) to a mask (H, W) bool.

    Taught in week 8.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    model = _RuleModel()
    for trial in range(3):
        noise = ndimage.gaussian_filter(rng.normal(size=(24, 24)), 2.0)
        image = ((noise - noise.mean()) / noise.std()).astype(np.float32)[None]
        previous, target = _prediction_pair(rng, size=24)
        clicks = []
        for _ in range(int(rng.integers(1, 4))):
            click = next_click(previous, target)
            if click is not None:
                clicks.append(click)
        box = None if trial == 0 else tuple(int(v) for v in (2, 3, 20, 21))
        got = answer_array(fn(model, image.copy(), clicks, previous.copy(), box=box), "the mask", "ex4")
        want = refine(model, image, clicks, box=box, previous=previous)
        if got.shape != want.shape:
            raise AssertionError(f"{name} must return a mask of the image's shape {want.shape}, got {got.shape}")
        got = got.astype(bool)
        proposed = refine(model, image, clicks, box=box)
        # a pixel or two may differ where the two classes' logits are within rounding of each other
        if np.mean(got != want) > 0.01:
            if np.mean(got != proposed) <= 0.01 and np.mean(proposed != want) > 0.01:
                raise AssertionError(f"{name} returned the model's whole new mask; keep `previous` everywhere "
                                     f"except the changed regions that contain a click")
            if np.mean(got != previous) <= 0.01 and np.mean(previous != want) > 0.01:
                raise AssertionError(f"{name} returned `previous` unchanged; take over the changed regions that "
                                     f"contain a click")
            raise AssertionError(f"{name}: run the model on the image with the three prompt channels appended "
                                 f"(encode_prompts), take foreground = argmax != 0, and accept the connected "
                                 f"changed regions (8-connectivity) that contain a click")
    print("ex4 looks right")
