"""The lock file ``<dest>/data_fetch.lock.json``: SHA-256 of verified downloads without a published hash.

Some distributors (ISIC) publish no checksum. ``fetch`` then records the SHA-256 of a download
here, but only after the download has been *verified*: every archive opens and unpacks (zip members
pass their CRC-32 check), the members have the expected layout, and the converted folder is accepted
by the course's readers. A bad first download is deleted and leaves no entry. Later downloads must
match the recorded hash; ``forget_hashes`` (``--forget-lock`` on the command line) drops the entries
of one data set when the distributor has published a new version. Updates take a short OS lock, so
two fetches of different data sets into one folder do not lose each other's entries.

Not taught in a particular week; read it with ``fetch.py``.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Dict, Iterable, Tuple

from medseg_edu.utils import atomic_path

from .download import FetchError
from .mutex import exclusive_lock
from .registry import Source

__all__ = ["LOCK_NAME", "read_lock", "record_hashes", "forget_hashes", "remove_stale_lock_writes"]

LOCK_NAME = "data_fetch.lock.json"
UPDATE_TIMEOUT_S = 60.0   # an update takes milliseconds; waiting longer means something is stuck


def read_lock(root: "str | os.PathLike[str]") -> Dict[str, dict]:
    """Read ``<root>/data_fetch.lock.json``: {url: {"filename", "sha256", "recorded_utc"}}.

    Shape: folder -> dict (empty when there is no lock file yet).
    """
    path = Path(root) / LOCK_NAME
    if not path.is_file():
        return {}
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FetchError(f"the lock file {path} is not valid JSON ({error}); fix or delete "
                         f"it") from None
    if not isinstance(lock, dict):
        raise FetchError(f"the lock file {path} must hold a JSON object, got {type(lock).__name__}")
    return lock


def _update(root: Path, change) -> None:
    """Read, change and rewrite the lock file atomically, under a short OS lock."""
    with exclusive_lock(root / f".{LOCK_NAME}.lock", timeout=UPDATE_TIMEOUT_S,
                        what=f"an update of {root / LOCK_NAME}"):
        lock = read_lock(root)
        if not change(lock):
            return
        with atomic_path(root / LOCK_NAME) as tmp:
            tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def record_hashes(root: "str | os.PathLike[str]", hashes: Iterable[Tuple[Source, str]]) -> None:
    """Record the SHA-256 of verified downloads (call only after verification).

    Shape: (folder, [(Source, sha256 hex), ...]) -> None.
    """
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    entries = {source.url: {"filename": source.filename, "sha256": sha256, "recorded_utc": now}
               for source, sha256 in hashes}

    def change(lock: dict) -> bool:
        lock.update(entries)
        return bool(entries)

    _update(Path(root), change)


def forget_hashes(root: "str | os.PathLike[str]", sources: Iterable[Source]) -> int:
    """Drop the recorded hashes of ``sources``; return how many entries were dropped.

    Shape: (folder, [Source, ...]) -> int.
    """
    urls = {source.url for source in sources}
    dropped = []

    def change(lock: dict) -> bool:
        dropped.extend(url for url in urls if lock.pop(url, None) is not None)
        return bool(dropped)

    if (Path(root) / LOCK_NAME).is_file():
        _update(Path(root), change)
    return len(dropped)


def remove_stale_lock_writes(root: "str | os.PathLike[str]") -> None:
    """Delete temporary files of lock-file writes that a killed run left behind."""
    root = Path(root)
    pattern = f".{LOCK_NAME.split('.')[0]}.*.part.lock.json"   # atomic_path's temporary names
    if not any(root.glob(pattern)):
        return
    with exclusive_lock(root / f".{LOCK_NAME}.lock", timeout=UPDATE_TIMEOUT_S,
                        what=f"an update of {root / LOCK_NAME}"):
        for stale in root.glob(pattern):
            stale.unlink(missing_ok=True)
