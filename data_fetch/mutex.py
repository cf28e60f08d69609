"""One fetch of a data set at a time: an operating-system lock on a small file.

``exclusive_lock(path)`` takes ``fcntl.flock`` (Linux, macOS) or ``msvcrt.locking`` (Windows) on
``path``. The operating system drops such a lock when the process that holds it ends, even when it
is killed, so a lock left by a dead run never blocks the next one. A second fetch of the same data
set waits (saying so once on stderr) and fails with a clear error after ``timeout`` seconds. The
empty lock file stays in place: deleting it while another process waits on it would let two runs
in at once. Where the platform or file system offers no lock, the fetch goes on unprotected and a
warning says so.

Not taught in a particular week; read it to see how two downloads of one thing stay out of each
other's way.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

from .download import FetchError

__all__ = ["exclusive_lock"]

POLL_S = 0.1    # how often a waiting fetch tries the lock again

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None


def _try_lock(fd: int) -> bool:
    """Take the lock without blocking: True if taken, False if another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover (Windows)
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK):
            return False
        raise


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover (Windows)
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def exclusive_lock(path: "str | os.PathLike[str]", *, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive OS lock on ``path`` for the ``with`` block, waiting up to ``timeout`` s.

    ``what`` names the work the lock protects (for the messages), e.g. "a fetch of msd-brain".

    Shape: (lock file path, seconds >= 0, text) -> context manager.

    Example:
        >>> with exclusive_lock("/data/.Task01.lock", timeout=60, what="a fetch of msd-brain"):
        ...     pass                                            # doctest: +SKIP
    """
    path = Path(path)
    if fcntl is None and msvcrt is None:  # pragma: no cover (no known platform)
        warnings.warn(f"no file locking on this platform: {what} is not protected against a "
                      f"second run at the same time", RuntimeWarning, stacklevel=3)
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            locked, failure = _try_lock(fd), None
        except OSError as error:   # e.g. ENOLCK on a network file system without locks
            locked, failure = False, error
        if failure is not None:
            warnings.warn(f"could not lock {path} ({failure.strerror or failure}): {what} is not "
                          f"protected against a second run at the same time", RuntimeWarning,
                          stacklevel=3)
            yield
            return
        ends_at = time.monotonic() + timeout
        if not locked:
            print(f"data_fetch: waiting for {what} in another process to finish (lock {path}; "
                  f"giving up after {timeout:g} s)", file=sys.stderr, flush=True)
        while not locked:
            if time.monotonic() >= ends_at:
                raise FetchError(
                    f"{what} in another process still holds {path} after {timeout:g} s of waiting; "
                    f"let it finish and run the same command again (it then returns at once), or "
                    f"wait longer with --lock-timeout S")
            time.sleep(POLL_S)
            locked = _try_lock(fd)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
