"""DICOM series reader and writer: pydicom's real CT/MR files, SimpleITK as reference, bad series.

Every test needs the [dicom] extra (pydicom) and skips without it; SimpleITK comparisons skip
one by one when SimpleITK is missing.
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg_edu.dicom.series import read_dicom_series, write_dicom_series

# DS strings carry >= 6 significant digits in pydicom's files and 14-16 in ours: 1e-4 mm is far above
# that rounding and far below anything that matters (a voxel is >= 0.3 mm).
MM = 1e-4


def _testdata(name):
    pydicom_data = pytest.importorskip("pydicom.data")
    return Path(pydicom_data.get_testdata_file("CT_small.dcm")).parent / name


def _sphere_volume(shape=(20, 18, 12)):
    """A smooth image with a bright ball: values that are not whole numbers (stored with a slope)."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(axis=0))
    return (100.0 + 3.7 * grid[0] - 1.3 * grid[2] + 400.0 * (radius < 5)).astype(np.float32)


def _rotated_affine(angle_deg=30.0, spacing=(1.2, 0.9, 2.5), origin=(-10.0, 20.0, -30.0)):
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def written(tmp_path):
    pytest.importorskip("pydicom")
    image = _sphere_volume()
    affine = _rotated_affine()
    write_dicom_series(image, affine, tmp_path / "series")
    return image, affine, tmp_path / "series"


def _sitk_volume(folder):
    """SimpleITK's reading of a series, turned into (RAS array, RAS affine) with nibabel."""
    sitk = pytest.importorskip("SimpleITK")
    import nibabel as nib

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))  # (z, y, x) -> (x, y, z)
    ornt = nib.orientations.io_orientation(ras)
    return (nib.orientations.apply_orientation(array, ornt),
            ras @ nib.orientations.inv_ornt_aff(ornt, array.shape))


def test_ct_small_geometry_and_hounsfield_units_by_hand():
    pydicom = pytest.importorskip("pydicom")
    path = _testdata("CT_small.dcm")
    ds = pydicom.dcmread(path)
    result = read_dicom_series(path)
    assert result["image"].shape == (1, 128, 128, 1) and result["image"].dtype == np.float32
    # header: IPP (-158.135803, -179.035797, -75.699997), identity IOP, 0.661468 mm pixels, 5 mm slice.
    # LPS x, y point left/posterior; RAS order flips both, so the RAS origin is the last column/row.
    expected = np.array([[0.661468, 0, 0, 158.135803 - 127 * 0.661468],
                         [0, 0.661468, 0, 179.035797 - 127 * 0.661468],
                         [0, 0, 5.0, -75.699997], [0, 0, 0, 1]])
    np.testing.assert_allclose(result["affine"], expected, atol=MM)
    np.testing.assert_allclose(result["spacing_mm"], (0.661468, 0.661468, 5.0), atol=MM)
    hounsfield = ds.pixel_array.astype(np.float64) * 1.0 - 1024.0  # RescaleSlope 1, RescaleIntercept -1024
    # voxel (x, y) of the RAS volume is pixel (row 127 - y, column 127 - x); whole numbers: exact in float32
    np.testing.assert_array_equal(result["image"][0, ::-1, ::-1, 0], hounsfield.T)
    assert result["modality"] == "CT"


def test_mr_small_reads_with_its_own_geometry():
    pydicom = pytest.importorskip("pydicom")
    path = _testdata("MR_small.dcm")
    ds = pydicom.dcmread(path)
    result = read_dicom_series(path)
    assert result["image"].shape == (1, 64, 64, 1)
    np.testing.assert_allclose(result["spacing_mm"], (0.3125, 0.3125, 0.8), atol=MM)
    # exact: stored integers without rescaling, represented exactly in float32
    np.testing.assert_array_equal(result["image"][0, ::-1, ::-1, 0], ds.pixel_array.T.astype(np.float32))
    np.testing.assert_allclose(result["affine"][:3, 3], [83.9063 - 63 * 0.3125, 91.2 - 63 * 0.3125, 6.6406], atol=MM)


def test_real_ct_series_sorted_along_the_normal_matches_simpleitk():
    pytest.importorskip("pydicom")
    folder = _testdata("dicomdirtests/98892001/CT5N")  # 5 slices, 2.5 mm, InstanceNumber runs head to feet
    result = read_dicom_series(folder)
    assert result["image"].shape == (1, 16, 16, 5)
    np.testing.assert_allclose(result["spacing_mm"], (0.488281, 0.488281, 2.5), atol=MM)
    assert result["affine"][2, 3] == pytest.approx(-1.2375, abs=MM)  # the lowest slice comes first in RAS
    array, affine = _sitk_volume(folder)
    np.testing.assert_allclose(result["affine"], affine, atol=MM)
    np.testing.assert_allclose(result["image"][0], array, atol=1e-3)  # whole HU values; float32 vs float64


def test_real_series_with_missing_slices_is_refused():
    pytest.importorskip("pydicom")
    with pytest.raises(ValueError, match=r"missing slices: .* 162 times the slice spacing 1\.250 mm"):
        read_dicom_series(_testdata("dicomdirtests/77654033/CT2"))


def test_real_localizer_with_mixed_orientations_is_refused():
    pytest.importorskip("pydicom")
    with pytest.raises(ValueError, match="mixed orientations"):
        read_dicom_series(_testdata("dicomdirtests/98892003/MR700"))


def test_real_folder_with_several_series_is_refused_and_one_can_be_picked():
    pytest.importorskip("pydicom")
    folder = _testdata("dicomdirtests/98892003/MR2")
    with pytest.raises(ValueError, match=r"mixes 3 series .*pass series_uid="):
        read_dicom_series(folder)
    localizer = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.481"  # the one-file FAST LOCALIZER
    result = read_dicom_series(folder, series_uid=localizer)
    # a sagittal slice (rows along +y, columns along -z): in RAS order its one slice is the x axis
    assert result["image"].shape == (1, 1, 16, 16) and result["series_instance_uid"] == localizer
    with pytest.raises(ValueError, match="series_uid '1.2.3' is not in source"):
        read_dicom_series(folder, series_uid="1.2.3")


def test_multi_frame_file_is_refused():
    pytest.importorskip("pydicom")
    with pytest.raises(ValueError, match=r"multi-frame object \(15 frames"):
        read_dicom_series(_testdata("rtdose.dcm"))


def test_round_trip_of_an_oblique_volume_keeps_voxels_and_affine(written):
    image, affine, folder = written
    result = read_dicom_series(folder)
    np.testing.assert_allclose(result["affine"], affine, atol=MM)
    step = (image.max() - image.min()) / 65535  # stored as 16-bit with this RescaleSlope
    np.testing.assert_allclose(result["image"][0], image, atol=step / 2 + 1e-4)  # + float32 rounding
    assert len(result["files"]) == image.shape[2]


def test_written_series_matches_simpleitk(written):
    image, affine, folder = written
    array, sitk_affine = _sitk_volume(folder)
    result = read_dicom_series(folder)
    np.testing.assert_allclose(sitk_affine, affine, atol=MM)
    np.testing.assert_allclose(result["image"][0], array, atol=1e-3)  # float32 vs float64 of the same values


def test_written_series_is_standard_mr(written):
    pydicom = pytest.importorskip("pydicom")
    _, _, folder = written
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    first = datasets[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and first.Modality == "MR"
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
        assert keyword in first, keyword
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    row_cosine = np.array([float(v) for v in first.ImageOrientationPatient[:3]])
    assert row_cosine[0] > 0.5  # rows run towards the patient's left (+x in LPS), as radiologists expect


def test_phantom_nifti_round_trip(tmp_path):
    pytest.importorskip("pydicom")
    from medseg_edu.data.nifti import load_nifti, save_nifti
    from medseg_edu.data.phantoms import make_brain_case

    case = make_brain_case(seed=0, shape=(32, 32, 24), spacing_mm=(6.0, 6.0, 6.0))
    save_nifti(tmp_path / "t1.nii.gz", case["image"][1], case["affine"])
    array, affine, spacing = load_nifti(tmp_path / "t1.nii.gz")
    write_dicom_series(array, affine, tmp_path / "dicom")
    result = read_dicom_series(tmp_path / "dicom")
    np.testing.assert_allclose(result["affine"], affine, atol=MM)
    np.testing.assert_allclose(result["spacing_mm"], spacing, atol=MM)
    step = (array.max() - array.min()) / 65535
    np.testing.assert_allclose(result["image"][0], array, atol=step / 2 + 1e-4)


def test_shuffled_file_names_and_instance_numbers_do_not_change_the_volume(written, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    image, affine, folder = written
    files = sorted(folder.iterdir())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for new_index, old_index in enumerate(order):
        ds = pydicom.dcmread(files[old_index])
        ds.InstanceNumber = int(rng.integers(1, 1000))  # lies, like some exporters
        ds.save_as(shuffled / f"IM{new_index:03d}")
    expected = read_dicom_series(folder)
    result = read_dicom_series(shuffled)
    np.testing.assert_allclose(result["affine"], expected["affine"], atol=MM)
    np.testing.assert_array_equal(result["image"], expected["image"])  # the same stored integers


def test_gapped_series_is_missing_slices(written):
    _, _, folder = written
    os.remove(sorted(folder.iterdir())[5])
    with pytest.raises(ValueError, match=r"missing slices: .* 2 times the slice spacing .*1 slice\(s\) missing"):
        read_dicom_series(folder)


def test_uneven_spacing_is_refused(written):
    pydicom = pytest.importorskip("pydicom")
    _, _, folder = written
    path = sorted(folder.iterdir())[4]
    ds = pydicom.dcmread(path)
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    ds.ImagePositionPatient = [f"{v:.6f}" for v in np.array([float(v) for v in ds.ImagePositionPatient]) + 0.8 * normal]
    ds.save_as(path)
    with pytest.raises(ValueError, match="uneven slice spacing"):
        read_dicom_series(folder)


def test_duplicate_slice_is_refused(written):
    _, _, folder = written
    shutil.copy(sorted(folder.iterdir())[3], folder / "copy.dcm")
    with pytest.raises(ValueError, match="two slices at the same position"):
        read_dicom_series(folder)


def test_mixed_series_uids_are_refused(written):
    pydicom = pytest.importorskip("pydicom")
    _, _, folder = written
    path = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(path)
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(path)
    with pytest.raises(ValueError, match=r"mixes 2 series \(SeriesInstanceUID differs\)"):
        read_dicom_series(folder)


def test_non_dicom_file_and_empty_folder_are_clear_errors(written, tmp_path):
    _, _, folder = written
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.txt is not a DICOM file"):
        read_dicom_series(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM files found"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        read_dicom_series(tmp_path / "nowhere")


def test_writer_refuses_bad_input(tmp_path, written):
    _, affine, folder = written
    with pytest.raises(ValueError, match="folder must be empty or new"):
        write_dicom_series(np.zeros((4, 4, 4)), affine, folder)
    with pytest.raises(ValueError, match=r"one channel .* got shape \(2, 4, 4, 4\)"):
        write_dicom_series(np.zeros((2, 4, 4, 4)), affine, tmp_path / "a")
    with pytest.raises(ValueError, match="image must be finite"):
        write_dicom_series(np.full((4, 4, 4), np.nan), affine, tmp_path / "b")
    sheared = np.eye(4)
    sheared[0, 1] = 0.5  # rows and columns not orthogonal
    with pytest.raises(ValueError, match="first two voxel axes must be orthogonal"):
        write_dicom_series(np.zeros((4, 4, 4)), sheared, tmp_path / "c")


def test_missing_extra_is_a_clear_import_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if the [dicom] extra were not installed
    with pytest.raises(ImportError, match=r"read_dicom_series needs the optional extra \[dicom\]"):
        read_dicom_series(tmp_path)
