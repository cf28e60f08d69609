"""Quality control: flag the cases whose automatic segmentation should not be trusted unseen.

A model fails quietly: it returns a mask for every input, also for a scan from an unknown scanner,
a wrong sequence or a child's head. Quality control checks each result against what the training
data looked like and raises flags a person must look at:

- ``empty``: nothing segmented;
- ``small_volume`` / ``large_volume``: segmented volume outside the training range;
- ``many_components``: more disconnected pieces than training cases had;
- ``unusual_spacing``: voxel spacing outside the training range (another protocol);
- ``unusual_intensity``: the image's 1st/99th intensity percentiles outside the training range
  (another scanner, sequence, or normalisation);
- ``high_uncertainty``: flip test-time augmentation or Monte-Carlo dropout disagree more than on
  training cases (see :func:`prediction_uncertainty`).

The ranges come from the training cases' own features (``fit_qc_reference``: by default their
2.5th and 97.5th percentiles), never from the test cases, so QC needs no ground truth at run time.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from medseg_edu.arguments import as_binary, check_int, check_spacing, to_numpy
from medseg_edu.metrics import dice_score

__all__ = ["QC_FLAGS", "case_features", "prediction_uncertainty", "fit_qc_reference", "qc_flags", "qc_summary"]

#: Every flag ``qc_flags`` raises, with its meaning.
QC_FLAGS = {
    "empty": "nothing segmented",
    "small_volume": "segmented volume below the training range",
    "large_volume": "segmented volume above the training range",
    "many_components": "more disconnected components than the training cases had",
    "unusual_spacing": "voxel spacing outside the training range",
    "unusual_intensity": "image intensity percentiles outside the training range",
    "high_uncertainty": "test-time augmentation or MC dropout disagree more than on training cases",
}
#: feature -> the side(s) of the training range that raise a flag, and the flag raised.
_RULES = {
    "volume_ml": (("low", "small_volume"), ("high", "large_volume")),
    "n_components": (("high", "many_components"),),
    "spacing_min_mm": (("low", "unusual_spacing"), ("high", "unusual_spacing")),
    "spacing_max_mm": (("low", "unusual_spacing"), ("high", "unusual_spacing")),
    "intensity_p01": (("low", "unusual_intensity"), ("high", "unusual_intensity")),
    "intensity_p99": (("low", "unusual_intensity"), ("high", "unusual_intensity")),
    "tta_disagreement": (("high", "high_uncertainty"),),
    "mc_uncertainty": (("high", "high_uncertainty"),),
}


def case_features(pred: Any, *, spacing_mm: Sequence[float], image: Any = None,
                  uncertainty: Optional[Mapping[str, float]] = None) -> dict[str, float]:
    """The numbers quality control looks at for one case.

    ``volume_ml`` and ``n_components`` (26-/8-connected) of the predicted mask; ``spacing_min_mm``,
    ``spacing_max_mm``; with ``image``, the 1st and 99th percentiles of its non-zero voxels
    (``intensity_p01``, ``intensity_p99``; all voxels when none is zero; the first channel of a
    multi-channel image); with ``uncertainty`` (from :func:`prediction_uncertainty`) its values.
    Missing ones are NaN and raise no flag.

    Shape: pred (X, Y) or (X, Y, Z) binary; image (*spatial) or (C, *spatial) -> a dict of floats.

    Taught in week 9.
    """
    mask = as_binary(pred, "pred")
    spacing = check_spacing(spacing_mm, mask.ndim)
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    n_components = int(ndimage.label(mask, structure=structure)[1])
    features = {"volume_ml": float(mask.sum() * np.prod(spacing) / 1000.0), "n_components": float(n_components),
                "spacing_min_mm": float(min(spacing)), "spacing_max_mm": float(max(spacing)),
                "intensity_p01": np.nan, "intensity_p99": np.nan,
                "tta_disagreement": np.nan, "mc_uncertainty": np.nan}
    if image is not None:
        values = to_numpy(image, "image").astype(np.float64)
        if values.ndim == mask.ndim + 1:
            values = values[0]
        if values.shape != mask.shape:
            raise ValueError(f"image must have pred's spatial shape {mask.shape} (or one channel axis "
                             f"in front), got {np.shape(image)}")
        if not np.all(np.isfinite(values)):
            raise ValueError("image contains NaN or Inf values")
        body = values[values != 0] if np.any(values != 0) else values.ravel()
        features["intensity_p01"], features["intensity_p99"] = (float(v) for v in np.percentile(body, [1, 99]))
    for key, value in dict(uncertainty or {}).items():
        if key not in ("tta_disagreement", "mc_uncertainty"):
            raise ValueError(f"uncertainty keys must be 'tta_disagreement' and/or 'mc_uncertainty', got {key!r}")
        features[key] = float(value)
    return features


def prediction_uncertainty(model: Any, image: Any, *, activation: str = "softmax", mc_samples: int = 8,
                           seed: int = 0, predictor: Optional[Callable] = None) -> dict[str, float]:
    """Two per-case uncertainty scores from the library's :func:`flip_tta` and :func:`mc_dropout`.

    - ``tta_disagreement``: 1 - Dice between the foreground of the plain prediction and that of the
      flip-TTA average (0 when flipping changes nothing; 0 when both are empty);
    - ``mc_uncertainty``: the mean MC-dropout variance over the voxels that either prediction calls
      foreground (0 when there are none). Needs dropout layers, otherwise it is 0 (with a warning).

    Foreground is "not class 0" for softmax and "channel 0 > 0.5" for sigmoid. The dropout masks are
    drawn from a torch generator seeded with ``seed``; the global torch RNG is left as it was.

    Shape: model, image (1, C, *spatial) tensor (one case) -> a dict of two floats.

    Taught in week 9.
    """
    import torch

    from medseg_edu.uncertainty import flip_tta, mc_dropout

    check_int(mc_samples, "mc_samples", minimum=2)
    if not isinstance(image, torch.Tensor) or image.ndim not in (4, 5) or image.shape[0] != 1:
        raise ValueError(f"image must be one case as a tensor (1, C, *spatial), got "
                         f"{tuple(image.shape) if hasattr(image, 'shape') else type(image).__name__}")

    def foreground(probs: Any) -> np.ndarray:
        probs = probs[0].detach().cpu().numpy()
        return probs.argmax(axis=0) > 0 if activation == "softmax" else probs[0] > 0.5

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        plain = foreground(flip_tta(model, image, axes=(), activation=activation, predictor=predictor))
        tta = foreground(flip_tta(model, image, activation=activation, predictor=predictor))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, variance = mc_dropout(model, image, samples=mc_samples, activation=activation,
                                        uncertainty="variance", predictor=predictor)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    region = plain | tta | foreground(mean)
    spread = variance[0].detach().cpu().numpy().mean(axis=0)
    return {"tta_disagreement": 1.0 - dice_score(plain, tta, empty="one"),
            "mc_uncertainty": float(spread[region].mean()) if region.any() else 0.0}


def fit_qc_reference(features: pd.DataFrame, *, low_percentile: float = 2.5,
                     high_percentile: float = 97.5) -> dict[str, tuple[float, float]]:
    """The training range of every QC feature: its ``low_percentile`` and ``high_percentile``.

    Empty training predictions are left out of the volume range (an empty case is flagged
    anyway). A feature that is NaN in every training case gets no range and raises no flag.

    Shape: features, one row per training case (columns as from :func:`case_features`) ->
    ``{feature: (low, high)}``.

    Taught in week 9.
    """
    if not isinstance(features, pd.DataFrame) or features.empty:
        raise ValueError("features must be a non-empty pandas DataFrame (one row per training case)")
    if not 0 <= low_percentile < high_percentile <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low_percentile} and {high_percentile}")
    reference = {}
    for feature in _RULES:
        if feature not in features:
            continue
        values = pd.to_numeric(features[feature], errors="coerce").to_numpy(dtype=np.float64)
        if feature == "volume_ml":
            values = values[values > 0]
        values = values[np.isfinite(values)]
        if values.size:
            reference[feature] = (float(np.percentile(values, low_percentile)),
                                  float(np.percentile(values, high_percentile)))
    return reference


def qc_flags(features: pd.DataFrame, reference: Mapping[str, tuple[float, float]], *,
             dice: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """One row of flags per case: a bool column per flag of ``QC_FLAGS``, ``n_flags`` and ``flags``.

    A value strictly outside its training range raises the flag of that side (see the module
    docstring); ``empty`` is raised for a volume of 0 whatever the range. ``flags`` lists the raised
    flags' names, comma-separated ("" for a clean case). ``dice`` (optional, one per case, e.g. from
    a later evaluation) is copied into the table so flags can be compared with the real outcome.

    Shape: features (N rows) -> a DataFrame of N rows with the same index.

    Taught in week 9.
    """
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"features must be a pandas DataFrame, got {type(features).__name__}")
    if not isinstance(reference, Mapping):
        raise TypeError(f"reference must be a dict from fit_qc_reference, got {type(reference).__name__}")
    table = pd.DataFrame(False, index=features.index, columns=list(QC_FLAGS))
    if "volume_ml" in features:
        table["empty"] = pd.to_numeric(features["volume_ml"]).to_numpy() == 0
    for feature, rules in _RULES.items():
        if feature not in features or feature not in reference:
            continue
        values = pd.to_numeric(features[feature], errors="coerce").to_numpy(dtype=np.float64)
        low, high = reference[feature]
        for side, flag in rules:
            outside = values < low if side == "low" else values > high
            if feature == "volume_ml":
                outside &= values > 0  # an empty case is "empty", not also "small"
            table[flag] |= np.nan_to_num(outside, nan=0).astype(bool) & np.isfinite(values)
    table["n_flags"] = table[list(QC_FLAGS)].sum(axis=1).astype(int)
    table["flags"] = [", ".join(f for f in QC_FLAGS if row[f]) for _, row in table.iterrows()]
    if dice is not None:
        values = np.asarray(dice, dtype=np.float64)
        if values.shape != (len(table),):
            raise ValueError(f"dice must have one value per case ({len(table)}), got shape {values.shape}")
        table["dice"] = values
    return table


def _split_flags(text: Any) -> list[str]:
    return [f.strip() for f in ("" if pd.isna(text) else str(text)).split(",") if f.strip()]


def qc_summary(table: pd.DataFrame, *, metric: str = "dice", flag_column: str = "flags") -> pd.DataFrame:
    """How each flag relates to the real outcome: cases flagged and their mean metric vs clean cases.

    ``table`` has one row per case with a ``flag_column`` of comma-separated flag names ("" for a
    clean case, as :func:`qc_flags` writes it) and a ``metric`` column (e.g. the Dice found later
    against the ground truth). Means skip undefined (NaN) values; a flag whose cases all have an
    undefined metric gets NaN.

    Shape: table (N rows) -> one row per flag that occurs: flag, cases, mean_flagged, mean_clean,
    sorted by flag name.

    Taught in week 9.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in (metric, flag_column) if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; columns are {list(table.columns)}")
    values = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=np.float64)
    flags = [_split_flags(text) for text in table[flag_column]]
    clean = np.array([not f for f in flags])
    clean_values = values[clean & np.isfinite(values)]
    mean_clean = float(clean_values.mean()) if clean_values.size else np.nan
    rows = []
    for name in sorted({f for case in flags for f in case}):
        hit = np.array([name in case for case in flags])
        flagged = values[hit & np.isfinite(values)]
        rows.append({"flag": name, "cases": int(hit.sum()),
                     "mean_flagged": float(flagged.mean()) if flagged.size else np.nan, "mean_clean": mean_clean})
    return pd.DataFrame(rows, columns=["flag", "cases", "mean_flagged", "mean_clean"])
