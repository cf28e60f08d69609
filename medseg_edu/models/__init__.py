"""Segmentation networks: U-Net (with attention gates and deep supervision), U-Net++ and PSPNet.

Every model takes ``(N, in_channels, *spatial)`` and returns logits ``(N, out_channels, *spatial)``,
raises a clear error for an input it cannot process, and exposes ``model.bottleneck`` and
``model.last_decoder`` as hook points for CAM / Grad-CAM.

Taught in week 3.
"""
from .pspnet import PSPNet
from .unet import (AttentionGate, DecoderStep, DoubleConv, EncoderStep, UNet, count_parameters,
                   deep_supervision_loss)
from .unetpp import UNetPlusPlus

# load_pretrained lives in models/pretrained.py (added separately); re-exported here when present.
try:
    from .pretrained import load_pretrained  # noqa: F401
except ImportError:  # pragma: no cover - until pretrained.py exists
    pass

__all__ = [
    "UNet",
    "UNetPlusPlus",
    "PSPNet",
    "DoubleConv",
    "EncoderStep",
    "DecoderStep",
    "AttentionGate",
    "deep_supervision_loss",
    "count_parameters",
]
if "load_pretrained" in globals():
    __all__.append("load_pretrained")
