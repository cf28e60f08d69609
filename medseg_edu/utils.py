"""Small helpers shared by the whole package: fast mode, progress bars, atomic writes, cache folder.

Not taught in a particular week; read it once to see how the course keeps notebooks fast in tests
and how it never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional, TypeVar

__all__ = ["fast_mode", "quiet", "progress", "atomic_path", "cache_dir"]

T = TypeVar("T")


def fast_mode() -> bool:
    """True when the environment variable ``MEDSEG_FAST`` is set to 1 (the tests set it).

    Notebooks read it to pick small data and few training steps, so the whole course executes
    in minutes on two CPU cores.
    """
    return os.environ.get("MEDSEG_FAST", "0").strip().lower() in {"1", "true", "yes"}


def quiet() -> bool:
    """True when progress bars should be hidden: ``MEDSEG_QUIET=1`` or ``CI`` is set."""
    flag = os.environ.get("MEDSEG_QUIET", "0").strip().lower() in {"1", "true", "yes"}
    return flag or bool(os.environ.get("CI"))


def progress(iterable: Iterable[T], *, desc: str = "", total: Optional[int] = None,
             leave: bool = True) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar (notebook widget or terminal), quiet in CI.

    Example:
        >>> for i in progress(range(3), desc="cases"):
        ...     pass
    """
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, total=total, leave=leave, disable=quiet(),
                     file=sys.stderr, dynamic_ncols=True))


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    A failed or interrupted write therefore never leaves a partial file under the final name.
    The temporary name keeps the final suffixes (``.nii.gz``, ``.png``), so libraries that pick the
    format from the extension still work.

    Example:
        >>> with atomic_path("out.txt") as tmp:          # doctest: +SKIP
        ...     tmp.write_text("done")
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix="." + final.name.split(".")[0] + ".", suffix=".part" + suffix,
                                    dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cache_dir(*parts: str) -> Path:
    """The folder where generated and downloaded data are cached, created if needed.

    ``MEDSEG_DATA`` overrides the default ``~/.cache/medseg-edu`` (on Colab, point it at Google Drive
    to keep data between sessions).
    """
    root = Path(os.environ.get("MEDSEG_DATA", Path.home() / ".cache" / "medseg-edu")).expanduser()
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
