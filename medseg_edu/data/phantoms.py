"""The course's built-in data sets: synthetic brain-tumour MRI (3D) and skin-lesion photos (2D).

This module gathers the two generators (``brain_phantom`` and ``skin_phantom``) and adds
``builtin_brain`` / ``builtin_skin``: generate a data set once into the cache folder
(``MEDSEG_DATA``, default ``~/.cache/medseg-edu``) and reuse it on every later call, so a notebook
does not regenerate its data each time it runs.

The cache key is derived, never bumped by hand: it hashes the generator's arguments (defaults
included) and the source code of every ``medseg_edu`` module the generator uses, found by following
its imports (those inside functions too) from the writer's own module. Any change to that code --
the phantom, the NIfTI/PNG writers, a helper they call -- gives a new key and so a fresh data set;
a change elsewhere in the package keeps the cached one. The data set that a new key replaces (same
arguments, older source) is deleted once the new one is complete.

Taught in week 1 (brain) and week 3 (skin).
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from medseg_edu.data.brain_phantom import SITES as BRAIN_SITES
from medseg_edu.data.brain_phantom import make_brain_case, write_brain_dataset
from medseg_edu.utils import cache_dir, staging_dir

__all__ = ["SITES", "BRAIN_SITES", "make_brain_case", "write_brain_dataset", "make_skin_case",
           "write_skin_dataset", "builtin_brain", "builtin_skin"]

_LAZY = {"make_skin_case", "write_skin_dataset", "SITES"}


def __getattr__(name: str) -> Any:
    """Import the skin generator only when it is first used (``SITES`` holds the profiles of both)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from medseg_edu.data import skin_phantom

    if name == "SITES":
        return {"brain": BRAIN_SITES, "skin": skin_phantom.SITES}
    return getattr(skin_phantom, name)


def _module_file(name: str) -> Path | None:
    """The source file of module ``name``, or None if there is none (not found, built-in, namespace)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imported_modules(path: Path, name: str, package: str) -> set[str]:
    """The modules of ``package`` that the source file of module ``name`` imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                  # relative import: resolve against this module
                anchor = name if is_package else name.rpartition(".")[0]
                base = importlib.util.resolve_name("." * node.level + base, anchor)
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule sub if there is one, else a name of pkg
                sub = f"{base}.{alias.name}"
                found.add(sub if _module_file(sub) is not None else base)
    return {m for m in found if m == package or m.startswith(package + ".")}


def _generator_modules(writer: Callable[..., Any], package: str = "medseg_edu") -> dict[str, Path]:
    """Every module of ``package`` that ``writer`` can run: its own module and all it imports, transitively.

    Read from the source files (``ast``), so imports inside functions are found, and a generator split
    over several files is followed file by file. The package's top-level ``__init__`` (the lazy export
    table) is not followed: it generates nothing.
    """
    start = inspect.unwrap(writer).__module__
    todo, seen = [start], {}
    while todo:
        name = todo.pop()
        if name in seen or name == package:
            continue
        path = _module_file(name)
        if path is None:
            raise RuntimeError(f"cannot find the source of module {name!r}, used by {writer.__name__}; "
                               "the phantom cache key needs it")
        seen[name] = path
        todo.extend(_imported_modules(path, name, package))
    return dict(sorted(seen.items()))


def _source_digest(writer: Callable[..., Any], package: str = "medseg_edu") -> str:
    """SHA-256 over the names and source bytes of every module of ``package`` the generator ``writer`` uses."""
    digest = hashlib.sha256()
    for name, path in _generator_modules(writer, package).items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _cache_key(kind: str, arguments: Mapping[str, Any], source_digest: str) -> str:
    """The text that names one cached data set: its kind, all generator arguments and the source digest."""
    return json.dumps({"kind": kind, "source_sha256": source_digest, **arguments}, sort_keys=True, default=str)


def _same_data_set(key_a: dict[str, Any], key_b: dict[str, Any]) -> bool:
    """True when two cache keys differ only in the generator's source (or the old hand-bumped version)."""
    def strip(key: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in key.items() if k not in ("source_sha256", "version")}
    return strip(key_a) == strip(key_b)


def _remove_stale_versions(root: Path, kind: str, key: str, keep: Path) -> None:
    """Delete cached data sets with the same arguments made by an older generator: they are never used again."""
    wanted = json.loads(key)
    for folder in root.glob(f"{kind}-*"):
        if folder == keep:
            continue
        try:
            other = json.loads((folder / "complete").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(other, dict) and _same_data_set(other, wanted):
            shutil.rmtree(folder, ignore_errors=True)


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
    key = _cache_key(kind, arguments, _source_digest(writer))
    name = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    root = cache_dir("builtin")
    final = root / name
    if (final / "complete").is_file():
        return final
    if final.exists():                                  # an older, interrupted attempt
        shutil.rmtree(final, ignore_errors=True)
    staging = staging_dir(root / name)
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
    _remove_stale_versions(root, kind, key, keep=final)
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

    Takes the keyword arguments of ``write_skin_dataset`` (defaults: ``cases=48, seed=0``).

    Shape: a folder in the ISIC layout (see ``write_skin_dataset``).

    Taught in weeks 3, 4 and 6.
    """
    from medseg_edu.data.skin_phantom import write_skin_dataset as writer

    return _cached("skin", writer, {"cases": 48, "seed": 0}, kwargs)
