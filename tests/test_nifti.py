"""Tests for medseg_edu.data.nifti: RAS orientation, header/affine spacing, corrupt files, atomic writes."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medseg_edu.data import nifti
from medseg_edu.data.nifti import load_nifti, save_nifti

RAS_AFFINE = np.array([[2.0, 0, 0, -10.0],
                       [0, 3.0, 0, -20.0],
                       [0, 0, 4.0, 30.0],
                       [0, 0, 0, 1.0]])


def _raw_save(path, array, affine):
    """Write with plain nibabel (bypassing save_nifti's checks) to create bad files."""
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _flip_axis0(array, affine):
    """Same world, voxel axis 0 reversed: new index i' = n - 1 - i (worked out by hand)."""
    n = array.shape[0]
    flip = np.eye(4)
    flip[0, 0] = -1.0
    flip[0, 3] = n - 1
    return array[::-1].copy(), affine @ flip


def _permute_zxy(array, affine):
    """Same world, voxel axes stored in order (z, x, y): the affine's columns move with them."""
    return np.ascontiguousarray(np.moveaxis(array, 2, 0)), affine[:, [2, 0, 1, 3]]


def test_flipped_and_permuted_copies_load_to_same_ras_array(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.normal(size=(5, 6, 7)).astype(np.float32)
    flipped, flipped_affine = _flip_axis0(original, RAS_AFFINE)
    permuted, permuted_affine = _permute_zxy(*_flip_axis0(original, RAS_AFFINE))
    assert permuted.shape == (7, 5, 6)
    for name, (array, affine) in {"orig": (original, RAS_AFFINE), "flip": (flipped, flipped_affine),
                                  "perm": (permuted, permuted_affine)}.items():
        _raw_save(tmp_path / f"{name}.nii.gz", array, affine)
        loaded, loaded_affine, spacing = load_nifti(tmp_path / f"{name}.nii.gz")
        np.testing.assert_array_equal(loaded, original, err_msg=name)
        np.testing.assert_allclose(loaded_affine, RAS_AFFINE, atol=1e-6, err_msg=name)
        assert spacing == pytest.approx((2.0, 3.0, 4.0))


def test_lps_file_is_flipped_to_ras(tmp_path):
    # BraTS files are stored LPS-like: affine diag(-1, -1, 1). RAS means axes 0 and 1 reversed.
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    _raw_save(tmp_path / "lps.nii.gz", array, np.diag([-1.0, -1.0, 1.0, 1.0]))
    loaded, affine, _ = load_nifti(tmp_path / "lps.nii.gz")
    np.testing.assert_array_equal(loaded, array[::-1, ::-1, :])
    assert np.all(np.diag(affine)[:3] > 0)
    # the voxel that was at index (0, 0, 0) sits at world (0, 0, 0): now at index (1, 2, 0)
    np.testing.assert_allclose(affine @ [1, 2, 0, 1], [0, 0, 0, 1])


def test_truncated_gzip_raises_value_error_with_path(tmp_path):
    path = tmp_path / "case.nii.gz"
    save_nifti(path, np.random.default_rng(0).normal(size=(16, 16, 16)), RAS_AFFINE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"case\.nii\.gz"):
        load_nifti(path)


def test_uncompressed_file_named_gz_raises_value_error_with_path(tmp_path):
    save_nifti(tmp_path / "plain.nii", np.zeros((3, 3, 3), np.float32), RAS_AFFINE)
    (tmp_path / "plain.nii").rename(tmp_path / "liar.nii.gz")
    with pytest.raises(ValueError, match=r"liar\.nii\.gz"):
        load_nifti(tmp_path / "liar.nii.gz")


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all"))
    with pytest.raises(ValueError, match=r"junk\.nii\.gz"):
        load_nifti(tmp_path / "junk.nii.gz")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_nifti(tmp_path / "missing.nii.gz")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    def failing_save(image, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nifti.nib, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(tmp_path / "case.nii.gz", np.zeros((3, 3, 3), np.float32), RAS_AFFINE)
    assert list(tmp_path.iterdir()) == []


def test_save_bad_inputs_write_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"array must be 3D.*got shape \(3, 3\)"):
        save_nifti(tmp_path / "a.nii.gz", np.zeros((3, 3)), RAS_AFFINE)
    with pytest.raises(ValueError, match=r"affine must be a 4x4.*\(3, 3\)"):
        save_nifti(tmp_path / "a.nii.gz", np.zeros((3, 3, 3)), np.eye(3))
    with pytest.raises(ValueError, match=r"0\.\.255.*-1"):
        save_nifti(tmp_path / "a.nii.gz", np.full((3, 3, 3), -1), RAS_AFFINE)
    with pytest.raises(ValueError, match=r"\.nii\.gz or \.nii"):
        save_nifti(tmp_path / "a.nrrd", np.zeros((3, 3, 3)), RAS_AFFINE)
    assert list(tmp_path.iterdir()) == []




def _save_with_header_zooms(path, affine, zooms):
    """A hand-made NIfTI whose pixdim says ``zooms`` while its sform says ``affine`` (qform unset)."""
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), affine)
    image.header.set_zooms(zooms)
    image.set_sform(affine, code=1)
    image.set_qform(None, code=0)
    nib.save(image, str(path))


def test_header_spacing_that_disagrees_with_affine_names_file_and_both_spacings(tmp_path):
    # affine: 2 x 3 x 4 mm voxels; header pixdim: 1 x 1 x 1 mm (the case where HD95 came out in the
    # wrong millimetres). Which one is right cannot be told from the file, so it is an error.
    path = tmp_path / "liar.nii.gz"
    _save_with_header_zooms(path, RAS_AFFINE, (1.0, 1.0, 1.0))
    assert nib.load(str(path)).header.get_zooms() == pytest.approx((1.0, 1.0, 1.0))   # it really disagrees
    with pytest.raises(ValueError, match=r"liar\.nii\.gz.*header.*\(1\.0, 1\.0, 1\.0\).*affine.*\(2\.0, 3\.0, 4\.0\)"):
        load_nifti(path)


def test_header_spacing_check_uses_voxel_axes_of_rotated_and_permuted_affines(tmp_path):
    # voxel axis 0 runs along world y in 3 mm steps, axis 1 along -x in 2 mm steps (worked out by
    # hand: the column lengths are 3, 2, 4). A header saying (3, 2, 4) agrees; (2, 3, 4) does not.
    affine = np.array([[0, -2.0, 0, 0], [3.0, 0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]])
    _save_with_header_zooms(tmp_path / "good.nii.gz", affine, (3.0, 2.0, 4.0))
    _, ras_affine, spacing = load_nifti(tmp_path / "good.nii.gz")
    # in RAS the voxel axes are reordered to (x, y, z): spacing (2, 3, 4) mm
    assert spacing == pytest.approx((2.0, 3.0, 4.0))
    np.testing.assert_allclose(np.abs(np.diag(ras_affine))[:3], (2.0, 3.0, 4.0))
    _save_with_header_zooms(tmp_path / "bad.nii.gz", affine, (2.0, 3.0, 4.0))
    with pytest.raises(ValueError, match=r"bad\.nii\.gz.*disagrees"):
        load_nifti(tmp_path / "bad.nii.gz")


def test_header_spacing_within_tolerance_is_accepted(tmp_path):
    # 2.0001 vs 2.0 mm is 0.005 % apart, far below the 0.1 % tolerance (float32 files differ ~1e-7)
    path = tmp_path / "close.nii.gz"
    _save_with_header_zooms(path, RAS_AFFINE, (2.0001, 3.0, 4.0))
    _, _, spacing = load_nifti(path)
    assert spacing == pytest.approx((2.0001, 3.0, 4.0), rel=1e-6)
