"""A segmentation as an RT Structure Set (RT-STRUCT): closed contours per slice, and back to a mask.

Radiotherapy planning systems read regions of interest (ROIs) as RT-STRUCT: for every slice a list
of closed planar polygons in patient coordinates (LPS, mm), each pointing at the image it was drawn
on. The writer traces the boundary of each label on each source slice with marching squares (the
iso-line at 0.5 of the binary slice, so the polygon runs half-way between voxel centres inside and
outside the mask) and maps the points through the slice's geometry. The reader rasterises them back
onto the source grid: a voxel is inside when its centre is inside an odd number of the slice's
polygons (the even-odd rule, which turns a contour inside another into a hole).

The structure set is written on pydicom alone (no rt-utils); contours need contourpy (installed with
matplotlib) and rasterising uses matplotlib's ``Path``. Needs the optional extra ``[dicom]``.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from medseg_edu.dicom._grid import PathLike, frames_to_grid, load_grid, require, to_ras
from medseg_edu.dicom.seg import mask_frames

__all__ = ["write_rtstruct", "read_rtstruct"]

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: Largest distance (in slices) between a contour's plane and the nearest slice centre.
PLANE_TOLERANCE = 0.05
_COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 200, 0), (200, 0, 255), (0, 200, 255)]


def _slice_contours(frame: np.ndarray) -> list[np.ndarray]:
    """Closed iso-0.5 polygons of one binary frame (rows, cols) as (n, 2) arrays of (col, row)."""
    import contourpy

    padded = np.pad(frame.astype(np.float64), 1)  # zero border: every contour closes
    generator = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    polygons = []
    for line in generator.lines(0.5):
        points = np.asarray(line, dtype=np.float64) - 1.0  # undo the padding
        if len(points) > 1 and np.allclose(points[0], points[-1]):
            points = points[:-1]  # DICOM closes CLOSED_PLANAR contours implicitly
        if len(points) >= 3:
            polygons.append(points)
    return polygons


def write_rtstruct(mask: Any, source: Union[PathLike, Sequence[PathLike]], path: PathLike, *,
                   labels: Optional[Mapping[int, str]] = None, structure_set_label: str = "medseg-edu",
                   series_number: int = 101, series_uid: Optional[str] = None) -> Path:
    """Write a label map as an RT Structure Set: one ROI per label value, contours per source slice.

    The structure set references the source study, series, frame of reference and, for every
    contour, the image it lies on. ROIs are numbered as their label values and named by ``labels``.

    Args:
        mask: the label map on the source grid (0 background); a bool mask is label 1.
        source: the series it outlines (folder or files), as given to ``read_dicom_series``.
        path: the file to write.
        labels: ``{value: name}`` for the values 1..K (default ``{1: "tumour"}``).

    Shape: mask (X, Y, Z) integer or bool, equal to ``read_dicom_series(source)["image"].shape[1:]``.

    Taught in week 9.
    """
    pydicom = require("pydicom", "write_rtstruct")
    require("contourpy", "write_rtstruct")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pydicom.valuerep import format_number_as_ds

    datasets, affine_lps, names, frames = mask_frames(mask, source, series_uid, labels)
    first = datasets[0]

    def image_reference(ds: Any) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        return item

    now = datetime.datetime.now()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RT_STRUCTURE_SET_STORAGE, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    rt = Dataset()
    rt.file_meta = meta
    rt.SOPClassUID, rt.SOPInstanceUID, rt.SpecificCharacterSet = RT_STRUCTURE_SET_STORAGE, sop_uid, "ISO_IR 100"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(rt, keyword, first.get(keyword, ""))
    rt.Modality, rt.SeriesInstanceUID, rt.SeriesNumber = "RTSTRUCT", generate_uid(), int(series_number)
    rt.OperatorsName, rt.Manufacturer = "", "medseg-edu"
    rt.StructureSetLabel = structure_set_label
    rt.StructureSetDate, rt.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = DicomSequence([image_reference(ds) for ds in datasets])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (by convention)
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    rt.ReferencedFrameOfReferenceSequence = DicomSequence([frame_ref])
    rois, roi_contours, observations = [], [], []
    for value, name in names.items():
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = value, first.FrameOfReferenceUID
        roi.ROIName, roi.ROIGenerationAlgorithm = name, "AUTOMATIC"
        rois.append(roi)
        contours = []
        for k, ds in enumerate(datasets):
            for polygon in _slice_contours(frames[k] == value):
                grid_points = np.column_stack([polygon, np.full(len(polygon), k), np.ones(len(polygon))])
                world = (affine_lps @ grid_points.T).T[:, :3]  # (col, row) = (i, j)
                contour = Dataset()
                contour.ContourImageSequence = DicomSequence([image_reference(ds)])
                contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(world)
                contour.ContourData = [format_number_as_ds(float(v)) for v in world.ravel()]
                contours.append(contour)
        item = Dataset()
        item.ReferencedROINumber = value
        item.ROIDisplayColor = list(_COLOURS[(value - 1) % len(_COLOURS)])
        item.ContourSequence = DicomSequence(contours)
        roi_contours.append(item)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = value, value
        observation.RTROIInterpretedType, observation.ROIInterpreter = "GTV", ""
        observations.append(observation)
    rt.StructureSetROISequence = DicomSequence(rois)
    rt.ROIContourSequence = DicomSequence(roi_contours)
    rt.RTROIObservationsSequence = DicomSequence(observations)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dataset.FileDataset(str(path), rt, file_meta=meta, preamble=b"\0" * 128).save_as(
        path, enforce_file_format=True)
    return path


def read_rtstruct(path: PathLike, source: Union[PathLike, Sequence[PathLike]], *,
                  series_uid: Optional[str] = None) -> dict[str, np.ndarray]:
    """Rasterise every ROI of an RT Structure Set onto its source series' grid.

    Each contour is mapped from patient coordinates into the source grid; it must lie in the plane
    of one slice (within ``PLANE_TOLERANCE`` of a slice), otherwise ValueError. Voxel centres inside
    an odd number of a slice's polygons are in the ROI (even-odd rule: nested contours are holes).
    An RT-STRUCT of another frame of reference is a ValueError.

    Shape: returns ``{roi name: (X, Y, Z) bool}`` on the grid of ``read_dicom_series(source)``.

    Taught in week 9.
    """
    pydicom = require("pydicom", "read_rtstruct")
    from matplotlib.path import Path as PolygonPath

    rt = pydicom.dcmread(str(path))
    if str(rt.get("Modality", "")) != "RTSTRUCT":
        raise ValueError(f"path: {path} is not an RT Structure Set (Modality {rt.get('Modality', '')!s})")
    datasets, affine_lps = load_grid(source, series_uid)
    frame_uid = str(datasets[0].get("FrameOfReferenceUID", ""))
    referenced = {str(f.FrameOfReferenceUID) for f in rt.get("ReferencedFrameOfReferenceSequence", [])}
    if frame_uid not in referenced:
        raise ValueError(f"path: {path} is drawn in the frame of reference {sorted(referenced)}, not the "
                         f"source's {frame_uid}")
    n_cols, n_rows, n_slices = int(datasets[0].Columns), int(datasets[0].Rows), len(datasets)
    cols, rows = np.meshgrid(np.arange(n_cols), np.arange(n_rows))
    centres = np.column_stack([cols.ravel(), rows.ravel()]).astype(np.float64)
    inverse = np.linalg.inv(affine_lps)
    names = {int(r.ROINumber): str(r.ROIName) for r in rt.StructureSetROISequence}
    masks = {}
    for item in rt.ROIContourSequence:
        frames = np.zeros((n_slices, n_rows, n_cols), dtype=bool)
        for contour in item.get("ContourSequence", []):
            world = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64).reshape(-1, 3)
            grid = (inverse @ np.column_stack([world, np.ones(len(world))]).T).T[:, :3]
            k = int(np.round(grid[:, 2].mean()))
            if np.abs(grid[:, 2] - k).max() > PLANE_TOLERANCE or not 0 <= k < n_slices:
                raise ValueError(f"path: a contour of ROI {names.get(int(item.ReferencedROINumber))!r} does not lie "
                                 f"on a slice of the source (slice index {grid[:, 2].min():.2f}.."
                                 f"{grid[:, 2].max():.2f})")
            inside = PolygonPath(grid[:, :2], closed=False).contains_points(centres).reshape(n_rows, n_cols)
            frames[k] ^= inside
        array, _ = to_ras(frames_to_grid(frames), affine_lps)
        masks[names.get(int(item.ReferencedROINumber), str(item.ReferencedROINumber))] = array
    return masks
