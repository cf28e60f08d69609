"""Prompts for a promptable segmentation model: boxes and clicks, their encodings, and how a user is simulated.

Conventions (the same as SAM's, so a box or click means the same to our U-Net and to a SAM checkpoint):

- A 2D image is ``(C, H, W)``; a pixel is addressed as ``x`` = column (0..W-1) and ``y`` = row (0..H-1),
  so the click ``Click(x=5, y=2)`` lies on ``mask[2, 5]``.
- A box is ``(x0, y0, x1, y1)``: whole pixel indices of its first and last column and row, both
  included (the box of a mask touches its outermost pixels), ``0 <= x0 <= x1 < W`` and ``0 <= y0 <= y1 < H``.
- The prompt channels are :data:`PROMPT_CHANNELS` = (box, positive clicks, negative clicks), stacked
  behind the image channels: a promptable model is a plain ``UNet(2, C + 3, 2)``.

Encodings: the box channel is 1 inside the box and 0 outside (all 0 when no box is given, which the
model learns to read as "segment automatically"); a click channel holds a small Gaussian disk per
click, ``exp(-d^2 / (2 sigma_px^2))`` with ``d`` the distance in pixels to the click, 1 on the click,
0.61 at one ``sigma_px``, 0.01 at three; several clicks combine by their maximum, so values stay in [0, 1].

The simulated user (as the interactive-segmentation literature evaluates models, e.g. Xu et al. 2016,
Sofiiuk et al. 2022): the next click goes to the largest error region, at its pixel farthest from the
region's boundary (the image border counts as boundary); it is positive when that region is a
false negative (missed object) and negative when it is a false positive.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
from scipy import ndimage

from medseg_edu.arguments import as_binary, check_int, check_positive, check_same_shape, to_numpy

__all__ = ["PROMPT_CHANNELS", "Click", "box_map", "click_map", "encode_prompts", "box_from_mask", "next_click"]

PROMPT_CHANNELS = ("box", "positive clicks", "negative clicks")


class Click(NamedTuple):
    """One click: column ``x``, row ``y`` (pixel indices) and whether it marks the object (positive).

    Example:
        >>> Click(x=5, y=2, positive=True)
        Click(x=5, y=2, positive=True)

    Taught in week 8.
    """

    x: int
    y: int
    positive: bool


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"shape must be (height, width) with positive entries, got {shape!r}")
    return height, width


def _check_box(box: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` as four ints inside an image of ``shape`` (H, W); ValueError naming the box otherwise."""
    height, width = shape
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise TypeError(f"box must be four numbers (x0, y0, x1, y1), got {box!r}") from None
    if len(values) != 4 or not all(v.is_integer() for v in values):
        raise ValueError(f"box must be four whole pixel indices (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (int(v) for v in values)
    if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
        raise ValueError(f"box (x0, y0, x1, y1) must satisfy 0 <= x0 <= x1 < {width} and 0 <= y0 <= y1 < {height} "
                         f"for an image of shape (H, W) = {shape}, got {box!r}")
    return x0, y0, x1, y1


def _check_clicks(clicks: Any, shape: tuple[int, int]) -> list[Click]:
    """Clicks as a list of :class:`Click`, each inside an image of ``shape`` (H, W)."""
    if isinstance(clicks, (str, bytes)) or not isinstance(clicks, Sequence):
        raise TypeError(f"clicks must be a list of Click(x, y, positive), got {type(clicks).__name__}")
    checked = []
    for i, click in enumerate(clicks):
        if not (isinstance(click, (tuple, list)) and len(click) == 3):
            raise TypeError(f"clicks[{i}] must be Click(x, y, positive), got {click!r}")
        x, y, positive = click
        if not isinstance(positive, (bool, np.bool_)):
            raise TypeError(f"clicks[{i}].positive must be True or False, got {positive!r}")
        x, y = check_int(x, f"clicks[{i}].x", minimum=0), check_int(y, f"clicks[{i}].y", minimum=0)
        if x >= shape[1] or y >= shape[0]:
            raise ValueError(f"clicks[{i}] = (x={x}, y={y}) lies outside the image of shape (H, W) = {shape}")
        checked.append(Click(x, y, bool(positive)))
    return checked


def box_map(box: Optional[Sequence[int]], shape: Sequence[int]) -> np.ndarray:
    """The box channel: 1 inside ``box`` (edges included), 0 outside; all 0 for ``box=None``.

    Shape: box (x0, y0, x1, y1), shape (H, W) -> (H, W) float32.

    Example:
        >>> box_map((1, 0, 2, 1), (3, 4))
        array([[0., 1., 1., 0.],
               [0., 1., 1., 0.],
               [0., 0., 0., 0.]], dtype=float32)
    """
    shape = _check_shape(shape)
    out = np.zeros(shape, dtype=np.float32)
    if box is not None:
        x0, y0, x1, y1 = _check_box(box, shape)
        out[y0:y1 + 1, x0:x1 + 1] = 1.0
    return out


def click_map(clicks: Sequence[Click], shape: Sequence[int], *, sigma_px: float = 2.0) -> np.ndarray:
    """Gaussian disks ``exp(-d^2 / (2 sigma_px^2))`` around ``clicks``, combined by their maximum.

    All clicks are drawn, whatever their ``positive`` flag; :func:`encode_prompts` splits them.
    ``sigma_px`` is the disk's standard deviation in pixels (1 at the click, 0.61 at one sigma).

    Shape: clicks [Click, ...], shape (H, W) -> (H, W) float32 in [0, 1].
    """
    shape = _check_shape(shape)
    sigma_px = check_positive(sigma_px, "sigma_px", what="a number of pixels > 0")
    clicks = _check_clicks(clicks, shape)
    out = np.zeros(shape, dtype=np.float32)
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    for click in clicks:
        disk = np.exp(-((rows - click.y) ** 2 + (cols - click.x) ** 2) / (2.0 * sigma_px ** 2))
        np.maximum(out, disk.astype(np.float32), out=out)
    return out


def encode_prompts(shape: Sequence[int], *, clicks: Sequence[Click] = (), box: Optional[Sequence[int]] = None,
                   sigma_px: float = 2.0) -> np.ndarray:
    """The three prompt channels of :data:`PROMPT_CHANNELS`: box, positive clicks, negative clicks.

    Append them to the image channels (``np.concatenate([image, prompts])``) to feed a promptable
    ``UNet(2, C + 3, 2)``; no box and no clicks give three zero channels (automatic segmentation).

    Shape: shape (H, W), clicks [Click, ...], box (x0, y0, x1, y1) or None -> (3, H, W) float32.

    Taught in week 8.
    """
    shape = _check_shape(shape)
    clicks = _check_clicks(clicks, shape)
    positive = [c for c in clicks if c.positive]
    negative = [c for c in clicks if not c.positive]
    return np.stack([box_map(box, shape), click_map(positive, shape, sigma_px=sigma_px),
                     click_map(negative, shape, sigma_px=sigma_px)])


def box_from_mask(mask: Any, *, jitter_px: int = 0, rng: Optional[np.random.Generator] = None
                  ) -> Optional[tuple[int, int, int, int]]:
    """The tight box ``(x0, y0, x1, y1)`` around a 2D mask, each side moved by up to ``jitter_px`` pixels.

    With ``jitter_px > 0`` each of the four coordinates moves by a whole number drawn uniformly from
    ``-jitter_px..jitter_px`` (from ``rng``, required then), as a user's box is never tight; the result
    is clipped to the image and kept non-empty (``x0 <= x1``, ``y0 <= y1``). An empty mask has no box:
    the result is None.

    Shape: mask (H, W) bool or 0/1 -> (x0, y0, x1, y1) ints, or None.

    Example:
        >>> mask = np.zeros((5, 6), bool); mask[1:3, 2:5] = True
        >>> box_from_mask(mask)
        (2, 1, 4, 2)

    Taught in week 8.
    """
    mask = as_binary(mask, "mask")
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D (H, W), got shape {mask.shape}")
    jitter_px = check_int(jitter_px, "jitter_px", minimum=0)
    if jitter_px and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator when jitter_px > 0, got {type(rng).__name__}")
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()])
    if jitter_px:
        box = box + rng.integers(-jitter_px, jitter_px + 1, size=4)
    height, width = mask.shape
    x0, x1 = np.clip(box[[0, 2]], 0, width - 1)
    y0, y1 = np.clip(box[[1, 3]], 0, height - 1)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    return int(x0), int(y0), int(x1), int(y1)


def _largest_component(errors: np.ndarray) -> tuple[int, np.ndarray]:
    """(size, mask) of the largest 4-connected component of ``errors`` ((0, empty) if none)."""
    components, count = ndimage.label(errors)
    if count == 0:
        return 0, np.zeros_like(errors)
    sizes = np.bincount(components.ravel())[1:]
    biggest = int(np.argmax(sizes))            # the first of equal sizes, in row-major order of labels
    return int(sizes[biggest]), components == biggest + 1


def next_click(pred: Any, target: Any) -> Optional[Click]:
    """The simulated user's next click: inside the largest error region, farthest from its boundary.

    The errors are the false negatives ``target & ~pred`` and false positives ``pred & ~target``; the
    largest 4-connected component among both (by pixel count; a tie goes to the false negatives) is
    the region to correct. The click lies at the maximum of that region's Euclidean distance
    transform, the distance to the nearest pixel outside it, with the image border counting as
    outside (the first such pixel in row-major order on ties). It is positive for a false-negative
    region, negative for a false-positive one; a perfect ``pred`` gives None.

    Shape: pred, target (H, W) bool or 0/1 -> Click or None.

    Example:
        >>> target = np.zeros((7, 7), bool); target[1:6, 1:6] = True
        >>> next_click(np.zeros((7, 7), bool), target)
        Click(x=3, y=3, positive=True)

    Taught in week 8.
    """
    pred, target = as_binary(pred, "pred"), as_binary(target, "target")
    check_same_shape(pred, target, "pred", "target")
    if pred.ndim != 2:
        raise ValueError(f"pred and target must be 2D (H, W), got shape {pred.shape}")
    fn_size, fn_region = _largest_component(target & ~pred)
    fp_size, fp_region = _largest_component(pred & ~target)
    if fn_size == 0 and fp_size == 0:
        return None
    positive = fn_size >= fp_size
    region = fn_region if positive else fp_region
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return Click(int(x), int(y), bool(positive))


def _as_image(image: Any, name: str = "image") -> np.ndarray:
    """A 2D image ``(C, H, W)`` as a float32 numpy array (numpy arrays or torch tensors)."""
    image = np.asarray(to_numpy(image, name), dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"{name} must be (C, H, W), got shape {image.shape} (a grey image needs a channel "
                         f"axis: {name}[None])")
    if not np.isfinite(image).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return image
