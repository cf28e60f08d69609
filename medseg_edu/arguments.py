"""Checks of function arguments, shared by the whole package (one place for each kind of check).

Every public function of the course checks its input and raises a ``ValueError`` or ``TypeError``
that names the argument, says what was expected and shows what came. The checks that several
modules need live here, so that one kind of mistake gets one wording everywhere:

* :func:`check_choice`: a string option out of a fixed set (``activation``, ``empty``, ``blend`` ...);
* :func:`check_activation`: what a network output's channels are (``activation``), defined here once;
* :func:`check_int`: a whole number with a lower bound (``seed``, ``size``, ``samples`` ...);
* :func:`check_unit_interval`: a number in [0, 1], (0, 1) or a half-open variant;
* :func:`check_probabilities`: an array or tensor of probabilities, every value in [0, 1];
* :func:`check_spacing`: a voxel size ``spacing_mm``, one finite positive number per spatial axis;
* :func:`check_same_shape`: two arrays that must be aligned voxel by voxel;
* :func:`to_numpy`, :func:`to_tensor`, :func:`as_binary`, :func:`binary_pair`: numpy arrays, torch
  tensors and hard binary masks, from numpy arrays or torch tensors;
* :func:`check_image_batch`: a floating torch batch ``(N, C, *spatial)`` for a network.

Checks that only make sense for one module's own objects (an affine, a phantom's field of view, a
checkpoint) stay in that module. Not taught in a particular week; not to be confused with
:mod:`medseg_edu.checks`, the students' self-checks.
"""
from __future__ import annotations

import math
import numbers
import sys
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["ACTIVATIONS", "check_choice", "check_activation", "check_int", "check_positive", "check_unit_interval",
           "check_probabilities", "check_spacing", "check_same_shape", "to_numpy", "to_tensor", "as_binary",
           "binary_pair", "check_image_batch"]


def check_choice(value: Any, choices: Sequence[Any], name: str) -> Any:
    """Return ``value`` if it is one of ``choices``; otherwise a ValueError that lists them.

    Example:
        >>> check_choice("sigmoid", ("softmax", "sigmoid"), "activation")
        'sigmoid'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


ACTIVATIONS = ("softmax", "sigmoid", "none")


def check_activation(activation: Any, channels: int, *, choices: Sequence[str] = ACTIVATIONS) -> bool:
    """Check ``activation`` for an output with ``channels`` channels; True if they are exclusive classes.

    The one meaning of ``activation`` in the package (losses, :func:`medseg_edu.inference.probs_to_labels`,
    :func:`medseg_edu.uncertainty.flip_tta` and ``mc_dropout``), for an output ``(N, K, *spatial)``:

    * ``"softmax"``: logits of K mutually exclusive classes (K >= 2, channel 0 the background);
      probabilities ``softmax(pred, dim=1)``, hard labels the argmax over channels.
    * ``"sigmoid"``: logits of K independent binary channels (K >= 1), e.g. one lesion channel or the
      overlapping BraTS regions WT/TC/ET; probabilities ``sigmoid(pred)``, hard masks a threshold per
      channel. Every channel is a foreground channel (there is no background channel to drop).
    * ``"none"``: probabilities in [0, 1] already. With K >= 2 they are class probabilities, read as
      softmax's are (channel 0 the background, hard labels the argmax); with K = 1 one foreground
      probability, read as sigmoid's is (hard mask: threshold).

    Returns True for exclusive classes (softmax, or "none" with K >= 2), False for independent
    channels. ``choices`` narrows the accepted values for a function that needs logits.

    Example:
        >>> check_activation("none", 3), check_activation("none", 1), check_activation("sigmoid", 3)
        (True, False, False)
    """
    check_choice(activation, choices, "activation")
    if activation == "softmax" and channels < 2:
        raise ValueError(f"activation='softmax' needs at least 2 channels (background + classes), got {channels}; "
                         "use activation='sigmoid' for one channel of logits (or 'none' for probabilities)")
    return activation == "softmax" or (activation == "none" and channels >= 2)


def check_int(value: Any, name: str, *, minimum: int) -> int:
    """Return ``value`` as an int if it is a whole number (not a bool) and at least ``minimum``.

    A float or a bool is a TypeError (``2.0`` samples is a mistake worth hearing about), a number
    below ``minimum`` a ValueError.

    Example:
        >>> check_int(3, "samples", minimum=2)
        3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_positive(value: Any, name: str, *, what: str = "a positive number") -> float:
    """Return ``value`` as a float if it is a finite number > 0; ``what`` words the message.

    Example:
        >>> check_positive(1.5, "sigma_px", what="a number of pixels > 0")
        1.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be {what}, got {value}")
    return float(value)


def check_unit_interval(value: Any, name: str, *, open_low: bool, open_high: bool) -> float:
    """Return ``value`` as a float if it lies in the unit interval, with open or closed ends.

    Example:
        >>> check_unit_interval(0.95, "confidence", open_low=True, open_high=True)
        0.95
    """
    bounds = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {bounds}, got {type(value).__name__} {value!r}")
    value = float(value)
    ok_low = value > 0.0 if open_low else value >= 0.0
    ok_high = value < 1.0 if open_high else value <= 1.0
    if not (ok_low and ok_high and math.isfinite(value)):
        raise ValueError(f"{name} must be in {bounds}, got {value}")
    return value


def check_probabilities(x: Any, name: str, *, hint: str) -> Any:
    """Return ``x`` (a numpy array or torch tensor) if every value lies in [0, 1]; NaN fails too.

    ``hint`` ends the message: what to do instead (logits are the usual mistake).
    """
    low, high = float(x.min()), float(x.max())
    if not (low >= 0.0 and high <= 1.0):
        raise ValueError(f"{name} must hold probabilities in [0, 1], got values from {low:.4g} to {high:.4g} "
                         f"(these look like logits?); {hint}")
    return x


def check_spacing(spacing_mm: Any, ndim: Optional[int] = None) -> tuple[float, ...]:
    """Return the voxel size as a tuple of floats: ``ndim`` values (or 2 or 3), each finite and > 0.

    Example:
        >>> check_spacing([1, 1, 2.5], 3)
        (1.0, 1.0, 2.5)
    """
    want = "2 or 3" if ndim is None else str(ndim)
    try:
        spacing = None if isinstance(spacing_mm, (str, bytes)) else tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        spacing = None
    if spacing is None or (len(spacing) not in (2, 3) if ndim is None else len(spacing) != ndim):
        raise ValueError(f"spacing_mm must be a sequence of {want} numbers (one per spatial axis, in mm), "
                         f"got {spacing_mm!r}")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm values must be finite and > 0, got {spacing_mm!r}")
    return spacing


def check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise a ValueError naming both arguments and both shapes unless ``a`` and ``b`` have one shape."""
    shape_a, shape_b = tuple(np.shape(a)), tuple(np.shape(b))
    if shape_a != shape_b:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {shape_a} and {shape_b}")


def to_numpy(x: Any, name: str, *, allow_lists: bool = False) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and copied to the CPU.

    With ``allow_lists`` any array-like (a list of numbers, say) is accepted; otherwise only numpy
    arrays and torch tensors are, and anything else is a TypeError.
    """
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")  # if torch was never imported, x cannot be a tensor
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if allow_lists and not isinstance(x, (str, bytes)):
        return np.asarray(x)             # lists, tuples, pandas Series (strings too: group labels)
    kind = "array-like" if allow_lists else "a numpy array or a torch tensor"
    raise TypeError(f"{name} must be {kind}, got {type(x).__name__}")


def to_tensor(x: Any, name: str) -> Any:
    """``x`` as a torch tensor: a tensor is returned as it is (autograd graph kept), a numpy array is
    wrapped without a copy where possible; anything else is a TypeError."""
    import torch

    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def as_binary(x: Any, name: str, *, allow_lists: bool = False) -> np.ndarray:
    """Check that ``x`` is a hard binary mask (bool or values 0/1) and return it as a bool array.

    Probabilities, logits, NaN and label maps with other values are rejected with a message that
    says what they look like and how to turn them into a mask.
    """
    x = to_numpy(x, name, allow_lists=allow_lists)
    if x.dtype == bool:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if np.isnan(x).any():
            raise ValueError(f"{name} contains NaN; expected a binary mask")
        low, high = x.min(initial=0.0), x.max(initial=0.0)
        if np.count_nonzero((x != 0) & (x != 1)):
            if low >= 0 and high <= 1:
                raise ValueError(f"{name} looks like probabilities (float values between 0 and 1); "
                                 f"threshold it first, e.g. {name} > 0.5")
            raise ValueError(f"{name} looks like logits or an image (float values from {low:g} to "
                             f"{high:g}); expected a binary mask: threshold or argmax it first")
        return x != 0
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 1):
            values = np.unique(x)[:10].tolist()
            raise ValueError(f"{name} must be a binary mask (values 0 and 1), got values {values}; "
                             "for a label map pick one region first, e.g. label == k or "
                             "brats_regions(label)['WT']")
        return x != 0
    raise TypeError(f"{name} must hold bool, integer or float values, got dtype {x.dtype}")


def binary_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``target`` as bool masks of the same shape (see :func:`as_binary`)."""
    pred, target = as_binary(pred, "pred"), as_binary(target, "target")
    check_same_shape(pred, target, "pred", "target")
    return pred, target


def check_image_batch(image: Any, name: str = "image") -> Any:
    """``image`` must be a floating torch tensor ``(N, C, *spatial)`` with 2 or 3 spatial axes."""
    import torch

    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, *spatial), got {type(image).__name__}")
    if image.ndim not in (4, 5):
        raise ValueError(f"{name} must be (N, C, H, W) or (N, C, D, H, W), got shape "
                         f"{tuple(image.shape)} (one case without batch axis? use {name}[None])")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {image.dtype}")
    return image
