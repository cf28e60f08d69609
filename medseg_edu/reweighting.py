"""Remedies for an under-represented group, all trained with :func:`medseg_edu.training.fit`.

Week 6 compares three ways to help a rare subgroup (dark skin types in dermoscopy):

- **balanced sampling**: draw training images with probability proportional to a weight
  (``WeightedRandomSampler``), so rare images appear as often as common ones;
- **loss reweighting**: keep the usual batches but weight each image's loss;
- **more data** of the rare group.

:func:`fit_for_steps` trains a model for a fixed budget of optimisation steps with either remedy,
so that every model of a comparison gets the same budget. :func:`WeightedSamples` and
:func:`per_sample_loss` are the two pieces that give ``fit`` a weight per image; :func:`predict_labels`
and :func:`dice_per_image` score the trained models image by image for a subgroup table.

Taught in week 6.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from .metrics import dice_score
from .training import History, fit

__all__ = ["per_sample_loss", "WeightedSamples", "fit_for_steps", "predict_labels", "dice_per_image"]


def per_sample_loss(loss_fn: Callable) -> Callable:
    """Turn a batch loss into one that returns one loss per sample, as ``fit`` needs with weights.

    The returned function scores every sample on its own, ``loss_fn(logits[i:i+1], label[i:i+1])``.
    For a loss that averages per image (``dice_ce_loss``, ``soft_dice_loss`` without ``batch_dice``,
    cross-entropy on equal-sized images) the mean of these per-sample losses is the batch loss, so
    equal weights train exactly as without weights. ``fit`` reduces them as
    ``sum(weight * loss) / sum(weight)``: a weight-2 image counts as two copies of it.

    Shape: ``logits (N, K, *spatial)``, ``label (N, 1, *spatial)`` -> ``(N,)``.

    Example:
        >>> loss = per_sample_loss(dice_ce_loss)(logits, label)    # doctest: +SKIP

    Taught in week 6.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (logits, label) -> scalar, got {type(loss_fn).__name__}")

    def loss_per_sample(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.stack([loss_fn(logits[i:i + 1], label[i:i + 1]).reshape(()) for i in range(len(logits))])

    loss_per_sample.__name__ = f"per_sample_{getattr(loss_fn, '__name__', 'loss')}"
    return loss_per_sample


class WeightedSamples(Dataset):
    """A dataset whose items also carry ``"weight"``: item ``i`` of ``dataset`` plus ``weights[i]``.

    ``fit`` reads ``batch["weight"]`` and minimises the weighted mean of the per-sample losses
    (give it ``loss_fn=per_sample_loss(...)``). Items must be dicts (``{"image", "label", ...}``).

    Shape: item dict of ``dataset`` -> the same dict plus ``weight``, a float32 scalar tensor.

    Used in week 6 through `fit_for_steps`.
    """

    def __init__(self, dataset: Dataset, weights: Sequence[float]) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or len(weights) != len(dataset):
            raise ValueError(f"weights must have one entry per item of dataset ({len(dataset)}), got shape "
                             f"{weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be finite and non-negative with a positive sum")
        self.dataset, self.weights = dataset, weights

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the wrapped dataset (new augmentation every epoch, as ``fit`` asks)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if not isinstance(item, dict):
            raise TypeError(f"WeightedSamples needs a dataset of dict items, got {type(item).__name__}")
        return {**item, "weight": torch.tensor(self.weights[index], dtype=torch.float32)}


def fit_for_steps(model: nn.Module, dataset: Dataset, *, steps: int, batch_size: int, loss_fn: Callable,
                  lr: float = 1e-3, sampling_weights: Optional[Sequence[float]] = None,
                  loss_weights: Optional[Sequence[float]] = None, seed: int = 0,
                  device: Union[str, torch.device] = "auto", **fit_kwargs: Any) -> History:
    """Train ``model`` with ``fit`` for about ``steps`` optimisation steps; the model ends in eval mode.

    The budget becomes ``epochs = ceil(steps / batches per epoch)`` epochs of at most
    ``ceil(steps / epochs)`` batches, so every model of a comparison gets nearly the same number of
    steps whatever its data size. Batches are shuffled with a generator seeded by ``seed`` (seed
    the model's initialisation yourself, before building it). Two remedies, one at a time:

    - ``sampling_weights``: one weight per item; batches are drawn with replacement with these
      probabilities (balanced sampling);
    - ``loss_weights``: one weight per item; each image's loss is weighted
      (:class:`WeightedSamples` + :func:`per_sample_loss`).

    Other keyword arguments go to :func:`medseg_edu.training.fit` (``progress`` defaults to False).

    Shape: dict items ``image (C, *spatial)``, ``label (1, *spatial)`` -> the History of ``fit``.

    Taught in week 6.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if sampling_weights is not None and loss_weights is not None:
        raise ValueError("give sampling_weights or loss_weights, not both (compare one remedy at a time)")
    generator = torch.Generator().manual_seed(seed)
    if loss_weights is not None:
        dataset, loss_fn = WeightedSamples(dataset, loss_weights), per_sample_loss(loss_fn)
    if sampling_weights is None:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, num_workers=0)
    else:
        weights = np.asarray(sampling_weights, dtype=np.float64)
        if weights.shape != (len(dataset),):
            raise ValueError(f"sampling_weights must have one entry per item of dataset ({len(dataset)}), "
                             f"got shape {weights.shape}")
        sampler = WeightedRandomSampler(torch.tensor(weights), num_samples=len(dataset), replacement=True,
                                        generator=generator)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)
    batches = math.ceil(len(dataset) / batch_size)
    epochs = math.ceil(steps / batches)
    fit_kwargs.setdefault("progress", False)
    history = fit(model, loader, loss_fn=loss_fn, epochs=epochs, max_steps=math.ceil(steps / epochs), lr=lr,
                  device=device, **fit_kwargs)
    model.eval()
    return history


def predict_labels(model: nn.Module, images: Union[np.ndarray, torch.Tensor], *,
                   batch_size: int = 64) -> np.ndarray:
    """Hard labels (argmax over the classes) for a stack of images, on the model's device.

    Shape: ``images (N, C, *spatial)`` -> ``(N, *spatial)`` uint8.

    Taught in week 6.
    """
    images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if images.ndim < 3 or not images.is_floating_point():
        raise ValueError(f"images must be a float stack (N, C, *spatial), got shape {tuple(images.shape)} "
                         f"and dtype {images.dtype}")
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size].to(device))
            out.append(logits.argmax(dim=1).cpu().numpy().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[2:]), np.uint8)


def dice_per_image(model: nn.Module, images: Union[np.ndarray, torch.Tensor], labels: np.ndarray, *,
                   info: Optional[pd.DataFrame] = None, empty: str = "zero") -> pd.DataFrame:
    """One row per image: the columns of ``info`` (e.g. ``case_id``, ``fitzpatrick``) and its ``dice``.

    Binary segmentation: class 1 is the foreground; Dice by :func:`medseg_edu.metrics.dice_score`
    with the ``empty`` policy (an image with an empty label and an empty prediction scores 0 by default).

    Shape: ``images (N, C, *spatial)``, ``labels (N, *spatial)`` in {0, 1} -> a DataFrame of N rows.

    Taught in week 6.
    """
    labels = np.asarray(labels)
    preds = predict_labels(model, images)
    if labels.shape != preds.shape:
        raise ValueError(f"labels must have shape (N, *spatial) = {preds.shape} like the images' predictions, "
                         f"got {labels.shape}")
    if info is not None and len(info) != len(labels):
        raise ValueError(f"info must have one row per image ({len(labels)}), got {len(info)}")
    table = pd.DataFrame(index=range(len(labels))) if info is None else info.reset_index(drop=True).copy()
    table["dice"] = [dice_score(p == 1, t == 1, empty=empty) for p, t in zip(preds, labels)]
    return table
