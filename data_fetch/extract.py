"""Unpack a tar or zip archive safely into a new folder.

Every member is checked before anything is written: an absolute path, a ``..`` component, a link
that points outside the target folder, or a device file refuses the whole archive. The members are
written into a temporary folder next to the target, which is renamed onto the target only when all
went well, so a failed extraction leaves nothing behind. macOS metadata (``._name`` files,
``__MACOSX/``) is skipped: the real MSD archives contain such files.

Not taught in a particular week; read it to see why ``tar xf`` on a download is a security risk.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import List

from .download import UnsafeArchiveError

__all__ = ["safe_extract", "check_member_name"]


def check_member_name(name: str, *, archive: "str | os.PathLike[str]") -> str:
    """Return the normalised relative path of an archive member, or raise UnsafeArchiveError.

    Shape: member name -> "folder/file" (POSIX separators).

    Example:
        >>> check_member_name("Task04/imagesTr/a.nii.gz", archive="x.tar")
        'Task04/imagesTr/a.nii.gz'
    """
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to "
                                 f"extract this archive")
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..' and would be written "
                                 f"outside the target folder; refusing to extract this archive")
    if not parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an empty path")
    return "/".join(parts)


def _is_macos_junk(relative: str) -> bool:
    parts = relative.split("/")
    return parts[-1].startswith("._") or "__MACOSX" in parts or parts[-1] == ".DS_Store"


def _check_link(relative: str, link_target: str, *, hard: bool, archive: Path) -> None:
    """Refuse a link whose target is absolute or resolves outside the extraction folder."""
    if link_target.startswith("/") or (len(link_target) > 1 and link_target[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: link {relative!r} points to the absolute path "
                                 f"{link_target!r}; refusing to extract this archive")
    base = "" if hard else posixpath.dirname(relative)   # hard links are relative to the root
    resolved = posixpath.normpath(posixpath.join(base, link_target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: link {relative!r} -> {link_target!r} leaves the "
                                 f"target folder; refusing to extract this archive")


def _safe_tar_members(tar: tarfile.TarFile, archive: Path) -> List[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        relative = check_member_name(member.name, archive=archive)
        if _is_macos_junk(relative):
            continue
        if member.issym() or member.islnk():
            _check_link(relative, member.linkname, hard=member.islnk(), archive=archive)
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device file or FIFO; "
                                     f"refusing to extract this archive")
        member.name = relative
        members.append(member)
    return members


def _extract_tar(archive: Path, folder: Path) -> None:
    with tarfile.open(archive) as tar:
        members = _safe_tar_members(tar, archive)
        if hasattr(tarfile, "data_filter"):   # Python >= 3.11.4 / 3.12: a second line of defence
            try:
                tar.extractall(folder, members=members, filter="data")
            except tarfile.FilterError as error:
                raise UnsafeArchiveError(f"{archive}: {error}; refusing to extract this "
                                         f"archive") from None
        else:  # pragma: no cover (older Pythons; our own checks above still apply)
            tar.extractall(folder, members=members)


def _extract_zip(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():
            relative = check_member_name(info.filename, archive=archive)
            if _is_macos_junk(relative):
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; "
                                         f"refusing to extract this archive")
            file_type = stat.S_IFMT(mode)    # 0 when the zip records permissions only
            if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device file or "
                                         f"FIFO; refusing to extract this archive")
            plan.append((info, relative))
        for info, relative in plan:
            out_path = folder.joinpath(*relative.split("/"))
            if info.is_dir():
                out_path.mkdir(parents=True, exist_ok=True)
                continue
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(out_path, "wb") as target:
                shutil.copyfileobj(source, target, length=1 << 20)


def safe_extract(archive: "str | os.PathLike[str]", target: "str | os.PathLike[str]") -> Path:
    """Extract ``archive`` (.tar, .tar.gz, .tgz or .zip) into the new folder ``target``.

    Refuses (UnsafeArchiveError, nothing written) members with absolute paths or ``..``, links
    that leave ``target``, and device files; skips macOS ``._*`` / ``__MACOSX`` entries.

    Shape: (archive path, target folder that must not exist yet) -> target folder.

    Example:
        >>> safe_extract("Task04_Hippocampus.tar", "unpacked")   # doctest: +SKIP
        PosixPath('unpacked')
    """
    archive = Path(archive)
    target = Path(target)
    if target.exists():
        raise ValueError(f"target must be a folder that does not exist yet, got existing {target}")
    name = archive.name.lower()
    if name.endswith(".zip"):
        extract = _extract_zip
    elif name.endswith((".tar", ".tar.gz", ".tgz")):
        extract = _extract_tar
    else:
        raise ValueError(f"archive must end in .tar, .tar.gz, .tgz or .zip, got {archive.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting",
                                    dir=target.parent))
    try:
        try:
            extract(archive, staging)
        except (tarfile.TarError, zipfile.BadZipFile) as error:
            raise UnsafeArchiveError(f"{archive} is not a readable archive ({error}); delete it "
                                     f"and download it again") from None
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
