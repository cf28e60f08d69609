"""Networks already trained on the built-in phantoms, shipped inside the package (a few MB in all).

Each checkpoint ``medseg_edu/pretrained/<name>.pt`` is in the course's one checkpoint format
(:mod:`medseg_edu.checkpoint`: model class, constructor arguments, weights stored in float16 to stay
small), so ``load_checkpoint`` reads it too. It has a sidecar ``<name>.json`` that records how it was made: the network's configuration, the data
(arguments of ``builtin_brain`` / ``builtin_skin``), the input preprocessing, the seed, the training
settings and time, and the metrics reached on held-out patients. ``scripts/train_pretrained.py``
recreates every file.

They give a trained network without waiting for training (for inference experiments, or a graded cell
that must not train).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import pandas as pd
import torch
from torch import nn

from medseg_edu.checkpoint import load_checkpoint

__all__ = ["PRETRAINED_DIR", "list_pretrained", "pretrained_info", "load_pretrained"]

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def _available() -> list[str]:
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json") if (PRETRAINED_DIR / f"{p.stem}.pt").is_file())


def pretrained_info(name: str) -> dict[str, Any]:
    """The JSON sidecar of one checkpoint: model config, data, preprocessing, training, metrics.

    Shape: a name -> a dict (keys ``name``, ``description``, ``model``, ``data``, ``preprocessing``,
    ``seed``, ``training``, ``metrics``, ``command``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    available = _available()
    if name not in available:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(available) or 'none'}")
    return json.loads((PRETRAINED_DIR / f"{name}.json").read_text())


def list_pretrained() -> pd.DataFrame:
    """One row per shipped checkpoint: name, description, input, held-out metric and file size.

    Shape: a DataFrame with columns name, description, spatial_dims, in_channels, out_channels,
    features, heldout, size_kb.

    Example:
        >>> list_pretrained()["name"].tolist()        # doctest: +SKIP
        ['brain2d_unet', 'brain3d_unet', 'skin2d_unet']
    """
    rows = []
    for name in _available():
        info = pretrained_info(name)
        model = info["model"]
        rows.append({"name": name, "description": info["description"],
                     "spatial_dims": model["spatial_dims"], "in_channels": model["in_channels"],
                     "out_channels": model["out_channels"], "features": tuple(model["features"]),
                     "heldout": ", ".join(f"{k} {v:.3f}" for k, v in info["metrics"].items()
                                          if isinstance(v, (int, float))),
                     "size_kb": round((PRETRAINED_DIR / f"{name}.pt").stat().st_size / 1024, 1)})
    return pd.DataFrame(rows, columns=["name", "description", "spatial_dims", "in_channels", "out_channels",
                                       "features", "heldout", "size_kb"])


def load_pretrained(name: str, *, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """Rebuild the shipped network ``name`` with :func:`medseg_edu.checkpoint.load_checkpoint`
    (float32 weights, eval mode).

    Read ``pretrained_info(name)["preprocessing"]`` for the input the network expects (e.g. brain
    channels z-scored inside the brain, on a 64^3 grid of 3 mm voxels).

    Shape: the returned model maps ``(N, in_channels, *spatial)`` -> logits ``(N, out_channels, *spatial)``.

    Example:
        >>> net = load_pretrained("brain2d_unet")
        >>> net(torch.zeros(1, 4, 64, 64)).shape
        torch.Size([1, 4, 64, 64])

    Raises:
        ValueError: for an unknown name (the message lists the available ones).
    """
    pretrained_info(name)              # checks the name (a clear error listing the available ones)
    return load_checkpoint(PRETRAINED_DIR / f"{name}.pt", device=device)
