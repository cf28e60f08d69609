"""Download one file safely: check free space, resume with HTTP Range, verify, rename atomically.

The bytes go to ``<file>.part``. If the connection drops, the ``.part`` file stays and the next
attempt asks the server only for the missing bytes (``Range: bytes=N-``). When the transfer is
complete the whole file is hashed; a wrong hash deletes it and raises an error that shows both
hashes; a right one renames ``.part`` onto the final name (``os.replace``, atomic on one disk).

Slow servers: ``timeout`` bounds each wait for bytes; ``min_speed`` (bytes per second) fails a
transfer that brings fewer than ``min_speed * timeout`` bytes in any ``timeout``-second stretch (a
server that trickles one byte per timeout); ``deadline`` bounds the whole download. Both keep the
``.part`` file, so the same command resumes. A malformed ``Content-Length`` header is ignored with a
warning: the file is then read to the end of the stream and still verified.

Not taught in a particular week; read it to see how a careful downloader behaves.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

from medseg_edu.utils import quiet

__all__ = ["FetchError", "NetworkError", "ChecksumMismatchError", "NotEnoughSpaceError",
           "UnsafeArchiveError", "human_size", "file_digests", "check_free_space", "check_number",
           "download_file"]

CHUNK_BYTES = 1 << 20          # read and hash 1 MiB at a time
MAX_ATTEMPTS = 3               # automatic resumes in one call, only after the server sent new bytes
USER_AGENT = "medseg-edu-data-fetch"


class FetchError(RuntimeError):
    """Base class of every error ``data_fetch`` raises on purpose (the CLI prints it in one line)."""


class NetworkError(FetchError):
    """The server could not be reached, did not answer in time, or closed the connection early."""


class ChecksumMismatchError(FetchError):
    """The downloaded bytes do not have the expected hash (the file has been deleted)."""


class _TooSlowError(NetworkError):
    """Deadline passed or too few bytes per second: resuming at once would not help."""


class NotEnoughSpaceError(FetchError):
    """The destination disk is (or would become) full."""


class UnsafeArchiveError(FetchError):
    """An archive member would land outside the target folder, or is a link or a device file."""


def human_size(num_bytes: float) -> str:
    """Format a byte count for people: ``human_size(27_402_895) == '27.4 MB'``.

    Shape: int -> str (decimal units, as disk makers and download pages use).
    """
    value = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover (loop always returns)


def file_digests(path: "str | os.PathLike[str]", *,
                 algorithms: Sequence[str] = ("md5", "sha256")) -> Dict[str, str]:
    """Hash a file in one pass with several algorithms.

    Shape: path -> {"md5": hex, "sha256": hex}.

    Example:
        >>> file_digests("x.tar")["sha256"]            # doctest: +SKIP
        'e3b0c442...'
    """
    for algorithm in algorithms:
        if algorithm not in ("md5", "sha256"):
            raise ValueError(f"algorithms must contain 'md5' or 'sha256', got {algorithm!r}")
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def check_free_space(folder: "str | os.PathLike[str]", *, needed_bytes: int) -> None:
    """Raise NotEnoughSpaceError when ``folder``'s disk has fewer than ``needed_bytes`` free.

    Shape: (folder, int) -> None.
    """
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise NotEnoughSpaceError(
            f"not enough free disk space in {folder}: need about {human_size(needed_bytes)} "
            f"({needed_bytes} bytes), only {human_size(free)} free. Free some space, or choose "
            f"another disk with --dest DIR (or the MEDSEG_DATA environment variable).")


def check_number(name: str, value: object, *, unit: str, allow_none: bool = False,
                 allow_zero: bool = False) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``).

    Shape: (argument name, value, unit for the message) -> None.
    """
    if value is None and allow_none:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and (value >= 0 if allow_zero else value > 0) and value != float("inf"))
    if not ok:
        expected = f"a number of {unit} >= 0" if allow_zero else f"a positive number of {unit}"
        raise ValueError(f"{name} must be {expected}{' or None' if allow_none else ''}, "
                         f"got {value!r}")


def _network_message(url: str, error: BaseException, *, timeout: float, part: Path) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        what = f"no answer within {timeout} s"
    else:
        what = str(reason) or type(reason).__name__
    kept = (f" The partial download {part} ({human_size(part.stat().st_size)}) is kept; the same "
            f"command resumes it." if part.exists() and part.stat().st_size > 0 else "")
    return (f"could not download {url}: {what}. Check your internet connection (or proxy) and try "
            f"again; a larger --timeout helps on slow links.{kept}")


def _disk_full_message(folder: Path, needed: Optional[int]) -> str:
    need = f"about {human_size(needed)} ({needed} bytes) in all" if needed else "more space"
    return (f"the disk holding {folder} is full: it needs {need}. Free some space and run the "
            f"same command again (it resumes), or choose another disk with --dest DIR.")


def _content_length(response: http.client.HTTPResponse, url: str) -> Optional[int]:
    """The server's Content-Length as an int, or None (absent, or malformed: then a warning)."""
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    if re.fullmatch(r"[0-9]+", value.strip()):
        return int(value)
    warnings.warn(f"the server sent a malformed Content-Length header ({value!r}) for {url}; "
                  f"downloading without a known size (the file is still verified at the end)",
                  RuntimeWarning, stacklevel=2)
    return None


class _Pace:
    """The total deadline and the minimum-speed rule of one download (all attempts)."""

    def __init__(self, url: str, part: Path, *, timeout: float, deadline: Optional[float],
                 min_speed: float):
        self.url, self.part, self.timeout, self.min_speed = url, part, timeout, min_speed
        self.deadline = deadline
        self.ends_at = None if deadline is None else time.monotonic() + deadline
        self.restart()

    def restart(self) -> None:
        """Start a new measuring window (at the start of each request)."""
        self.window_start, self.window_bytes = time.monotonic(), 0

    def read_timeout(self) -> float:
        """The socket timeout for the next request: never past the deadline."""
        left = self.timeout if self.ends_at is None else self.ends_at - time.monotonic()
        if left <= 0:
            self._fail(f"it did not finish within the deadline of {self.deadline:g} s",
                       "allow more time with --deadline S")
        return min(self.timeout, left)

    def check(self, new_bytes: int) -> None:
        """Raise _TooSlowError when past the deadline or slower than min_speed over a window."""
        self.read_timeout()
        now = time.monotonic()
        self.window_bytes += new_bytes
        elapsed = now - self.window_start
        if self.min_speed > 0 and elapsed >= self.timeout:
            if self.window_bytes < self.min_speed * elapsed:
                rate = self.window_bytes / elapsed
                self._fail(f"it is too slow: {rate:.0f} bytes/s over the last {elapsed:.1f} s "
                           f"(the minimum is {self.min_speed:g} bytes/s)",
                           "try later or on a faster connection (--min-speed 0 turns this "
                           "check off)")
            self.restart()

    def _fail(self, what: str, hint: str) -> None:
        size = self.part.stat().st_size if self.part.exists() else 0
        kept = (f"the partial download {self.part} ({human_size(size)}) is kept and " if size else "")
        raise _TooSlowError(f"stopped downloading {self.url}: {what}. Run the same command again: "
                            f"{kept}it resumes; or {hint}.")


def _transfer_once(url: str, part: Path, *, pace: _Pace, progress: bool, desc: str) -> None:
    """One HTTP request: append the missing bytes of ``url`` to ``part``."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")
    timeout = pace.read_timeout()
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start > 0:   # nothing left to send: the .part file is complete
            return
        raise NetworkError(f"the server answered HTTP {error.code} ({error.reason}) for {url}. "
                           f"The data set may have moved: check the registry entry.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        pace.read_timeout()    # past the deadline: say so rather than "no answer"
        raise NetworkError(_network_message(url, error, timeout=timeout, part=part)) from None

    with response:
        if start > 0 and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                part.unlink()
                raise NetworkError(f"the server sent the wrong byte range ({content_range!r}, asked "
                                   f"for bytes {start}-) for {url}; the partial file was deleted, "
                                   f"run the command again to download from the start.")
        elif start > 0:
            start = 0   # the server ignored Range and sends the whole file: start again
        length = _content_length(response, url)
        total = start + length if length is not None else None
        received = start
        pace.restart()
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=desc,
                   disable=(not progress) or quiet(), file=sys.stderr, dynamic_ncols=True)
        with open(part, "ab" if start > 0 else "wb") as out, bar:
            while True:
                try:   # read1: return what has arrived, so that the clock is checked often
                    chunk = response.read1(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    if isinstance(error, http.client.IncompleteRead):
                        out.write(error.partial)       # keep what did arrive, for the resume
                    out.flush()
                    pace.read_timeout()
                    raise NetworkError(_network_message(url, error, timeout=pace.timeout,
                                                        part=part)) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as error:
                    if error.errno == errno.ENOSPC:
                        raise NotEnoughSpaceError(_disk_full_message(part.parent, total)) from None
                    raise
                received += len(chunk)
                bar.update(len(chunk))
                out.flush()
                pace.check(len(chunk))
    if total is not None and received < total:
        raise NetworkError(f"the connection to {url} closed after {received} of {total} bytes. "
                           f"The partial download {part} is kept; the same command resumes it.")


def download_file(url: str, path: "str | os.PathLike[str]", *, checksum: Optional[str],
                  algorithm: str = "sha256", timeout: float = 30, deadline: Optional[float] = None,
                  min_speed: float = 1000, mismatch_hint: Optional[str] = None,
                  progress: bool = True) -> Dict[str, str]:
    """Download ``url`` to ``path`` (resuming ``path.part``), verify it, rename it atomically.

    A file already at ``path`` is verified again (and downloaded afresh if it does not match).
    With ``checksum=None`` nothing is compared; the digests are returned so that the caller can
    verify the file otherwise and then record them (the lock file). ``timeout`` bounds each wait
    for bytes, ``deadline`` (seconds, None for none) the whole call, and ``min_speed`` (bytes per
    second, 0 for no check) the average over every ``timeout``-second stretch; a transfer stopped
    by either keeps its ``.part`` file for the next call. ``mismatch_hint`` replaces the advice
    that follows the two hashes in a ChecksumMismatchError.

    Shape: returns {"md5": hex, "sha256": hex} of the verified file.

    Example:
        >>> download_file("https://example.org/a.tar", "a.tar", checksum="...",
        ...               algorithm="md5")                 # doctest: +SKIP
    """
    if algorithm not in ("md5", "sha256"):
        raise ValueError(f"algorithm must be 'md5' or 'sha256', got {algorithm!r}")
    check_number("timeout", timeout, unit="seconds")
    check_number("deadline", deadline, unit="seconds", allow_none=True)
    check_number("min_speed", min_speed, unit="bytes per second", allow_zero=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    expected = checksum.lower() if checksum else None

    if path.exists():          # an earlier complete download: verify it again before use
        digests = file_digests(path)
        if expected is None or digests[algorithm] == expected:
            return digests
        path.unlink()          # stale or damaged: download it again below

    pace = _Pace(url, part, timeout=timeout, deadline=deadline, min_speed=min_speed)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer_once(url, part, pace=pace, progress=progress, desc=path.name)
            break
        except _TooSlowError:
            raise              # past the deadline or too slow: a retry now would not help
        except NetworkError:
            after = part.stat().st_size if part.exists() else 0
            if attempt == MAX_ATTEMPTS or after <= before:
                raise          # no progress (server down, hanging) or out of attempts
    digests = file_digests(part)
    if expected is not None and digests[algorithm] != expected:
        part.unlink()
        hint = mismatch_hint or ("The damaged download was deleted; run the command again. If it "
                                 "keeps happening, the file on the server has changed: tell the "
                                 "course maintainers.")
        raise ChecksumMismatchError(
            f"{algorithm} mismatch for {url}: expected {expected}, got {digests[algorithm]}. {hint}")
    os.replace(part, path)
    return digests
