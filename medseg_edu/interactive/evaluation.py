"""What users of interactive tools report: clicks needed (NoC), and what a box buys over automatic segmentation.

NoC@85 / NoC@90 (Xu et al. 2016; Sofiiuk et al. 2022): the number of clicks the simulated user needs
before the Dice reaches 0.85 / 0.90, with at most ``max_clicks`` (20) clicks. A session that never
gets there counts as ``max_clicks``, as in the literature, which therefore also reports how many
sessions failed (NoF). A session whose mask is good enough before any click (a box prompt or an
automatic segmentation already reaching the target) needs 0 clicks.

Zero-shot transfer between the course's two data sets (brain MRI slices, 4 sequences; skin
photographs, RGB) needs one input format for both: :func:`grey_channel` makes a single standardised
intensity channel from either (one MRI sequence, or the mean of the colour channels), so a model
trained on one data set takes the other's images as they are.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from torch import nn

from medseg_edu.arguments import as_binary, check_int, check_unit_interval, to_numpy
from medseg_edu.interactive.prompts import _as_image, box_from_mask
from medseg_edu.interactive.refine import _logits_to_mask, refine
from medseg_edu.metrics import dice_score

__all__ = ["number_of_clicks", "noc_summary", "box_vs_automatic_dice", "grey_channel"]


def number_of_clicks(dice_per_click: Any, *, target_dice: float, max_clicks: int = 20) -> int:
    """Clicks needed to reach ``target_dice``: the first ``k`` with ``dice_per_click[k] >= target_dice``.

    ``dice_per_click[k]`` is the Dice after ``k`` clicks, entry 0 before any click (as returned by
    :func:`medseg_edu.interactive.refine.click_session`). Only ``k <= max_clicks`` count; if the target
    is not reached by then (or the sequence ends first) the answer is ``max_clicks``, the literature's
    convention for a failed session.

    Shape: dice_per_click (K,) floats -> int in 0..max_clicks.

    Example:
        >>> number_of_clicks([0.5, 0.8, 0.87, 0.91], target_dice=0.85)
        2
        >>> number_of_clicks([0.5, 0.8], target_dice=0.85)
        20

    Taught in week 8.
    """
    dice = np.asarray(to_numpy(dice_per_click, "dice_per_click", allow_lists=True), dtype=np.float64)
    if dice.ndim != 1 or dice.size == 0:
        raise ValueError(f"dice_per_click must be a non-empty 1D sequence (Dice after 0, 1, 2, ... clicks), got "
                         f"shape {dice.shape}")
    if np.isnan(dice).any() or dice.min() < 0 or dice.max() > 1:
        raise ValueError(f"dice_per_click must hold Dice values in [0, 1], got {dice.tolist()[:8]}")
    target_dice = check_unit_interval(target_dice, "target_dice", open_low=True, open_high=False)
    max_clicks = check_int(max_clicks, "max_clicks", minimum=0)
    reached = np.nonzero(dice[:max_clicks + 1] >= target_dice)[0]
    return int(reached[0]) if reached.size else max_clicks


def noc_summary(dice_curves: Sequence[Any], *, targets: Sequence[float] = (0.85, 0.90),
                max_clicks: int = 20) -> dict[str, float]:
    """Mean NoC and number of failures (NoF) over sessions, for each target Dice.

    Keys are ``"NoC@85"`` (mean clicks to Dice 0.85, failures counted as ``max_clicks``) and
    ``"NoF@85"`` (sessions that never reached it within ``max_clicks`` clicks), and so on for every
    target (its percentage, rounded, names the key).

    Shape: dice_curves [ (K,) floats, ... ] -> {"NoC@85": float, "NoF@85": int, "NoC@90": ..., ...}.

    Example:
        >>> noc_summary([[0.5, 0.9], [0.86, 0.95]], targets=(0.85,), max_clicks=20)
        {'NoC@85': 0.5, 'NoF@85': 0}

    Taught in week 8.
    """
    if isinstance(dice_curves, (str, bytes)) or not isinstance(dice_curves, Sequence) or not dice_curves:
        raise ValueError(f"dice_curves must be a non-empty list of Dice-per-click sequences, got {dice_curves!r}")
    summary: dict[str, float] = {}
    for target in targets:
        clicks = [number_of_clicks(curve, target_dice=target, max_clicks=max_clicks) for curve in dice_curves]
        failed = [not (np.asarray(curve, dtype=float)[:max_clicks + 1] >= target).any() for curve in dice_curves]
        name = f"{round(100 * target)}"
        summary[f"NoC@{name}"] = float(np.mean(clicks))
        summary[f"NoF@{name}"] = int(sum(failed))
    return summary


def box_vs_automatic_dice(model: nn.Module, images: Sequence[Any], targets: Sequence[Any], *,
                          automatic_model: Optional[nn.Module] = None, jitter_px: int = 0,
                          rng: Optional[np.random.Generator] = None) -> pd.DataFrame:
    """Dice of the box-prompted segmentation next to the automatic one, image by image.

    ``model`` is a promptable model (:func:`refine`); each image's box is :func:`box_from_mask` of its
    target, jittered by up to ``jitter_px`` pixels (``rng`` required then). The automatic
    segmentation comes from ``automatic_model`` (a plain model taking the image's ``C`` channels,
    foreground = argmax != 0, or logit > 0 for one channel) or, without it, from ``model`` with no
    prompt. Every target must contain the object (a box needs one).

    Shape: images [(C, H, W), ...], targets [(H, W), ...] -> DataFrame with one row per image and columns
    "automatic_dice", "box_dice".

    Taught in week 8.
    """
    if len(images) != len(targets) or len(images) == 0:
        raise ValueError(f"images and targets must be two non-empty lists of the same length, got "
                         f"{len(images)} and {len(targets)}")
    rows = []
    for i, (image, target) in enumerate(zip(images, targets)):
        target = as_binary(target, f"targets[{i}]")
        box = box_from_mask(target, jitter_px=jitter_px, rng=rng)
        if box is None:
            raise ValueError(f"targets[{i}] is empty; a box prompt needs an object to box")
        if automatic_model is None:
            automatic = refine(model, image, [])
        else:
            automatic = _predict_plain(automatic_model, _as_image(image, f"images[{i}]"))
        rows.append({"automatic_dice": dice_score(automatic, target),
                     "box_dice": dice_score(refine(model, image, [], box=box), target)})
    return pd.DataFrame(rows, columns=["automatic_dice", "box_dice"])


def _predict_plain(model: nn.Module, image: np.ndarray) -> np.ndarray:
    import torch

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    model.eval()
    with torch.no_grad():
        return _logits_to_mask(model(torch.from_numpy(image)[None].to(device)))


def grey_channel(image: Any, *, channel: Optional[int] = None) -> np.ndarray:
    """One standardised intensity channel: ``image[channel]``, or the mean over channels for ``None``.

    The channel is then shifted and scaled to mean 0 and standard deviation 1 over the whole image,
    so images from different sources (MRI in arbitrary units, photographs in [0, 1]) share one
    scale. For the course's data: a brain slice's FLAIR is ``channel=0``; a skin photograph's grey
    level is ``channel=None`` (mean of R, G, B). Note that lesions are dark on skin and tumours bright
    on FLAIR; a box tells a model where to look whatever the contrast, which is what transfer probes.
    As a dataset transform: ``lambda image, label, rng: (grey_channel(image, channel=0), label)``.

    Shape: image (C, H, W) -> (1, H, W) float32.

    Taught in week 8.
    """
    image = _as_image(image)
    if channel is None:
        grey = image.mean(axis=0, dtype=np.float64)
    else:
        channel = check_int(channel, "channel", minimum=0)
        if channel >= image.shape[0]:
            raise ValueError(f"channel must be < {image.shape[0]} (the image has {image.shape[0]} channels), "
                             f"got {channel}")
        grey = image[channel].astype(np.float64)
    std = grey.std()
    if std < 1e-8 * max(1.0, abs(grey.mean())):
        raise ValueError(f"image is constant (value {grey.mean():g}); cannot standardise a constant image")
    return ((grey - grey.mean()) / std).astype(np.float32)[None]
