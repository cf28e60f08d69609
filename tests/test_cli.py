"""The medseg-edu command: argument parsing, phantom writing, clear errors."""
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medseg_edu import cli


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "phantom", "fetch", "export-nnunet", "release", "grade"):
        assert command in out


def test_phantom_brain_writes_an_msd_data_set_with_preview(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_QUIET", "1")
    out = tmp_path / "b"
    code = cli.main(["phantom", "brain", "--out", str(out), "--cases", "2", "--seed", "3",
                     "--shape", "48,56,40", "--spacing", "4,4,4", "--test-cases", "1", "--preview"])
    assert code == 0
    assert [p.name for p in (out / "imagesTs").iterdir()] == ["BRATS_003.nii.gz"]
    images = sorted((out / "imagesTr").glob("*.nii.gz"))
    labels = sorted((out / "labelsTr").glob("*.nii.gz"))
    assert len(images) == 2 and len(labels) == 2
    image = nib.load(images[0])
    assert image.shape == (48, 56, 40, 4)
    assert np.allclose(image.header.get_zooms()[:3], (4, 4, 4))
    assert set(np.unique(np.asarray(nib.load(labels[0]).dataobj))) <= {0, 1, 2, 3}
    assert (out / "participants.tsv").exists() and (out / "dataset.json").exists()
    assert (out / "preview.png").stat().st_size > 1000


def test_phantom_skin_writes_isic_layout(tmp_path):
    out = tmp_path / "s"
    assert cli.main(["phantom", "skin", "--out", str(out), "--cases", "3", "--shape", "64"]) == 0
    assert len(list((out / "images").glob("*.jpg"))) == 3
    assert len(list((out / "masks").glob("*_segmentation.png"))) == 3


def test_bad_arguments_give_one_clear_line(tmp_path, capsys):
    code = cli.main(["phantom", "brain", "--out", str(tmp_path / "x"), "--cases", "1", "--site", "Z"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("medseg-edu phantom: error:") and "site" in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    with pytest.raises(SystemExit):
        cli.main(["phantom", "brain", "--out", str(tmp_path / "y"), "--cases", "0"])


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "medseg_edu.cli", "phantom", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--cases" in result.stdout
