"""Export to nnU-Net's raw format and reading its predictions back (medseg_edu.data.nnunet, CLI)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medseg_edu import cli
from medseg_edu.data.brain_phantom import write_brain_dataset
from medseg_edu.data.io import list_brain_cases, load_brain_case
from medseg_edu.data.nifti import load_nifti, save_nifti
from medseg_edu.data.nnunet import export_nnunet, nnunet_label_names, read_nnunet_predictions

SMALL = {"shape": (48, 48, 48), "spacing_mm": (4.0, 4.0, 4.0)}


@pytest.fixture(scope="module")
def msd(tmp_path_factory):
    # 6 cases of 3 patients (two scans each) and one held-out case
    return write_brain_dataset(tmp_path_factory.mktemp("msd") / "brain", cases=6, seed=2, cases_per_patient=2,
                               test_cases=1, **SMALL)


def test_label_names_are_region_free_names():
    assert nnunet_label_names({0: "background", 1: "edema", 2: "non-enhancing tumour"}) == {
        "background": 0, "edema": 1, "non_enhancing_tumour": 2}
    with pytest.raises(ValueError, match="0 to 'background'"):
        nnunet_label_names({0: "bg", 1: "tumour"})


def test_export_round_trips_images_labels_and_patient_folds(msd, tmp_path):
    out = export_nnunet(msd, tmp_path, dataset_id=7, name="Brain", n_folds=3)
    assert out.name == "Dataset007_Brain"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR", "1": "T1w", "2": "T1gd", "3": "T2w"}
    assert meta["labels"] == {"background": 0, "edema": 1, "non_enhancing_tumour": 2, "enhancing_tumour": 3}
    assert meta["numTraining"] == 6 and meta["file_ending"] == ".nii.gz"
    table = list_brain_cases(msd)
    first = table.iloc[0]
    case = load_brain_case(first.image_path, first.label_path)
    for c in range(4):
        channel, affine, spacing = load_nifti(out / "imagesTr" / f"{first.case_id}_{c:04d}.nii.gz")
        np.testing.assert_array_equal(channel, case["image"][c])      # float32 written and read back as is
        np.testing.assert_allclose(affine, case["affine"], atol=1e-6)
    label, _, _ = load_nifti(out / "labelsTr" / f"{first.case_id}.nii.gz")
    np.testing.assert_array_equal(label.astype(np.uint8), case["label"])
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [f"BRATS_007_{c:04d}.nii.gz" for c in range(4)]
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 3
    patient = dict(zip(table.case_id, table.patient_id))
    val_cases = [c for fold in splits for c in fold["val"]]
    assert sorted(val_cases) == sorted(table.case_id)                 # each case validated exactly once
    for fold in splits:
        assert not {patient[c] for c in fold["train"]} & {patient[c] for c in fold["val"]}
        assert sorted(fold["train"] + fold["val"]) == sorted(table.case_id)


def test_export_refuses_to_overwrite_and_checks_arguments(msd, tmp_path):
    export_nnunet(msd, tmp_path, dataset_id=3, n_folds=3)
    with pytest.raises(FileExistsError, match="Dataset003_BrainTumourPhantom exists"):
        export_nnunet(msd, tmp_path, dataset_id=3, n_folds=3)
    export_nnunet(msd, tmp_path, dataset_id=3, n_folds=3, overwrite=True)
    with pytest.raises(ValueError, match="dataset_id must be in 1..999"):
        export_nnunet(msd, tmp_path, dataset_id=1000)
    with pytest.raises(ValueError, match="name must be letters"):
        export_nnunet(msd, tmp_path, name="my data")
    with pytest.raises(ValueError, match="at least 4 distinct patients"):
        export_nnunet(msd, tmp_path, dataset_id=4, n_folds=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset003_BrainTumourPhantom"]   # nothing half-written


def test_predictions_are_read_back_in_our_axis_order(msd, tmp_path):
    table = list_brain_cases(msd)
    folder = tmp_path / "predictions"
    expected = {}
    for row in table.head(2).itertuples():
        case = load_brain_case(row.image_path, row.label_path)
        save_nifti(folder / f"{row.case_id}.nii.gz", case["label"], case["affine"])
        probs = np.stack([case["label"] == k for k in range(4)]).astype(np.float32)     # (K, X, Y, Z)
        # nnU-Net saves (K, Z, Y, X), SimpleITK's order
        np.savez_compressed(folder / f"{row.case_id}.npz", probabilities=np.transpose(probs, (0, 3, 2, 1)))
        expected[row.case_id] = (case["label"], probs)
    read = read_nnunet_predictions(folder, probabilities=True)
    assert sorted(read) == sorted(expected)
    for case_id, (label, probs) in expected.items():
        np.testing.assert_array_equal(read[case_id]["label"], label)
        np.testing.assert_array_equal(read[case_id]["probs"], probs)      # 0/1 values: exact
    (folder / f"{table.case_id[0]}.npz").unlink()
    with pytest.raises(FileNotFoundError, match="save_probabilities"):
        read_nnunet_predictions(folder, probabilities=True)
    with pytest.raises(ValueError, match="no .nii.gz predictions"):
        read_nnunet_predictions(tmp_path)                    # no .nii.gz directly in it


def test_cli_export_nnunet(msd, tmp_path, capsys):
    assert cli.main(["export-nnunet", str(msd), "--out", str(tmp_path), "--dataset-id", "12", "--folds", "3"]) == 0
    assert (tmp_path / "Dataset012_BrainTumourPhantom" / "splits_final.json").is_file()
    assert "nnUNetv2_plan_and_preprocess -d 12" in capsys.readouterr().out
    assert cli.main(["export-nnunet", str(msd), "--out", str(tmp_path), "--dataset-id", "12", "--folds", "3"]) == 2
    assert "exists" in capsys.readouterr().err
