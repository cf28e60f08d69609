"""Cross-validation as nnU-Net uses it: patient folds, fold ensembles, mirroring, post-processing by evidence.

nnU-Net trains one model per fold of a 5-fold cross-validation, predicts each training case with the
model that did not see it (the cross-validation predictions), and then

- decides post-processing from those predictions: keep only the largest connected component (of all
  foreground, then of each class) only where that raises the cross-validated Dice;
- predicts new cases with the ensemble of the fold models: the softmax probabilities of the models
  are averaged, each model's own prediction being the average over mirrored copies of the input
  (``medseg_edu.uncertainty.flip_tta``).

Folds are by patient (``medseg_edu.data.splits.patient_kfold``), so follow-up scans of one patient
never sit on both sides of a fold.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from medseg_edu.arguments import check_probabilities, to_numpy
from medseg_edu.data.splits import patient_kfold
from medseg_edu.metrics import dice_score

__all__ = ["assign_folds", "ensemble_probabilities", "predict_ensemble", "keep_largest_component",
           "determine_postprocessing", "apply_postprocessing"]


def assign_folds(patient_ids: Sequence[Any], *, n_splits: int = 5) -> np.ndarray:
    """The fold in which each case is held out (``patient_kfold``): one number per case.

    Shape: patient_ids (N,) -> int (N,) with values 0 .. n_splits - 1.

    Example:
        >>> assign_folds(["a", "a", "b", "c"], n_splits=3).tolist()
        [0, 0, 2, 1]

    Taught in week 7.
    """
    folds = patient_kfold(patient_ids, n_splits=n_splits)
    out = np.full(sum(len(test) for _, test in folds), -1, dtype=np.int64)
    for k, (_, test) in enumerate(folds):
        out[test] = k
    return out


def ensemble_probabilities(probs: Sequence[Any]) -> Any:
    """Average the probability maps of several models (the fold models): nnU-Net's ensemble.

    Averaging probabilities, not labels, lets a confident model outvote an unsure one. Works on numpy
    arrays and torch tensors alike (returns the same kind).

    Shape: M maps of one shape (N, K, *spatial) or (K, *spatial) -> that shape.

    Used in week 7 through `predict_ensemble`.
    """
    probs = list(probs)
    if not probs:
        raise ValueError("probs must hold at least one probability map, got none")
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"probs must all have one shape, got shapes {sorted(shapes)}")
    for k, p in enumerate(probs):
        check_probabilities(p, f"probs[{k}]", hint="apply softmax (or sigmoid) to each model's logits first")
    total = probs[0] * 1.0
    for p in probs[1:]:
        total = total + p
    return total / len(probs)


def predict_ensemble(models: Sequence[Callable], image: Any, *, mirror_axes: Optional[Sequence[int]] = None,
                     activation: str = "softmax", predictor: Optional[Callable] = None) -> Any:
    """Probabilities of an ensemble of models, each averaged over mirrored copies of the image.

    Each model's prediction is ``flip_tta(model, image, axes=mirror_axes, ...)`` (all spatial axes by
    default, as nnU-Net mirrors; ``mirror_axes=()`` for no mirroring); the models' probabilities are
    then averaged with ``ensemble_probabilities``.

    Shape: image (N, C, *spatial) -> probabilities (N, K, *spatial).

    Taught in week 7.
    """
    from medseg_edu.uncertainty import flip_tta

    models = list(models)
    if not models:
        raise ValueError("models must hold at least one model, got none")
    return ensemble_probabilities([flip_tta(model=model, image=image, axes=mirror_axes, activation=activation,
                                            predictor=predictor) for model in models])


def keep_largest_component(label: Any, classes: Sequence[int]) -> np.ndarray:
    """Keep only the largest connected component of the voxels labelled with any of ``classes``.

    Voxels of those classes outside the largest component (face connectivity; components of equal
    largest size are all kept) become background 0; other classes are untouched.

    Shape: label (*spatial) int -> (*spatial), same dtype.

    Example:
        >>> keep_largest_component(np.array([1, 1, 0, 1, 2]), [1]).tolist()
        [1, 1, 0, 0, 2]

    Taught in week 7.
    """
    label = to_numpy(label, "label")
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"label must be an integer label map, got dtype {label.dtype}")
    mask = np.isin(label, list(classes))
    components, count = ndi.label(mask)
    out = label.copy()
    if count > 1:
        sizes = np.bincount(components.ravel())[1:]
        keep = np.flatnonzero(sizes == sizes.max()) + 1
        out[mask & ~np.isin(components, keep)] = 0
    return out


def _mean_dice(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray], classes: Sequence[int]) -> dict[int, float]:
    """Mean Dice over cases for each class (cases where both are empty do not count, as in nnU-Net)."""
    means = {}
    for c in classes:
        scores = [dice_score(p == c, t == c, empty="nan") for p, t in zip(preds, targets)]
        means[c] = float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")
    return means


def determine_postprocessing(preds: Sequence[Any], targets: Sequence[Any], *, classes: Sequence[int]) -> dict[str, Any]:
    """Decide from cross-validation predictions whether keeping the largest component helps.

    As nnU-Net's ``determine_postprocessing``: first all foreground ``classes`` together -- accepted if
    the mean Dice over classes rises and no class gets worse; then, on the result, each class alone --
    accepted if its mean Dice rises. ``preds`` must be cross-validation predictions (each case
    predicted by the model that did not train on it); deciding on training predictions would overfit.

    Shape: preds, targets: N label maps (*spatial) -> dict ``foreground`` (bool), ``classes`` (the
    classes to post-process one by one), ``dice_before`` and ``dice_after`` ({class: mean Dice}).

    Taught in week 7.
    """
    preds = [to_numpy(p, "preds") for p in preds]
    targets = [to_numpy(t, "targets") for t in targets]
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"preds and targets must be equally long, non-empty lists, got {len(preds)} and "
                         f"{len(targets)}")
    for p, t in zip(preds, targets):
        if p.shape != t.shape:
            raise ValueError(f"preds and targets must pair cases of one shape, got {p.shape} and {t.shape}")
    classes = [int(c) for c in classes]
    if not classes or 0 in classes:
        raise ValueError(f"classes must list the foreground classes (not 0), got {classes!r}")
    before = _mean_dice(preds, targets, classes)
    current, current_dice = preds, before
    candidate = [keep_largest_component(p, classes) for p in preds]
    dice = _mean_dice(candidate, targets, classes)
    foreground = bool(np.nanmean(list(dice.values())) > np.nanmean(list(before.values()))
                      and not any(dice[c] < before[c] for c in classes))
    if foreground:
        current, current_dice = candidate, dice
    per_class = []
    if len(classes) > 1:
        for c in classes:
            candidate = [keep_largest_component(p, [c]) for p in current]
            dice = _mean_dice(candidate, targets, [c])
            if dice[c] > current_dice[c]:
                per_class.append(c)
                current = candidate
                current_dice = {**current_dice, c: dice[c]}
    return {"foreground": foreground, "classes": per_class, "dice_before": before, "dice_after": current_dice}


def apply_postprocessing(label: Any, decision: dict[str, Any], *, classes: Sequence[int]) -> np.ndarray:
    """Apply what ``determine_postprocessing`` decided to one label map (same ``classes``).

    Shape: label (*spatial) -> (*spatial).

    Taught in week 7.
    """
    out = to_numpy(label, "label")
    if decision["foreground"]:
        out = keep_largest_component(out, classes)
    for c in decision["classes"]:
        out = keep_largest_component(out, [c])
    return out
