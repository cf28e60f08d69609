"""Tests for medseg_edu.data.io: MSD and ISIC layouts, round trips, geometry/label checks."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers_data import write_tiny_brain_dataset, write_tiny_skin_dataset
from medseg_edu.data.io import (BRAIN_CHANNELS, BRAIN_LABELS, list_brain_cases, list_skin_cases,
                                load_brain_case, load_skin_case, read_dataset_json, save_skin_case,
                                write_msd_dataset_json)
from medseg_edu.data.nifti import load_nifti, save_nifti
from test_nifti import RAS_AFFINE, _flip_axis0, _raw_save   # the NIfTI tests' hand-made geometry


def test_constants():
    assert BRAIN_CHANNELS == ("FLAIR", "T1w", "T1gd", "T2w")
    assert BRAIN_LABELS == {0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"}


def test_4d_image_keeps_channels_and_brain_case_is_channel_first(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(4, 5, 3, 4)).astype(np.float32)  # (x, y, z, c)
    flipped, affine = _flip_axis0(image, RAS_AFFINE)
    _raw_save(tmp_path / "img.nii.gz", flipped, affine)
    array, _, _ = load_nifti(tmp_path / "img.nii.gz")
    assert array.shape == (4, 5, 3, 4)
    case = load_brain_case(tmp_path / "img.nii.gz")
    assert case["image"].shape == (4, 4, 5, 3) and case["image"].dtype == np.float32
    np.testing.assert_allclose(case["image"][2], image[..., 2])
    assert case["label"] is None and case["case_id"] == "img"


def test_save_load_round_trip_keeps_affine_spacing_and_dtype(tmp_path):
    affine = np.array([[0.9, 0, 0, -90.0], [0, 1.1, 0, -126.0], [0, 0, 3.0, -72.0], [0, 0, 0, 1]])
    image = np.random.default_rng(2).normal(size=(6, 5, 4, 4))
    label = np.zeros((6, 5, 4), dtype=np.int64)
    label[1:3, 1:3, 1] = 3
    save_nifti(tmp_path / "img.nii.gz", image, affine)
    save_nifti(tmp_path / "lab.nii.gz", label, affine)
    loaded, loaded_affine, spacing = load_nifti(tmp_path / "img.nii.gz")
    np.testing.assert_allclose(loaded, image.astype(np.float32))
    np.testing.assert_allclose(loaded_affine, affine, atol=1e-5)
    assert spacing == pytest.approx((0.9, 1.1, 3.0))
    assert nib.load(str(tmp_path / "lab.nii.gz")).get_data_dtype() == np.uint8
    case = load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")
    assert case["label"].dtype == np.uint8
    np.testing.assert_array_equal(case["label"], label)
    assert case["spacing_mm"] == pytest.approx((0.9, 1.1, 3.0))


def test_image_label_shape_mismatch_names_both(tmp_path):
    save_nifti(tmp_path / "img.nii.gz", np.zeros((4, 4, 4, 2), np.float32), RAS_AFFINE)
    save_nifti(tmp_path / "lab.nii.gz", np.zeros((4, 4, 5), np.uint8), RAS_AFFINE)
    with pytest.raises(ValueError, match=r"same spatial shape.*\(4, 4, 4\).*img\.nii\.gz.*\(4, 4, 5\).*lab"):
        load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")


def test_image_label_affine_mismatch(tmp_path):
    shifted = RAS_AFFINE.copy()
    shifted[0, 3] += 0.01
    save_nifti(tmp_path / "img.nii.gz", np.zeros((4, 4, 4), np.float32), RAS_AFFINE)
    save_nifti(tmp_path / "lab.nii.gz", np.zeros((4, 4, 4), np.uint8), shifted)
    with pytest.raises(ValueError, match=r"affines differ.*img\.nii\.gz.*lab\.nii\.gz"):
        load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")
    # a difference below the 1e-3 tolerance is accepted
    shifted[0, 3] = RAS_AFFINE[0, 3] + 1e-5
    save_nifti(tmp_path / "lab.nii.gz", np.zeros((4, 4, 4), np.uint8), shifted)
    assert load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")["label"].shape == (4, 4, 4)


def test_non_integer_labels_rejected(tmp_path):
    save_nifti(tmp_path / "img.nii.gz", np.zeros((3, 3, 3), np.float32), RAS_AFFINE)
    _raw_save(tmp_path / "prob.nii.gz", np.full((3, 3, 3), 0.5, np.float32), RAS_AFFINE)
    with pytest.raises(ValueError, match=r"prob\.nii\.gz.*non-integer"):
        load_brain_case(tmp_path / "img.nii.gz", tmp_path / "prob.nii.gz")


def test_labels_outside_declared_set_rejected(tmp_path):
    label = np.zeros((3, 3, 3), np.uint8)
    label[0, 0, 0] = 4  # BraTS 2017 style "4" for enhancing tumour: not in the MSD label set
    save_nifti(tmp_path / "img.nii.gz", np.zeros((3, 3, 3), np.float32), RAS_AFFINE)
    save_nifti(tmp_path / "lab.nii.gz", label, RAS_AFFINE)
    with pytest.raises(ValueError, match=r"lab\.nii\.gz.*expected labels in \[0, 1, 2, 3\].*\[4\]"):
        load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")
    case = load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz", labels=(0, 1, 2, 4))
    assert case["label"][0, 0, 0] == 4


def test_4d_label_rejected(tmp_path):
    save_nifti(tmp_path / "img.nii.gz", np.zeros((3, 3, 3), np.float32), RAS_AFFINE)
    save_nifti(tmp_path / "lab.nii.gz", np.zeros((3, 3, 3, 2), np.uint8), RAS_AFFINE)
    with pytest.raises(ValueError, match=r"expected a 3D label map.*4D"):
        load_brain_case(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")


def test_nan_and_inf_in_image_rejected(tmp_path):
    for bad in (np.nan, np.inf):
        image = np.zeros((3, 3, 3), np.float32)
        image[1, 1, 1] = bad
        _raw_save(tmp_path / "img.nii.gz", image, RAS_AFFINE)
        with pytest.raises(ValueError, match=r"img\.nii\.gz.*1 NaN/Inf"):
            load_brain_case(tmp_path / "img.nii.gz")
        with pytest.raises(ValueError, match="finite"):
            save_nifti(tmp_path / "out.nii.gz", image, RAS_AFFINE)
        assert not (tmp_path / "out.nii.gz").exists()


def test_list_brain_cases_without_participants_ignores_macos_junk(tmp_path):
    write_tiny_brain_dataset(tmp_path, cases=2)
    (tmp_path / "imagesTr" / "._case_000.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / "labelsTr" / "case_001.nii.gz").unlink()
    cases = list_brain_cases(tmp_path)
    assert list(cases.columns[:7]) == ["case_id", "patient_id", "site", "age", "sex", "image_path", "label_path"]
    assert cases["case_id"].tolist() == ["case_000", "case_001"]
    assert cases["patient_id"].tolist() == ["case_000", "case_001"]
    assert cases["site"].tolist() == ["unknown", "unknown"]
    assert cases["age"].isna().all()
    assert cases["label_path"].iloc[0].endswith("labelsTr/case_000.nii.gz")
    assert pd.isna(cases["label_path"].iloc[1])


def test_participants_rows_and_columns_missing_get_the_defaults(tmp_path):
    # one case has no row and the table has no site column: patient_id = case_id, site "unknown"
    write_tiny_brain_dataset(tmp_path, cases=2)
    (tmp_path / "participants.tsv").write_text("case_id\tpatient_id\tscore\ncase_001\tp9\t3\n")
    cases = list_brain_cases(tmp_path)
    assert cases["patient_id"].tolist() == ["case_000", "p9"]
    assert cases["site"].tolist() == ["unknown", "unknown"]
    assert list(cases.columns) == ["case_id", "patient_id", "site", "age", "sex", "image_path", "label_path",
                                   "score"]
    (tmp_path / "participants.tsv").write_text("subject\tsite\ncase_000\tA\n")
    with pytest.raises(ValueError, match=r"participants\.tsv: expected a case_id column, got columns "
                                         r"\['subject', 'site'\]"):
        list_brain_cases(tmp_path)


def test_list_brain_cases_merges_participants(tmp_path):
    write_tiny_brain_dataset(tmp_path, cases=3, patient_ids=["p1", "p1", "p2"], sites=["A", "B", "B"])
    cases = list_brain_cases(tmp_path)
    assert cases["patient_id"].tolist() == ["p1", "p1", "p2"]
    assert cases["site"].tolist() == ["A", "B", "B"]
    assert cases["age"].tolist() == [40, 41, 42]
    case = load_brain_case(cases["image_path"].iloc[0], cases["label_path"].iloc[0])
    assert case["image"].shape == (4, 12, 10, 8)
    assert sorted(np.unique(case["label"]).tolist()) == [0, 1, 2, 3]


def test_list_brain_cases_bad_root(tmp_path):
    with pytest.raises(ValueError, match="imagesTr"):
        list_brain_cases(tmp_path)


def test_dataset_json_matches_msd_keys(tmp_path):
    write_tiny_brain_dataset(tmp_path, cases=2)
    write_msd_dataset_json(tmp_path, name="BrainTumourPhantom", description="phantom", num_training=2)
    raw = json.loads((tmp_path / "dataset.json").read_text())
    assert raw["tensorImageSize"] == "4D"
    assert raw["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert raw["labels"] == {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    assert raw["numTraining"] == 2 and raw["test"] == []
    assert raw["training"][1] == {"image": "./imagesTr/case_001.nii.gz", "label": "./labelsTr/case_001.nii.gz"}
    assert read_dataset_json(tmp_path)["name"] == "BrainTumourPhantom"
    with pytest.raises(ValueError, match=r"num_training must equal.*3 and 2"):
        write_msd_dataset_json(tmp_path, name="x", description="y", num_training=3)


def test_read_dataset_json_errors(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="dataset.json"):
        read_dataset_json(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x", "training": []}))
    with pytest.raises(ValueError, match=r"missing \['modality', 'labels', 'numTraining'\]"):
        read_dataset_json(tmp_path)


# ---------------------------------------------------------------------------------- skin

def test_skin_round_trip_and_listing(tmp_path):
    write_tiny_skin_dataset(tmp_path, cases=3)
    assert (tmp_path / "masks" / "img_000_segmentation.png").is_file()
    cases = list_skin_cases(tmp_path)
    assert cases["case_id"].tolist() == ["img_000", "img_001", "img_002"]
    assert cases["patient_id"].tolist() == ["p0", "p0", "p1"]
    assert cases["fitzpatrick"].tolist() == [1, 2, 3]
    case = load_skin_case(cases["image_path"].iloc[1], cases["mask_path"].iloc[1])
    assert case["image"].shape == (3, 20, 24) and case["image"].dtype == np.float32
    assert case["label"].dtype == np.uint8
    expected = np.zeros((20, 24), np.uint8)
    expected[4:12, 6:15] = 1
    np.testing.assert_array_equal(case["label"], expected)
    # JPEG is lossy: flat colours come back within a few grey levels
    assert abs(case["image"][:, 0, 0].mean() - 0.8) < 0.03
    assert abs(case["image"][:, 8, 10].mean() - 0.2) < 0.03
    from PIL import Image
    assert set(np.unique(np.asarray(Image.open(cases["mask_path"].iloc[1]))).tolist()) == {0, 255}


def test_list_skin_cases_without_metadata(tmp_path):
    save_skin_case(tmp_path, "ISIC_0000000", np.zeros((3, 8, 8), np.float32))
    (tmp_path / "images" / "._ISIC_0000000.jpg").write_bytes(b"junk")
    cases = list_skin_cases(tmp_path)
    assert cases["case_id"].tolist() == ["ISIC_0000000"]
    assert cases["patient_id"].tolist() == ["ISIC_0000000"]
    assert cases["site"].tolist() == ["unknown"]
    assert pd.isna(cases["mask_path"].iloc[0]) and cases["fitzpatrick"].isna().all()


def test_skin_metadata_needs_case_id_and_an_old_image_id_column_says_what_to_do(tmp_path):
    save_skin_case(tmp_path, "ISIC_0000000", np.zeros((3, 8, 8), np.float32))
    assert load_skin_case(tmp_path / "images" / "ISIC_0000000.jpg")["case_id"] == "ISIC_0000000"
    (tmp_path / "metadata.csv").write_text("image_id,patient_id\nISIC_0000000,P1\n")
    with pytest.raises(ValueError, match=r"metadata\.csv: expected a case_id column.*image_id.*older"):
        list_skin_cases(tmp_path)


def test_skin_bad_inputs(tmp_path):
    from PIL import Image
    save_skin_case(tmp_path, "a", np.zeros((3, 8, 8), np.float32))
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "masks" / "grey.png")
    with pytest.raises(ValueError, match=r"grey\.png.*binary.*\[128\]"):
        load_skin_case(tmp_path / "images" / "a.jpg", tmp_path / "masks" / "grey.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "masks" / "small.png")
    with pytest.raises(ValueError, match=r"same size.*\(8, 8\).*\(8, 9\)"):
        load_skin_case(tmp_path / "images" / "a.jpg", tmp_path / "masks" / "small.png")
    data = (tmp_path / "images" / "a.jpg").read_bytes()
    (tmp_path / "images" / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        load_skin_case(tmp_path / "images" / "cut.jpg")
    with pytest.raises(ValueError, match=r"channel-first RGB \(3, H, W\).*\(8, 8, 3\)"):
        save_skin_case(tmp_path, "b", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        save_skin_case(tmp_path, "b", np.full((3, 8, 8), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"label must be binary.*\[2\]"):
        save_skin_case(tmp_path, "b", np.zeros((3, 8, 8), np.float32), np.full((8, 8), 2))
    assert not (tmp_path / "images" / "b.jpg").exists()


def test_msd_like_lps_4d_case_keeps_image_and_label_aligned(tmp_path):
    # Real MSD files: 4D float image and uint8 label, both with an LPS-like affine and a shifted origin.
    affine = np.array([[-1.0, 0, 0, 120.0], [0, -1.0, 0, 120.0], [0, 0, 1.0, -70.0], [0, 0, 0, 1]])
    label = np.zeros((6, 5, 4), np.uint8)
    label[0, 1, 2] = 3
    image = np.zeros((6, 5, 4, 4), np.float32)
    image[0, 1, 2, :] = [10.0, 20.0, 30.0, 40.0]
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    _raw_save(tmp_path / "imagesTr" / "BRATS_001.nii.gz", image, affine)
    _raw_save(tmp_path / "labelsTr" / "BRATS_001.nii.gz", label, affine)
    row = list_brain_cases(tmp_path).iloc[0]
    case = load_brain_case(row["image_path"], row["label_path"])
    # axes 0 and 1 reversed: voxel (0, 1, 2) moves to (5, 3, 2)
    assert np.argwhere(case["label"]).tolist() == [[5, 3, 2]]
    np.testing.assert_array_equal(case["image"][:, 5, 3, 2], [10.0, 20.0, 30.0, 40.0])
    np.testing.assert_allclose(case["affine"] @ [5, 3, 2, 1], affine @ [0, 1, 2, 1])
    assert case["case_id"] == "BRATS_001"
