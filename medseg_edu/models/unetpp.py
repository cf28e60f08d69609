"""U-Net++ (Zhou et al. 2018): a U-Net whose skip connections are themselves small nested decoders.

Node ``X[i, j]`` sits at level ``i`` (resolution ``1 / 2**i``) after ``j`` nested steps.
``X[i, 0]`` is the encoder; every other node concatenates all earlier nodes of its level,
``X[i, 0..j-1]``, with the upsampled node below, ``X[i+1, j-1]``, and applies a DoubleConv.
The output head reads ``X[0, L]``. Compared with U-Net it has denser skip paths and more
computation at full resolution, for the same number of levels.

Taught in week 3 (architecture comparison).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .unet import DoubleConv, EncoderStep, check_input, check_options, conv_layer, keep_config

__all__ = ["UNetPlusPlus"]


class UNetPlusPlus(nn.Module):
    """U-Net++ with nested skip connections, 2D or 3D.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: input channels and number of classes (logits out).
        features: channels per level, finest first; inputs must be divisible by
            ``2 ** (len(features) - 1)``.
        norm: "instance" or "batch".

    Shape: ``(N, in_channels, *spatial)`` -> logits ``(N, out_channels, *spatial)``.

    Feature maps for CAM / Grad-CAM: ``model.bottleneck`` (``X[L, 0]``) and
    ``model.last_decoder`` (``X[0, L]``, full resolution).

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 features: Sequence[int] = (16, 32, 64, 128), norm: str = "instance") -> None:
        super().__init__()
        features = check_options(spatial_dims, in_channels, out_channels, features, norm=norm)
        keep_config(self, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                    features=list(features), norm=norm)
        levels = len(features) - 1
        self.stem = DoubleConv(spatial_dims, in_channels, features[0], norm=norm)
        self.encoders = nn.ModuleList(
            EncoderStep(spatial_dims, features[i - 1], features[i], norm=norm)
            for i in range(1, levels))
        self.bottleneck = EncoderStep(spatial_dims, features[-2], features[-1], norm=norm)
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.upsample = nn.Upsample(scale_factor=2, mode=mode, align_corners=False)
        # nested nodes X[i, j], j >= 1, i + j <= levels, keyed "i_j"
        self.nested = nn.ModuleDict()
        for j in range(1, levels + 1):
            for i in range(0, levels - j + 1):
                in_ch = j * features[i] + features[i + 1]
                self.nested[f"{i}_{j}"] = DoubleConv(spatial_dims, in_ch, features[i], norm=norm)
        self.head = conv_layer(spatial_dims)(features[0], out_channels, kernel_size=1)

    @property
    def last_decoder(self) -> nn.Module:
        """The node ``X[0, L]`` whose output feeds the head (full resolution)."""
        return self.nested[f"0_{len(self.features) - 1}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)`` logits."""
        levels = len(self.features) - 1
        check_input(x, model_name="UNetPlusPlus", spatial_dims=self.spatial_dims,
                    in_channels=self.in_channels, divisor=2 ** levels,
                    extra=f" with features={self.features}")
        # grid[i] holds the nodes X[i, 0], X[i, 1], ... computed so far
        grid = [[self.stem(x)]]
        for encoder in self.encoders:
            grid.append([encoder(grid[-1][0])])
        grid.append([self.bottleneck(grid[-1][0])])
        for j in range(1, levels + 1):
            for i in range(0, levels - j + 1):
                inputs = grid[i][:j] + [self.upsample(grid[i + 1][j - 1])]
                grid[i].append(self.nested[f"{i}_{j}"](torch.cat(inputs, dim=1)))
        return self.head(grid[0][levels])
