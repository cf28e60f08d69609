"""``fetch(name)``: download, verify, unpack and convert one registered data set, once.

Steps: (1) return at once if the finished folder carries a valid marker; (2) check free space;
(3) download every file (resume, verify, atomic rename; for files without a published checksum
the lock file's hash is required, or recorded on the first download); (4) unpack safely into a
temporary folder and convert to the course layout there; (5) write the marker and rename the
folder into place; (6) delete the archives.

Taught in week 1 (real data, one command away).
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from medseg_edu.utils import atomic_path, cache_dir

from .download import (FetchError, NotEnoughSpaceError, UnsafeArchiveError, check_free_space,
                       download_file, human_size)
from .extract import safe_extract
from .isic import prepare_isic
from .msd import prepare_msd
from .registry import DatasetEntry, Source, get_entry

__all__ = ["LOCK_NAME", "MARKER_NAME", "default_dest", "read_lock", "fetch"]

LOCK_NAME = "data_fetch.lock.json"
MARKER_NAME = ".data_fetch.json"
PREPARERS: Dict[str, Callable[[Sequence[Path], Path], Path]] = {"msd": prepare_msd,
                                                                 "isic": prepare_isic}


def default_dest() -> Path:
    """The default destination: ``<MEDSEG_DATA or ~/.cache/medseg-edu>/datasets``.

    Shape: () -> folder (created if needed).

    Taught in week 1 (fetching real data).
    """
    return cache_dir("datasets")


def read_lock(root: "str | os.PathLike[str]") -> Dict[str, dict]:
    """Read ``<root>/data_fetch.lock.json``: {url: {"filename", "sha256", "recorded_utc"}}.

    Shape: folder -> dict (empty when there is no lock file yet).

    Taught in week 1 (fetching real data).
    """
    path = Path(root) / LOCK_NAME
    if not path.is_file():
        return {}
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FetchError(f"the lock file {path} is not valid JSON ({error}); fix or delete it") from None
    if not isinstance(lock, dict):
        raise FetchError(f"the lock file {path} must hold a JSON object, got {type(lock).__name__}")
    return lock


def _record_lock(root: Path, source: Source, sha256: str) -> None:
    lock = read_lock(root)
    lock[source.url] = {"filename": source.filename, "sha256": sha256,
                        "recorded_utc": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    with atomic_path(root / LOCK_NAME) as tmp:
        tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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


def fetch(name: str, *, dest: "str | os.PathLike[str] | None" = None, timeout: float = 30,
          progress: bool = True, registry: Optional[Dict[str, DatasetEntry]] = None) -> Path:
    """Download a registered public data set and return its folder in the course layout.

    ``dest`` defaults to ``$MEDSEG_DATA/datasets`` (``~/.cache/medseg-edu/datasets``). A second
    call finds the marker file and returns at once, without touching the network. ``registry``
    replaces the built-in registry (the tests point it at a local server).

    Shape: name -> folder (MSD: dataset.json, imagesTr/, labelsTr/, participants.tsv;
    ISIC: images/, masks/, metadata.csv).

    Example:
        >>> root = fetch("msd-hippocampus")                     # doctest: +SKIP
        >>> cases = medseg_edu.data.io.list_brain_cases(root)   # doctest: +SKIP

    Taught in week 1.
    """
    entry = get_entry(name, registry=registry)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    root = Path(dest).expanduser() if dest is not None else default_dest()
    root.mkdir(parents=True, exist_ok=True)
    target = root / entry.folder
    if _marker_ok(target, entry):
        return target
    if target.exists():
        raise FetchError(f"{target} exists but was not completed by data_fetch (no valid "
                         f"{MARKER_NAME}); move it away or choose another --dest")

    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    needed = _bytes_needed(entry, downloads)
    check_free_space(root, needed_bytes=needed)

    lock = read_lock(root)
    archives: List[Path] = []
    record: Dict[str, Dict[str, str]] = {}
    for source in entry.files:
        expected, algorithm = source.checksum, source.algorithm
        locked = lock.get(source.url)
        if expected is None and locked:
            expected, algorithm = locked["sha256"], "sha256"
        path = downloads / source.filename
        digests = download_file(source.url, path, checksum=expected, algorithm=algorithm,
                                timeout=timeout, progress=progress)
        if source.checksum is None and not locked:
            _record_lock(root, source, digests["sha256"])
        archives.append(path)
        record[source.url] = digests

    staging = Path(tempfile.mkdtemp(prefix=f".{entry.folder}.", suffix=".preparing", dir=root))
    try:
        extracted = [safe_extract(archive, staging / f"archive{i}")
                     for i, archive in enumerate(archives)]
        prepared = PREPARERS[entry.layout](extracted, staging / entry.folder)
        marker = {"name": entry.name, "files": record, "licence": entry.licence,
                  "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        (prepared / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(prepared, target)
    except UnsafeArchiveError:
        for archive in archives:      # verified but dangerous: keeping it would only fail again
            archive.unlink()
        raise
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
    return target
