"""The course's two data-set layouts: brain MRI in the MSD Task01 layout and skin images in the ISIC layout.

Every loader reads its files completely (so a corrupt file fails here, with its path, and not later
inside a training loop) and checks what it reads: shapes, geometry, label values, NaN/Inf. Every
writer is atomic: a failed write leaves no partial file behind. Single NIfTI files (RAS orientation,
affines, spacing) are read and written by :mod:`medseg_edu.data.nifti`.

Conventions of both layouts (and of everything built on them: phantoms, downloaders, datasets):

- ``case_id`` names one sample -- a brain case (``BRATS_001``) or a skin image (``ISIC_0000000``) --
  in tables, dicts and files (participants.tsv, metadata.csv); ``patient_id`` the person it shows.
- ``sex`` is "F" or "M" (missing when unknown), as in DICOM's PatientSex and BIDS participants.tsv.

Taught in week 1 (brain cases) and week 3 (skin images).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

from medseg_edu.data.nifti import AFFINE_TOLERANCE, NIFTI_SUFFIXES, _strip_nifti_suffix, load_nifti
from medseg_edu.utils import atomic_path

__all__ = [
    "BRAIN_CHANNELS",
    "BRAIN_LABELS",
    "load_brain_case",
    "list_brain_cases",
    "write_msd_dataset_json",
    "read_dataset_json",
    "load_skin_case",
    "list_skin_cases",
    "save_skin_case",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Channel order of the 4D brain images (MSD Task01 / BraTS): index -> sequence name.
BRAIN_CHANNELS = ("FLAIR", "T1w", "T1gd", "T2w")
#: Brain label values and their meaning.
BRAIN_LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"}


# --------------------------------------------------------------------------------------------
# Brain MRI (MSD Task01 layout: imagesTr/<case>.nii.gz, labelsTr/<case>.nii.gz, dataset.json)
# --------------------------------------------------------------------------------------------

def _is_junk(path: Path) -> bool:
    """macOS resource forks (``._BRATS_001.nii.gz``) and other hidden files in real archives."""
    return path.name.startswith(".")


def _scan_images(images_dir: Path, *, accept: Callable[[Path], bool], case_id: Callable[[Path], str],
                 companion: Callable[[Path], Path], column: str, what: str) -> pd.DataFrame:
    """One row per image file that ``accept`` takes (hidden files skipped): case_id, image_path and
    ``column``, the path of its label/mask (``companion``), None when that file does not exist."""
    rows = []
    for image_path in sorted(images_dir.iterdir()):
        if _is_junk(image_path) or not accept(image_path):
            continue
        other = companion(image_path)
        rows.append({"case_id": case_id(image_path), "image_path": str(image_path),
                     column: str(other) if other.is_file() else None})
    if not rows:
        raise ValueError(f"root: no {what} images found in {images_dir}")
    return pd.DataFrame(rows)


def _with_metadata(cases: pd.DataFrame, path: Path, *, sep: str, first: Sequence[str]) -> pd.DataFrame:
    """Merge the optional per-case table ``path`` (participants.tsv, metadata.csv) by case_id.

    Without a table, or for cases it lacks: ``patient_id`` = ``case_id``, ``site`` = "unknown", the
    other columns of ``first`` missing. The columns ``first`` lead, the table's extra columns follow.
    """
    if path.is_file():
        table = pd.read_csv(path, sep=sep, dtype={"case_id": str, "patient_id": str})
        if "case_id" not in table.columns:
            hint = ("; its image_id column comes from an older medseg-edu: fetch or generate the data set "
                    "again, or rename the column to case_id") if "image_id" in table.columns else ""
            raise ValueError(f"{path}: expected a case_id column, got columns {list(table.columns)}{hint}")
        cases = cases.merge(table, on="case_id", how="left", validate="one_to_one")
    defaults = {"patient_id": cases["case_id"], "site": "unknown"}
    for column in first:
        if column not in cases.columns:
            cases[column] = defaults.get(column, np.nan)
        elif column in defaults:
            cases[column] = cases[column].fillna(defaults[column])
    return cases[list(first) + [c for c in cases.columns if c not in first]]


def _check_labels(label: np.ndarray, *, path: Path, labels: Iterable[int]) -> np.ndarray:
    """Integer check and label-set check; returns the label map as uint8."""
    allowed = sorted(int(v) for v in labels)
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(np.isfinite(label)) or not np.all(label == np.round(label)):
            raise ValueError(f"label file {path}: expected integer label values, got non-integer values "
                             f"(dtype {label.dtype}); is this a probability map or an image?")
    elif not (np.issubdtype(label.dtype, np.integer) or label.dtype == bool):
        raise ValueError(f"label file {path}: expected an integer label map, got dtype {label.dtype}")
    present = np.unique(label)
    unexpected = sorted(set(present.astype(np.int64).tolist()) - set(allowed))
    if unexpected:
        raise ValueError(f"label file {path}: expected labels in {allowed}, got unexpected values {unexpected}")
    return label.astype(np.uint8)


def load_brain_case(image_path: PathLike, label_path: Optional[PathLike] = None, *,
                    labels: Iterable[int] = tuple(BRAIN_LABELS)) -> dict[str, Any]:
    """Load one brain case (4D multi-sequence image and optional label map), checked and in RAS.

    Checks: the image is finite (no NaN/Inf); the label is 3D, integer, with values in ``labels``;
    image and label have the same spatial shape and affines that agree within 1e-3.

    Shape: image (C, X, Y, Z) float32 (C = 4 for MSD Task01: FLAIR, T1w, T1gd, T2w; a 3D file gives
    C = 1); label (X, Y, Z) uint8 or None.

    Returns:
        dict with keys ``image``, ``label``, ``affine`` (4x4), ``spacing_mm`` (3 floats), ``case_id``
        (file name without ``.nii.gz``).

    Taught in week 1.
    """
    image_path = Path(image_path)
    array, affine, spacing_mm = load_nifti(image_path)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"image file {image_path}: expected numeric voxels, got dtype {array.dtype}")
    image = np.ascontiguousarray(np.moveaxis(array, -1, 0), dtype=np.float32)
    if not np.all(np.isfinite(image)):
        bad = int(np.sum(~np.isfinite(image)))
        raise ValueError(f"image file {image_path}: expected finite values, got {bad} NaN/Inf voxels")
    label = None
    if label_path is not None:
        label_path = Path(label_path)
        label_array, label_affine, _ = load_nifti(label_path)
        if label_array.ndim != 3:
            raise ValueError(f"label file {label_path}: expected a 3D label map (X, Y, Z), got a "
                             f"{label_array.ndim}D array of shape {label_array.shape}")
        if label_array.shape != image.shape[1:]:
            raise ValueError(f"image and label must have the same spatial shape, got {image.shape[1:]} "
                             f"({image_path}) and {label_array.shape} ({label_path})")
        if not np.allclose(affine, label_affine, atol=AFFINE_TOLERANCE, rtol=0):
            raise ValueError(f"image and label affines differ by more than {AFFINE_TOLERANCE}: "
                             f"{image_path} has {np.round(affine, 4).tolist()}, "
                             f"{label_path} has {np.round(label_affine, 4).tolist()}")
        label = _check_labels(label_array, path=label_path, labels=labels)
    return {"image": image, "label": label, "affine": affine, "spacing_mm": spacing_mm,
            "case_id": _strip_nifti_suffix(image_path.name)}


def list_brain_cases(root: PathLike) -> pd.DataFrame:
    """List the cases of an MSD-layout folder (``imagesTr/``, ``labelsTr/``, optional ``participants.tsv``).

    Works on the course phantom and on the real MSD Task01_BrainTumour (which has no participants.tsv:
    then ``patient_id`` = ``case_id``, ``site`` = "unknown", ``age``/``sex`` missing). Hidden files
    such as the macOS ``._BRATS_001.nii.gz`` in the real archive are ignored.

    Shape: one row per case; columns case_id, patient_id, site, age, sex, image_path, label_path
    (missing, ``pd.isna``, when a case has no label), plus any extra participants.tsv columns.

    Taught in week 1.
    """
    root = Path(root)
    images_dir = root / "imagesTr"
    if not images_dir.is_dir():
        raise ValueError(f"root must be an MSD-layout folder with an imagesTr/ subfolder, got {root}")
    cases = _scan_images(images_dir, accept=lambda p: p.name.endswith(NIFTI_SUFFIXES),
                         case_id=lambda p: _strip_nifti_suffix(p.name),
                         companion=lambda p: root / "labelsTr" / p.name, column="label_path", what=".nii.gz")
    return _with_metadata(cases, root / "participants.tsv", sep="\t",
                          first=("case_id", "patient_id", "site", "age", "sex", "image_path", "label_path"))


def write_msd_dataset_json(root: PathLike, *, name: str = "BrainTumour",
                           description: str = "Gliomas segmentation tumour and oedema in on brain images",
                           num_training: Optional[int] = None, case_ids: Optional[Sequence[str]] = None,
                           test_ids: Sequence[str] = (), reference: str = "", licence: str = "",
                           release: str = "") -> Path:
    """Write ``root/dataset.json`` the way the Medical Segmentation Decathlon Task01 does.

    ``case_ids`` defaults to the images found in ``root/imagesTr``; ``num_training`` is checked against
    their number when given. ``test_ids`` are the unlabelled held-out cases in ``root/imagesTs``. Keys,
    modality and label names are those of the real file (including its spellings "t1gd" and
    "non-enhancing tumor"), so tools written for MSD/nnU-Net read it.

    Shape: one JSON object; ``training`` has one {"image", "label"} entry per case.

    Used in week 1 through `builtin_brain`.
    """
    root = Path(root)
    if case_ids is None:
        images_dir = root / "imagesTr"
        case_ids = sorted(_strip_nifti_suffix(p.name) for p in images_dir.glob("*.nii*") if not _is_junk(p)) \
            if images_dir.is_dir() else []
    case_ids = list(case_ids)
    if num_training is not None and num_training != len(case_ids):
        raise ValueError(f"num_training must equal the number of cases, got {num_training} and "
                         f"{len(case_ids)} cases")
    content = {
        "name": name,
        "description": description,
        "reference": reference,
        "licence": licence,
        "release": release,
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": len(case_ids),
        "numTest": len(test_ids),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test_ids],
    }
    path = root / "dataset.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=4) + "\n")
    return path


def read_dataset_json(root: PathLike) -> dict[str, Any]:
    """Read and check ``root/dataset.json`` (MSD layout); ``root`` may also be the file itself.

    Shape: dict with at least name, modality, labels, numTraining, training.

    Not called by a notebook: for reading a real MSD folder after the course.
    """
    path = Path(root)
    if path.is_dir():
        path = path / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"root: no dataset.json at {path}")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"could not read {path}: {error}") from error
    required = ("name", "modality", "labels", "numTraining", "training")
    missing = [key for key in required if key not in content]
    if missing:
        raise ValueError(f"{path}: expected keys {list(required)}, missing {missing}")
    if content["numTraining"] != len(content["training"]):
        raise ValueError(f"{path}: numTraining is {content['numTraining']} but training lists "
                         f"{len(content['training'])} cases")
    return content


# --------------------------------------------------------------------------------------------
# Skin images (ISIC layout: images/<id>.jpg, masks/<id>_segmentation.png, metadata.csv)
# --------------------------------------------------------------------------------------------

def _read_pil(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    try:
        with Image.open(path) as handle:
            handle.load()  # eager: a truncated file fails here
            return np.asarray(handle.convert(mode))
    except Exception as error:
        raise ValueError(f"could not read image file {path}: {type(error).__name__}: {error}") from error


def load_skin_case(image_path: PathLike, mask_path: Optional[PathLike] = None) -> dict[str, Any]:
    """Load one dermoscopy image and its optional lesion mask.

    The mask file must be binary: 0 and 255 (ISIC) or 0 and 1; anything else is an error.

    Shape: image (3, H, W) float32 in [0, 1]; label (H, W) uint8 in {0, 1} or None.

    Returns:
        dict with keys ``image``, ``label``, ``case_id`` (file name without extension).

    Taught in week 3.
    """
    image_path = Path(image_path)
    rgb = _read_pil(image_path, "RGB")
    image = np.ascontiguousarray(np.moveaxis(rgb, -1, 0), dtype=np.float32) / np.float32(255.0)
    label = None
    if mask_path is not None:
        mask_path = Path(mask_path)
        mask = _read_pil(mask_path, "L")
        if mask.shape != image.shape[1:]:
            raise ValueError(f"image and mask must have the same size (H, W), got {image.shape[1:]} "
                             f"({image_path}) and {mask.shape} ({mask_path})")
        values = set(np.unique(mask).tolist())
        if not values <= {0, 255} and not values <= {0, 1}:
            raise ValueError(f"mask file {mask_path}: expected a binary mask with values {{0, 255}} or "
                             f"{{0, 1}}, got values {sorted(values)[:10]}")
        label = (mask > 0).astype(np.uint8)
    return {"image": image, "label": label, "case_id": image_path.stem}


def list_skin_cases(root: PathLike) -> pd.DataFrame:
    """List the images of an ISIC-layout folder (``images/``, ``masks/``, optional ``metadata.csv``).

    Works on the course phantom and on ISIC 2018 arranged in the same layout (no metadata.csv: then
    ``patient_id`` = ``case_id``, ``site`` = "unknown", ``fitzpatrick`` missing).

    Shape: one row per image; columns case_id, patient_id, site, fitzpatrick, image_path,
    mask_path (missing, ``pd.isna``, when there is no mask), plus any extra metadata.csv columns.

    Taught in weeks 3, 4 and 6.
    """
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise ValueError(f"root must be an ISIC-layout folder with an images/ subfolder, got {root}")
    cases = _scan_images(images_dir, accept=lambda p: p.suffix.lower() in (".jpg", ".jpeg", ".png"),
                         case_id=lambda p: p.stem, companion=lambda p: root / "masks" / f"{p.stem}_segmentation.png",
                         column="mask_path", what=".jpg/.png")
    return _with_metadata(cases, root / "metadata.csv", sep=",",
                          first=("case_id", "patient_id", "site", "fitzpatrick", "image_path", "mask_path"))


def save_skin_case(root: PathLike, case_id: str, image: np.ndarray, label: Optional[np.ndarray] = None, *,
                   quality: int = 95) -> tuple[Path, Optional[Path]]:
    """Write one skin image (JPEG) and optional mask (PNG, 0/255) in the ISIC layout, atomically.

    Files: ``root/images/<case_id>.jpg`` and ``root/masks/<case_id>_segmentation.png``.

    Shape: image (3, H, W) float in [0, 1] or uint8; label (H, W) with values in {0, 1}.

    Returns:
        (image path, mask path or None).

    Used in week 3 through `builtin_skin`.
    """
    from PIL import Image

    if not case_id or "/" in case_id or case_id.startswith("."):
        raise ValueError(f"case_id must be a plain, non-hidden file name, got {case_id!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be channel-first RGB (3, H, W), got shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ValueError(f"a floating image must have finite values in [0, 1], got range "
                             f"{np.nanmin(image)}..{np.nanmax(image)}")
        rgb = np.round(image * 255).astype(np.uint8)
    elif image.dtype == np.uint8:
        rgb = image
    else:
        raise TypeError(f"image must be float in [0, 1] or uint8, got dtype {image.dtype}")
    mask = None
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape[1:]:
            raise ValueError(f"label must have shape (H, W) = {image.shape[1:]}, got {label.shape}")
        if not set(np.unique(label).tolist()) <= {0, 1}:
            raise ValueError(f"label must be binary with values in {{0, 1}}, got values "
                             f"{sorted(np.unique(label).tolist())[:10]}")
        mask = (label > 0).astype(np.uint8) * 255
    root = Path(root)
    image_path = root / "images" / f"{case_id}.jpg"
    with atomic_path(image_path) as tmp:
        Image.fromarray(np.ascontiguousarray(np.moveaxis(rgb, 0, -1))).save(tmp, format="JPEG", quality=quality)
    mask_path = None
    if mask is not None:
        mask_path = root / "masks" / f"{case_id}_segmentation.png"
        with atomic_path(mask_path) as tmp:
            Image.fromarray(mask).save(tmp, format="PNG")
    return image_path, mask_path
