"""Train at one site, test at another: a whole-tumour slice model and its per-case scores.

External validation compares one model on held-out patients of its own site and on patients of
another site, and the remedies (fine-tuning on a few new-site cases, intensity harmonisation) are
compared by retraining the same model with one thing changed. Two functions make that a one-liner:

- :func:`train_slice_model` trains (or fine-tunes a copy of) a 2D U-Net that finds the whole tumour
  (WT: labels 1-3) slice by slice, on brain cases held in memory, for about ``steps`` batches;
- :func:`score_whole_tumour` predicts every case with it and returns one row per case: WT Dice and
  the predicted and true WT volumes in millilitres.

Both take the same ``preprocess``, a function ``image (C, X, Y, Z) -> image`` applied to each whole
volume (e.g. a fixed scaling, or :func:`medseg_edu.intensity.zscore_normalise`), so a model is always
scored with the input pipeline it was trained with.

Taught in week 5.
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from medseg_edu.arguments import check_int
from medseg_edu.data.datasets import BrainSlices
from medseg_edu.inference import predict_slices
from medseg_edu.losses import dice_ce_loss
from medseg_edu.metrics import dice_score, volume_ml
from medseg_edu.models import UNet
from medseg_edu.training import fit, seed_everything

__all__ = ["train_slice_model", "score_whole_tumour"]

Preprocess = Callable[[np.ndarray], np.ndarray]


def _check_cases(cases: Sequence[Mapping[str, Any]], *, keys: tuple[str, ...]) -> None:
    if isinstance(cases, (str, Mapping)) or not isinstance(cases, Sequence) or len(cases) == 0:
        what = f"an empty {type(cases).__name__}" if isinstance(cases, Sequence) else type(cases).__name__
        raise ValueError(f"cases must be a non-empty list of case dicts with keys {list(keys)}, got {what}")
    for i, case in enumerate(cases):
        missing = [k for k in keys if not isinstance(case, Mapping) or k not in case]
        if missing:
            raise ValueError(f"cases[{i}] must be a dict with keys {list(keys)}, missing {missing}")


def _preprocessed(preprocess: Preprocess, image: np.ndarray) -> np.ndarray:
    out = np.asarray(preprocess(image), dtype=np.float32)
    if out.shape != np.shape(image):
        raise ValueError(f"preprocess must return an image of the input's shape {np.shape(image)}, got {out.shape}")
    return out


def _whole_tumour_volume(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *,
                         preprocess: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Volume transform (protocol of medseg_edu.transforms): preprocess the image, label -> WT mask 0/1."""
    return _preprocessed(preprocess, image), (np.asarray(label) > 0).astype(np.uint8)


def train_slice_model(cases: Sequence[Mapping[str, Any]], preprocess: Preprocess, *, steps: int,
                      features: Sequence[int] = (16, 32, 64), batch_size: int = 16,
                      start_from: Optional[nn.Module] = None, lr: float = 3e-3, empty_fraction: float = 0.1,
                      seed: int = 0, device: Union[str, torch.device] = "auto") -> nn.Module:
    """Train a 2D whole-tumour U-Net on axial slices for about ``steps`` batches; returns it in eval mode.

    ``cases`` are brain cases in memory (dicts with ``image`` (4, X, Y, Z) and ``label`` (X, Y, Z) BraTS
    labels, e.g. from :func:`medseg_edu.data.io.load_brain_case`). Each volume is passed through
    ``preprocess`` once, its label becomes the WT mask (label > 0), and the slices are those of
    :class:`medseg_edu.data.datasets.BrainSlices`: every slice with tumour plus ``empty_fraction`` of
    the others. The network is ``UNet(2, 4, 2, features=features)`` (background, WT), trained by
    :func:`medseg_edu.training.fit` with Dice + cross-entropy and Adam at ``lr``; with ``start_from``
    a copy of that model is trained instead (fine-tuning; the original is left unchanged). The run
    has ``ceil(steps / batches per epoch)`` epochs of at most ``ceil(steps / epochs)`` batches, and
    ``seed`` seeds the initialisation, the slice choice and the batch order.

    Shape: cases image (4, X, Y, Z), label (X, Y, Z) -> a 2D model (N, 4, X, Y) -> logits (N, 2, X, Y).

    Example:
        >>> model = train_slice_model(site_a_cases, lambda image: image / 1000.0, steps=500)  # doctest: +SKIP

    Taught in week 5.
    """
    _check_cases(cases, keys=("image", "label"))
    if not callable(preprocess):
        raise TypeError(f"preprocess must be a function image -> image, got {type(preprocess).__name__}")
    steps = check_int(steps, "steps", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if start_from is not None and not isinstance(start_from, nn.Module):
        raise TypeError(f"start_from must be None or a torch.nn.Module, got {type(start_from).__name__}")
    seed_everything(seed)
    model = UNet(2, 4, 2, features=tuple(features)) if start_from is None else copy.deepcopy(start_from)
    slices = BrainSlices(list(cases), empty_fraction=empty_fraction, seed=seed,
                         volume_transform=functools.partial(_whole_tumour_volume, preprocess=preprocess))
    loader = DataLoader(slices, batch_size=batch_size, shuffle=True, num_workers=0)
    epochs = math.ceil(steps / len(loader))
    fit(model, loader, None, loss_fn=dice_ce_loss, epochs=epochs, max_steps=math.ceil(steps / epochs), lr=lr,
        device=device, progress=False)
    return model.eval()


def score_whole_tumour(model: nn.Module, cases: Sequence[Mapping[str, Any]], preprocess: Preprocess, *,
                       batch_size: int = 32) -> pd.DataFrame:
    """One row per case: whole-tumour Dice and predicted and true WT volumes (ml) of a 2-class slice model.

    Each case's image goes through ``preprocess`` (the one the model was trained with), the model
    predicts it slice by slice along z (:func:`medseg_edu.inference.predict_slices`), and the argmax
    is compared with ``label > 0``. Columns: ``case_id``, ``patient_id`` and ``site`` (when the case
    dicts have them), ``dice`` (NaN when prediction and truth are both empty), ``volume_pred_ml``,
    ``volume_true_ml``.

    Shape: cases image (4, X, Y, Z), label (X, Y, Z), spacing_mm (3,) -> DataFrame, one row per case.

    Taught in week 5.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_cases(cases, keys=("image", "label", "spacing_mm"))
    rows = []
    for i, case in enumerate(cases):
        logits = predict_slices(model, _preprocessed(preprocess, case["image"]), batch_size=batch_size)
        pred_wt = logits.argmax(0).cpu().numpy() > 0
        true_wt = np.asarray(case["label"]) > 0
        row = {"case_id": str(case.get("case_id", f"case_{i:03d}"))}
        row.update({key: case[key] for key in ("patient_id", "site") if key in case})
        row.update({"dice": dice_score(pred_wt, true_wt),
                    "volume_pred_ml": volume_ml(pred_wt, spacing_mm=case["spacing_mm"]),
                    "volume_true_ml": volume_ml(true_wt, spacing_mm=case["spacing_mm"])})
        rows.append(row)
    return pd.DataFrame(rows)
