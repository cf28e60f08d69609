"""Small helpers shared by the whole package: run mode and seed, progress bars, atomic writes, cache folder.

Convention for what the package writes: folders get the ordinary permissions that ``mkdir`` gives
(0o777 minus the user's umask, so 0755 with the usual umask 022), files those of ``open``; nothing
is made private. A folder that is filled first and published by a rename is made with
:func:`staging_dir`, never with ``tempfile.mkdtemp`` (which makes it 0700).

Not taught in a particular week; read it once to see how the course keeps notebooks fast in tests
and how it never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, TypeVar

__all__ = ["fast_mode", "run_mode", "course_seed", "quiet", "progress", "atomic_path", "staging_dir", "cache_dir"]

T = TypeVar("T")


def fast_mode() -> bool:
    """True when the environment variable ``MEDSEG_FAST`` is set to 1 (the tests set it).

    Notebooks read it to pick small data and few training steps, so the whole course executes
    in minutes on two CPU cores.
    """
    return os.environ.get("MEDSEG_FAST", "0").strip().lower() in {"1", "true", "yes"}


RUN_MODES = ("fast", "default", "gpu")


def run_mode() -> str:
    """The notebooks' run mode: "fast", "default" (a laptop CPU) or "gpu" (larger data, more epochs).

    ``MEDSEG_MODE`` chooses it explicitly; otherwise ``MEDSEG_FAST=1`` gives "fast", a visible CUDA
    GPU gives "gpu", and anything else "default". Notebooks read it to pick data sizes and training
    lengths; ``scripts/run_course.py`` measures each mode's time.

    Example:
        >>> run_mode() in ("fast", "default", "gpu")
        True
    """
    explicit = os.environ.get("MEDSEG_MODE", "").strip().lower()
    if explicit:
        if explicit not in RUN_MODES:
            raise ValueError(f"MEDSEG_MODE must be one of {', '.join(RUN_MODES)}, got {explicit!r}")
        return explicit
    if fast_mode():
        return "fast"
    try:
        import torch
    except ImportError:  # the package needs torch, but the mode must not crash a plain helper script
        return "default"
    return "gpu" if torch.cuda.is_available() else "default"


def course_seed() -> int:
    """The seed every notebook starts from: ``MEDSEG_SEED`` (default 0), a non-negative integer.

    Every claim a notebook asserts about a result must hold for seeds 0, 1 and 2; run a notebook
    with ``MEDSEG_SEED=1`` to see how much its numbers move.

    Example:
        >>> course_seed()                     # doctest: +SKIP
        0
    """
    raw = os.environ.get("MEDSEG_SEED", "").strip()
    if not raw:
        return 0
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"MEDSEG_SEED must be a non-negative integer, got {raw!r}") from None
    if seed < 0:
        raise ValueError(f"MEDSEG_SEED must be a non-negative integer, got {raw!r}")
    return seed


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
    # like tempfile.mkstemp, but with the ordinary file permissions (mkstemp's 0600 would survive the rename)
    tmp = _unique_sibling(final, stem=final.name.split(".")[0], suffix=".part" + "".join(final.suffixes),
                          create=lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def staging_dir(final: "str | os.PathLike[str]", *, suffix: str = ".part") -> Path:
    """Create an empty hidden folder next to ``final``, to be filled and then renamed onto ``final``.

    Unlike ``tempfile.mkdtemp`` (mode 0700) it gets the ordinary folder permissions (see the module
    docstring), so the published folder is readable by others exactly when a plain ``mkdir`` would be.
    The name is unique (process id and random letters), starts with a dot and ends with ``suffix``.

    Example:
        >>> tmp = staging_dir("/data/brain")            # doctest: +SKIP
        >>> ...                                         # write into tmp, then os.replace(tmp, "/data/brain")
    """
    final = Path(final)
    return _unique_sibling(final, stem=final.name, suffix=suffix, create=lambda p: p.mkdir())


def _unique_sibling(final: Path, *, stem: str, suffix: str, create: Callable[[Path], None]) -> Path:
    """Create ``.<stem>.<pid>.<random><suffix>`` next to ``final`` with ``create`` (which fails if it exists)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        candidate = final.parent / f".{stem}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a temporary name next to {final}")


def cache_dir(*parts: str) -> Path:
    """The folder where generated and downloaded data are cached, created if needed.

    ``MEDSEG_DATA`` overrides the default ``~/.cache/medseg-edu`` (on Colab, point it at Google Drive
    to keep data between sessions).
    """
    root = Path(os.environ.get("MEDSEG_DATA", Path.home() / ".cache" / "medseg-edu")).expanduser()
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
