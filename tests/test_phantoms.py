"""Tests of the brain-tumour MRI phantom (medseg_edu.data.brain_phantom) and the phantoms facade.

Expected values come from the physics the phantom promises (relative MR contrast per sequence,
nesting of the BraTS sub-regions) and from independent code (scipy's affine_transform for the
misalignment, sha256 of the written files for determinism), never from the generator itself.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from medseg_edu.data import brain_phantom, phantoms
from medseg_edu.data.brain_phantom import make_brain_case, write_brain_dataset

SMALL = {"shape": (48, 48, 48), "spacing_mm": (4.0, 4.0, 4.0)}
MEDIUM = {"shape": (80, 80, 80), "spacing_mm": (2.8, 2.8, 2.8)}
FLAIR, T1, T1GD, T2 = 0, 1, 2, 3
CSF, GM, WM = 1, 2, 3


@pytest.fixture(scope="module")
def high_grade():
    return make_brain_case(seed=2, grade="high", age=30, **MEDIUM)     # a large tumour: all labels


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_case_shapes_types_and_geometry(high_grade):
    case = high_grade
    assert case["image"].shape == (4, 80, 80, 80) and case["image"].dtype == np.float32
    assert case["label"].shape == (80, 80, 80) and case["label"].dtype == np.uint8
    assert set(np.unique(case["label"])) == {0, 1, 2, 3}
    np.testing.assert_allclose(np.diag(case["affine"]), [2.8, 2.8, 2.8, 1.0])   # RAS, diagonal
    assert case["spacing_mm"] == (2.8, 2.8, 2.8)
    assert np.isfinite(case["image"]).all() and case["image"].min() >= 0
    # skull-stripped: exactly 0 outside the brain, which sits inside the field of view
    brain = case["image"][T1] > 0
    assert brain[0].sum() == brain[-1].sum() == brain[:, 0].sum() == brain[:, -1].sum() == 0
    volume_ml = brain.sum() * 2.8 ** 3 / 1000
    assert 1000 < volume_ml < 2200        # an adult brain with its CSF
    assert 100 < np.median(case["image"][T1][brain]) < 2000          # MR-like intensity range
    assert case["attributes"]["grade"] == "high" and case["attributes"]["age"] == 30


def test_low_grade_has_no_enhancing_tumour():
    case = make_brain_case(seed=4, grade="low", **SMALL)
    assert 3 not in np.unique(case["label"])
    assert {1, 2} <= set(np.unique(case["label"]))


def test_sub_regions_are_nested(high_grade):
    label = high_grade["label"]
    core = np.isin(label, (2, 3))
    whole = label > 0
    necrosis = label == 2
    brain = high_grade["tissue"] > 0
    assert np.all(brain[whole])                                      # tumour only inside the brain
    # the core is wrapped in edema: no core voxel touches healthy brain tissue
    assert np.all(whole[ndi.binary_dilation(core) & brain])
    # necrosis is wrapped in the enhancing rim (high grade)
    assert np.all(core[ndi.binary_dilation(necrosis) & brain])
    # one main tumour, not scattered specks (a small satellite is allowed, as in real gliomas)
    components, count = ndi.label(core)
    sizes = np.bincount(components.ravel())[1:]
    assert sizes.max() >= 0.9 * sizes.sum()


def test_relative_contrast_matches_real_sequences(high_grade):
    image, label, tissue = high_grade["image"], high_grade["label"], high_grade["tissue"]
    healthy = label == 0

    def mean(channel, region):
        return float(image[channel][region].mean())

    wm, gm, csf = healthy & (tissue == WM), healthy & (tissue == GM), healthy & (tissue == CSF)
    edema, necrosis, enhancing = label == 1, label == 2, label == 3
    assert mean(T1, wm) > mean(T1, gm) > mean(T1, csf)               # T1w: WM > GM > CSF
    assert mean(T1, enhancing | necrosis) < mean(T1, wm)             # tumour hypointense on T1w
    assert mean(T1GD, enhancing) > 1.3 * mean(T1GD, wm)              # T1gd: bright rim
    assert mean(T1GD, necrosis) < mean(T1GD, gm)                     # ... dark necrosis
    assert mean(T2, csf) > 2 * mean(T2, wm) and mean(T2, gm) > mean(T2, wm)   # T2: CSF bright, WM < GM
    assert mean(T2, edema) > 1.5 * mean(T2, wm)
    assert mean(FLAIR, edema) > 1.5 * mean(FLAIR, wm)                # FLAIR: edema bright
    assert mean(FLAIR, csf) < mean(FLAIR, wm) < mean(FLAIR, gm)      # CSF suppressed, GM > WM


def _relative_noise(case) -> float:
    """Noise sigma / signal in white matter, from differences of x-neighbours (independent of contrast)."""
    t1, tissue, label = case["image"][T1], case["tissue"], case["label"]
    wm = ndi.binary_erosion((tissue == WM) & (label == 0), iterations=1)
    both = wm[1:] & wm[:-1]
    diff = (t1[1:] - t1[:-1])[both]
    return float(np.std(diff) / np.sqrt(2) / np.median(t1[wm]))


def test_site_b_is_noisier_and_scaled_differently():
    a = make_brain_case(seed=5, site="A", **MEDIUM)
    b = make_brain_case(seed=5, site="B", **MEDIUM)
    assert _relative_noise(b) > 1.5 * _relative_noise(a)
    ratio = np.median(b["image"][T1][b["image"][T1] > 0]) / np.median(a["image"][T1][a["image"][T1] > 0])
    assert not 0.8 < ratio < 1.25                                    # arbitrary MR units differ by scanner


def test_age_enlarges_csf_and_keeps_the_tumour_in_place():
    young = make_brain_case(seed=6, age=22, **SMALL)
    old = make_brain_case(seed=6, age=85, **SMALL)
    assert (old["tissue"] == CSF).sum() > 1.2 * (young["tissue"] == CSF).sum()
    # white-matter hyperintensities of the old brain: FLAIR-bright voxels in healthy white matter
    def bright_wm(case):
        wm = (case["tissue"] == WM) & (case["label"] == 0)
        flair = case["image"][FLAIR]
        return float(np.mean(flair[wm] > 1.4 * np.median(flair[wm])))
    assert bright_wm(old) > bright_wm(young)
    # same anatomical place; it moves a little in the scanner because the ageing brain is warped
    shift = np.subtract(young["attributes"]["tumour_center_mm"], old["attributes"]["tumour_center_mm"])
    assert np.linalg.norm(shift) < 6.0


def test_channel_order_matches_io():
    from medseg_edu.data.io import BRAIN_CHANNELS

    assert brain_phantom.CHANNELS == tuple(BRAIN_CHANNELS)


def test_builtin_skin_generates_once(tmp_path, monkeypatch):
    pytest.importorskip("medseg_edu.data.skin_phantom")
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path))
    first = phantoms.builtin_skin(cases=2, size=64)
    stamp = (first / "complete").stat().st_mtime_ns
    assert phantoms.builtin_skin(cases=2, size=64) == first
    assert (first / "complete").stat().st_mtime_ns == stamp


def test_recorded_misalignment_maps_reference_to_moving():
    aligned = make_brain_case(seed=7, **MEDIUM)
    moved = make_brain_case(seed=7, misalign=(8.0, 6.0), **MEDIUM)
    np.testing.assert_array_equal(aligned["label"], moved["label"])   # labels stay in the T1w frame
    np.testing.assert_allclose(moved["transforms"]["T1w"]["matrix"], np.eye(4))
    affine = moved["affine"]
    for channel, name in ((FLAIR, "FLAIR"), (T2, "T2w")):
        t = moved["transforms"][name]
        assert np.abs(t["rotation_deg"]).max() <= 8 and np.abs(t["translation_mm"]).max() <= 6
        # independent check of the documented form: R about center_mm, then the translation
        ax, ay, az = np.deg2rad(t["rotation_deg"])
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        p = np.array([10.0, -20.0, 30.0])
        expected = rz @ ry @ rx @ (p - t["center_mm"]) + t["center_mm"] + t["translation_mm"]
        np.testing.assert_allclose((t["matrix"] @ np.append(p, 1))[:3], expected, atol=1e-9)
        # resample the moving channel at matrix @ p for every reference voxel p (scipy, not the phantom)
        v2v = np.linalg.inv(affine) @ t["matrix"] @ affine
        back = ndi.affine_transform(moved["image"][channel], v2v[:3, :3], offset=v2v[:3, 3], order=1)
        reference = aligned["image"][channel]
        before, after = _ncc(moved["image"][channel], reference), _ncc(back, reference)
        assert after > 0.95 and after > before + 0.05


def test_follow_up_scans_share_the_patient(tmp_path):
    root = write_brain_dataset(tmp_path / "fu", cases=3, seed=1, cases_per_patient=2, site=["A", "C"], **SMALL)
    rows = [line.split("\t") for line in (root / "participants.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert header[:5] == ["case_id", "patient_id", "site", "age", "sex"]
    assert [r[0] for r in rows] == ["BRATS_001", "BRATS_002", "BRATS_003"]
    assert [r[1] for r in rows] == ["P001", "P001", "P002"]
    assert rows[0][3:5] == rows[1][3:5]                               # same age and sex
    assert [r[2] for r in rows] == ["A", "A", "C"]                    # patients take the sites in turn
    labels = [np.asarray(nib.load(root / "labelsTr" / f"{r[0]}.nii.gz").dataobj) for r in rows[:2]]
    assert (labels[1] > 0).sum() > (labels[0] > 0).sum()             # the tumour grew


def test_written_dataset_layout_and_bytes_are_deterministic(tmp_path):
    kwargs = dict(cases=2, seed=11, misalign=(3.0, 2.0), **SMALL)
    first = write_brain_dataset(tmp_path / "a", **kwargs)
    second = write_brain_dataset(tmp_path / "b", **kwargs)
    other = write_brain_dataset(tmp_path / "c", **{**kwargs, "cases": 1, "seed": 12})
    assert _hashes(first) == _hashes(second)
    assert _hashes(first)["imagesTr/BRATS_001.nii.gz"] != _hashes(other)["imagesTr/BRATS_001.nii.gz"]
    meta = json.loads((first / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["modality"]["0"] == "FLAIR"
    image = nib.load(first / "imagesTr" / "BRATS_001.nii.gz")
    label = nib.load(first / "labelsTr" / "BRATS_001.nii.gz")
    assert image.shape == (48, 48, 48, 4) and image.get_data_dtype() == np.float32
    assert label.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
    np.testing.assert_allclose(image.header.get_zooms()[:3], (4.0, 4.0, 4.0))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    sidecar = json.loads((first / "transforms" / "BRATS_001.json").read_text())
    assert sidecar["reference"] == "T1w" and len(sidecar["channels"]["FLAIR"]["matrix"]) == 4


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = brain_phantom.make_brain_case

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(**kwargs)

    monkeypatch.setattr(brain_phantom, "make_brain_case", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_brain_dataset(tmp_path / "out", cases=3, seed=0, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_builtin_brain_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path))
    calls = []
    real = phantoms.write_brain_dataset

    @functools.wraps(real)      # keeps the signature that builtin_brain reads its defaults from
    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(phantoms, "write_brain_dataset", counting)
    first = phantoms.builtin_brain(cases=1, **SMALL)
    stamp = (first / "imagesTr" / "BRATS_001.nii.gz").stat().st_mtime_ns
    second = phantoms.builtin_brain(cases=1, **SMALL)
    assert first == second and (first / "complete").is_file() and len(calls) == 1
    assert (second / "imagesTr" / "BRATS_001.nii.gz").stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "builtin"
    assert [p.name for p in first.parent.iterdir()] == [first.name]      # no temporary folders left
    other = phantoms.builtin_brain(cases=1, seed=1, **SMALL)
    assert other != first and len(calls) == 2


def test_cache_key_changes_with_any_argument_or_source_and_only_then():
    args = {"cases": 4, "seed": 0, "shape": [48, 48, 48]}
    key = phantoms._cache_key("brain", args, "a" * 64)
    assert phantoms._cache_key("brain", dict(args), "a" * 64) == key              # same in, same key
    assert phantoms._cache_key("brain", {**args, "seed": 1}, "a" * 64) != key     # a parameter
    assert phantoms._cache_key("brain", {**args, "shape": [48, 48, 49]}, "a" * 64) != key
    assert phantoms._cache_key("brain", args, "b" * 64) != key                     # the generator's source
    assert phantoms._cache_key("skin", args, "a" * 64) != key


def _write_fake_generator(root: Path, deep_body: str) -> None:
    """A package whose writer reaches three modules: one by a function-local import, one relatively."""
    package = root / "fakegen"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "writer.py").write_text("def write(out_dir):\n    from fakegen import helpers\n"
                                       "    return helpers.h(out_dir)\n")
    (package / "helpers.py").write_text("import numpy\nfrom .deep import CONSTANT\n\n"
                                        "def h(out_dir):\n    return CONSTANT\n")
    (package / "deep.py").write_text(deep_body)
    (package / "unused.py").write_text("VALUE = 1\n")


def test_generator_modules_follow_local_and_relative_imports_and_the_digest_sees_each_file(tmp_path,
                                                                                           monkeypatch):
    import importlib
    import sys

    _write_fake_generator(tmp_path, "CONSTANT = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fakegen", raising=False)
    writer = importlib.import_module("fakegen.writer").write
    modules = phantoms._generator_modules(writer, package="fakegen")
    assert list(modules) == ["fakegen.deep", "fakegen.helpers", "fakegen.writer"]   # not unused, not numpy
    first = phantoms._source_digest(writer, "fakegen")
    assert phantoms._source_digest(writer, "fakegen") == first                  # same files, same digest
    (tmp_path / "fakegen" / "unused.py").write_text("VALUE = 2\n")            # not used by the writer
    assert phantoms._source_digest(writer, "fakegen") == first
    (tmp_path / "fakegen" / "deep.py").write_text("CONSTANT = 2\n")           # used, two imports away
    assert phantoms._source_digest(writer, "fakegen") != first


def test_brain_cache_digest_covers_the_generator_and_its_writers():
    modules = phantoms._generator_modules(phantoms.write_brain_dataset)
    assert phantoms.write_brain_dataset.__module__ in modules
    assert {"medseg_edu.data.nifti", "medseg_edu.data.io"} <= set(modules)      # they write the files
    assert "medseg_edu" not in modules and "medseg_edu.data.phantoms" not in modules
    assert phantoms._source_digest(phantoms.write_brain_dataset) == \
        phantoms._source_digest(phantoms.write_brain_dataset)


def test_builtin_brain_regenerates_when_the_generator_source_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path))
    monkeypatch.setattr(phantoms, "_source_digest", lambda writer: "0" * 64)
    first = phantoms.builtin_brain(cases=1, **SMALL)
    assert phantoms.builtin_brain(cases=1, **SMALL) == first
    monkeypatch.setattr(phantoms, "_source_digest", lambda writer: "1" * 64)   # an edited generator
    second = phantoms.builtin_brain(cases=1, **SMALL)
    assert second != first and (second / "complete").is_file()
    assert '"source_sha256": "' + "1" * 64 in (second / "complete").read_text()
    assert not first.exists()                          # the older generator's copy is never used again
    other_seed = phantoms.builtin_brain(cases=1, seed=5, **SMALL)
    assert second.exists() and other_seed != second    # other arguments: both kept


def test_both_phantoms_follow_the_package_conventions(tmp_path):
    """case_id names every sample, sex is F/M, folders and files get the permissions of mkdir/open."""
    import csv
    import stat

    pytest.importorskip("medseg_edu.data.skin_phantom")
    brain = write_brain_dataset(tmp_path / "brain", cases=2, seed=0, **SMALL)
    skin = phantoms.write_skin_dataset(tmp_path / "skin", cases=2, seed=0, size=64)
    participants = list(csv.DictReader((brain / "participants.tsv").open(), delimiter="\t"))
    metadata = list(csv.DictReader((skin / "metadata.csv").open()))
    for rows in (participants, metadata):
        assert list(rows[0])[:2] == ["case_id", "patient_id"]
        assert {r["sex"] for r in rows} <= {"F", "M"}
    (tmp_path / "plain").mkdir()                       # the reference: whatever this user's umask gives
    (tmp_path / "plain.txt").write_text("x")
    folder_mode, file_mode = (stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("plain", "plain.txt"))
    for root in (brain, skin):
        for path in [root, *root.rglob("*")]:
            want = folder_mode if path.is_dir() else file_mode
            assert stat.S_IMODE(path.stat().st_mode) == want, f"{path}: {oct(path.stat().st_mode)}"


def test_facade_exports_both_site_tables():
    assert set(phantoms.SITES["brain"]) == {"A", "B", "C"}
    assert phantoms.BRAIN_SITES is brain_phantom.SITES


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape=(16, 48, 48)), "shape"),
    (dict(shape=(48, 48)), "shape"),
    (dict(shape=(48, 48, 48), spacing_mm=(1.0, 1.0, 1.0)), "field of view"),
    (dict(spacing_mm=(0.0, 1.5, 1.5)), "spacing_mm"),
    (dict(site="Z"), "site"),
    (dict(misalign=(5.0,)), "misalign"),
    (dict(misalign=(-1.0, 2.0)), "misalign"),
    (dict(grade="medium"), "grade"),
    (dict(sex="X"), "sex"),
    (dict(age=-3), "age"),
])
def test_bad_case_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_brain_case(seed=0, **{**SMALL, **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    (dict(cases=0), "cases"),
    (dict(cases=1, cases_per_patient=0), "cases_per_patient"),
    (dict(cases=1, site="Q"), "site"),
    (dict(cases=1, site=[]), "site"),
    (dict(cases=1, shape=(8, 8, 8)), "shape"),
    (dict(cases=1, age_range=(50, 20)), "age_range"),
])
def test_bad_dataset_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_brain_dataset(tmp_path / "x", seed=0, **kwargs)
    assert not (tmp_path / "x").exists()


def test_a_fractional_number_of_cases_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="cases must be an int >= 1, got float 2.5"):
        write_brain_dataset(tmp_path / "x", seed=0, cases=2.5)
    assert not (tmp_path / "x").exists()


def test_existing_folder_is_not_overwritten_by_accident(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_brain_dataset(tmp_path / "x", cases=1, seed=0, **SMALL)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_held_out_cases_go_to_imagesTs_and_leave_the_training_cases_unchanged(tmp_path):
    kwargs = dict(cases=2, seed=3, **SMALL)
    without = write_brain_dataset(tmp_path / "none", test_cases=0, **kwargs)
    with_test = write_brain_dataset(tmp_path / "two", test_cases=2, **kwargs)
    hashes_without, hashes_with = _hashes(without), _hashes(with_test)
    training = {k: v for k, v in hashes_without.items() if k.startswith(("imagesTr/", "labelsTr/", "transforms/"))}
    assert training and all(hashes_with[k] == v for k, v in training.items())   # bytes of training cases
    assert hashes_with["participants.tsv"] == hashes_without["participants.tsv"]
    assert sorted(k for k in hashes_with if k.startswith("imagesTs/")) == ["imagesTs/BRATS_003.nii.gz",
                                                                          "imagesTs/BRATS_004.nii.gz"]
    assert not (with_test / "labelsTs").exists()
    assert (without / "imagesTs").is_dir() and not any((without / "imagesTs").iterdir())   # MSD needs the folder
    meta = json.loads((with_test / "dataset.json").read_text())
    assert meta["numTest"] == 2 and meta["test"] == ["./imagesTs/BRATS_003.nii.gz", "./imagesTs/BRATS_004.nii.gz"]
    assert meta["numTraining"] == 2
    held_out = nib.load(with_test / "imagesTs" / "BRATS_003.nii.gz")
    assert held_out.shape == (48, 48, 48, 4)
    with pytest.raises(TypeError, match="test_cases"):
        write_brain_dataset(tmp_path / "bad", test_cases=1.5, **kwargs)
