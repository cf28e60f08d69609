"""Private helpers of the DICOM package: the optional imports, and a series read into its own grid.

A DICOM series is read here into the *DICOM grid*: voxel axes (column i, row j, slice k) with the
slices sorted by their position along the slice normal. Its affine maps (i, j, k) to the patient's
LPS coordinates (the DICOM convention). The public reader turns that grid into the library's RAS
one; the SEG and RT-STRUCT writers go the other way, from a RAS mask to the source's frames.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import nibabel as nib
import numpy as np

__all__: list[str] = []

PathLike = Union[str, "os.PathLike[str]"]

#: LPS (DICOM) <-> RAS (NIfTI, this library): the first two world axes change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Largest difference between two direction cosines that still counts as the same orientation.
#: Direction cosines are stored as decimal strings with ~6-16 digits; 1e-4 is far above that
#: rounding and far below any real change of orientation (0.006 degrees).
ORIENTATION_TOLERANCE = 1e-4
#: Largest relative deviation of one slice step from the median step (1 %): well above the
#: rounding of positions stored as decimal strings and scanner jitter (~1e-4 mm), far below a
#: missing slice (100 %) or a real change of slice spacing.
STEP_TOLERANCE = 0.01


def require(module: str, what: str) -> Any:
    """Import an optional dependency or raise ImportError saying how to install the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{what} needs the optional extra [dicom] ({module} is not installed): "
                          f"pip install 'medseg-edu[dicom]'") from error


def list_files(source: Union[PathLike, Sequence[PathLike]], name: str = "source") -> list[Path]:
    """The files of a series: every visible file of a folder (not DICOMDIR), or the given files."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(f for f in path.iterdir()
                           if f.is_file() and not f.name.startswith(".") and f.name.upper() != "DICOMDIR")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"{name}: no such file or folder: {path}")
    elif isinstance(source, Sequence):
        files = [Path(f) for f in source]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{name}: no such file: {f}")
    else:
        raise TypeError(f"{name} must be a folder, a file or a list of files, got {type(source).__name__}")
    if not files:
        raise ValueError(f"{name}: no DICOM files found in {source}")
    return files


def read_datasets(files: Sequence[Path], name: str = "source") -> list[Any]:
    """Read every file with pydicom; a file that is not DICOM is a ValueError naming it."""
    pydicom = require("pydicom", "reading DICOM")
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(str(f)))
        except pydicom.errors.InvalidDicomError as error:
            raise ValueError(f"{name}: {f} is not a DICOM file ({error})") from error
    return datasets


def pick_series(datasets: list[Any], series_uid: Optional[str], name: str = "source") -> list[Any]:
    """Keep the datasets of one SeriesInstanceUID; several series without a choice is an error."""
    uids: dict[str, list[Any]] = {}
    for ds in datasets:
        uids.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    if series_uid is not None:
        if series_uid not in uids:
            raise ValueError(f"series_uid {series_uid!r} is not in {name}; it holds {sorted(uids)}")
        return uids[series_uid]
    if len(uids) > 1:
        described = "; ".join(f"{uid} ({len(group)} files, {group[0].get('SeriesDescription', '')!s})"
                              for uid, group in sorted(uids.items()))
        raise ValueError(f"{name} mixes {len(uids)} series (SeriesInstanceUID differs): {described}. "
                         "A series is one acquisition on one grid; pass series_uid= to pick one")
    return datasets


def _float_list(ds: Any, keyword: str, length: int) -> np.ndarray:
    value = ds.get(keyword)
    where = getattr(ds, "filename", None) or "a dataset"
    if value is None:
        raise ValueError(f"{where} has no {keyword}; it is needed to place the slice in space "
                         "(not an image slice? a secondary capture or a report?)")
    values = np.asarray([float(v) for v in value], dtype=np.float64)
    if values.size != length:
        raise ValueError(f"{where}: {keyword} must have {length} values, got {values.size}")
    return values


def check_single_frame(ds: Any) -> None:
    """A multi-frame object (enhanced MR/CT, SEG, RT dose) is not a slice of a series."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(
            f"{getattr(ds, 'filename', 'a dataset')} is a multi-frame object ({frames} frames, "
            f"SOP class {ds.get('SOPClassUID', '?')!s}): this reader reads a series of single-frame "
            "slices, one file each. A DICOM SEG is read with read_dicom_seg; convert an enhanced "
            "multi-frame image to single frames first (e.g. highdicom's legacy conversion)")


def sort_series(datasets: list[Any]) -> tuple[list[Any], np.ndarray]:
    """Check one geometry for all slices and sort them along the slice normal.

    Returns the datasets in slice order and the 4x4 LPS affine of the grid (column i, row j,
    slice k). Errors name the files involved.
    """
    for ds in datasets:
        check_single_frame(ds)
        if "PixelData" not in ds:
            raise ValueError(f"{getattr(ds, 'filename', 'a dataset')} has no pixel data")
    orientation = [_float_list(ds, "ImageOrientationPatient", 6) for ds in datasets]
    for ds, iop in zip(datasets, orientation):
        if np.max(np.abs(iop - orientation[0])) > ORIENTATION_TOLERANCE:
            raise ValueError(
                f"mixed orientations: {datasets[0].filename} has ImageOrientationPatient "
                f"{np.round(orientation[0], 4).tolist()} but {ds.filename} has {np.round(iop, 4).tolist()}; "
                "a series holds parallel slices (a localizer or another plane mixed in?)")
    first = datasets[0]
    for keyword in ("Rows", "Columns"):
        values = {int(ds.get(keyword, 0)) for ds in datasets}
        if len(values) > 1:
            raise ValueError(f"slices of different sizes: {keyword} takes the values {sorted(values)}")
    spacing = [_float_list(ds, "PixelSpacing", 2) for ds in datasets]
    if any(np.max(np.abs(s - spacing[0])) > 1e-6 * max(1.0, float(spacing[0].max())) for s in spacing):
        raise ValueError("slices with different PixelSpacing in one series")
    row_cosine, column_cosine = orientation[0][:3], orientation[0][3:]
    normal = np.cross(row_cosine, column_cosine)
    positions = np.stack([_float_list(ds, "ImagePositionPatient", 3) for ds in datasets])
    order = np.argsort(positions @ normal, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    distance = positions @ normal
    if len(datasets) > 1:
        steps = np.diff(distance)
        duplicate = np.flatnonzero(steps < 1e-3)
        if duplicate.size:
            i = int(duplicate[0])
            raise ValueError(f"two slices at the same position ({distance[i]:.3f} mm along the normal): "
                             f"{datasets[i].filename} and {datasets[i + 1].filename}; a duplicate file, "
                             "or two series mixed under one SeriesInstanceUID (echoes, time points)")
        nominal = float(np.median(steps))
        bad = np.flatnonzero(np.abs(steps - nominal) > STEP_TOLERANCE * nominal)
        if bad.size:
            i = int(bad[0])
            ratio = steps[i] / nominal
            if abs(ratio - round(ratio)) <= STEP_TOLERANCE * ratio and round(ratio) >= 2:
                raise ValueError(
                    f"missing slices: the gap between {datasets[i].filename} and {datasets[i + 1].filename} "
                    f"is {steps[i]:.3f} mm, {round(ratio)} times the slice spacing {nominal:.3f} mm "
                    f"({round(ratio) - 1} slice(s) missing); copy the whole series")
            raise ValueError(
                f"uneven slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm along the normal "
                f"(median {nominal:.3f} mm, first odd step after {datasets[i].filename}); a regular grid "
                "needs equal steps (resample the series first)")
        step = (positions[-1] - positions[0]) / (len(datasets) - 1)
        off_line = np.abs(positions - (positions[0] + np.outer(np.arange(len(datasets)), step))).max()
        if off_line > STEP_TOLERANCE * nominal:
            raise ValueError(f"slice positions do not lie on one straight line (off by up to {off_line:.3f} mm); "
                             "not a regular grid")
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0
        step = normal * float(thickness)
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * float(spacing[0][1])     # column index i moves along the row cosine
    affine[:3, 1] = column_cosine * float(spacing[0][0])  # row index j moves along the column cosine
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return datasets, affine


def frames_to_grid(frames: np.ndarray) -> np.ndarray:
    """(K, rows, cols) stacked pixel arrays -> (i, j, k) = (cols, rows, slices) grid order."""
    return np.transpose(frames, (2, 1, 0))


def grid_to_frames(grid: np.ndarray) -> np.ndarray:
    """(cols, rows, slices) grid -> (K, rows, cols) frames, the inverse of :func:`frames_to_grid`."""
    return np.transpose(grid, (2, 1, 0))


def to_ras(grid: np.ndarray, affine_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid array and LPS affine -> RAS-ordered array and RAS affine (axes permuted/flipped only)."""
    affine_ras = LPS_TO_RAS @ affine_lps
    ornt = nib.orientations.io_orientation(affine_ras)
    array = nib.orientations.apply_orientation(grid, ornt)
    return np.ascontiguousarray(array), affine_ras @ nib.orientations.inv_ornt_aff(ornt, grid.shape)


def from_ras(array: np.ndarray, affine_lps: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_ras` for the array: a RAS-ordered array back to the DICOM grid."""
    ornt = nib.orientations.io_orientation(LPS_TO_RAS @ affine_lps)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, back))


def load_grid(source: Union[PathLike, Sequence[PathLike]], series_uid: Optional[str] = None,
              name: str = "source") -> tuple[list[Any], np.ndarray]:
    """Read, select, check and sort a series: (datasets in slice order, LPS affine of the grid)."""
    datasets = pick_series(read_datasets(list_files(source, name), name), series_uid, name)
    return sort_series(datasets)
