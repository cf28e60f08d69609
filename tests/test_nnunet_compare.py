"""medseg_edu.planning against nnunetv2 itself: the same phantom data, the same plans.

Runs only where the optional extra is installed (``pip install -e ".[nnunet]"``), and skips cleanly
elsewhere. nnunetv2 runs in a separate process (tests/nnunet_plan_script.py) on the data set that
``export_nnunet`` writes, so the export is checked by nnunetv2's ``verify_dataset_integrity`` too.
nnU-Net reads NIfTI with SimpleITK (axes reversed: z, y, x) and then puts the coarsest axis first
(``transpose_forward``); the plans are mapped back to our x, y, z order before comparing. Each test
takes about 30 s on 2 cores (mostly nnunetv2's imports and its fingerprint pool).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg_edu.data.brain_phantom import write_brain_dataset
from medseg_edu.data.io import BRAIN_CHANNELS, list_brain_cases, load_brain_case
from medseg_edu.data.nnunet import export_nnunet, read_nnunet_predictions
from medseg_edu.planning import dataset_fingerprint, plan_experiment

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                                reason="nnunetv2 not installed (optional extra [nnunet])")

SCRIPT = Path(__file__).with_name("nnunet_plan_script.py")
SCHEMES = {"ZScoreNormalization": "zscore", "CTNormalization": "ct"}


def _run_nnunet(tmp_path: Path, msd: Path, convert: bool = False) -> dict:
    raw = tmp_path / "nnUNet_raw"
    export_nnunet(msd, raw, dataset_id=1, n_folds=4)
    command = [sys.executable, str(SCRIPT), str(raw), str(tmp_path / "nnUNet_preprocessed"), "1",
               str(tmp_path / "predictions")]
    if convert:
        command.append(str(msd))
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(lines[0][len("RESULT "):])


def _ours(msd: Path) -> dict:
    table = list_brain_cases(msd)
    cases = (load_brain_case(row.image_path, row.label_path) for row in table.itertuples())
    fingerprint = dataset_fingerprint(cases, channel_names=BRAIN_CHANNELS)
    return {"fingerprint": fingerprint, "plan": plan_experiment(fingerprint, num_classes=4)}


def _to_our_axes(values, transpose_forward, working_axes):
    """nnU-Net's working axis i is its raw axis transpose_forward[i], which is our axis 2 - that."""
    ours = {2 - transpose_forward[i]: v for i, v in zip(working_axes, values)}
    return [ours[a] for a in sorted(ours)]


def _compare(nnunet: dict, ours: dict) -> None:
    plans, plan = nnunet["plans"], ours["plan"]
    tf = plans["transpose_forward"]
    configurations = plans["configurations"]
    full = configurations["3d_fullres"]
    np.testing.assert_allclose(plan["target_spacing_mm"], _to_our_axes(full["spacing"], tf, range(3)),
                               rtol=1e-9)   # both are percentiles of the same header spacings
    assert plan["3d_fullres"]["patch_size"] == _to_our_axes(full["patch_size"], tf, range(3))
    assert plan["3d_fullres"]["batch_size"] == full["batch_size"]
    strides = np.array(full["architecture"]["arch_kwargs"]["strides"])
    assert plan["3d_fullres"]["pools_per_axis"] == _to_our_axes((strides == 2).sum(axis=0).tolist(), tf, range(3))
    assert plan["3d_fullres"]["n_stages"] == full["architecture"]["arch_kwargs"]["n_stages"]
    flat = configurations["2d"]
    assert plan["slice_axis"] == 2 - tf[0]
    assert plan["2d"]["patch_size"] == _to_our_axes(flat["patch_size"], tf, (1, 2))
    assert plan["2d"]["batch_size"] == flat["batch_size"]
    flat_strides = np.array(flat["architecture"]["arch_kwargs"]["strides"])
    assert plan["2d"]["pools_per_axis"] == _to_our_axes((flat_strides == 2).sum(axis=0).tolist(), tf, (1, 2))
    assert plan["normalisation"] == [SCHEMES[s] for s in full["normalization_schemes"]]
    assert plan["use_mask_for_norm"] == full["use_mask_for_norm"]
    assert plan["lowres_advised"] is ("3d_lowres" in configurations)
    # a ratio of integer voxel counts on both sides
    assert abs(ours["fingerprint"]["median_relative_size_after_crop"]
               - nnunet["median_relative_size_after_cropping"]) < 1e-9
    # nnU-Net samples foreground voxels with its own generator: the statistics agree within sampling
    # error (std ~130 over >= 1e5 samples: standard error ~0.5; 1% of ~750 is 7.5)
    for c, stats in enumerate(ours["fingerprint"]["intensity"]):
        reference = plans["foreground_intensity_properties_per_channel"][str(c)]
        assert abs(stats["mean"] - reference["mean"]) < 0.01 * abs(reference["mean"])
        assert abs(stats["std"] - reference["std"]) < 0.03 * reference["std"]


def test_plans_match_nnunetv2_on_the_brain_phantom(tmp_path):
    # MSD's converter wants the folder named TaskXX_Name and an imagesTs/ folder
    msd = write_brain_dataset(tmp_path / "Task01_BrainTumourPhantom", cases=4, seed=0, test_cases=1)
    nnunet = _run_nnunet(tmp_path, msd, convert=True)
    _compare(nnunet, _ours(msd))
    assert nnunet["converted_imagesTs"] == [f"BRATS_005_{c:04d}.nii.gz" for c in range(4)]
    # a label written by nnU-Net's own writer reads back as our label map, axes and all
    predictions = read_nnunet_predictions(tmp_path / "predictions", probabilities=True)
    label = load_brain_case(msd / "imagesTr" / "BRATS_001.nii.gz", msd / "labelsTr" / "BRATS_001.nii.gz")["label"]
    assert list(predictions) == ["BRATS_001"]
    np.testing.assert_array_equal(predictions["BRATS_001"]["label"], label)
    np.testing.assert_array_equal(predictions["BRATS_001"]["probs"].argmax(axis=0), label)


def test_plans_match_nnunetv2_on_an_anisotropic_phantom(tmp_path):
    # four cases with 5 mm slices and one with 3 mm: the 10th-percentile rule gives 3.8 mm
    msd = tmp_path / "aniso"
    for k, (cases, shape, spacing) in enumerate([(4, (176, 208, 40), (1.0, 1.0, 5.0)),
                                                 (1, (176, 208, 64), (1.0, 1.0, 3.0))]):
        part = write_brain_dataset(tmp_path / f"part{k}", cases=cases, seed=k, shape=shape, spacing_mm=spacing,
                                   test_cases=0)
        for sub in ("imagesTr", "labelsTr"):
            (msd / sub).mkdir(parents=True, exist_ok=True)
            for path in (part / sub).glob("*.nii.gz"):
                shutil.copy(path, msd / sub / path.name.replace("BRATS_", f"BRATS_{k}"))
    ours = _ours(msd)
    assert ours["plan"]["target_spacing_mm"] == pytest.approx([1.0, 1.0, 3.8], abs=1e-9)
    _compare(_run_nnunet(tmp_path, msd), ours)
