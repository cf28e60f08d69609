"""Self-checks for the week-3 exercises: the U-Net's building blocks, built by the student.

Each check takes the student's class (not an instance), builds it with (seeded) random channel
counts, feeds it random tensors of random sizes and compares what it can observe -- output shapes,
number of convolution layers, number of parameters, which inputs the output depends on, which
parameters receive a gradient -- with the package's reference blocks in :mod:`medseg_edu.models`.
A check prints ``"exN looks right"`` or raises ``AssertionError`` saying WHAT is wrong (a shape, a
missing layer, an unused input); it never prints the reference code or a number to copy.

The classes the exercises ask for (2D only, ``(N, C, H, W)`` tensors):

- ``DoubleConv(in_channels, out_channels)``: (3x3 conv, no bias -> norm -> activation) twice;
- ``EncoderStep(in_channels, out_channels)``: 2x2 max pooling, then a DoubleConv;
- ``DecoderStep(in_channels, skip_channels, out_channels)``: 2x2 transposed conv
  ``in_channels -> out_channels``, concatenate with the skip, DoubleConv ``skip + out -> out``;
- ``SmallUNet(in_channels, out_channels, features=(...))``: stem DoubleConv, encoder steps
  (the last one is the bottleneck), decoder steps with skips, 1x1 output head.

Taught in week 3.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from medseg_edu.arguments import check_int
from medseg_edu.checks import self_check
from medseg_edu.models import DecoderStep as _RefDecoderStep
from medseg_edu.models import DoubleConv as _RefDoubleConv
from medseg_edu.models import EncoderStep as _RefEncoderStep
from medseg_edu.models import UNet as _RefUNet
from medseg_edu.models import count_parameters

__all__ = ["check_double_conv", "check_encoder_step", "check_decoder_step", "check_unet"]

_NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)


# ----------------------------------------------------------------------------- helpers
def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int (checks are always seeded), got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """A random int in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def _build(cls: Callable, what: str, *args, **kwargs) -> tuple:
    """Instantiate the student's class -> (module, "Name(args)"); errors become AssertionErrors."""
    call = f"{what}({', '.join([*map(str, args), *(f'{k}={v}' for k, v in kwargs.items())])})"
    if not callable(cls):
        raise TypeError(f"pass the class {what} itself (not an instance or a string), got {type(cls).__name__}")
    try:
        module = cls(*args, **kwargs)
    except NotImplementedError:
        raise                          # @self_check turns it into the shared "not answered yet" message
    except Exception as err:
        raise AssertionError(f"{call} failed: {type(err).__name__}: {err}") from err
    if not isinstance(module, nn.Module):
        raise AssertionError(f"{call} should build a torch.nn.Module, got {type(module).__name__}")
    return module, call


def _run(module: nn.Module, call: str, *inputs: torch.Tensor, hint: str = "") -> torch.Tensor:
    shapes = " and ".join(str(tuple(t.shape)) for t in inputs)
    try:
        out = module(*inputs)
    except NotImplementedError:
        raise                          # @self_check turns it into the shared "not answered yet" message
    except Exception as err:
        raise AssertionError(f"{call} failed on input {shapes}: {type(err).__name__}: {err}"
                             + (f" -- {hint}" if hint else "")) from err
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{call} should return a tensor, got {type(out).__name__}")
    return out


def _expect_shape(out: torch.Tensor, expected: tuple, call: str, inputs: str, hint: str) -> None:
    if tuple(out.shape) != tuple(expected):
        raise AssertionError(f"{call} on input {inputs} returned shape {tuple(out.shape)}, expected "
                             f"{tuple(expected)}: {hint}")


def _convs(module: nn.Module) -> list:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _expect_same_parameters(module: nn.Module, reference: nn.Module, call: str,
                            more_hint: str, fewer_hint: str) -> None:
    got, want = count_parameters(module), count_parameters(reference)
    if got > want:
        raise AssertionError(f"{call} has more parameters than it should: {more_hint}")
    if got < want:
        raise AssertionError(f"{call} has fewer parameters than it should: {fewer_hint}")


def _expect_all_gradients(module: nn.Module, call: str, *inputs: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    out = module(*inputs)
    # a random weighting of the outputs, so that no parameter's gradient cancels out by symmetry
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    (out * weights).sum().backward()
    unused = [name for name, p in module.named_parameters()
              if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    module.zero_grad(set_to_none=True)
    if unused:
        raise AssertionError(f"{call}: parameters {unused[:4]} get no gradient -- a layer is created in "
                             f"__init__ but not used in forward (or its effect is cancelled)")


def _differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    return not torch.allclose(a, b, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- exercise 1
@self_check("ex1")
def check_double_conv(double_conv: Callable, *, seed: int = 0, trials: int = 3) -> None:
    """Check a student's ``DoubleConv(in_channels, out_channels)`` class (exercise 1).

    For random channel counts and image sizes (odd ones too): exactly two 3x3 convolutions and two
    normalisation layers, the same number of parameters as :class:`medseg_edu.models.DoubleConv`,
    output ``(N, out_channels, H, W)``, and a gradient for every parameter.

    Shape: the block maps ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)``.

    Taught in week 3.
    """
    gen = _generator(seed)
    for _ in range(check_int(trials, "trials", minimum=1)):
        c_in, c_out = _randint(gen, 1, 6), _randint(gen, 2, 12)
        block, call = _build(double_conv, "DoubleConv", c_in, c_out)
        convs = _convs(block)
        if len(convs) != 2:
            raise AssertionError(f"{call} should contain exactly 2 convolution layers (nn.Conv2d), "
                                 f"found {len(convs)}")
        for conv in convs:
            if tuple(conv.kernel_size) != (3, 3):
                raise AssertionError(f"{call}: the convolutions should be 3x3, found kernel_size "
                                     f"{tuple(conv.kernel_size)}")
        if convs[0].in_channels != c_in or convs[-1].out_channels != c_out:
            raise AssertionError(f"{call}: the first conv should read in_channels and the second "
                                 f"produce out_channels; found {convs[0].in_channels} -> ... -> "
                                 f"{convs[-1].out_channels}")
        norms = [m for m in block.modules() if isinstance(m, _NORM_TYPES)]
        if len(norms) != 2:
            raise AssertionError(f"{call} should contain 2 normalisation layers (one after each conv), "
                                 f"found {len(norms)}")
        _expect_same_parameters(
            block, _RefDoubleConv(2, c_in, c_out), call,
            "did you leave bias=True in the convolutions? (the normalisation right after each conv "
            "has its own learned shift, so the conv bias is useless)",
            "the norms need a learned scale and shift (affine=True for nn.InstanceNorm2d), and the "
            "second conv maps out_channels -> out_channels")
        n, h, w = _randint(gen, 1, 3), _randint(gen, 5, 24), _randint(gen, 5, 24)
        x = torch.randn(n, c_in, h, w, generator=gen)
        out = _run(block, call, x)
        _expect_shape(out, (n, c_out, h, w), call, str(tuple(x.shape)),
                      "the channels should become out_channels and the spatial size stay the same "
                      "(padding=1 for a 3x3 conv)")
        if not torch.isfinite(out).all():
            raise AssertionError(f"{call} returned NaN or Inf for a random input")
        _expect_all_gradients(block, call, x)
    print("ex1 looks right")


# ----------------------------------------------------------------------------- exercise 2
@self_check("ex2")
def check_encoder_step(encoder_step: Callable, *, seed: int = 0, trials: int = 3) -> None:
    """Check a student's ``EncoderStep(in_channels, out_channels)`` class (exercise 2).

    Output ``(N, out_channels, H/2, W/2)`` for random even sizes; two convolutions and the same
    number of parameters as :class:`medseg_edu.models.EncoderStep` (pooling has no parameters);
    max pooling: changing values that are not the maximum of their 2x2 window changes nothing.

    Shape: the step maps ``(N, in_channels, H, W)`` -> ``(N, out_channels, H/2, W/2)``.

    Taught in week 3.
    """
    gen = _generator(seed)
    for _ in range(check_int(trials, "trials", minimum=1)):
        c_in, c_out = _randint(gen, 1, 6), _randint(gen, 2, 12)
        step, call = _build(encoder_step, "EncoderStep", c_in, c_out)
        n, h, w = _randint(gen, 1, 3), 2 * _randint(gen, 3, 12), 2 * _randint(gen, 3, 12)
        x = torch.randn(n, c_in, h, w, generator=gen)
        out = _run(step, call, x)
        _expect_shape(out, (n, c_out, h // 2, w // 2), call, str(tuple(x.shape)),
                      "an encoder step halves the height and width (2x2 pooling) and sets the channels "
                      "to out_channels")
        n_convs = len(_convs(step))
        if n_convs != 2:
            raise AssertionError(f"{call} should contain exactly 2 convolutions (one double-conv block; "
                                 f"the downsampling is a pooling, not a conv), found {n_convs}")
        _expect_same_parameters(
            step, _RefEncoderStep(2, c_in, c_out), call,
            "the downsampling should be a max pooling (no parameters) followed by one DoubleConv",
            "the DoubleConv after the pooling should map in_channels -> out_channels")
        # max pooling ignores every value that is not the maximum of its 2x2 window
        windows = x.reshape(n, c_in, h // 2, 2, w // 2, 2)
        window_max = windows.amax(dim=(3, 5), keepdim=True)
        lowered = torch.where(windows == window_max, windows, windows - 1.0 - torch.rand(
            windows.shape, generator=gen)).reshape(x.shape)
        step.eval()
        with torch.no_grad():
            changed = _differs(step(x), step(lowered))
        if changed:
            raise AssertionError(f"{call}: the output changed when only values that are NOT the maximum "
                                 f"of their 2x2 window were lowered -- downsample with max pooling "
                                 f"(kernel 2, stride 2), not average pooling or a strided conv")
        step.train()
        _expect_all_gradients(step, call, x)
    print("ex2 looks right")


# ----------------------------------------------------------------------------- exercise 3
@self_check("ex3")
def check_decoder_step(decoder_step: Callable, *, seed: int = 0, trials: int = 3) -> None:
    """Check a student's ``DecoderStep(in_channels, skip_channels, out_channels)`` class (exercise 3).

    For random, all different channel counts: output ``(N, out_channels, 2h, 2w)`` from
    ``x (N, in_channels, h, w)`` and ``skip (N, skip_channels, 2h, 2w)``; the same number of
    parameters as :class:`medseg_edu.models.DecoderStep` (transposed-conv upsampling); the output
    depends on both ``x`` and ``skip``; every parameter gets a gradient.

    Shape: ``x (N, in_channels, h, w)``, ``skip (N, skip_channels, 2h, 2w)``
    -> ``(N, out_channels, 2h, 2w)``.

    Taught in week 3.
    """
    gen = _generator(seed)
    for _ in range(check_int(trials, "trials", minimum=1)):
        c_in = _randint(gen, 6, 16)
        c_skip = _randint(gen, 2, 8)
        c_out = _randint(gen, 2, 8)
        while c_out == c_skip or c_in == c_skip + c_out or c_in == c_out:
            c_out = _randint(gen, 2, 8)
        step, call = _build(decoder_step, "DecoderStep", c_in, c_skip, c_out)
        n, h, w = _randint(gen, 1, 3), _randint(gen, 3, 10), _randint(gen, 3, 10)
        x = torch.randn(n, c_in, h, w, generator=gen)
        skip = torch.randn(n, c_skip, 2 * h, 2 * w, generator=gen)
        # The messages say which property fails, never the layer recipe (that is the exercise).
        channel_hint = ("the channel counts of the layers do not fit together: a layer received a tensor with "
                        "another number of channels, or another size, than it was built for. Follow one tensor "
                        "through forward and write down its channels and size after every step")
        out = _run(step, call, x, skip, hint=channel_hint)
        _expect_shape(out, (n, c_out, 2 * h, 2 * w), call, f"x {tuple(x.shape)} and skip {tuple(skip.shape)}",
                      "the output must have out_channels channels and the skip's height and width")
        _expect_same_parameters(
            step, _RefDecoderStep(2, c_in, c_skip, c_out), call,
            "a layer has more input or output channels than the exercise's decoder step needs, or there is "
            "an extra layer",
            "a layer described in the exercise is missing or has fewer channels (every layer of the "
            "decoder step, the upsampling included, has learned weights)")
        step.eval()
        with torch.no_grad():
            base = step(x, skip)
            other_skip = step(x, torch.randn(skip.shape, generator=gen))
            other_x = step(torch.randn(x.shape, generator=gen), skip)
        step.train()
        if not _differs(base, other_skip):
            raise AssertionError(f"{call}: the output does not change when the skip tensor changes -- "
                                 f"the skip connection must be concatenated with the upsampled x")
        if not _differs(base, other_x):
            raise AssertionError(f"{call}: the output does not change when x (the coarse input) changes "
                                 f"-- upsample x and concatenate it with the skip")
        _expect_all_gradients(step, call, x, skip)
    print("ex3 looks right")


# ----------------------------------------------------------------------------- exercise 4
@self_check("ex4")
def check_unet(unet: Callable, *, seed: int = 0, trials: int = 3,
               levels: Sequence[int] = (3, 4)) -> None:
    """Check a student's ``SmallUNet(in_channels, out_channels, features=...)`` class (exercise 4).

    For random channels and ``features`` of each length in ``levels``: output logits
    ``(N, out_channels, H, W)`` for sizes divisible by ``2 ** (len(features) - 1)``; the same number
    of parameters as :class:`medseg_edu.models.UNet` with the same features; every parameter gets a
    gradient; the output depends on the input.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)``.

    Taught in week 3.
    """
    gen = _generator(seed)
    levels = tuple(levels)
    if not levels or not all(isinstance(k, int) and k >= 2 for k in levels):
        raise ValueError(f"levels must be a non-empty sequence of ints >= 2, got {levels!r}")
    for trial in range(check_int(trials, "trials", minimum=1)):
        n_levels = levels[trial % len(levels)]
        c_in, c_out = _randint(gen, 1, 4), _randint(gen, 1, 4)
        base = _randint(gen, 2, 6)
        features = tuple(base * 2 ** i for i in range(n_levels))
        net, call = _build(unet, "SmallUNet", c_in, c_out, features=features)
        divisor = 2 ** (n_levels - 1)
        n = _randint(gen, 1, 2)
        h, w = divisor * _randint(gen, 2, 4), divisor * _randint(gen, 2, 4)
        x = torch.randn(n, c_in, h, w, generator=gen)
        out = _run(net, call, x, hint="follow the shapes level by level: the encoder keeps each "
                                      "level's output as a skip, the decoder uses them finest-last")
        _expect_shape(out, (n, c_out, h, w), call, str(tuple(x.shape)),
                      "a U-Net returns one logit map per class at the input's resolution (1x1 head "
                      "from features[0] to out_channels)")
        _expect_same_parameters(
            net, _RefUNet(2, c_in, c_out, features=features), call,
            f"with {len(features)} levels there is one stem DoubleConv, {len(features) - 1} encoder "
            f"steps (the last is the bottleneck), {len(features) - 1} decoder steps and a 1x1 head",
            f"with {len(features)} levels there is one stem DoubleConv, {len(features) - 1} encoder "
            f"steps (the last is the bottleneck), {len(features) - 1} decoder steps (each with its "
            f"skip) and a 1x1 head")
        net.eval()
        with torch.no_grad():
            changed = _differs(net(x), net(torch.randn(x.shape, generator=gen)))
        net.train()
        if not changed:
            raise AssertionError(f"{call}: the output does not depend on the input image")
        _expect_all_gradients(net, call, x)
    print("ex4 looks right")
