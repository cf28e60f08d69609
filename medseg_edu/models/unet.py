"""The U-Net (Ronneberger et al. 2015) for 2D and 3D images, with optional attention gates
(Oktay et al. 2018), deep supervision and dropout.

The network is built from four small pieces that students re-implement in week 3:

- :class:`DoubleConv`    conv -> norm -> activation, twice (the basic block of every level);
- :class:`EncoderStep`   halve the resolution (max pooling), then a DoubleConv;
- :class:`DecoderStep`   double the resolution, concatenate the skip connection, then a DoubleConv;
- :class:`AttentionGate` additive attention that weights the skip connection by a map computed
  from the skip itself and the coarser "gating" features.

Feature maps for CAM / Grad-CAM: every model in :mod:`medseg_edu.models` has two stable attribute
names, ``model.bottleneck`` (the coarsest encoder block, output ``(N, features[-1], *spatial/2**L)``)
and ``model.last_decoder`` (the block whose output feeds the 1x1 output head, full resolution).
Register hooks on those.

Taught in week 3.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from medseg_edu.arguments import check_choice

__all__ = [
    "DoubleConv",
    "EncoderStep",
    "DecoderStep",
    "AttentionGate",
    "UNet",
    "deep_supervision_loss",
    "count_parameters",
]

_NORMS = ("instance", "batch")
_UPS = ("transpose", "interp")


# ----------------------------------------------------------------------------- small helpers
def conv_layer(spatial_dims: int) -> type:
    """``nn.Conv2d`` for 2D, ``nn.Conv3d`` for 3D."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def norm_layer(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """An instance norm (with learned scale/shift) or a batch norm for ``channels`` channels.

    Instance norm normalises every channel of every image over its spatial axes. That is exactly
    group norm with one channel per group, ``nn.GroupNorm(channels, channels)``, which we use
    because its CPU kernel is faster than ``nn.InstanceNorm2d`` (same result to float precision).
    """
    if norm == "instance":
        return nn.GroupNorm(num_groups=channels, num_channels=channels)
    cls = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims]
    return cls(channels)


def check_options(spatial_dims: int, in_channels: int, out_channels: int,
                  features: Sequence[int], *, norm: str, min_levels: int = 2) -> tuple:
    """Validate the constructor arguments shared by all models; return ``features`` as a tuple."""
    check_choice(norm, _NORMS, "norm")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    features = tuple(features)
    if len(features) < min_levels or not all(isinstance(f, int) and f > 0 for f in features):
        raise ValueError(f"features must be a sequence of at least {min_levels} positive ints "
                         f"(channels per level), got {features!r}")
    return features


def keep_config(model: nn.Module, **config) -> None:
    """Keep a model's constructor arguments as plain values in ``model.config``.

    ``type(model)(**model.config)`` builds the same network, and :mod:`medseg_edu.checkpoint` stores
    the config so that ``load_checkpoint`` can rebuild it. The arguments every model has are also
    kept as attributes (``spatial_dims``, ``in_channels``, ``out_channels``, ``features``).
    """
    model.config = config
    model.spatial_dims, model.in_channels = config["spatial_dims"], config["in_channels"]
    model.out_channels, model.features = config["out_channels"], tuple(config["features"])


def check_input(x: torch.Tensor, *, model_name: str, spatial_dims: int, in_channels: int,
                divisor: int, extra: str = "") -> None:
    """Raise a clear error when ``x`` cannot go through the model.

    Checks the type, the number of dimensions (``spatial_dims + 2``), the channel count and that
    every spatial size is divisible by ``divisor`` (2 to the number of downsampling steps).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} expects a torch.Tensor, got {type(x).__name__}")
    axes = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, D, H, W)"
    if x.ndim != spatial_dims + 2:
        hint = ""
        if x.ndim == 5 and spatial_dims == 2:
            hint = " (a 3D batch? use spatial_dims=3 or predict slice by slice)"
        elif x.ndim == 4 and spatial_dims == 3:
            hint = " (a 2D batch? use spatial_dims=2; one volume without batch axis? use x[None])"
        elif x.ndim == spatial_dims + 1:
            hint = " (missing batch axis? use x[None])"
        raise ValueError(f"{model_name}(spatial_dims={spatial_dims}) expects {axes}, got a "
                         f"{x.ndim}-D tensor {tuple(x.shape)}{hint}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{model_name} was built with in_channels={in_channels} and expects "
                         f"{axes} with C={in_channels}, got C={x.shape[1]} in a tensor of shape "
                         f"{tuple(x.shape)} (channels-last data? move channels to axis 1)")
    spatial = tuple(x.shape[2:])
    if any(s % divisor for s in spatial):
        fixes = tuple(((s + divisor - 1) // divisor) * divisor for s in spatial)
        raise ValueError(f"{model_name}{extra} halves the image {divisor.bit_length() - 1} times, so "
                         f"every spatial size must be divisible by {divisor} (e.g. {divisor}, "
                         f"{2 * divisor}, {3 * divisor}, ...), got spatial size {spatial}; "
                         f"pad or crop to e.g. {fixes}")


# ----------------------------------------------------------------------------- building blocks
class DoubleConv(nn.Module):
    """Two times (3x3 convolution -> normalisation -> LeakyReLU), plus optional dropout.

    Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)`` (same spatial size).

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 norm: str = "instance", dropout: float = 0.0) -> None:
        super().__init__()
        conv = conv_layer(spatial_dims)
        self.conv1 = conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = norm_layer(norm, spatial_dims, out_channels)
        self.conv2 = conv(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, spatial_dims, out_channels)
        self.act = nn.LeakyReLU(0.01)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)``."""
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.dropout(x)


class EncoderStep(nn.Module):
    """Halve the resolution with 2x max pooling, then a :class:`DoubleConv`.

    Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial / 2)``.

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 norm: str = "instance", dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims](kernel_size=2)
        self.conv = DoubleConv(spatial_dims, in_channels, out_channels, norm=norm, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial / 2)``."""
        return self.conv(self.pool(x))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, "Attention U-Net").

    The skip features ``x`` (fine) are brought to the resolution of the gating features ``g``
    (one level coarser) by a strided 2x convolution, added to a 1x1 projection of ``g``, passed
    through ReLU, a 1x1 convolution to one channel and a sigmoid. The resulting map ``alpha`` in
    [0, 1] is upsampled (linear interpolation) to the skip's resolution and multiplies ``x``.
    The last map is kept in ``self.attention_map`` (detached) for plotting.

    Shape: ``x (N, skip_channels, *spatial)``, ``g (N, gate_channels, *spatial / 2)``
    -> ``(N, skip_channels, *spatial)``.

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, skip_channels: int, gate_channels: int,
                 inter_channels: int) -> None:
        super().__init__()
        conv = conv_layer(spatial_dims)
        self.theta_x = conv(skip_channels, inter_channels, kernel_size=2, stride=2, bias=False)
        self.phi_g = conv(gate_channels, inter_channels, kernel_size=1, bias=True)
        self.psi = conv(inter_channels, 1, kernel_size=1, bias=True)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.attention_map: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Shape: ``x (N, C_skip, *sp)``, ``g (N, C_gate, *sp / 2)`` -> ``(N, C_skip, *sp)``."""
        coarse = F.relu(self.theta_x(x) + self.phi_g(g))
        alpha = torch.sigmoid(self.psi(coarse))
        alpha = F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)
        self.attention_map = alpha.detach()
        return x * alpha


class DecoderStep(nn.Module):
    """Double the resolution, concatenate the skip connection, then a :class:`DoubleConv`.

    ``up="transpose"`` uses a learned 2x2 transposed convolution; ``up="interp"`` uses
    (bi/tri)linear interpolation followed by a 1x1 convolution. With ``attention=True`` the skip
    passes through an :class:`AttentionGate` gated by the coarse input first.

    Shape: ``x (N, in_channels, *spatial / 2)``, ``skip (N, skip_channels, *spatial)``
    -> ``(N, out_channels, *spatial)``.

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, in_channels: int, skip_channels: int, out_channels: int,
                 *, norm: str = "instance", up: str = "transpose", attention: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        conv = conv_layer(spatial_dims)
        if up == "transpose":
            tconv = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]
            self.up = tconv(in_channels, out_channels, kernel_size=2, stride=2)
        else:
            mode = "bilinear" if spatial_dims == 2 else "trilinear"
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
                                    conv(in_channels, out_channels, kernel_size=1))
        self.gate = (AttentionGate(spatial_dims, skip_channels, in_channels,
                                   max(skip_channels // 2, 1)) if attention else None)
        self.conv = DoubleConv(spatial_dims, skip_channels + out_channels, out_channels,
                               norm=norm, dropout=dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Shape: ``x (N, C_in, *sp / 2)``, ``skip (N, C_skip, *sp)`` -> ``(N, C_out, *sp)``."""
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


# ----------------------------------------------------------------------------- the U-Net
class UNet(nn.Module):
    """U-Net for 2D or 3D images, with optional attention gates, deep supervision and dropout.

    Args:
        spatial_dims: 2 for images ``(N, C, H, W)``, 3 for volumes ``(N, C, D, H, W)``.
        in_channels: input channels (4 for the brain MRI sequences, 3 for RGB skin images).
        out_channels: output channels = number of classes (logits, no softmax applied).
        features: channels per level, finest first; ``len(features) - 1`` downsampling steps,
            so every input spatial size must be divisible by ``2 ** (len(features) - 1)``.
        attention: add an :class:`AttentionGate` on every skip connection (Attention U-Net).
        deep_supervision: in training mode, also return logits from the coarser decoder levels.
        dropout: dropout probability after every DoubleConv (0 = none; >0 enables MC dropout).
        norm: "instance" (default, robust with small batches) or "batch".
        up: "transpose" (learned 2x2 transposed convolution) or "interp" (linear + 1x1 conv).

    Shape: ``(N, in_channels, *spatial)`` -> logits ``(N, out_channels, *spatial)``.
        With ``deep_supervision=True`` and ``model.train()``: a list of ``len(features) - 1``
        logit tensors, full resolution first, then 1/2, 1/4, ... of the input size (NOT upsampled;
        :func:`deep_supervision_loss` downsamples the label instead). In ``model.eval()`` the
        plain full-resolution tensor.

    Feature maps for CAM / Grad-CAM: ``model.bottleneck`` (coarsest block) and
    ``model.last_decoder`` (last decoder block, full resolution, ``features[0]`` channels).

    Example:
        >>> net = UNet(2, 4, 4, features=(8, 16, 32))
        >>> net(torch.zeros(2, 4, 64, 64)).shape
        torch.Size([2, 4, 64, 64])

    Taught in week 3.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 features: Sequence[int] = (16, 32, 64, 128), attention: bool = False,
                 deep_supervision: bool = False, dropout: float = 0.0, norm: str = "instance",
                 up: str = "transpose") -> None:
        super().__init__()
        features = check_options(spatial_dims, in_channels, out_channels, features, norm=norm)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        check_choice(up, _UPS, "up")
        self.deep_supervision = deep_supervision
        keep_config(self, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                    features=list(features), attention=bool(attention), deep_supervision=bool(deep_supervision),
                    dropout=float(dropout), norm=norm, up=up)
        opts = dict(norm=norm, dropout=float(dropout))

        self.stem = DoubleConv(spatial_dims, in_channels, features[0], **opts)
        self.encoders = nn.ModuleList(
            EncoderStep(spatial_dims, features[i - 1], features[i], **opts)
            for i in range(1, len(features) - 1))
        self.bottleneck = EncoderStep(spatial_dims, features[-2], features[-1], **opts)
        # decoders run coarse -> fine: the last one works at full resolution
        self.decoders = nn.ModuleList(
            DecoderStep(spatial_dims, features[i], features[i - 1], features[i - 1],
                        up=up, attention=attention, **opts)
            for i in range(len(features) - 1, 0, -1))
        conv = conv_layer(spatial_dims)
        self.head = conv(features[0], out_channels, kernel_size=1)
        # one 1x1 head per coarser decoder output (finest-but-one first)
        self.ds_heads = nn.ModuleList(
            conv(features[i - 1], out_channels, kernel_size=1)
            for i in range(2, len(features))) if deep_supervision else None

    @property
    def last_decoder(self) -> DecoderStep:
        """The last (full-resolution) decoder block, a target layer for Grad-CAM."""
        return self.decoders[-1]

    @property
    def divisor(self) -> int:
        """Every input spatial size must be a multiple of this number."""
        return 2 ** (len(self.features) - 1)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list]:
        """Shape: ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)`` logits
        (a list of logits at full, 1/2, 1/4, ... resolution with deep supervision in training)."""
        check_input(x, model_name="UNet", spatial_dims=self.spatial_dims,
                    in_channels=self.in_channels, divisor=self.divisor,
                    extra=f" with features={self.features}")
        skips = [self.stem(x)]
        for encoder in self.encoders:
            skips.append(encoder(skips[-1]))
        x = self.bottleneck(skips[-1])
        decoded = []
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = decoder(x, skip)
            decoded.append(x)
        logits = self.head(x)
        if not (self.deep_supervision and self.training):
            return logits
        # decoded[-2] is at 1/2 resolution, decoded[-3] at 1/4, ...
        coarse = [head(d) for head, d in zip(self.ds_heads, reversed(decoded[:-1]))]
        return [logits] + coarse


def deep_supervision_loss(outputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                          target: torch.Tensor, loss_fn: Callable, *,
                          weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Weighted sum of ``loss_fn`` over the outputs of a deeply supervised network.

    The target is downsampled to each output's spatial size with nearest-neighbour interpolation
    (labels must never be interpolated linearly). Default weights halve with every level
    (1, 1/2, 1/4, ...) and are normalised to sum to 1. A single tensor is passed straight to
    ``loss_fn``, so the same training code works with and without deep supervision.

    Shape: ``outputs`` list of ``(N, K, *spatial_i)``, ``target (N, 1, *spatial)`` integer labels
    (or ``(N, K, *spatial)`` one-hot) -> scalar.

    Used in week 3 through `fit`.
    """
    if isinstance(outputs, torch.Tensor):
        return loss_fn(outputs, target)
    outputs = list(outputs)
    if not outputs:
        raise ValueError("outputs must be a tensor or a non-empty list of tensors, got an empty list")
    if weights is None:
        weights = [0.5 ** i for i in range(len(outputs))]
    weights = [float(w) for w in weights]
    if len(weights) != len(outputs):
        raise ValueError(f"weights must have one entry per output ({len(outputs)}), got {len(weights)}")
    total_weight = sum(weights)
    if total_weight <= 0:
        raise ValueError(f"weights must sum to a positive number, got {weights}")
    loss = 0.0
    for out, w in zip(outputs, weights):
        t = target
        if t.shape[2:] != out.shape[2:]:
            t = F.interpolate(target.float(), size=out.shape[2:], mode="nearest").to(target.dtype)
        loss = loss + (w / total_weight) * loss_fn(out, t)
    return loss


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``.

    Shape: a model -> an int.

    Taught in week 3.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
