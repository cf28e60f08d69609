"""DICOM image series in and out: one file per slice <-> the library's RAS volume.

Reading: the slices are sorted by their position along the slice normal (the cross product of the
two in-plane direction cosines of ImageOrientationPatient) -- never by file name, InstanceNumber or
SliceLocation, which are optional, often wrong and not geometry. The affine comes from
ImagePositionPatient (the centre of the first voxel of each slice), ImageOrientationPatient and
PixelSpacing, in the patient's LPS coordinates (DICOM), and is turned into RAS and the RAS voxel order
of :func:`medseg_edu.data.nifti.load_nifti` (axes permuted and flipped, never resampled). Stored
values become real values with each slice's RescaleSlope and RescaleIntercept (CT: Hounsfield units).

A series that is not one regular grid is refused with a ValueError that says what is wrong: several
SeriesInstanceUIDs in one folder, mixed orientations (a localizer), missing slices (a gap that is a
whole number of slice steps), uneven spacing, duplicate positions, multi-frame objects.

Writing: a volume (a phantom case, a NIfTI file) becomes a valid MR image series: fresh UIDs from
pydicom's ``generate_uid``, the Patient, General Study, General Series, Frame of Reference, General
Equipment, General Image, Image Plane, Image Pixel, MR Image and SOP Common modules. The slices are
written in the usual radiological order (rows run towards the patient's left, columns towards
posterior), so viewers and ``pixel_array`` show them the way radiologists expect.

Needs the optional extra ``[dicom]`` (pydicom); importing this module does not.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import nibabel as nib
import numpy as np

from medseg_edu.dicom._grid import LPS_TO_RAS, PathLike, frames_to_grid, load_grid, require, to_ras

__all__ = ["read_dicom_series", "write_dicom_series"]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def read_dicom_series(source: Union[PathLike, Sequence[PathLike]], *,
                      series_uid: Optional[str] = None) -> dict[str, Any]:
    """Read a DICOM image series (a folder or a list of files) into a RAS volume.

    Args:
        source: a folder (every visible file in it except DICOMDIR), one file, or a list of files.
        series_uid: which series to read when the folder holds several (default: there must be one).

    Returns:
        a dict with ``image`` (1, X, Y, Z) float32 real values (rescale slope/intercept applied),
        ``affine`` (4, 4) RAS, ``spacing_mm`` (3 floats, the affine's column lengths, in voxel order),
        ``modality``, ``series_instance_uid``, ``study_instance_uid``, ``frame_of_reference_uid``,
        ``patient_id``, and ``files`` (the paths in slice order, along the slice normal).

    Shape: image (1, X, Y, Z), channel-first like every case of the library; a single slice gives
    Z = 1 (its slice spacing is SpacingBetweenSlices, else SliceThickness, else 1 mm).

    Raises:
        ValueError naming the files for mixed series, mixed orientations, missing slices, uneven
        spacing, duplicate positions, multi-frame files, missing geometry; FileNotFoundError for a
        missing path; ImportError without the [dicom] extra.

    Example:
        >>> from pydicom.data import get_testdata_file  # doctest: +SKIP
        >>> ct = read_dicom_series(get_testdata_file("CT_small.dcm"))  # doctest: +SKIP
        >>> ct["image"].shape, ct["spacing_mm"]  # doctest: +SKIP
        ((1, 128, 128, 1), (0.661468, 0.661468, 5.0))

    Taught in week 9.
    """
    require("pydicom", "read_dicom_series")
    datasets, affine_lps = load_grid(source, series_uid)
    frames = []
    for ds in datasets:
        pixels = np.asarray(ds.pixel_array, dtype=np.float64)
        if pixels.ndim != 2:
            raise ValueError(f"{ds.filename}: expected a 2D greyscale slice, got pixel data of shape {pixels.shape} "
                             f"({ds.get('PhotometricInterpretation', '?')})")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        frames.append(pixels * slope + intercept)
    grid = frames_to_grid(np.stack(frames))
    array, affine = to_ras(grid, affine_lps)
    first = datasets[0]
    return {
        "image": array[None].astype(np.float32),
        "affine": affine,
        "spacing_mm": tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)),
        "modality": str(first.get("Modality", "")),
        "series_instance_uid": str(first.get("SeriesInstanceUID", "")),
        "study_instance_uid": str(first.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
        "patient_id": str(first.get("PatientID", "")),
        "files": [Path(ds.filename) for ds in datasets],
    }


def _check_volume(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"image must hold one channel (1, X, Y, Z) or be (X, Y, Z), got shape {array.shape}; "
                             "a series is one sequence: write each channel as its own series, e.g. image[[1]]")
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"image must be (X, Y, Z) or (1, X, Y, Z), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"image must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"image must be finite, got {int(np.sum(~np.isfinite(array)))} NaN/Inf values")
    return array.astype(np.float64)


def _to_stored(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Real values -> (uint16 stored values, slope, intercept); exact for whole numbers in 0..65535."""
    low, high = float(volume.min()), float(volume.max())
    whole = np.all(volume == np.round(volume))  # integer-valued data (labels, CT numbers) stored exactly
    if whole and high - low <= 65535:
        intercept = low if (low < 0 or high > 65535) else 0.0
        return np.round(volume - intercept).astype(np.uint16), 1.0, intercept
    slope = (high - low) / 65535 if high > low else 1.0
    return np.round((volume - low) / slope).astype(np.uint16), slope, low


def write_dicom_series(image: Any, affine: Any, folder: PathLike, *, patient_id: str = "PHANTOM-001",
                       patient_name: str = "Phantom^One", series_description: str = "medseg-edu phantom",
                       study_instance_uid: Optional[str] = None, frame_of_reference_uid: Optional[str] = None,
                       series_number: int = 1) -> list[Path]:
    """Write a volume as a DICOM MR image series, one file per slice, into an empty ``folder``.

    The volume's voxel axes are reordered (never resampled) to the radiological order L, P, S, so
    each file is an axial-like slice whose rows run to the patient's left. Real values are stored
    as 16-bit integers: whole numbers in a 65536-wide range exactly, other values with a
    RescaleSlope of (max - min) / 65535, so reading back is exact to half that step. Pass the
    ``study_instance_uid`` and ``frame_of_reference_uid`` of an earlier series to put several
    sequences of one case in one study and one coordinate frame.

    Shape: image (X, Y, Z) or (1, X, Y, Z) in the voxel order of ``affine`` (4, 4), RAS, as returned by
    ``load_nifti`` or ``make_brain_case``. Returns the paths written, in slice order.

    Raises:
        ValueError if ``folder`` holds files, the image is not one finite 3D channel, or the affine's
        first two voxel axes are not orthogonal (DICOM image rows and columns must be).

    Taught in week 9.
    """
    pydicom = require("pydicom", "write_dicom_series")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pydicom.valuerep import format_number_as_ds

    volume = _check_volume(image)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"affine must be an invertible finite 4x4 matrix, got {affine.tolist()}")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"folder must be empty or new (a series folder holds one series), {folder} holds files")
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                           nib.orientations.axcodes2ornt(("L", "P", "S")))
    grid = nib.orientations.apply_orientation(volume, ornt)
    affine_lps = LPS_TO_RAS @ affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape)
    columns = affine_lps[:3, :3]
    lengths = np.linalg.norm(columns, axis=0)
    if abs(columns[:, 0] @ columns[:, 1]) > 1e-6 * lengths[0] * lengths[1]:
        raise ValueError("affine: the first two voxel axes must be orthogonal to be written as DICOM rows "
                         f"and columns, got columns {columns[:, 0].tolist()} and {columns[:, 1].tolist()}")
    row_cosine, column_cosine = columns[:, 0] / lengths[0], columns[:, 1] / lengths[1]
    normal = np.cross(row_cosine, column_cosine)
    slice_step = abs(float(columns[:, 2] @ normal))
    stored, slope, intercept = _to_stored(grid)

    def ds_list(values: Sequence[float]) -> list[str]:
        return [format_number_as_ds(float(v)) for v in values]

    now = datetime.datetime.now()
    study_uid = study_instance_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(grid.shape[2]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, sop_uid                   # SOP Common
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID = patient_name, patient_id                         # Patient
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = study_uid, "1", ""         # General Study
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesInstanceUID = "MR", series_uid                            # General Series
        ds.SeriesNumber, ds.SeriesDescription = int(series_number), series_description
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""           # Frame of Reference
        ds.Manufacturer, ds.ManufacturerModelName = "medseg-edu", "phantom"              # General Equipment
        ds.InstanceNumber = k + 1                                                       # General Image
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.PixelSpacing = ds_list([lengths[1], lengths[0]])                             # Image Plane
        ds.ImageOrientationPatient = ds_list([*row_cosine, *column_cosine])
        ds.ImagePositionPatient = ds_list((affine_lps @ [0.0, 0.0, k, 1.0])[:3])
        ds.SliceThickness = ds.SpacingBetweenSlices = format_number_as_ds(slice_step)
        ds.SliceLocation = format_number_as_ds(float(affine_lps[:3, 3] @ normal + k * (columns[:, 2] @ normal)))
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""      # MR Image
        ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "3D", "", ""
        ds.EchoTrainLength = ""
        ds.RescaleSlope, ds.RescaleIntercept = format_number_as_ds(slope), format_number_as_ds(intercept)
        ds.RescaleType = "US"
        ds.set_pixel_data(np.ascontiguousarray(stored[:, :, k].T), "MONOCHROME2", 16,  # Image Pixel
                          generate_instance_uid=False)
        path = folder / f"slice_{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
