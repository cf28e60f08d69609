"""Reading and writing NIfTI volumes: RAS orientation, affines and voxel spacing.

The loader reads the file completely (so a corrupt file fails here, with its path, and not later
inside a training loop), reorients it to RAS and checks that the header's voxel size agrees with
the affine. The writer is atomic: a failed write leaves no partial file behind. The data-set
layouts built on these two functions (MSD brain folders, ISIC skin folders) live in
:mod:`medseg_edu.data.io`.

Used in week 1 (NIfTI, affines, RAS orientation) through `load_brain_case` and `builtin_brain`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import nibabel as nib
import numpy as np

from medseg_edu.utils import atomic_path

__all__ = ["load_nifti", "save_nifti"]

PathLike = Union[str, "os.PathLike[str]"]

#: Largest difference allowed between two affines that should describe the same grid (mm).
AFFINE_TOLERANCE = 1e-3
#: Largest relative difference allowed between the header's voxel size and the affine's (0.1 %).
#: Files written by float32 tools differ by ~1e-7; a real disagreement is a whole voxel-size change.
SPACING_TOLERANCE = 1e-3
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _affine_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each voxel axis: the length of the affine's first three columns (mm)."""
    return np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))


def _check_header_spacing(image: Any, path: Path) -> None:
    """The header's voxel size (pixdim) must agree with the affine's, within ``SPACING_TOLERANCE``."""
    header_mm = np.asarray(image.header.get_zooms()[:3], dtype=np.float64)
    affine_mm = _affine_spacing(image.affine)
    if not np.allclose(header_mm, affine_mm, rtol=SPACING_TOLERANCE, atol=0):
        raise ValueError(
            f"NIfTI file {path}: the header's voxel spacing {tuple(round(float(v), 6) for v in header_mm)} mm "
            f"disagrees with the affine's {tuple(round(float(v), 6) for v in affine_mm)} mm (more than "
            f"{SPACING_TOLERANCE:.1%} apart); one of them is wrong and distances in mm would be too. "
            "Fix the file (e.g. set pixdim from the affine with nibabel) before using it")


def load_nifti(path: PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file completely, reoriented to RAS.

    The voxel axes are permuted and flipped (never resampled) with ``nibabel.as_closest_canonical``
    so that increasing the index along axes 0, 1, 2 moves towards the patient's Right, Anterior and
    Superior. The affine returned is the RAS one, so ``affine @ [i, j, k, 1]`` still gives each
    voxel's world position in millimetres.

    Spacing: a NIfTI file stores the voxel size twice, in the header (``pixdim``) and in the affine
    (the length of its columns). Where they disagree by more than 0.1 % the file is rejected with a
    ValueError naming the file and both spacings -- an error, not a warning, because the file alone
    cannot say which one is right and HD95, ASSD and volumes would silently be in wrong millimetres.
    Where they agree, ``spacing_mm`` is the header's value.

    Shape: 3D file -> (X, Y, Z); 4D file -> (X, Y, Z, C) (channels stay last here).

    Returns:
        (array, affine 4x4 float64, spacing_mm) with ``spacing_mm`` one float per spatial axis.

    Raises:
        FileNotFoundError if ``path`` does not exist; ValueError naming the path if the file is
        not a readable NIfTI (truncated, not gzip although named ``.gz``, ...) or its header spacing
        disagrees with its affine.

    Used in week 1 through `load_brain_case`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such NIfTI file: {path}")
    try:
        image = nib.load(str(path))
        canonical = nib.as_closest_canonical(image)
        array = np.asarray(canonical.dataobj)  # eager: a truncated file fails here, not later
    except Exception as error:  # nibabel raises many types for corrupt files
        raise ValueError(f"could not read NIfTI file {path}: {type(error).__name__}: {error}") from error
    if array.ndim not in (3, 4):
        raise ValueError(f"NIfTI file {path}: expected a 3D or 4D array, got shape {array.shape}")
    _check_header_spacing(image, path)
    affine = np.asarray(canonical.affine, dtype=np.float64)
    spacing_mm = tuple(float(z) for z in canonical.header.get_zooms()[:3])
    return array, affine, spacing_mm


def _check_affine(affine: Any, name: str = "affine") -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {affine.shape}")
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{name} must contain only finite numbers, got {affine.tolist()}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{name} must be invertible (non-zero voxel spacing), got {affine.tolist()}")
    return affine


def save_nifti(path: PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` with ``affine`` to a NIfTI file, atomically.

    Integer and boolean arrays (labels, masks) are saved as uint8 (values must lie in 0..255);
    floating arrays as float32 (values must be finite). Spatial units are set to millimetres and the
    header's voxel size is taken from the affine, so ``load_nifti`` returns the same affine and spacing.

    Shape: array (X, Y, Z) or (X, Y, Z, C) (channels last, as in the MSD files); affine (4, 4).

    Example:
        >>> save_nifti("case.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))  # doctest: +SKIP

    Used in week 1 through `builtin_brain`.
    """
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise ValueError(f"array must be 3D (X, Y, Z) or 4D (X, Y, Z, C), got shape {array.shape}")
    affine = _check_affine(affine)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"integer array (a label map) must have values in 0..255 to be saved as uint8, "
                             f"got range {array.min()}..{array.max()}")
        data = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"array must contain only finite values, got {int(np.sum(~np.isfinite(array)))} "
                             f"NaN/Inf values")
        data = array.astype(np.float32)
    else:
        raise TypeError(f"array must be an integer, boolean or floating array, got dtype {array.dtype}")
    image = nib.Nifti1Image(data, affine)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units(xyz="mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"path must end with .nii.gz or .nii, got {path.name!r}")
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path
