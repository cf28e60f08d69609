"""nnU-Net's raw data format (v2) and its prediction folders, to train the real nnU-Net on our split.

``export_nnunet`` turns an MSD-layout folder (the built-in phantom, a real MSD task) into
``DatasetXXX_Name/`` as nnunetv2 reads it:

- ``imagesTr/<case>_0000.nii.gz`` ... one 3D file per channel (``_0000`` = FLAIR, ``_0001`` = T1w, ...),
- ``labelsTr/<case>.nii.gz``, ``imagesTs/<case>_0000.nii.gz`` ... for the held-out cases, if any,
- ``dataset.json`` in the v2 format (``channel_names``, ``labels`` name -> value, ``numTraining``,
  ``file_ending``),
- ``splits_final.json``: our patient-level folds (``patient_kfold``), which nnU-Net then uses instead of
  its own case-level split.

``read_nnunet_predictions`` reads a folder written by ``nnUNetv2_predict`` back into label maps (and
probabilities, if they were saved) in our axis order.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from medseg_edu.arguments import check_int
from medseg_edu.data.io import BRAIN_CHANNELS, BRAIN_LABELS, list_brain_cases, load_brain_case
from medseg_edu.data.nifti import _strip_nifti_suffix, load_nifti, save_nifti
from medseg_edu.data.splits import patient_kfold
from medseg_edu.utils import staging_dir

__all__ = ["nnunet_label_names", "export_nnunet", "read_nnunet_predictions"]

PathLike = Union[str, "os.PathLike[str]"]


def nnunet_label_names(labels: dict[int, str]) -> dict[str, int]:
    """Label names as nnU-Net v2 wants them: name -> value, names without spaces or dashes.

    Shape: {value: name} -> {name: value}.

    Example:
        >>> nnunet_label_names({0: "background", 2: "non-enhancing tumour"})
        {'background': 0, 'non_enhancing_tumour': 2}
    """
    if 0 not in labels or str(labels[0]) != "background":
        raise ValueError(f"labels must map 0 to 'background' (nnU-Net requires it), got {labels!r}")
    names = {str(name).strip().replace(" ", "_").replace("-", "_"): int(value) for value, name in labels.items()}
    if len(names) != len(labels):
        raise ValueError(f"labels must have distinct names, got {labels!r}")
    return names


def _write_channels(folder: Path, case_id: str, image: np.ndarray, affine: np.ndarray) -> None:
    for c, channel in enumerate(image):
        save_nifti(folder / f"{case_id}_{c:04d}.nii.gz", channel, affine)


def export_nnunet(root: PathLike, out_dir: PathLike, *, dataset_id: int = 1, name: str = "BrainTumourPhantom",
                  n_folds: int = 5, channel_names: Sequence[str] = BRAIN_CHANNELS,
                  labels: Optional[dict[int, str]] = None, overwrite: bool = False) -> Path:
    """Write the MSD-layout folder ``root`` as ``out_dir/DatasetXXX_<name>`` for nnU-Net v2.

    Every training case (``imagesTr``/``labelsTr``) is split into one file per channel; held-out
    cases in ``root/imagesTs`` go to ``imagesTs``. ``splits_final.json`` holds ``n_folds`` folds over
    patients (``participants.tsv``), so follow-up scans of one patient never sit on both sides. The
    data set is written to a temporary folder and renamed at the end.

    Shape: each (C, X, Y, Z) case -> C files of (X, Y, Z); returns the DatasetXXX_<name> folder.
    """
    dataset_id = check_int(dataset_id, "dataset_id", minimum=1)
    if dataset_id > 999:
        raise ValueError(f"dataset_id must be in 1..999 (three digits), got {dataset_id}")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"name must be letters, digits and underscores, got {name!r}")
    labels = dict(BRAIN_LABELS if labels is None else labels)
    label_names = nnunet_label_names(labels)
    channel_names = list(channel_names)
    cases = list_brain_cases(root)
    if cases["label_path"].isna().any():
        raise ValueError(f"root: every case in imagesTr needs a label, missing for "
                         f"{cases.loc[cases['label_path'].isna(), 'case_id'].tolist()}")
    folds = patient_kfold(cases["patient_id"].to_numpy(), n_splits=n_folds)
    out = Path(out_dir) / f"Dataset{dataset_id:03d}_{name}"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    try:
        for row in cases.itertuples():
            case = load_brain_case(row.image_path, row.label_path, labels=labels)
            if case["image"].shape[0] != len(channel_names):
                raise ValueError(f"case {row.case_id} has {case['image'].shape[0]} channels, channel_names "
                                 f"names {len(channel_names)}")
            _write_channels(tmp / "imagesTr", row.case_id, case["image"], case["affine"])
            save_nifti(tmp / "labelsTr" / f"{row.case_id}.nii.gz", case["label"].astype(np.uint8), case["affine"])
        test_dir = Path(root) / "imagesTs"
        test_paths = sorted(p for p in test_dir.glob("*.nii.gz") if not p.name.startswith(".")) \
            if test_dir.is_dir() else []
        for path in test_paths:
            case = load_brain_case(path)
            _write_channels(tmp / "imagesTs", case["case_id"], case["image"], case["affine"])
        content = {"channel_names": {str(c): n for c, n in enumerate(channel_names)}, "labels": label_names,
                   "numTraining": len(cases), "file_ending": ".nii.gz", "name": name,
                   "description": f"exported by medseg-edu from {Path(root).name}"}
        (tmp / "dataset.json").write_text(json.dumps(content, indent=4) + "\n")
        ids = cases["case_id"].to_numpy()
        splits = [{"train": ids[train].tolist(), "val": ids[val].tolist()} for train, val in folds]
        (tmp / "splits_final.json").write_text(json.dumps(splits, indent=4) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_nnunet_predictions(folder: PathLike, *, probabilities: bool = False) -> dict[str, dict[str, Any]]:
    """Read an ``nnUNetv2_predict`` output folder: one label map per case, in our axis order.

    Each ``<case>.nii.gz`` becomes ``{"label": (X, Y, Z) int, "affine", "spacing_mm"}``; with
    ``probabilities`` the ``<case>.npz`` that ``--save_probabilities`` writes is read too, its
    (K, Z, Y, X) array (SimpleITK's reversed order) turned into ``"probs"`` (K, X, Y, Z). The NIfTI
    files must be in RAS voxel order, as ``export_nnunet`` writes them, for the axes to agree.

    Shape: {case_id: {"label": (X, Y, Z), "probs": (K, X, Y, Z) if asked}}.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: no prediction folder at {folder}")
    predictions = {}
    for path in sorted(folder.glob("*.nii.gz")):
        if path.name.startswith("."):
            continue
        label, affine, spacing = load_nifti(path)
        if label.ndim != 3 or not np.allclose(label, np.round(label)):
            raise ValueError(f"{path}: expected a 3D integer label map, got shape {label.shape}")
        case_id = _strip_nifti_suffix(path.name)
        entry: dict[str, Any] = {"label": label.astype(np.uint8), "affine": affine, "spacing_mm": spacing}
        if probabilities:
            npz = folder / f"{case_id}.npz"
            if not npz.is_file():
                raise FileNotFoundError(f"probabilities=True but {npz} is missing (predict with --save_probabilities)")
            probs = np.load(npz)["probabilities"]
            probs = np.transpose(probs, (0,) + tuple(range(probs.ndim - 1, 0, -1)))
            if probs.shape[1:] != label.shape:
                raise ValueError(f"{npz}: probabilities of spatial shape {probs.shape[1:]} do not match the label "
                                 f"{label.shape}")
            entry["probs"] = probs.astype(np.float32)
        predictions[case_id] = entry
    if not predictions:
        raise ValueError(f"folder: no .nii.gz predictions in {folder}")
    return predictions
