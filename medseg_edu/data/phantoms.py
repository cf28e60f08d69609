"""The course's built-in data sets: synthetic brain-tumour MRI (3D) and skin-lesion photos (2D).

This module gathers the two generators (``brain_phantom`` and ``skin_phantom``) and adds
``builtin_brain`` / ``builtin_skin``: generate a data set once into the cache folder
(``MEDSEG_DATA``, default ``~/.cache/medseg-edu``) and reuse it on every later call, so a notebook
does not regenerate its data each time it runs.

Taught in week 1 (brain) and week 3 (skin).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from medseg_edu.data.brain_phantom import SITES as BRAIN_SITES
from medseg_edu.data.brain_phantom import make_brain_case, write_brain_dataset
from medseg_edu.utils import cache_dir

__all__ = ["SITES", "BRAIN_SITES", "make_brain_case", "write_brain_dataset", "make_skin_case",
           "write_skin_dataset", "builtin_brain", "builtin_skin"]

GENERATOR_VERSION = 1     # part of the cache key: bump when a generator's output changes

_LAZY = {"make_skin_case", "write_skin_dataset", "SITES"}


def __getattr__(name: str) -> Any:
    """Import the skin generator only when it is first used (``SITES`` holds the profiles of both)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from medseg_edu.data import skin_phantom

    if name == "SITES":
        return {"brain": BRAIN_SITES, "skin": skin_phantom.SITES}
    return getattr(skin_phantom, name)


def _cached(kind: str, writer: Callable[..., Path], defaults: dict[str, Any], kwargs: dict[str, Any]) -> Path:
    """Write a data set with ``writer`` once, into a cache folder named after its arguments."""
    signature = inspect.signature(writer)
    if "out_dir" in kwargs or "overwrite" in kwargs:
        raise TypeError(f"builtin_{kind}() chooses out_dir itself and never overwrites; got "
                        f"{sorted(k for k in kwargs if k in ('out_dir', 'overwrite'))}")
    try:
        bound = signature.bind("placeholder", **{**defaults, **kwargs})
    except TypeError as err:
        raise TypeError(f"builtin_{kind}() got bad arguments for {writer.__name__}: {err}") from None
    bound.apply_defaults()
    arguments = {k: v for k, v in bound.arguments.items() if k not in ("out_dir", "overwrite")}
    key = json.dumps({"kind": kind, "version": GENERATOR_VERSION, **arguments}, sort_keys=True, default=str)
    name = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    root = cache_dir("builtin")
    final = root / name
    if (final / "complete").is_file():
        return final
    if final.exists():                                  # an older, interrupted attempt
        shutil.rmtree(final, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=root))
    try:
        target = staging / name
        writer(target, **arguments)
        (target / "complete").write_text(key + "\n")
        try:
            os.replace(target, final)
        except OSError:                                 # another process finished first
            if not (final / "complete").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def builtin_brain(**kwargs: Any) -> Path:
    """The built-in brain-tumour data set: generated once into the cache, then reused.

    Takes the keyword arguments of ``write_brain_dataset`` (defaults: ``cases=12, seed=0``); each
    distinct set of arguments gets its own cached folder.

    Shape: a folder in the MSD Task01 layout (see ``write_brain_dataset``).

    Example:
        >>> root = builtin_brain(cases=4, shape=(64, 64, 64), spacing_mm=(3, 3, 3))   # doctest: +SKIP

    Taught in week 1.
    """
    return _cached("brain", write_brain_dataset, {"cases": 12, "seed": 0}, kwargs)


def builtin_skin(**kwargs: Any) -> Path:
    """The built-in skin-lesion data set: generated once into the cache, then reused.

    Takes the keyword arguments of ``write_skin_dataset`` (defaults: ``images=48, seed=0``).

    Shape: a folder in the ISIC layout (see ``write_skin_dataset``).

    Taught in week 3 (used again in weeks 4 and 6).
    """
    from medseg_edu.data.skin_phantom import write_skin_dataset as writer

    return _cached("skin", writer, {"images": 48, "seed": 0}, kwargs)
