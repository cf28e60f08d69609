"""Observer variability: simulated raters, inter-rater agreement, majority vote and STAPLE.

Two experts outlining the same tumour never draw the same boundary: one draws generously, one
tightly, one with a smooth hand, one follows every bump, one misses a small satellite lesion. The
labels a model is trained and judged on carry that variability, so a model whose Dice against one
rater is within the raters' Dice against each other is as good as the labels can show.

``simulate_rater`` perturbs a reference mask in one of those styles; ``pairwise_agreement``
tabulates Dice and HD95 for every pair of raters; ``majority_vote`` and ``staple`` fuse the raters
into a consensus. STAPLE (Warfield, Zou and Wells, IEEE TMI 2004) estimates, by
expectation-maximisation, each rater's sensitivity and specificity together with the probability
that each voxel is truly foreground, so a reliable rater counts for more than an unreliable one.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from medseg_edu.arguments import as_binary, check_int, check_positive
from medseg_edu.metrics import dice_score
from medseg_edu.surface import hd95_distance

__all__ = ["RATER_STYLES", "simulate_rater", "simulate_raters", "pairwise_agreement", "majority_vote",
           "staple"]

#: The boundary styles ``simulate_rater`` knows, with what each does.
RATER_STYLES = {
    "generous": "draws outside the boundary: the mask dilated by `strength` voxels",
    "tight": "draws inside the boundary: the mask eroded by `strength` voxels",
    "smooth": "rounds corners and fills notches: the mask blurred (sigma `strength` voxels) at 0.5",
    "jagged": "follows noise: the boundary moved in and out by smooth random noise of `strength` voxels",
    "misses_small": "misses small parts: connected components under `strength` x 10 % of the largest dropped",
}


def simulate_rater(mask: Any, *, style: str, strength: float = 1.0, seed: int = 0) -> np.ndarray:
    """One simulated rater's outline of ``mask`` in a given boundary ``style`` (see ``RATER_STYLES``).

    ``strength`` is in voxels (for "misses_small": the size cut-off in tenths of the largest part).
    Only "jagged" is random; ``seed`` fixes it.

    Shape: mask (X, Y) or (X, Y, Z) binary -> same shape, bool.

    Example:
        >>> square = np.zeros((9, 9), bool); square[3:6, 3:6] = True
        >>> int(simulate_rater(square, style="generous").sum())  # 5 x 5 without its 4 corners
        21

    Used in week 9 through `simulate_raters`.
    """
    mask = as_binary(mask, "mask")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or 3D, got shape {mask.shape}")
    if style not in RATER_STYLES:
        raise ValueError(f"style must be one of {sorted(RATER_STYLES)}, got {style!r}")
    strength = check_positive(strength, "strength")
    if style in ("generous", "tight"):
        steps = max(1, int(round(strength)))
        operation = ndimage.binary_dilation if style == "generous" else ndimage.binary_erosion
        return operation(mask, iterations=steps)
    if style == "smooth":
        return ndimage.gaussian_filter(mask.astype(np.float64), sigma=strength) >= 0.5
    if style == "jagged":
        rng = np.random.default_rng(seed)
        noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma=1.5)
        noise *= strength / max(float(noise.std()), 1e-12)
        inside = ndimage.distance_transform_edt(mask)
        outside = ndimage.distance_transform_edt(~mask)
        signed = np.where(mask, inside - 0.5, 0.5 - outside)  # > 0 inside, half a voxel at the boundary
        return signed + noise > 0
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.1 * strength * sizes.max()) + 1
    return np.isin(labels, keep)


def simulate_raters(mask: Any, *, styles: Sequence[str] = ("generous", "tight", "smooth", "jagged", "misses_small"),
                    strength: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    """One simulated rater per entry of ``styles`` (a style may repeat; each gets its own seed).

    Shape: mask (X, Y) or (X, Y, Z) -> a list of ``len(styles)`` bool masks of the same shape.

    Taught in week 9.
    """
    if isinstance(styles, str) or not styles:
        raise ValueError(f"styles must be a non-empty list of style names, got {styles!r}")
    check_int(seed, "seed", minimum=0)
    return [simulate_rater(mask, style=style, strength=strength, seed=seed + i) for i, style in enumerate(styles)]


def _check_raters(masks: Sequence[Any]) -> np.ndarray:
    if isinstance(masks, np.ndarray) and masks.ndim >= 3:
        masks = list(masks)
    if not isinstance(masks, Sequence) or len(masks) < 2:
        raise ValueError(f"masks must be a list of at least 2 rater masks, got {type(masks).__name__} "
                         f"of length {len(masks) if hasattr(masks, '__len__') else '?'}")
    arrays = [as_binary(m, f"masks[{i}]") for i, m in enumerate(masks)]
    for i, array in enumerate(arrays):
        if array.shape != arrays[0].shape:
            raise ValueError(f"all masks must have the same shape, got {arrays[0].shape} (masks[0]) and "
                             f"{array.shape} (masks[{i}])")
    return np.stack(arrays)


def pairwise_agreement(masks: Sequence[Any], *, spacing_mm: Sequence[float],
                       names: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Dice and HD95 (mm) for every pair of raters.

    Empty masks follow the library's policies: Dice of two empty masks is NaN, HD95 with one empty
    mask is inf (see :func:`medseg_edu.surface.hd95_distance`).

    Shape: masks, a list of R same-shaped binary masks -> a table of R (R - 1) / 2 rows with columns
    rater_a, rater_b, dice, hd95_mm.

    Taught in week 9.
    """
    stack = _check_raters(masks)
    names = [f"rater {i + 1}" for i in range(len(stack))] if names is None else [str(n) for n in names]
    if len(names) != len(stack):
        raise ValueError(f"names must have one entry per mask ({len(stack)}), got {len(names)}")
    rows = [{"rater_a": names[a], "rater_b": names[b], "dice": dice_score(stack[a], stack[b]),
             "hd95_mm": hd95_distance(stack[a], stack[b], spacing_mm=spacing_mm)}
            for a, b in combinations(range(len(stack)), 2)]
    return pd.DataFrame(rows, columns=["rater_a", "rater_b", "dice", "hd95_mm"])


def majority_vote(masks: Sequence[Any]) -> np.ndarray:
    """Consensus by majority: a voxel is foreground when more than half of the raters marked it.

    With an even number of raters a tie (exactly half) is background.

    Shape: a list of R binary masks (*spatial) -> (*spatial) bool.

    Taught in week 9.
    """
    stack = _check_raters(masks)
    return 2 * stack.sum(axis=0) > len(stack)


def staple(masks: Sequence[Any], *, max_iterations: int = 100, tolerance: float = 1e-7,
           prior: Optional[float] = None) -> dict[str, Any]:
    """STAPLE consensus (binary): EM estimate of the true mask and of each rater's performance.

    Model: each voxel is truly foreground with probability ``prior`` (default: the fraction of all
    rater decisions that are foreground, as ITK/SimpleITK's STAPLEImageFilter uses); rater r marks a
    true foreground voxel with probability p_r (sensitivity) and leaves a true background voxel
    unmarked with probability q_r (specificity). Starting from p = q = 0.99999 (as ITK), the E-step
    computes each voxel's posterior probability W of being foreground and the M-step re-estimates
    ``p_r = sum(W D_r) / sum(W)`` and ``q_r = sum((1 - W)(1 - D_r)) / sum(1 - W)``, until no p or q
    moves more than ``tolerance``.

    Shape: a list of R binary masks (*spatial) -> ``{"probability": (*spatial) float64, "mask":
    probability >= 0.5, "sensitivity": (R,), "specificity": (R,), "iterations": int}``.

    Taught in week 9.
    """
    stack = _check_raters(masks).reshape(len(masks), -1).astype(np.float64)
    check_int(max_iterations, "max_iterations", minimum=1)
    if prior is None:
        prior = float(stack.mean())
    if not 0 < prior < 1:
        raise ValueError(f"prior must lie strictly between 0 and 1, got {prior} (all raters empty or all full?)")
    p = np.full(len(stack), 0.99999)
    q = np.full(len(stack), 0.99999)
    weights = np.zeros(stack.shape[1])
    iterations = 0
    for iterations in range(1, int(max_iterations) + 1):
        # E-step in log space: products of many probabilities underflow
        log_a = np.log(prior) + (stack * np.log(p)[:, None] + (1 - stack) * np.log1p(-p)[:, None]).sum(axis=0)
        log_b = np.log1p(-prior) + ((1 - stack) * np.log(q)[:, None] + stack * np.log1p(-q)[:, None]).sum(axis=0)
        weights = 1.0 / (1.0 + np.exp(np.clip(log_b - log_a, -700, 700)))
        new_p = (stack @ weights) / max(weights.sum(), 1e-300)
        new_q = ((1 - stack) @ (1 - weights)) / max((1 - weights).sum(), 1e-300)
        new_p, new_q = np.clip(new_p, 1e-12, 1 - 1e-12), np.clip(new_q, 1e-12, 1 - 1e-12)
        change = max(np.abs(new_p - p).max(), np.abs(new_q - q).max())
        p, q = new_p, new_q
        if change <= tolerance:
            break
    shape = np.shape(masks[0])
    probability = weights.reshape(shape)
    return {"probability": probability, "mask": probability >= 0.5, "sensitivity": p, "specificity": q,
            "iterations": iterations}
