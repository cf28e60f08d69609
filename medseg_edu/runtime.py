"""Where and how repeatably code runs: seed every random generator, and pick the device.

Every notebook starts with these two calls (usually through ``fit``, which uses both); they live
apart from the training loop because inference and data generation need them too.
"""
from __future__ import annotations

import os
import random
from typing import Union

import numpy as np
import torch

__all__ = ["seed_everything", "pick_device"]


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and all GPUs) with ``seed``.

    ``deterministic=True`` also makes cuDNN pick deterministic algorithms (``cudnn.deterministic =
    True``, ``cudnn.benchmark = False``) and calls ``torch.use_deterministic_algorithms(True,
    warn_only=True)`` (a warning, not an error, for operations with no deterministic version).
    GPU runs become repeatable at some cost in speed. ``deterministic=False`` leaves these flags as
    they are. CPU runs with the same seed repeat exactly either way.

    Shape: an int -> nothing (global state is changed).

    Taught in week 3.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # needed by cuBLAS
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(preference: Union[str, torch.device] = "auto", *, verbose: bool = True) -> torch.device:
    """Choose where to compute and say why: CUDA GPU, then Apple MPS, then CPU.

    ``preference`` is "auto", "cpu", "cuda" (or "cuda:1"), "mps" or a ``torch.device``. When the
    requested accelerator is missing, falls back to the CPU with a message instead of crashing
    (notebooks must run on any laptop).

    Shape: a string -> a ``torch.device``.

    Example:
        >>> pick_device("cpu", verbose=False)
        device(type='cpu')

    Taught in week 3.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    if not isinstance(preference, str) or preference.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {preference!r}")
    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    kind = preference.split(":")[0]
    if kind == "auto":
        kind = "cuda" if has_cuda else "mps" if has_mps else "cpu"
        why = "found" if kind != "cpu" else "no CUDA GPU or Apple MPS found"
    else:
        why = "as requested"
        if (kind == "cuda" and not has_cuda) or (kind == "mps" and not has_mps):
            why = f"{kind} was requested but is not available here, falling back"
            kind, preference = "cpu", "cpu"
    device = torch.device(preference if preference.startswith("cuda:") else kind)
    if verbose:
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            print(f"Using CUDA GPU {name} ({why}; {torch.cuda.device_count()} GPU(s) visible)")
        elif device.type == "mps":
            print(f"Using Apple MPS ({why}; no CUDA GPU)" if why == "found" else f"Using Apple MPS ({why})")
        else:
            print(f"Using CPU ({why})")
    return device
