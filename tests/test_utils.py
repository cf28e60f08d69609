"""medseg_edu.utils: fast mode, quiet progress bars, atomic writes, cache folder."""
import pytest

from medseg_edu import utils


def test_fast_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MEDSEG_FAST", "1")
    assert utils.fast_mode()
    monkeypatch.setenv("MEDSEG_FAST", "0")
    assert not utils.fast_mode()
    monkeypatch.delenv("MEDSEG_FAST")
    assert not utils.fast_mode()


def test_run_mode_follows_fast_explicit_and_cuda(monkeypatch):
    import torch

    monkeypatch.delenv("MEDSEG_MODE", raising=False)
    monkeypatch.setenv("MEDSEG_FAST", "1")
    assert utils.run_mode() == "fast"
    monkeypatch.setenv("MEDSEG_FAST", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert utils.run_mode() == "default"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.run_mode() == "gpu"
    monkeypatch.setenv("MEDSEG_FAST", "1")
    monkeypatch.setenv("MEDSEG_MODE", "default")          # the explicit setting wins over both
    assert utils.run_mode() == "default"
    monkeypatch.setenv("MEDSEG_MODE", "turbo")
    with pytest.raises(ValueError, match="MEDSEG_MODE must be one of fast, default, gpu, got 'turbo'"):
        utils.run_mode()


def test_course_seed_reads_an_integer(monkeypatch):
    monkeypatch.delenv("MEDSEG_SEED", raising=False)
    assert utils.course_seed() == 0
    monkeypatch.setenv("MEDSEG_SEED", " 2 ")
    assert utils.course_seed() == 2
    for bad in ("one", "1.5", "-1"):
        monkeypatch.setenv("MEDSEG_SEED", bad)
        with pytest.raises(ValueError, match=f"MEDSEG_SEED must be a non-negative integer, got '{bad}'"):
            utils.course_seed()


def test_progress_is_quiet_in_ci_and_yields_everything(monkeypatch, capsys):
    monkeypatch.setenv("MEDSEG_QUIET", "1")
    assert list(utils.progress(range(5), desc="x")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "case.nii.gz"
    with utils.atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == target.parent
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in target.parent.iterdir()) == ["case.nii.gz"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "case.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with utils.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["case.png"]


def test_cache_dir_follows_medseg_data(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path / "cache"))
    folder = utils.cache_dir("builtin", "brain")
    assert folder == tmp_path / "cache" / "builtin" / "brain" and folder.is_dir()


def test_written_files_and_staging_folders_get_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o027)                  # a group-readable umask: 0750 folders, 0640 files
    try:
        with utils.atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
        folder = utils.staging_dir(tmp_path / "data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o640     # not mkstemp's 0600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750                     # not mkdtemp's 0700
    assert folder.parent == tmp_path and folder.name.startswith(".data.") and folder.name.endswith(".part")
    assert utils.staging_dir(tmp_path / "data") != folder                   # unique names
