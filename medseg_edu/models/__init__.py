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
from .pretrained import list_pretrained, load_pretrained, pretrained_info

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
    "load_pretrained",
    "list_pretrained",
    "pretrained_info",
]
