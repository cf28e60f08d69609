"""``fetch(name)``: download, verify, unpack and convert one registered data set, once.

Steps: (1) return at once if the finished folder carries a valid marker; (2) take the data set's OS
lock, so that a second fetch of the same data set waits (``mutex.py``), and remove what a killed run
left behind: ``.preparing`` folders and temporary lock-file writes (a partial ``downloads/*.part``
file is kept and resumed); (3) check free space; (4) download every file (resume, per-read timeout,
minimum speed, optional deadline; verify against the published checksum or the hash recorded in
the lock file; atomic rename); (5) unpack safely into a temporary folder, convert to the course
layout there and check it with the course's readers; (6) only then record the SHA-256 of downloads
that had no known hash (``lockfile.py``), write the marker and rename the folder into place;
(7) delete the archives. A download with no known hash that fails step 5 is deleted and recorded
nowhere, so the next run downloads it afresh.

Not taught in a particular week; the README ("Real data") shows how a lesson switches to it.
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from medseg_edu.utils import cache_dir

from .download import (FetchError, NotEnoughSpaceError, UnsafeArchiveError, check_free_space,
                       check_number, download_file, human_size)
from .extract import safe_extract
from .isic import prepare_isic, verify_isic
from .lockfile import LOCK_NAME, forget_hashes, read_lock, record_hashes, remove_stale_lock_writes
from .msd import prepare_msd
from .mutex import exclusive_lock
from .registry import DatasetEntry, Source, get_entry

__all__ = ["LOCK_NAME", "MARKER_NAME", "default_dest", "fetch"]

MARKER_NAME = ".data_fetch.json"
PREPARERS: Dict[str, Callable[[Sequence[Path], Path], Path]] = {"msd": prepare_msd,
                                                                 "isic": prepare_isic}
VERIFIERS: Dict[str, Callable[[Path], None]] = {"isic": verify_isic}   # MSD: published MD5s


def default_dest() -> Path:
    """The default destination: ``<MEDSEG_DATA or ~/.cache/medseg-edu>/datasets``.

    Shape: () -> folder (created if needed).
    """
    return cache_dir("datasets")


def _marker_ok(target: Path, entry: DatasetEntry) -> bool:
    """True when ``target`` was completed by fetch for this very entry (no hashing, no network)."""
    marker = target / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    files = info.get("files", {}) if isinstance(info, dict) else {}
    if info.get("name") != entry.name or set(files) != {s.url for s in entry.files}:
        return False
    for source in entry.files:
        if source.checksum and files[source.url].get(source.algorithm) != source.checksum.lower():
            return False
    return True


def _bytes_needed(entry: DatasetEntry, downloads: Path) -> int:
    """Archives (minus what is already on disk) plus about as much again for the unpacked files."""
    needed = 0
    for source in entry.files:
        done = downloads / source.filename
        part = downloads / (source.filename + ".part")
        have = done.stat().st_size if done.exists() else (part.stat().st_size if part.exists() else 0)
        needed += max(source.size_bytes - have, 0) + source.size_bytes
    return needed


def _remove_leftovers(root: Path, entry: DatasetEntry) -> None:
    """Delete what a killed fetch of ``entry`` left (call with the data set's lock held)."""
    pattern = re.escape(f".{entry.folder}.") + r"[A-Za-z0-9_]+\.preparing"   # mkdtemp's names
    for stale in root.iterdir():
        if stale.is_dir() and re.fullmatch(pattern, stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    remove_stale_lock_writes(root)


def _mismatch_hint(root: Path, locked: dict) -> str:
    return (f"The download was deleted. The expected hash was recorded in {root / LOCK_NAME} on "
            f"{locked.get('recorded_utc', 'an earlier run')} from an earlier verified download; if "
            f"the distributor has published a new version, run the same command with --forget-lock "
            f"(Python: fetch(..., forget_lock=True)) to forget it.")


def _download_all(entry: DatasetEntry, root: Path, downloads: Path, **options
                  ) -> Tuple[List[Path], Dict[str, Dict[str, str]], List[Tuple[Source, str]]]:
    """Download and check every file: (archives, digests by URL, [(source, sha256) unverified])."""
    lock = read_lock(root)
    archives: List[Path] = []
    record: Dict[str, Dict[str, str]] = {}
    unverified: List[Tuple[Source, str]] = []
    for source in entry.files:
        expected, algorithm, hint = source.checksum, source.algorithm, None
        locked = lock.get(source.url) if expected is None else None
        if locked:
            expected, algorithm, hint = locked["sha256"], "sha256", _mismatch_hint(root, locked)
        path = downloads / source.filename
        digests = download_file(source.url, path, checksum=expected, algorithm=algorithm,
                                mismatch_hint=hint, **options)
        if expected is None:
            unverified.append((source, digests["sha256"]))
        archives.append(path)
        record[source.url] = digests
    return archives, record, unverified


def _unpack_and_verify(entry: DatasetEntry, archives: List[Path], staging: Path,
                       unverified: List[Tuple[Source, str]]) -> Path:
    """Unpack, convert and check; on failure delete the archives that cannot be trusted.

    Those are the downloads with no known hash, and every archive when one is unsafe (verified
    but dangerous: keeping it would only fail again).
    """
    try:
        extracted = [safe_extract(archive, staging / f"archive{i}")
                     for i, archive in enumerate(archives)]
        prepared = PREPARERS[entry.layout](extracted, staging / entry.folder)
        VERIFIERS.get(entry.layout, lambda folder: None)(prepared)
        return prepared
    except FetchError as error:
        names = {source.filename for source, _ in unverified}
        untrusted = [a for a in archives if a.name in names or isinstance(error, UnsafeArchiveError)]
        for archive in untrusted:
            archive.unlink(missing_ok=True)
        if not unverified:
            raise
        raise type(error)(f"{error}. The download of {entry.name} could not be verified: it was "
                          f"deleted and no hash was recorded; run the same command again to "
                          f"download it afresh") from None


def fetch(name: str, *, dest: "str | os.PathLike[str] | None" = None, timeout: float = 30,
          deadline: Optional[float] = None, min_speed: float = 1000, lock_timeout: float = 3600,
          forget_lock: bool = False, progress: bool = True,
          registry: Optional[Dict[str, DatasetEntry]] = None) -> Path:
    """Download a registered public data set and return its folder in the course layout.

    ``dest`` defaults to ``$MEDSEG_DATA/datasets`` (``~/.cache/medseg-edu/datasets``). A second
    call finds the marker file and returns at once, without touching the network. ``timeout`` bounds
    each wait for bytes; ``min_speed`` (bytes per second, 0 for no check) stops a download that
    stays slower than that over a ``timeout``-second stretch; ``deadline`` (seconds, default none)
    stops a file that has not finished downloading by then; stopped downloads resume on the next
    call. A second fetch of the same data set waits up to ``lock_timeout`` seconds for the first.
    ``forget_lock=True`` forgets the SHA-256 recorded in the lock file for this data set's files
    (use it when the distributor has published a new version). ``registry`` replaces the built-in
    registry (the tests point it at a local server).

    Shape: name -> folder (MSD: dataset.json, imagesTr/, labelsTr/, participants.tsv;
    ISIC: images/, masks/, metadata.csv).

    Example:
        >>> root = fetch("msd-hippocampus")                     # doctest: +SKIP
        >>> cases = medseg_edu.data.io.list_brain_cases(root)   # doctest: +SKIP
    """
    entry = get_entry(name, registry=registry)
    check_number("timeout", timeout, unit="seconds")
    check_number("deadline", deadline, unit="seconds", allow_none=True)
    check_number("min_speed", min_speed, unit="bytes per second", allow_zero=True)
    check_number("lock_timeout", lock_timeout, unit="seconds", allow_zero=True)
    if not isinstance(forget_lock, bool):
        raise TypeError(f"forget_lock must be a bool, got {type(forget_lock).__name__}")
    root = Path(dest).expanduser() if dest is not None else default_dest()
    root.mkdir(parents=True, exist_ok=True)
    target = root / entry.folder
    if not forget_lock and _marker_ok(target, entry):
        return target
    with exclusive_lock(root / f".{entry.folder}.lock", timeout=lock_timeout,
                        what=f"a fetch of {entry.name} into {root}"):
        if forget_lock:
            forget_hashes(root, entry.files)
        if _marker_ok(target, entry):            # done by the run we waited for
            return target
        if target.exists():
            raise FetchError(f"{target} exists but was not completed by data_fetch (no valid "
                             f"{MARKER_NAME}); move it away or choose another --dest")
        _remove_leftovers(root, entry)
        _fetch_locked(entry, root, timeout=timeout, deadline=deadline, min_speed=min_speed,
                      progress=progress)
    return target


def _fetch_locked(entry: DatasetEntry, root: Path, **options) -> None:
    """Steps 3-7 of the module docstring (the caller holds the data set's lock)."""
    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    needed = _bytes_needed(entry, downloads)
    check_free_space(root, needed_bytes=needed)
    archives, record, unverified = _download_all(entry, root, downloads, **options)

    staging = Path(tempfile.mkdtemp(prefix=f".{entry.folder}.", suffix=".preparing", dir=root))
    try:
        prepared = _unpack_and_verify(entry, archives, staging, unverified)
        record_hashes(root, unverified)          # only now: these downloads are verified
        marker = {"name": entry.name, "files": record, "licence": entry.licence,
                  "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        (prepared / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(prepared, root / entry.folder)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise NotEnoughSpaceError(
                f"the disk holding {root} became full while unpacking {entry.name}: it needs about "
                f"{human_size(needed)} ({needed} bytes) in all. Free some space and run the same "
                f"command again (the verified archives are kept).") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for archive in archives:
        archive.unlink()
