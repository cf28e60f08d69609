"""Tests for medseg_edu.demo (the ``medseg-edu demo`` job) in its tiny ``quick`` setting.

The quick run trains for two steps only, so these tests check the plumbing (files, geometry, table),
not the Dice it reaches; the Dice goal of the full demo is measured by hand and quoted in the README.
"""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from medseg_edu.data.io import list_brain_cases, load_brain_case
from medseg_edu.data.nifti import load_nifti
from medseg_edu.demo import run_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One quick demo run, shared by the tests below (its data set is cached in a temporary folder)."""
    data = tmp_path_factory.mktemp("data")
    out = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDSEG_DATA", str(data))
    try:
        result = run_demo(out_dir=out, quick=True, device="cpu", seed=0)
    finally:
        patch.undo()
    return result, out


@pytest.mark.slow
def test_demo_writes_its_files(demo_run):
    result, out = demo_run
    for name in ("metrics.csv", "overlay.png", "history.png", "model.pt"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    predictions = sorted((out / "predictions").glob("*.nii.gz"))
    assert [p.name.replace(".nii.gz", "") for p in predictions] == sorted(result["test_cases"])


@pytest.mark.slow
def test_demo_predictions_keep_the_input_geometry(demo_run):
    result, out = demo_run
    table = list_brain_cases(result["data_root"]).set_index("case_id")
    for case_id in result["test_cases"]:
        pred, affine, spacing = load_nifti(out / "predictions" / f"{case_id}.nii.gz")
        case = load_brain_case(table.loc[case_id, "image_path"], table.loc[case_id, "label_path"])
        assert pred.dtype == np.uint8
        assert pred.shape == case["label"].shape
        np.testing.assert_allclose(affine, case["affine"], atol=1e-5)
        assert set(np.unique(pred)) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_demo_table_has_the_brats_regions(demo_run):
    result, out = demo_run
    table = pd.read_csv(out / "metrics.csv")
    assert {"case_id", "region", "dice", "hd95"} <= set(table.columns)
    assert set(table["region"]) == {"WT", "TC", "ET"}
    assert len(table) == 3 * len(result["test_cases"])
    assert set(result["mean_dice"]) == {"WT", "TC", "ET"}
    assert set(result["timings"]) >= {"data", "train", "evaluate", "total"}
    assert len(result["history"].train_loss) == 1


@pytest.mark.slow
def test_demo_model_checkpoint_loads_back(demo_run):
    """model.pt is in the one checkpoint format: load_checkpoint rebuilds the trained U-Net."""
    from medseg_edu.checkpoint import load_checkpoint, read_checkpoint
    from medseg_edu.models import UNet

    result, out = demo_run
    net = load_checkpoint(out / "model.pt")
    assert isinstance(net, UNet) and not net.training
    assert net.config["features"] == list(result["settings"]["features"]) and net.config["in_channels"] == 4
    assert read_checkpoint(out / "model.pt")["extra"]["seed"] == 0
    with torch.no_grad():
        assert net(torch.zeros(1, 4, 16, 16)).shape == (1, 4, 16, 16)


def test_quick_and_full_exclude_each_other(tmp_path):
    with pytest.raises(ValueError, match="quick and full"):
        run_demo(out_dir=tmp_path, quick=True, full=True)
    with pytest.raises(ValueError, match="epochs must be"):
        run_demo(out_dir=tmp_path, epochs=0)


def test_cli_demo_help():
    done = subprocess.run([sys.executable, "-m", "medseg_edu.cli", "demo", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for option in ("--out", "--full", "--device", "--seed"):
        assert option in done.stdout
