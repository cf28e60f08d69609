"""A segmentation as a DICOM SEG object (highdicom) that references its source series, and back.

DICOM SEG is the standard's own format for label masks: one multi-frame object, one binary frame
per source slice and segment, each frame pointing at the source image it belongs to, every segment
described by coded terms (what it is, which algorithm made it). A PACS stores it next to the images
and a viewer overlays it. The mask must be on the source series' grid, in the RAS voxel order that
:func:`medseg_edu.dicom.series.read_dicom_series` returns; the frames are written in the source's
own slice order and read back onto the same grid, so a round trip gives the mask exactly.

Needs the optional extra ``[dicom]`` (pydicom and highdicom); importing this module does not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from medseg_edu.dicom._grid import PathLike, from_ras, grid_to_frames, load_grid, require, to_ras, frames_to_grid

__all__ = ["write_dicom_seg", "read_dicom_seg"]


def check_label_names(labels: Mapping[int, str], mask: np.ndarray, name: str = "labels") -> dict[int, str]:
    """``labels`` must name the values 1..K (background 0 unnamed) and cover every value in ``mask``."""
    if not isinstance(labels, Mapping) or not labels:
        raise TypeError(f"{name} must be a non-empty dict {{label value: name}}, got {labels!r}")
    values = sorted(int(v) for v in labels)
    if values != list(range(1, len(values) + 1)):
        raise ValueError(f"{name} must name the label values 1, 2, ..., K, got keys {values}")
    present = set(np.unique(mask).tolist()) - {0}
    unnamed = sorted(present - set(values))
    if unnamed:
        raise ValueError(f"{name} names the values {values} but the mask also holds {unnamed}")
    return {int(v): str(labels[v]) for v in values}


def check_mask(mask: Any, shape: Sequence[int], name: str = "mask") -> np.ndarray:
    """A non-negative integer (or bool) label map with the source volume's spatial shape."""
    array = np.asarray(mask)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label map or a bool mask, got dtype {array.dtype} "
                        "(probabilities? threshold them first)")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} must have the source volume's shape {tuple(shape)} (the grid of "
                         f"read_dicom_series(source)['image'][0]), got {tuple(array.shape)}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must hold non-negative labels, got minimum {array.min()}")
    return array


def mask_frames(mask: Any, source: Union[PathLike, Sequence[PathLike]], series_uid: Optional[str],
                labels: Optional[Mapping[int, str]]) -> tuple[list[Any], np.ndarray, dict[int, str], np.ndarray]:
    """What both writers (SEG and RT-STRUCT) start from: the source series and its LPS affine, the
    checked label names (default ``{1: "tumour"}``) and the mask as DICOM frames.

    Shape: mask (X, Y, Z) on the source grid (RAS) -> frames (slices, rows, columns).
    """
    datasets, affine_lps = load_grid(source, series_uid)
    shape = to_ras(np.zeros((int(datasets[0].Columns), int(datasets[0].Rows), len(datasets)), np.uint8),
                   affine_lps)[0].shape
    array = check_mask(mask, shape)
    names = check_label_names({1: "tumour"} if labels is None else labels, array)
    return datasets, affine_lps, names, grid_to_frames(from_ras(array, affine_lps))


def write_dicom_seg(mask: Any, source: Union[PathLike, Sequence[PathLike]], path: PathLike, *,
                    labels: Optional[Mapping[int, str]] = None, series_description: str = "medseg-edu segmentation",
                    algorithm_name: str = "medseg-edu", series_number: int = 100,
                    series_uid: Optional[str] = None) -> Path:
    """Write a label map as a DICOM SEG (binary segments) that references the source series.

    Each label value 1..K becomes one segment, numbered as its value (so reading back returns the
    same label map), described as an automatic segmentation of a neoplasm by ``algorithm_name``.
    Frames with no label are omitted, as highdicom does by default.

    Args:
        mask: the label map on the source grid (0 background).
        source: the series it segments (folder or files), as given to ``read_dicom_series``.
        path: the file to write.
        labels: ``{value: name}`` for the values 1..K (default ``{1: "tumour"}``; a bool mask is value 1).
        series_uid: pick one series of a folder that holds several.

    Shape: mask (X, Y, Z) integer or bool, equal to ``read_dicom_series(source)["image"].shape[1:]``.

    Taught in week 9.
    """
    hd = require("highdicom", "write_dicom_seg")
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from medseg_edu import __version__

    datasets, affine_lps, names, frames = mask_frames(mask, source, series_uid, labels)
    segments = np.stack([frames == value for value in names], axis=-1).astype(np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=__version__,
                                                   family=codes.DCM.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(segment_number=value, segment_label=label,
                                  segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                                  segmented_property_type=codes.SCT.Neoplasm,
                                  algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                  algorithm_identification=algorithm)
        for value, label in names.items()]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=segments, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=int(series_number),
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medseg-edu",
        manufacturer_model_name=algorithm_name, software_versions=__version__, device_serial_number="0",
        series_description=series_description)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def read_dicom_seg(path: PathLike, source: Union[PathLike, Sequence[PathLike]], *,
                   series_uid: Optional[str] = None) -> tuple[np.ndarray, dict[int, str]]:
    """Read a DICOM SEG back onto its source series' grid: ``(label map, {segment number: label})``.

    Every frame is matched to its source slice through the SOP Instance UID it references (not
    through its position in the file); a SEG of another series is a ValueError. Overlapping segments
    cannot be one label map and are an error too (highdicom checks).

    Shape: returns (X, Y, Z) uint8 on the grid of ``read_dicom_series(source)``, values = segment numbers.

    Taught in week 9.
    """
    hd = require("highdicom", "read_dicom_seg")
    seg = hd.seg.segread(str(path))
    datasets, affine_lps = load_grid(source, series_uid)
    referenced = {str(item.SeriesInstanceUID) for item in seg.ReferencedSeriesSequence}
    if str(datasets[0].SeriesInstanceUID) not in referenced:
        raise ValueError(f"path: {path} references the series {sorted(referenced)}, not the source series "
                         f"{datasets[0].SeriesInstanceUID}")
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence]
    names = {int(d.SegmentNumber): str(d.SegmentLabel) for d in seg.SegmentSequence}
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in datasets], segment_numbers=numbers,
        combine_segments=True, relabel=False, dtype=np.uint8)
    array, _ = to_ras(frames_to_grid(np.asarray(frames)), affine_lps)
    return array.astype(np.uint8), names
