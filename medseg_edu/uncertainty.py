"""Uncertainty from several predictions of one image: test-time flips and Monte-Carlo dropout.

- :func:`flip_tta`: test-time augmentation, the average of the probabilities over flipped copies.
- :func:`mc_dropout`: Monte-Carlo dropout, the mean and spread of predictions with dropout switched on.

Both call the network several times on one batch (through ``predictor``, so a whole volume can go
through :func:`medseg_edu.inference.sliding_window_inference` each time) and average probabilities,
never logits.
"""
from __future__ import annotations

import contextlib
import itertools
import warnings
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from medseg_edu.arguments import check_activation, check_choice, check_image_batch, check_int
from medseg_edu.inference import _check_logits

__all__ = ["flip_tta", "mc_dropout"]

_ACTIVATIONS = ("softmax", "sigmoid")
_UNCERTAINTIES = ("variance", "entropy", "mutual_information")
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)

Predictor = Callable[[Callable, torch.Tensor], torch.Tensor]


def _activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Probabilities from logits; ``activation`` as in :func:`medseg_edu.arguments.check_activation`."""
    if check_activation(activation, logits.shape[1], choices=_ACTIVATIONS):
        return torch.softmax(logits, dim=1)
    return torch.sigmoid(logits)


def _default_predictor(model: Callable, image: torch.Tensor) -> torch.Tensor:
    return model(image)


# ----------------------------------------------------------------------------- test-time flips
def flip_tta(model: Callable, image: torch.Tensor, *, axes: Optional[Sequence[int]] = None,
             activation: str = "softmax", predictor: Optional[Predictor] = None) -> torch.Tensor:
    """Test-time augmentation with flips: average the probabilities over all flipped copies.

    For every subset of ``axes`` (including the empty one, i.e. the image itself) the image is
    flipped along those axes, predicted, turned into probabilities, flipped back, and the
    ``2 ** len(axes)`` probability maps are averaged.

    Args:
        model: the network, in eval mode.
        image: a batch ``(N, C, *spatial)``.
        axes: spatial axes to flip (0 = first spatial axis; default: all spatial axes).
        activation: "softmax" (one class per voxel) or "sigmoid" (independent channels).
        predictor: how to get logits, ``predictor(model, image)``; default ``model(image)``.
            For a whole volume, e.g.
            ``functools.partial(sliding_window_inference, roi_size=64)``.

    Shape: ``(N, C, *spatial)`` -> probabilities ``(N, K, *spatial)``.

    Taught in week 9.
    """
    image = check_image_batch(image)
    check_choice(activation, _ACTIVATIONS, "activation")
    ndim = image.ndim - 2
    if axes is None:
        axes = tuple(range(ndim))
    axes = tuple(axes)
    if any(not isinstance(a, int) or isinstance(a, bool) or not -ndim <= a < ndim for a in axes):
        raise ValueError(f"axes must be spatial axes in [{-ndim}, {ndim - 1}] for a {ndim}D image, "
                         f"got {axes!r}")
    tensor_axes = sorted({2 + a % ndim for a in axes})
    if len(tensor_axes) != len(axes):
        raise ValueError(f"axes must not repeat an axis, got {axes!r}")
    predictor = predictor or _default_predictor
    total = None
    subsets = [s for k in range(len(tensor_axes) + 1) for s in itertools.combinations(tensor_axes, k)]
    with torch.inference_mode():
        for dims in subsets:
            flipped = torch.flip(image, dims) if dims else image
            logits = _check_logits(predictor(model, flipped), image.shape[2:], "a flipped image")
            probs = _activate(logits.float(), activation)
            probs = torch.flip(probs, dims) if dims else probs
            total = probs if total is None else total + probs
        mean = total / len(subsets)
    return mean.clone()


# ----------------------------------------------------------------------------- MC dropout
@contextlib.contextmanager
def _dropout_only(model: nn.Module) -> Iterator[int]:
    """Eval mode for the whole model except its dropout layers; yields how many are active.

    Every module's own training flag is restored afterwards.
    """
    saved = {module: module.training for module in model.modules()}
    try:
        model.eval()
        active = 0
        for module in model.modules():
            if isinstance(module, _DROPOUT_TYPES):
                module.train()
                active += module.p > 0
        yield active
    finally:
        for module, flag in saved.items():
            module.training = flag


def _entropy(probs: torch.Tensor, activation: str) -> torch.Tensor:
    """Entropy in nats: over classes for softmax ``(N, 1, ...)``, per channel for sigmoid."""
    if activation == "softmax":
        return -torch.special.xlogy(probs, probs).sum(dim=1, keepdim=True)
    return -(torch.special.xlogy(probs, probs) + torch.special.xlogy(1 - probs, 1 - probs))


def mc_dropout(model: nn.Module, image: torch.Tensor, *, samples: int = 10,
               activation: str = "softmax", uncertainty: str = "variance",
               predictor: Optional[Predictor] = None) -> tuple:
    """Monte-Carlo dropout: predict ``samples`` times with dropout on, return mean and spread.

    Only dropout layers are switched to training mode; normalisation layers stay in eval mode
    (batch norm keeps its running statistics), and every module's mode is restored afterwards.

    Uncertainty maps (``uncertainty=``):

    - "variance": variance of the probabilities across samples (softmax: averaged over classes);
    - "entropy": entropy of the mean probabilities, the total predictive uncertainty (nats);
      not zero even without dropout (a 50/50 prediction is uncertain by itself);
    - "mutual_information": entropy of the mean minus the mean entropy of the samples, the part
      of the uncertainty due to the model (zero when all samples agree).

    Args:
        model: a network with dropout layers (e.g. ``UNet(..., dropout=0.2)``).
        image: a batch ``(N, C, *spatial)``.
        samples: number of stochastic forward passes (>= 2).
        activation: "softmax" or "sigmoid".
        uncertainty: "variance", "entropy" or "mutual_information".
        predictor: how to get logits, ``predictor(model, image)``; default ``model(image)``.

    Shape: ``(N, C, *spatial)`` -> mean probabilities ``(N, K, *spatial)`` and an uncertainty map
    ``(N, 1, *spatial)`` for softmax or ``(N, K, *spatial)`` for sigmoid (one per channel).

    Taught in week 9.
    """
    image = check_image_batch(image)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (its dropout layers are switched on), "
                        f"got {type(model).__name__}")
    check_int(samples, "samples", minimum=2)
    check_choice(activation, _ACTIVATIONS, "activation")
    check_choice(uncertainty, _UNCERTAINTIES, "uncertainty")
    predictor = predictor or _default_predictor
    with _dropout_only(model) as active, torch.inference_mode():
        if not active:
            warnings.warn("the model has no dropout layer with p > 0: all samples are identical "
                          "and the uncertainty is 0 (build it with dropout > 0)", stacklevel=2)
        mean = squares = entropy_sum = None
        for k in range(1, samples + 1):
            logits = _check_logits(predictor(model, image), image.shape[2:], "an MC sample")
            probs = _activate(logits.float(), activation)
            if mean is None:                      # Welford's running mean and sum of squares
                mean, squares = probs.clone(), torch.zeros_like(probs)
                entropy_sum = _entropy(probs, activation)
                continue
            delta = probs - mean
            mean += delta / k
            squares += delta * (probs - mean)
            entropy_sum += _entropy(probs, activation)
        if uncertainty == "variance":
            result = squares / samples
            if activation == "softmax":
                result = result.mean(dim=1, keepdim=True)
        elif uncertainty == "entropy":
            result = _entropy(mean, activation)
        else:
            result = (_entropy(mean, activation) - entropy_sum / samples).clamp_min(0.0)
    return mean.clone(), result.clone()
