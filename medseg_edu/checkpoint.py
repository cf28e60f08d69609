"""One checkpoint format for every model the course saves, and ``load_checkpoint`` that rebuilds the model.

A checkpoint is a ``.pt`` file holding one dict of plain Python values and tensors, so that
``torch.load(path, weights_only=True)`` (which never runs code from the file) can read it:

============================  ====================================================================
key                           value
============================  ====================================================================
``format``                    ``"medseg-edu checkpoint"`` (how we recognise our own files)
``format_version``            an int, :data:`FORMAT_VERSION` when written by this version
``model_class``               import path of the model class, e.g. ``"medseg_edu.models.unet.UNet"``
``model_args``                the constructor's keyword arguments (``model.config``), or None
``model``                     the ``state_dict`` (float16 where saved with ``dtype=torch.float16``)
``optimizer_class``/...       training state for resuming (None in a model-only checkpoint):
                              ``optimizer``, ``scheduler_class``, ``scheduler``, ``scaler``,
                              ``epoch``, ``history``, ``config``, ``rng``
``extra``                     free notes (settings, seed, ...), plain values only
============================  ====================================================================

``fit`` writes ``last.pt``/``best.pt`` in this format, the demo writes ``model.pt``, and the shipped
pretrained networks are stored in it. A model can be rebuilt when its class stores its constructor
arguments in ``self.config`` (a plain dict; every network in :mod:`medseg_edu.models` does).

Every failure names the file and says what is wrong: missing, empty, truncated or corrupt, not a
medseg-edu checkpoint (a bare ``state_dict``, another program's file), written by a newer version.
"""
from __future__ import annotations

import importlib
import os
import pickle
import random
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .utils import atomic_path

__all__ = ["FORMAT_VERSION", "save_checkpoint", "read_checkpoint", "load_checkpoint"]

FORMAT_VERSION = 1
_FORMAT = "medseg-edu checkpoint"
_TRAINING_KEYS = ("optimizer_class", "optimizer", "scheduler_class", "scheduler", "scaler", "epoch",
                  "history", "config", "rng")

PathLike = Union[str, os.PathLike]


def _class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is made of None, bool, int, float, str, list, tuple, dict."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} must have string keys, got {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} must hold only plain values (None, bool, int, float, str, list, tuple, "
                    f"dict) so that torch.load(weights_only=True) reads it back, got {type(value).__name__}")


def save_checkpoint(model: nn.Module, path: PathLike, *, model_args: Optional[dict] = None,
                    dtype: Optional[torch.dtype] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Any = None, scaler: Any = None, epoch: Optional[int] = None,
                    history: Optional[dict] = None, config: Optional[dict] = None,
                    rng: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Write ``model`` (and, for resuming, the training state) to ``path`` in the course's format.

    ``model_args`` defaults to ``model.config``, the constructor arguments every network of
    :mod:`medseg_edu.models` keeps; a model without it is saved with ``model_args=None`` (its
    weights load into a model you build, ``load_checkpoint(path, model=net)``). ``dtype=torch.float16``
    stores the floating-point weights at half the size (how the pretrained networks ship). The file is
    written to a temporary name and renamed, so an interrupted save never leaves half a file.

    Shape: a model -> the path written.

    Example:
        >>> save_checkpoint(UNet(2, 1, 2), "net.pt")            # doctest: +SKIP
        >>> net = load_checkpoint("net.pt")                     # doctest: +SKIP

    Used in week 3 through `fit`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model_args is None:
        model_args = getattr(model, "config", None)
    _check_plain(model_args, "model_args")
    if model_args is not None and not isinstance(model_args, dict):
        raise TypeError(f"model_args must be a dict of constructor arguments, got {type(model_args).__name__}")
    for name, value in (("history", history), ("config", config), ("extra", extra)):
        _check_plain(value, name)
    state = model.state_dict()
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    payload = {"format": _FORMAT, "format_version": FORMAT_VERSION, "model_class": _class_path(model),
               "model_args": dict(model_args) if model_args is not None else None,
               "model": {k: v.detach().cpu() for k, v in state.items()},
               "optimizer_class": _class_path(optimizer) if optimizer is not None else None,
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "scheduler_class": _class_path(scheduler) if scheduler is not None else None,
               "scheduler": scheduler.state_dict() if scheduler is not None else None,
               "scaler": scaler.state_dict() if scaler is not None else None,
               "epoch": epoch, "history": history, "config": config, "rng": rng, "extra": extra or {}}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _describe_foreign(obj: Any) -> str:
    """Why a loaded object is not one of our checkpoints, and what to do instead."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return ("it holds a bare state_dict (parameter names -> tensors), not a medseg-edu checkpoint; "
                "build the model yourself and call model.load_state_dict(torch.load(path))")
    if isinstance(obj, dict) and "state_dict" in obj:
        return ("it is an old medseg-edu demo file (keys 'state_dict', 'config'); rerun `medseg-edu demo` "
                "to write model.pt in the current format")
    if isinstance(obj, dict):
        keys = ", ".join(sorted(map(str, obj))[:8])
        return f"it is not a medseg-edu checkpoint (no 'format' key; keys: {keys or 'none'})"
    return f"it is not a medseg-edu checkpoint (it holds a {type(obj).__name__}, not a dict)"


def read_checkpoint(path: PathLike) -> dict:
    """Read a checkpoint file into its dict (see the module's table of keys), checking it on the way.

    Uses ``torch.load(weights_only=True)``, so the file cannot run code. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the reason for an
    empty, truncated or corrupt file, another program's file (or a bare ``state_dict``) and a file
    written by a newer format version than this medseg-edu reads.

    Shape: a path -> a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint file here" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the checkpoint file is empty (0 bytes); was its writing interrupted?")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Weights only" in str(err):
            raise ValueError(f"{path}: not a medseg-edu checkpoint: it holds Python objects that "
                             f"torch.load(weights_only=True) refuses to load") from err
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint (truncated, corrupt or another "
                         f"program's file): {err}") from err
    except Exception as err:   # torch raises many kinds here (RuntimeError, EOFError, IndexError, ...)
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint (truncated, corrupt or another "
                         f"program's file): {err}") from err
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(f"{path}: {_describe_foreign(obj)}")
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path}: the checkpoint has no valid format_version, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: written by checkpoint format version {version}, newer than this "
                         f"medseg-edu reads ({FORMAT_VERSION}); upgrade medseg-edu")
    missing = [key for key in ("model_class", "model_args", "model", *_TRAINING_KEYS) if key not in obj]
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks the keys {missing}; the file is damaged")
    return obj


def _model_class(path: Path, class_path: str) -> type:
    """Import the model class named in a checkpoint; only torch.nn.Module subclasses are accepted."""
    module_name, _, name = str(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{path}: the model class {class_path!r} cannot be imported ({err}); import the "
                         f"module that defines it, or build the model and pass model=") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{path}: model_class {class_path!r} is not a torch.nn.Module subclass")
    return cls


def load_checkpoint(path: PathLike, *, model: Optional[nn.Module] = None,
                    device: Union[str, torch.device] = "cpu") -> nn.Module:
    """Rebuild the model saved in ``path`` (class and constructor arguments from the file), load its
    weights (float32) and return it in eval mode on ``device``.

    Works on ``fit``'s ``last.pt``/``best.pt``, the demo's ``model.pt`` and the pretrained files. Pass
    ``model=`` to load the weights into a model you built (for a class without ``config``). Errors
    name the file: see :func:`read_checkpoint`; a model whose weights do not fit gives a ValueError.

    Shape: a path -> a model mapping ``(N, in_channels, *spatial)`` to ``(N, out_channels, *spatial)``.

    Example:
        >>> net = load_checkpoint("runs/unet/best.pt")          # doctest: +SKIP
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    if model is None:
        if ckpt["model_args"] is None:
            raise ValueError(f"{path}: saved without constructor arguments (its class "
                             f"{ckpt['model_class']} has no `config`), so it cannot be rebuilt; build the "
                             f"model yourself and call load_checkpoint(path, model=net)")
        cls = _model_class(path, ckpt["model_class"])
        model = cls(**ckpt["model_args"])
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    _load_weights(path, model, ckpt)
    return model.float().to(device).eval()


def _load_weights(path: Path, model: nn.Module, ckpt: dict) -> None:
    """Load ``ckpt["model"]`` into ``model``; a mismatch is a ValueError naming the file and both classes."""
    if _class_path(model) != ckpt["model_class"] and type(model).__name__ != ckpt["model_class"].rpartition(".")[2]:
        raise ValueError(f"{path}: saved from a {ckpt['model_class']}, cannot load into a {_class_path(model)}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the saved weights do not fit this {type(model).__name__} (were its "
                         f"arguments different?): {err}") from err


# ----------------------------------------------------------------------------- resuming fit
def _rng_state(loader) -> dict:
    """Every random generator fit() depends on, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    sampler_gen = getattr(getattr(loader, "sampler", None), "generator", None)
    state["sampler"] = sampler_gen.get_state() if sampler_gen is not None else None
    return state


def _set_rng_state(state: dict, loader) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    sampler_gen = getattr(getattr(loader, "sampler", None), "generator", None)
    if sampler_gen is not None and state["sampler"] is not None:
        sampler_gen.set_state(state["sampler"])


def _restore_training_state(resume, model, optimizer, scheduler, scaler, loader) -> tuple:
    """Load the training state saved by fit into these objects; (history as a dict, epochs done)."""
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint at {path} (give a .pt file or a checkpoint_dir "
                                f"containing last.pt)")
    ckpt = read_checkpoint(path)
    if ckpt["epoch"] is None or ckpt["optimizer"] is None or ckpt["history"] is None:
        raise ValueError(f"{path}: holds a model only (no optimizer, epoch or history), so training cannot "
                         f"resume from it; use load_checkpoint(path) to get the model")
    _load_weights(path, model, ckpt)
    for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        saved, given = ckpt[f"{what}_class"], _class_path(obj) if obj is not None else None
        if saved != given:
            raise ValueError(f"{path}: saved with {what} {saved} but resumed with {given}; resume with the "
                             f"same {what} class, or start a new run")
        if obj is not None:
            try:
                obj.load_state_dict(ckpt[what])
            except (ValueError, KeyError, RuntimeError) as err:
                raise ValueError(f"{path}: the saved {what} state does not fit this {what}: {err}") from err
    if scaler is not None and ckpt["scaler"] is not None:
        scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"], loader)
    return ckpt["history"], ckpt["epoch"]
