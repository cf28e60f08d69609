"""Tests of data_fetch.extract.safe_extract: dangerous archive members are refused, nothing is left.

Each archive is built here with tarfile/zipfile, one danger at a time.
"""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_fetch import UnsafeArchiveError, safe_extract
from data_fetch.extract import check_member_name


def write_tar(path: Path, members) -> Path:
    """members: list of (TarInfo, bytes or None)."""
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link_info(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def assert_nothing_left(tmp_path: Path, target: Path) -> None:
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".extracting")] == []
    assert not list(tmp_path.rglob("evil*"))


def test_ordinary_tar_is_extracted_and_macos_junk_skipped(tmp_path):
    archive = write_tar(tmp_path / "ok.tar", [
        (file_info("Task/imagesTr/a.nii.gz"), b"aaaa"),
        (file_info("Task/imagesTr/._a.nii.gz"), b"junk"),
        (file_info("__MACOSX/Task/x"), b"junk"),
        (link_info("Task/link_inside", "imagesTr/a.nii.gz"), None),
    ])
    target = safe_extract(archive, tmp_path / "out")
    assert (target / "Task" / "imagesTr" / "a.nii.gz").read_bytes() == b"aaaa"
    assert not (target / "Task" / "imagesTr" / "._a.nii.gz").exists()
    assert not (target / "__MACOSX").exists()
    assert (target / "Task" / "link_inside").read_bytes() == b"aaaa"   # a link that stays inside


@pytest.mark.parametrize("members, match", [
    ([(file_info("../evil.txt"), b"x")], r"contains '\.\.'"),
    ([(file_info("Task/../../evil.txt"), b"x")], r"contains '\.\.'"),
    ([(file_info("/tmp/evil.txt"), b"x")], "absolute path"),
    ([(link_info("Task/evil_link", "../../outside"), None)], "leaves the target folder"),
    ([(link_info("Task/evil_abs", "/etc/passwd"), None)], "absolute path"),
    ([(link_info("Task/evil_hard", "../outside", hard=True), None)], "leaves the target folder"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-escape", "symlink-absolute", "hardlink-escape"])
def test_dangerous_tar_members_are_refused(tmp_path, members, match):
    # a harmless member first: proves that nothing at all is written when a later one is bad
    archive = write_tar(tmp_path / "bad.tar", [(file_info("Task/ok.txt"), b"ok")] + members)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, target)
    assert_nothing_left(tmp_path, target)


def test_device_file_in_tar_is_refused(tmp_path):
    info = tarfile.TarInfo("Task/evil_device")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    archive = write_tar(tmp_path / "dev.tar", [(info, None)])
    with pytest.raises(UnsafeArchiveError, match="device file"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_gzipped_tar_is_accepted(tmp_path):
    path = tmp_path / "ok.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = file_info("a/b.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    assert (safe_extract(path, tmp_path / "out") / "a" / "b.txt").read_text() == "hi"


def test_ordinary_zip_is_extracted(tmp_path):
    path = tmp_path / "ok.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ISIC/", "")
        zf.writestr("ISIC/ISIC_0000000.jpg", b"jpg")
        zf.writestr("__MACOSX/ISIC/._ISIC_0000000.jpg", b"junk")
    target = safe_extract(path, tmp_path / "out")
    assert (target / "ISIC" / "ISIC_0000000.jpg").read_bytes() == b"jpg"
    assert not (target / "__MACOSX").exists()


@pytest.mark.parametrize("name, match", [
    ("../evil.txt", r"contains '\.\.'"),
    ("ISIC\\..\\..\\evil.txt", r"contains '\.\.'"),
    ("/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
], ids=["dotdot", "backslash-dotdot", "absolute", "drive-letter"])
def test_dangerous_zip_members_are_refused(tmp_path, name, match):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ISIC/ok.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(name), b"evil")
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(path, tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_symlink_in_zip_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    info = zipfile.ZipInfo("ISIC/evil_link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, "../../outside")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(path, tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_truncated_archive_is_a_clear_error(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("a.txt", b"a" * 1000)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(good.read_bytes()[:50])
    with pytest.raises(UnsafeArchiveError, match="not a readable archive"):
        safe_extract(bad, tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_bad_arguments(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="target must be a folder that does not exist yet"):
        safe_extract(tmp_path / "a.tar", tmp_path / "exists")
    with pytest.raises(ValueError, match=r"archive must end in \.tar.*got a\.rar"):
        safe_extract(tmp_path / "a.rar", tmp_path / "new")
    assert check_member_name("./a//b/", archive="x") == "a/b"
    with pytest.raises(UnsafeArchiveError, match="empty path"):
        check_member_name("./", archive="x")
