"""DICOM SEG and RT-STRUCT export: they reference the source series and read back onto its grid.

Each test needs the [dicom] extra and skips without it (highdicom for SEG, pydicom for RT-STRUCT).
"""
import numpy as np
import pytest

from medseg_edu.dicom.rtstruct import read_rtstruct, write_rtstruct
from medseg_edu.dicom.seg import read_dicom_seg, write_dicom_seg
from medseg_edu.dicom.series import read_dicom_series, write_dicom_series
from medseg_edu.metrics import dice_score

SHAPE = (24, 20, 10)
LABELS = {1: "edema", 2: "core", 3: "enhancing"}


def _tumour(shape=SHAPE):
    """Nested ellipsoids 1 > 2 > 3 (an edema shell around a core around an enhancing centre)."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    centre = np.array([11.3, 9.1, 4.6])
    radii = np.array([7.5, 6.0, 3.5])
    distance = np.sqrt((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(axis=0))
    label = np.zeros(shape, np.uint8)
    label[distance < 1.0] = 1
    label[distance < 0.65] = 2
    label[distance < 0.3] = 3
    return label


@pytest.fixture
def source(tmp_path):
    pytest.importorskip("pydicom")
    affine = np.diag([1.5, 1.2, 3.0, 1.0])
    affine[:3, 3] = (-20.0, 5.0, 40.0)
    image = 200.0 + 50.0 * _tumour().astype(np.float64)
    write_dicom_series(image, affine, tmp_path / "series")
    return tmp_path / "series"


def test_seg_round_trip_equals_the_label_map(source, tmp_path):
    pytest.importorskip("highdicom")
    label = _tumour()
    assert set(np.unique(label)) == {0, 1, 2, 3}
    write_dicom_seg(label, source, tmp_path / "seg.dcm", labels=LABELS)
    back, names = read_dicom_seg(tmp_path / "seg.dcm", source)
    np.testing.assert_array_equal(back, label)
    assert names == LABELS


def test_seg_of_a_bool_mask_is_segment_one(source, tmp_path):
    pytest.importorskip("highdicom")
    mask = _tumour() > 0
    write_dicom_seg(mask, source, tmp_path / "seg.dcm")
    back, names = read_dicom_seg(tmp_path / "seg.dcm", source)
    np.testing.assert_array_equal(back, mask.astype(np.uint8))
    assert names == {1: "tumour"}


def test_seg_references_the_source_series(source, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("highdicom")
    write_dicom_seg(_tumour(), source, tmp_path / "seg.dcm", labels=LABELS)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    slices = [pydicom.dcmread(f) for f in sorted(source.iterdir())]
    assert seg.Modality == "SEG" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == slices[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == slices[0].FrameOfReferenceUID
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [slices[0].SeriesInstanceUID]
    referenced = {item.ReferencedSOPInstanceUID
                  for frame in seg.PerFrameFunctionalGroupsSequence
                  for derivation in frame.DerivationImageSequence for item in derivation.SourceImageSequence}
    assert referenced <= {ds.SOPInstanceUID for ds in slices} and referenced
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3]


def test_seg_against_another_series_is_refused(source, tmp_path):
    pytest.importorskip("highdicom")
    write_dicom_seg(_tumour(), source, tmp_path / "seg.dcm", labels=LABELS)
    other = tmp_path / "other"
    write_dicom_series(np.ones(SHAPE), np.eye(4), other)
    with pytest.raises(ValueError, match="not the source series"):
        read_dicom_seg(tmp_path / "seg.dcm", other)


def test_rtstruct_rasterises_back_to_the_mask(source, tmp_path):
    pytest.importorskip("contourpy")
    label = _tumour()
    write_rtstruct(label, source, tmp_path / "rt.dcm", labels=LABELS)
    masks = read_rtstruct(tmp_path / "rt.dcm", source)
    assert list(masks) == ["edema", "core", "enhancing"]
    for value, name in LABELS.items():
        assert masks[name].shape == SHAPE
        assert dice_score(masks[name], label == value) >= 0.98


def test_rtstruct_hole_is_kept_by_the_even_odd_rule(source, tmp_path):
    pytest.importorskip("contourpy")
    ring = np.zeros(SHAPE, bool)
    ring[4:16, 4:16, 3:7] = True
    ring[8:12, 8:12, 3:7] = False  # a hole on every slice: an inner contour
    write_rtstruct(ring, source, tmp_path / "rt.dcm")
    back = read_rtstruct(tmp_path / "rt.dcm", source)["tumour"]
    assert dice_score(back, ring) >= 0.98
    assert not back[9, 9, 4]  # the hole stays empty


def test_rtstruct_references_source_and_lies_on_its_slices(source, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("contourpy")
    write_rtstruct(_tumour(), source, tmp_path / "rt.dcm", labels=LABELS)
    rt = pydicom.dcmread(tmp_path / "rt.dcm")
    slices = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f) for f in sorted(source.iterdir()))}
    first = next(iter(slices.values()))
    assert rt.Modality == "RTSTRUCT" and rt.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
    frame = rt.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == first.FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == set(slices)
    assert [r.ROIName for r in rt.StructureSetROISequence] == list(LABELS.values())
    n_contours = 0
    for roi in rt.ROIContourSequence:
        for contour in roi.ContourSequence:
            image = slices[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            assert len(points) == contour.NumberOfContourPoints >= 3
            # every point lies in the plane of the image it references (mm, patient coordinates)
            iop = np.array([float(v) for v in image.ImageOrientationPatient])
            normal = np.cross(iop[:3], iop[3:])
            ipp = np.array([float(v) for v in image.ImagePositionPatient])
            np.testing.assert_allclose((points - ipp) @ normal, 0.0, atol=1e-4)  # DS rounding ~1e-12 mm
            n_contours += 1
    assert n_contours >= 3


def test_export_refuses_bad_masks(source, tmp_path):
    pytest.importorskip("highdicom")
    with pytest.raises(ValueError, match=r"must have the source volume's shape \(24, 20, 10\)"):
        write_dicom_seg(np.zeros((24, 20, 9), np.uint8), source, tmp_path / "a.dcm")
    with pytest.raises(TypeError, match="integer label map or a bool mask, got dtype float64"):
        write_rtstruct(np.zeros(SHAPE), source, tmp_path / "b.dcm")
    with pytest.raises(ValueError, match=r"labels must name the label values 1, 2, \.\.\., K, got keys \[1, 3\]"):
        write_dicom_seg(_tumour(), source, tmp_path / "c.dcm", labels={1: "a", 3: "c"})
    with pytest.raises(ValueError, match=r"the mask also holds \[2, 3\]"):
        write_rtstruct(_tumour(), source, tmp_path / "d.dcm", labels={1: "edema"})
