"""PSPNet (Zhao et al. 2017): a small residual encoder plus a pyramid pooling module.

Instead of a decoder with skip connections, PSPNet adds global context: the encoder's last
feature map is average-pooled into 1x1, 2x2, 3x3 and 6x6 bins, each bin map is projected with a
1x1 convolution, upsampled back and concatenated with the features. A 3x3 convolution fuses
them, a 1x1 head gives logits at 1/8 resolution, and these are upsampled to the input size.
Boundaries are therefore coarser than with a U-Net: one of the points of the week-3 comparison.

Taught in week 3 (architecture comparison).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .unet import DoubleConv, check_input, check_options, conv_layer, keep_config, norm_layer

__all__ = ["ResidualBlock", "PyramidPooling", "PSPNet"]


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet "basic block"); ``stride=2`` halves the size.

    Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial / stride)``.

    Used in week 3 through `PSPNet`.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        conv = conv_layer(spatial_dims)
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(norm, spatial_dims, out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, spatial_dims, out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, 1, stride=stride, bias=False),
                                          norm_layer(norm, spatial_dims, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, C_in, *sp)`` -> ``(N, C_out, *sp / stride)``."""
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PyramidPooling(nn.Module):
    """Pyramid pooling module: average-pool into each bin size, 1x1 conv, upsample, concatenate.

    The branches have no normalisation (a 1x1 bin has a single value per channel, which batch or
    instance norm cannot normalise with a batch of one).

    Shape: ``(N, C, *spatial)`` -> ``(N, C + len(bins) * (C // len(bins)), *spatial)``.

    Used in week 3 through `PSPNet`.
    """

    def __init__(self, spatial_dims: int, channels: int, *, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        conv = conv_layer(spatial_dims)
        pool = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial_dims]
        self.branch_channels = max(channels // len(bins), 1)
        self.branches = nn.ModuleList(
            nn.Sequential(pool(b), conv(channels, self.branch_channels, 1), nn.ReLU())
            for b in bins)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.out_channels = channels + len(bins) * self.branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, C, *sp)`` -> ``(N, C + len(bins) * (C // len(bins)), *sp)``."""
        size = x.shape[2:]
        pooled = [F.interpolate(branch(x), size=size, mode=self.mode, align_corners=False)
                  for branch in self.branches]
        return torch.cat([x] + pooled, dim=1)


class PSPNet(nn.Module):
    """A small PSPNet: residual encoder (output stride ``2 ** (len(features) - 1)``), pyramid
    pooling with bins (1, 2, 3, 6), fusion convolution, 1x1 head, upsampling to the input size.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: input channels and number of classes (logits out).
        features: channels of the full-resolution stem, then of each stride-2 residual stage.
        bins: pyramid pooling bin sizes.
        norm: "batch" (default, as in the paper) or "instance".

    Shape: ``(N, in_channels, *spatial)`` -> logits ``(N, out_channels, *spatial)``.

    Feature maps for CAM / Grad-CAM: ``model.bottleneck`` (last residual stage, coarsest) and
    ``model.last_decoder`` (the fusion block after pyramid pooling, at the coarse resolution).

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 features: Sequence[int] = (16, 32, 64, 128), bins: Sequence[int] = (1, 2, 3, 6),
                 norm: str = "batch") -> None:
        super().__init__()
        features = check_options(spatial_dims, in_channels, out_channels, features, norm=norm)
        bins = tuple(bins)
        if not bins or not all(isinstance(b, int) and b > 0 for b in bins):
            raise ValueError(f"bins must be a non-empty sequence of positive ints, got {bins!r}")
        keep_config(self, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                    features=list(features), bins=list(bins), norm=norm)
        self.stem = DoubleConv(spatial_dims, in_channels, features[0], norm=norm)
        self.stages = nn.ModuleList(
            nn.Sequential(ResidualBlock(spatial_dims, features[i - 1], features[i], stride=2, norm=norm),
                          ResidualBlock(spatial_dims, features[i], features[i], norm=norm))
            for i in range(1, len(features) - 1))
        self.bottleneck = nn.Sequential(
            ResidualBlock(spatial_dims, features[-2], features[-1], stride=2, norm=norm),
            ResidualBlock(spatial_dims, features[-1], features[-1], norm=norm))
        self.pyramid = PyramidPooling(spatial_dims, features[-1], bins=bins)
        conv = conv_layer(spatial_dims)
        self.fuse = nn.Sequential(conv(self.pyramid.out_channels, features[-1], 3, padding=1, bias=False),
                                  norm_layer(norm, spatial_dims, features[-1]), nn.ReLU())
        self.head = conv(features[-1], out_channels, kernel_size=1)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"

    @property
    def last_decoder(self) -> nn.Module:
        """The fusion block after the pyramid pooling (coarse resolution), for Grad-CAM."""
        return self.fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)`` logits."""
        check_input(x, model_name="PSPNet", spatial_dims=self.spatial_dims,
                    in_channels=self.in_channels, divisor=2 ** (len(self.features) - 1),
                    extra=f" with features={self.features}")
        size = x.shape[2:]
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        h = self.fuse(self.pyramid(self.bottleneck(h)))
        return F.interpolate(self.head(h), size=size, mode=self.mode, align_corners=False)
