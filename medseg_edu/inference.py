"""Inference with a trained segmentation network: whole volumes, slices, hard labels.

- :func:`sliding_window_inference`: a 3D (or 2D) network trained on patches is applied to a whole
  volume window by window; overlapping windows are blended with a Gaussian (or constant) weight.
- :func:`predict_slices`: a 2D network applied slice by slice to a 3D volume.
- :func:`probs_to_labels`: logits or probabilities to a label map (argmax or threshold).

How the windows are placed (:func:`window_starts`): windows of ``roi`` voxels start every
``int(roi * (1 - overlap))`` voxels from 0; the last window is moved back so that it ends exactly at
the end of the image (it never leaves the image). An image smaller than the window is padded
(half before, half after) and the result is cropped back. How they are blended
(:func:`window_weights`): every window's logits are multiplied by a weight map, summed into the
output, and the sum is divided by the summed weights. The Gaussian weight is the product over axes
of ``exp(-d**2 / (2 * sigma**2))``, ``d`` the distance from the window centre in voxels and
``sigma = sigma_scale * roi``, clipped from below at 1e-3 so no voxel has weight zero. This is the
same definition as MONAI's ``sliding_window_inference`` (a test checks both agree).

Test-time augmentation and Monte-Carlo dropout, which call a network several times per image, are
in :mod:`medseg_edu.uncertainty`. Taught in week 2 (windows and slices).
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medseg_edu.arguments import check_activation, check_choice, check_image_batch, check_int, check_probabilities

__all__ = [
    "window_starts",
    "window_weights",
    "sliding_window_inference",
    "predict_slices",
    "probs_to_labels",
]

_BLENDS = ("gaussian", "constant")
_PADDING_MODES = ("constant", "reflect", "replicate", "circular")


# ----------------------------------------------------------------------------- small helpers
def _per_axis(value, ndim: int, name: str, *, kind: type) -> tuple:
    """Expand a number to one value per spatial axis, or check a sequence has ``ndim`` entries."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (kind(value),) * ndim
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a number or a sequence of {ndim} numbers, "
                        f"got {type(value).__name__}") from None
    if len(values) != ndim:
        raise ValueError(f"{name} must have one entry per spatial axis ({ndim}), got {values!r}")
    return tuple(kind(v) for v in values)


def _model_device(model, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter (or ``fallback`` for a parameter-free callable)."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return fallback


def _check_logits(out, expected_spatial: Sequence[int], what: str) -> torch.Tensor:
    """The network must return one tensor with the spatial size of its input."""
    if isinstance(out, (list, tuple)):
        raise TypeError(f"the model returned a {type(out).__name__} of {len(out)} tensors for {what}; "
                        "a deeply supervised network does this in training mode -- call model.eval()")
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a tensor of logits, got {type(out).__name__}")
    if tuple(out.shape[2:]) != tuple(expected_spatial):
        raise ValueError(f"the model must keep the spatial size of its input {tuple(expected_spatial)} "
                         f"for {what}, got output shape {tuple(out.shape)}")
    return out


# ----------------------------------------------------------------------------- sliding window
def window_starts(size: int, roi: int, *, overlap: float) -> list:
    """First voxel of every window along one axis of ``size`` voxels (``size >= roi``).

    Windows start every ``step = max(int(roi * (1 - overlap)), 1)`` voxels; the first window that
    would reach the end is moved back to end exactly at ``size``, and no window follows it.

    Shape: three ints -> a list of ints.

    Example:
        >>> window_starts(100, 64, overlap=0.5)
        [0, 32, 36]

    Used in week 2 through `sliding_window_inference`.
    """
    if roi < 1 or size < roi:
        raise ValueError(f"need 1 <= roi <= size, got roi={roi} and size={size} (pad the image first)")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    step = max(int(roi * (1 - overlap)), 1)
    starts = []
    start = 0
    while start + roi < size:
        starts.append(start)
        start += step
    starts.append(size - roi)
    return starts


def window_weights(roi_size: Sequence[int], *, blend: str = "gaussian", sigma_scale=0.125,
                   device: Union[str, torch.device, None] = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight given to each voxel of a window when overlapping windows are blended.

    ``blend="constant"``: all ones (a plain average of the overlapping windows).
    ``blend="gaussian"``: product over axes of ``exp(-d**2 / (2 * sigma**2))`` with ``d`` the
    distance (in voxels) from the window centre and ``sigma = sigma_scale * roi``; values below
    1e-3 are raised to 1e-3. Voxels near a window's border, where the network sees little
    context, then count less than voxels near its centre.

    Shape: ``roi_size`` of length d -> weights ``(*roi_size)``.

    Used in week 2 through `sliding_window_inference`.
    """
    roi = tuple(int(r) for r in roi_size)
    if not roi or any(r < 1 for r in roi):
        raise ValueError(f"roi_size must be positive ints, got {tuple(roi_size)!r}")
    check_choice(blend, _BLENDS, "blend")
    if blend == "constant":
        return torch.ones(roi, device=device, dtype=dtype)
    sigmas = _per_axis(sigma_scale, len(roi), "sigma_scale", kind=float)
    if any(s <= 0 for s in sigmas):
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale!r}")
    weights = torch.ones((), dtype=torch.float64)
    for axis, (r, s) in enumerate(zip(roi, sigmas)):
        distance = torch.arange(r, dtype=torch.float64) - (r - 1) / 2.0
        profile = torch.exp(-distance ** 2 / (2.0 * (s * r) ** 2))
        shape = [1] * len(roi)
        shape[axis] = r
        weights = weights * profile.reshape(shape)      # outer product, one axis at a time
    return weights.clamp_min(1e-3).to(device=device, dtype=dtype)


def sliding_window_inference(model: Callable, image: torch.Tensor, *, roi_size,
                             overlap=0.25, blend: str = "gaussian", sigma_scale=0.125,
                             sw_batch_size: int = 4, padding_mode: str = "constant",
                             device: Union[str, torch.device, None] = None,
                             progress: bool = False) -> torch.Tensor:
    """Apply ``model`` to a large image window by window and blend the windows' logits.

    Args:
        model: a network (or any callable) mapping ``(B, C, *roi_size)`` to logits
            ``(B, K, *roi_size)``. Use it in eval mode (``model.eval()``).
        image: a batch ``(N, C, *spatial)``, 2D or 3D.
        roi_size: window size, an int or one int per spatial axis (a multiple of what the network
            needs, e.g. 16 for a U-Net with 4 downsampling steps).
        overlap: fraction of a window shared with the next one, in [0, 1) (one value or per axis).
        blend: "gaussian" (centre voxels count more) or "constant" (plain average).
        sigma_scale: Gaussian width as a fraction of the window size (one value or per axis).
        sw_batch_size: windows sent through the network together.
        padding_mode: how an image smaller than the window is padded ("constant" pads zeros,
            "reflect", "replicate", "circular").
        device: where the network runs (default: the device of the model's parameters). The
            result is returned on ``image``'s device.
        progress: show a progress bar over the window batches.

    Shape: ``(N, C, *spatial)`` -> logits ``(N, K, *spatial)`` (float32, same spatial size).

    Example:
        >>> from medseg_edu.models import UNet
        >>> net = UNet(3, 4, 4, features=(4, 8)).eval()
        >>> volume = torch.zeros(4, 20, 18, 8)                   # (C, X, Y, Z), not a multiple of 16
        >>> sliding_window_inference(net, volume[None], roi_size=16, overlap=0.5).shape
        torch.Size([1, 4, 20, 18, 8])

    Taught in week 2.
    """
    image = check_image_batch(image)
    n_images, spatial = image.shape[0], tuple(image.shape[2:])
    ndim = len(spatial)
    roi = _per_axis(roi_size, ndim, "roi_size", kind=int)
    if any(r < 1 for r in roi):
        raise ValueError(f"roi_size must be positive, got {roi_size!r}")
    overlaps = _per_axis(overlap, ndim, "overlap", kind=float)
    if any(not 0.0 <= o < 1.0 for o in overlaps):
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    check_choice(blend, _BLENDS, "blend")
    check_choice(padding_mode, _PADDING_MODES, "padding_mode")
    check_int(sw_batch_size, "sw_batch_size", minimum=1)
    if isinstance(model, nn.Module) and model.training:
        warnings.warn("the model is in training mode (dropout active, batch norm uses batch "
                      "statistics); call model.eval() before inference", stacklevel=2)
    run_device = torch.device(device) if device is not None else _model_device(model, image.device)
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32

    # pad an image smaller than the window: half before, the rest after (F.pad wants last axis first)
    pad_before = [max(r - s, 0) // 2 for r, s in zip(roi, spatial)]
    pad_after = [max(r - s, 0) - b for r, s, b in zip(roi, spatial, pad_before)]
    pad = [p for b, a in zip(reversed(pad_before), reversed(pad_after)) for p in (b, a)]
    padded_spatial = tuple(s + b + a for s, b, a in zip(spatial, pad_before, pad_after))

    starts = [window_starts(s, r, overlap=o) for s, r, o in zip(padded_spatial, roi, overlaps)]
    corners = list(itertools.product(*starts))
    boxes = [tuple(slice(c, c + r) for c, r in zip(corner, roi)) for corner in corners]
    jobs = [(n, box) for n in range(n_images) for box in boxes]   # every window of every image

    with torch.inference_mode():
        x = image.to(run_device)
        if any(pad):
            x = F.pad(x, pad, mode=padding_mode)
        weights = window_weights(roi, blend=blend, sigma_scale=sigma_scale, device=run_device,
                                 dtype=dtype)
        weight_sum = torch.zeros(padded_spatial, device=run_device, dtype=dtype)
        for box in boxes:
            weight_sum[box] += weights
        output = None
        # one buffer for a batch of windows, refilled for every batch (no allocation per batch)
        buffer = torch.empty((min(sw_batch_size, len(jobs)), x.shape[1]) + roi, device=run_device,
                             dtype=x.dtype)
        batch_starts = range(0, len(jobs), sw_batch_size)
        if progress:
            from medseg_edu.utils import progress as progress_bar
            batch_starts = progress_bar(batch_starts, desc="windows")
        for first in batch_starts:
            batch = jobs[first:first + sw_batch_size]
            for i, (n, box) in enumerate(batch):
                buffer[i].copy_(x[(n, slice(None)) + box])
            logits = _check_logits(model(buffer[:len(batch)]), roi, "a window")
            if output is None:
                output = torch.zeros((n_images, logits.shape[1]) + padded_spatial,
                                     device=run_device, dtype=dtype)
            logits = logits.to(dtype)
            for (n, box), window_logits in zip(batch, logits):
                output[(n, slice(None)) + box].addcmul_(window_logits, weights)
        output /= weight_sum
        crop = tuple(slice(b, b + s) for b, s in zip(pad_before, spatial))
        output = output[(slice(None), slice(None)) + crop]
    # a normal tensor (inference tensors cannot be modified in place outside inference mode)
    return output.to(image.device).clone()


# ----------------------------------------------------------------------------- slice by slice
def predict_slices(model: Callable, volume, *, axis: int = -1, batch_size: int = 16) -> torch.Tensor:
    """Apply a 2D network to every slice of a 3D volume and stack the logits back into a volume.

    Args:
        model: a 2D network ``(B, C, H, W) -> (B, K, H, W)``, in eval mode.
        volume: one case ``(C, X, Y, Z)`` (torch tensor or numpy array).
        axis: the spatial axis to slice along (0 = x, 1 = y, 2 = z; -1 = the last one, z).
        batch_size: slices sent through the network together.

    Shape: ``(C, X, Y, Z)`` -> logits ``(K, X, Y, Z)`` (on the volume's device).

    Taught in week 2.
    """
    if isinstance(volume, np.ndarray):
        volume = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    if not isinstance(volume, torch.Tensor):
        raise TypeError(f"volume must be a torch.Tensor or numpy array (C, X, Y, Z), "
                        f"got {type(volume).__name__}")
    if volume.ndim != 4:
        raise ValueError(f"volume must be one case (C, X, Y, Z), got shape {tuple(volume.shape)}")
    if not isinstance(axis, int) or isinstance(axis, bool) or not -3 <= axis <= 2:
        raise ValueError(f"axis must be a spatial axis 0, 1, 2 (or -1, -2, -3), got {axis!r}")
    check_int(batch_size, "batch_size", minimum=1)
    tensor_axis = 1 + axis % 3
    run_device = _model_device(model, volume.device)
    with torch.inference_mode():
        slices = volume.float().movedim(tensor_axis, 0)          # (S, C, a, b)
        outputs = []
        for first in range(0, slices.shape[0], batch_size):
            batch = slices[first:first + batch_size].to(run_device)
            logits = _check_logits(model(batch), batch.shape[2:], "a batch of slices")
            outputs.append(logits.float().to(volume.device))
        logits = torch.cat(outputs).movedim(0, tensor_axis)     # (K, X, Y, Z)
    return logits.clone()


# ----------------------------------------------------------------------------- labels
def probs_to_labels(logits_or_probs: torch.Tensor, *, activation: str,
                    threshold: float = 0.5) -> torch.Tensor:
    """Turn network outputs into a hard prediction, as ``activation`` says what the channels are.

    ``activation`` has the one meaning of :func:`medseg_edu.arguments.check_activation`:

    - exclusive classes (``"softmax"``, or ``"none"`` with K >= 2 class probabilities): the class
      with the largest value per voxel (the same for logits and for probabilities) -> an int64
      label map with one channel; ``threshold`` is not used.
    - independent channels (``"sigmoid"`` logits, or ``"none"`` with K = 1 probability):
      probabilities ``> threshold`` per channel -> uint8 masks in {0, 1}.

    Shape: ``(N, K, *spatial)`` -> ``(N, 1, *spatial)`` int64 labels (exclusive classes) or
    ``(N, K, *spatial)`` uint8 masks (independent channels).
    """
    x = logits_or_probs
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"logits_or_probs must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 3 or not x.is_floating_point():
        raise ValueError(f"logits_or_probs must be floating (N, K, *spatial), got shape "
                         f"{tuple(x.shape)} and dtype {x.dtype}")
    exclusive = check_activation(activation, x.shape[1])
    if activation == "none":
        check_probabilities(x, "logits_or_probs", hint="activation='none' expects probabilities; for "
                                                       "logits use activation='softmax' or 'sigmoid'")
    if exclusive:
        return x.argmax(dim=1, keepdim=True)
    if not 0.0 < threshold < 1.0 or math.isnan(threshold):
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    probs = torch.sigmoid(x) if activation == "sigmoid" else x
    return (probs > threshold).to(torch.uint8)
