"""Training a promptable U-Net with simulated prompts, and correcting its mask click by click.

A promptable model is the course's plain U-Net with three more input channels, the prompt channels
of :mod:`medseg_edu.interactive.prompts`: ``UNet(2, C + 3, 2)`` for images with ``C`` channels.

Training goes through the one training loop, :func:`medseg_edu.training.fit`: :func:`add_prompts` is a
transform of the course's protocol ``transform(image, label, rng) -> (image, label)`` that appends
simulated prompts to each item, so ``SkinImages(root, transform=partial(add_prompts, ...))`` (or
``compose(augmentation, partial(add_prompts, ...))``) feeds ``fit`` as any other dataset does.

Using the model: :func:`refine` segments one image from its prompts; :func:`click_session` plays the
simulated user of :func:`medseg_edu.interactive.prompts.next_click` against the model for up to
``max_clicks`` clicks and records the Dice after each click (the input of
:func:`medseg_edu.interactive.scores.number_of_clicks`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from medseg_edu.arguments import as_binary, check_int, check_same_shape
from medseg_edu.interactive.prompts import (PROMPT_CHANNELS, Click, _as_image, _check_clicks, box_from_mask,
                                            encode_prompts, next_click)
from medseg_edu.metrics import dice_score

__all__ = ["add_prompts", "refine", "click_session"]


def _perturbed(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong previous mask: empty or the target grown or shrunk by 1-3 pixels and shifted by up
    to 3 (an even chance each), plus with an even chance a false-positive disk on the background (radius 2
    pixels up to the object's own, centred on a random background pixel)."""
    if rng.random() < 0.5 or not target.any():
        mask = np.zeros_like(target)
    else:
        steps = int(rng.integers(1, 4))
        grown = ndimage.binary_dilation(target, iterations=steps) if rng.random() < 0.5 else \
            ndimage.binary_erosion(target, iterations=steps)
        shift = rng.integers(-3, 4, size=2)
        mask = np.roll(grown, tuple(int(s) for s in shift), axis=(0, 1))
    background = np.argwhere(~target)
    if rng.random() < 0.5 and len(background):
        y, x = background[int(rng.integers(len(background)))]
        radius = rng.uniform(2.0, max(2.0, np.sqrt(target.sum() / np.pi)))
        rows, cols = np.ogrid[:target.shape[0], :target.shape[1]]
        mask = mask | ((rows - y) ** 2 + (cols - x) ** 2 <= radius ** 2)
    return mask


def _simulate_clicks(previous: np.ndarray, target: np.ndarray, count: int) -> list[Click]:
    """``count`` clicks of the simulated user; after each, the error region it lies in is taken as corrected."""
    mask, clicks = previous.copy(), []
    for _ in range(count):
        click = next_click(mask, target)
        if click is None:
            break
        clicks.append(click)
        errors, _ = ndimage.label(mask != target)
        mask[errors == errors[click.y, click.x]] = target[click.y, click.x]
    return clicks


def add_prompts(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, box_probability: float = 0.5,
                jitter_px: int = 3, max_clicks: int = 3, sigma_px: float = 2.0,
                model: Optional[nn.Module] = None) -> tuple[np.ndarray, np.ndarray]:
    """A transform (protocol of :mod:`medseg_edu.transforms`) that appends simulated prompts to an image.

    The object is the foreground, every non-zero label (a brain slice's whole tumour); the label is
    returned as that binary mask (0/1, same dtype). The prompts are drawn from ``rng``:

    - with probability ``box_probability`` the box of the object with each side jittered by up to
      ``jitter_px`` pixels (:func:`box_from_mask`), otherwise no box (an empty object never has one);
    - a number of clicks drawn uniformly from ``0..max_clicks``, placed by the simulated user of
      :func:`next_click` on the errors of a made-up previous mask (empty, or the object grown or
      shrunk by 1-3 pixels and shifted by up to 3, plus at times a false-positive disk on the
      background, so that negative clicks are learnt); after each click the error region it lies
      in counts as corrected, so the next click goes to the next largest error;
    - with ``model`` (the model being trained, iterative training as in Mahadevan et al. 2018 and
      Sofiiuk et al. 2022), for half of the items 1 or 2 more clicks placed by :func:`next_click` on
      the errors of the model's own current answer to the prompts so far (run with :func:`refine`,
      without gradients, its train/eval mode restored). Made-up masks never look like the model's
      real mistakes (a second, similar-looking object, say); this teaches it to act on clicks there.
      With DataLoader workers each worker holds a copy of the model from the start of the epoch.

    Bind the options with ``functools.partial(add_prompts, max_clicks=5)`` to pass it as a dataset's
    ``transform``; put it last in a :func:`medseg_edu.transforms.compose` chain, after augmentation.

    Shape: image (C, H, W), label (H, W) -> image (C + 3, H, W) float32 (channels of
    :data:`PROMPT_CHANNELS` last), label (H, W) in {0, 1}.

    Taught in week 8.
    """
    image = _as_image(image)
    label = np.asarray(label)
    if label.shape != image.shape[1:]:
        raise ValueError(f"image (C, H, W) and label (H, W) must have the same spatial shape, got {image.shape} "
                         f"and {label.shape}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not 0.0 <= box_probability <= 1.0:
        raise ValueError(f"box_probability must be in [0, 1], got {box_probability}")
    max_clicks = check_int(max_clicks, "max_clicks", minimum=0)
    target = label != 0
    box = box_from_mask(target, jitter_px=jitter_px, rng=rng) if rng.random() < box_probability else None
    count = int(rng.integers(0, max_clicks + 1))
    clicks = _simulate_clicks(_perturbed(target, rng), target, count) if count else []
    if model is not None and rng.random() < 0.5:
        was_training = model.training
        try:
            for _ in range(int(rng.integers(1, 3))):
                click = next_click(refine(model, image, clicks, box=box, sigma_px=sigma_px), target)
                if click is None:
                    break
                clicks.append(click)
        finally:
            model.train(was_training)
    prompts = encode_prompts(target.shape, clicks=clicks, box=box, sigma_px=sigma_px)
    return np.concatenate([image, prompts]), target.astype(label.dtype)


def _logits_to_mask(logits: torch.Tensor) -> np.ndarray:
    """Foreground of one image's logits (1, K, H, W): sigmoid > 0.5 for K = 1, argmax != 0 otherwise."""
    if logits.shape[1] == 1:
        return (logits[0, 0] > 0).cpu().numpy()
    return (logits[0].argmax(0) != 0).cpu().numpy()


def refine(model: nn.Module, image: Any, clicks: Sequence[Click] = (), *, box: Optional[Sequence[int]] = None,
           previous: Any = None, sigma_px: float = 2.0) -> np.ndarray:
    """Segment ``image`` with a promptable model from a box and clicks; with ``previous``, correct it locally.

    The model sees ``image`` with the three prompt channels of :func:`encode_prompts` appended and
    returns logits; the mask is sigmoid > 0.5 for one output channel, argmax != 0 for two or more.
    Without ``previous`` that mask is the answer. With ``previous`` (the mask shown to the user
    before the latest click) only the changes that the clicks ask for are accepted: a connected
    region (8-connectivity) where the new mask differs from ``previous`` is taken over if it contains
    a click, and ``previous`` is kept everywhere else, so a click never spoils a part of the mask far
    from it that the user has accepted.

    The model is run in ``eval()`` mode without gradients on the device of its parameters.

    Shape: image (C, H, W), clicks [Click(x, y, positive), ...], box (x0, y0, x1, y1) or None,
    previous (H, W) bool or None -> mask (H, W) bool.

    Example:
        >>> model = UNet(2, 1 + 3, 2, features=(8, 16))                       # doctest: +SKIP
        >>> mask = refine(model, image, [Click(x=20, y=14, positive=True)])    # doctest: +SKIP

    Taught in week 8.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    image = _as_image(image)
    shape = image.shape[1:]
    clicks = _check_clicks(clicks, shape)
    expected = getattr(model, "config", {}).get("in_channels")
    if expected is not None and expected != image.shape[0] + len(PROMPT_CHANNELS):
        raise ValueError(f"model takes {expected} input channels but image has {image.shape[0]} channels + "
                         f"{len(PROMPT_CHANNELS)} prompt channels = {image.shape[0] + len(PROMPT_CHANNELS)}; "
                         f"a promptable model for C-channel images is UNet(2, C + 3, ...)")
    if previous is not None:
        previous = as_binary(previous, "previous")
        check_same_shape(previous, np.zeros(shape), "previous", "image's (H, W)")
    prompts = encode_prompts(shape, clicks=clicks, box=box, sigma_px=sigma_px)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.from_numpy(np.concatenate([image, prompts]))[None].to(device)
    model.eval()
    with torch.no_grad():
        mask = _logits_to_mask(model(x))
    if previous is None:
        return mask
    changed, _ = ndimage.label(mask != previous, structure=np.ones((3, 3)))
    chosen = {int(changed[c.y, c.x]) for c in clicks} - {0}
    out = previous.copy()
    take = np.isin(changed, sorted(chosen))
    out[take] = mask[take]
    return out


def click_session(model: nn.Module, image: Any, target: Any, *, max_clicks: int = 20,
                  box_jitter_px: Optional[int] = None, rng: Optional[np.random.Generator] = None,
                  sigma_px: float = 2.0) -> dict[str, Any]:
    """Play the simulated user against ``model`` for up to ``max_clicks`` clicks; Dice after each click.

    Click 0 is the model's answer before any click: automatic segmentation for ``box_jitter_px=None``,
    otherwise the answer to the user's box, :func:`box_from_mask` of ``target`` with each side moved
    by up to ``box_jitter_px`` pixels drawn from ``rng`` (required then). Then, ``max_clicks`` times,
    :func:`next_click` places a click on the largest error of the current mask and :func:`refine`
    (with the box, all clicks so far and ``previous`` = the current mask) gives the next mask. When
    the mask becomes perfect there is nothing left to click: the session stops and the Dice of the
    remaining clicks stays at 1.

    Shape: image (C, H, W), target (H, W) non-empty -> {"dice": (max_clicks + 1,) float array, entry k
    the Dice after k clicks; "clicks": the clicks made; "masks": the mask after each click made, mask 0
    first; "box": the box or None}.

    Taught in week 8.
    """
    target = as_binary(target, "target")
    max_clicks = check_int(max_clicks, "max_clicks", minimum=0)
    if not target.any():
        raise ValueError("target must contain the object (at least one foreground pixel); an empty target has "
                         "nothing to click on")
    box = None if box_jitter_px is None else box_from_mask(target, jitter_px=box_jitter_px, rng=rng)
    mask = refine(model, image, [], box=box, sigma_px=sigma_px)
    check_same_shape(mask, target, "image's (H, W)", "target")
    dice = np.ones(max_clicks + 1)
    dice[0] = dice_score(mask, target)
    clicks: list[Click] = []
    masks = [mask]
    for k in range(1, max_clicks + 1):
        click = next_click(mask, target)
        if click is None:
            break
        clicks.append(click)
        mask = refine(model, image, clicks, box=box, previous=mask, sigma_px=sigma_px)
        masks.append(mask)
        dice[k] = dice_score(mask, target)
    return {"dice": dice, "clicks": clicks, "masks": masks, "box": box}
