"""The week-3 self-checks pass correct U-Net blocks and fail plausible mistakes with a useful message."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medseg_edu.checks.week3 import check_decoder_step, check_double_conv, check_encoder_step, check_unet
from medseg_edu.models import DecoderStep, DoubleConv, EncoderStep, UNet


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- correct student versions
class GoodDoubleConv(nn.Module):
    """Written the way a student would: nn.Sequential, InstanceNorm2d(affine=True), ReLU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU())

    def forward(self, x):
        return self.body(x)


class GoodEncoderStep(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = GoodDoubleConv(in_channels, out_channels)

    def forward(self, x):
        return self.conv(self.pool(x))


class GoodDecoderStep(nn.Module):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = GoodDoubleConv(skip_channels + out_channels, out_channels)

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class GoodUNet(nn.Module):
    def __init__(self, in_channels, out_channels, features=(8, 16, 32)):
        super().__init__()
        self.stem = GoodDoubleConv(in_channels, features[0])
        self.down = nn.ModuleList(GoodEncoderStep(a, b) for a, b in zip(features[:-1], features[1:]))
        self.up = nn.ModuleList(GoodDecoderStep(b, a, a) for a, b in zip(features[:-1], features[1:]))
        self.head = nn.Conv2d(features[0], out_channels, 1)

    def forward(self, x):
        skips = [self.stem(x)]
        for step in self.down:
            skips.append(step(skips[-1]))
        x = skips.pop()
        for step in reversed(self.up):
            x = step(x, skips.pop())
        return self.head(x)


def _package_double_conv(c_in, c_out):
    return DoubleConv(2, c_in, c_out)


def test_checks_pass_the_package_blocks_and_student_style_blocks(capsys):
    check_double_conv(_package_double_conv, seed=0)
    check_double_conv(GoodDoubleConv, seed=1)
    check_encoder_step(lambda a, b: EncoderStep(2, a, b), seed=0)
    check_encoder_step(GoodEncoderStep, seed=1)
    check_decoder_step(lambda a, s, b: DecoderStep(2, a, s, b), seed=0)
    check_decoder_step(GoodDecoderStep, seed=1)
    check_unet(lambda a, b, features: UNet(2, a, b, features=features), seed=0)
    check_unet(GoodUNet, seed=1, trials=2)
    out = capsys.readouterr().out
    for k in range(1, 5):
        assert out.count(f"ex{k} looks right") == 2


def test_unet_check_passes_one_output_channel():
    """Regression: a symmetric weighting of the outputs gave the 1x1 head's bias a zero gradient."""
    for seed in range(8):
        check_unet(lambda a, b, features: UNet(2, a, b, features=features), seed=seed, trials=1, levels=(2,))


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_checks_pass_for_any_seed(seed):
    check_double_conv(GoodDoubleConv, seed=seed, trials=2)
    check_decoder_step(GoodDecoderStep, seed=seed, trials=2)


def test_checks_are_always_seeded():
    """An unseeded check could pass once and fail the next time; seed=None is refused."""
    with pytest.raises(TypeError, match="seed must be an int"):
        check_double_conv(GoodDoubleConv, seed=None)


# ----------------------------------------------------------------------------- wrong double conv
class OneConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                                  nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU())

    def forward(self, x):
        return self.body(x)


class NoPadding(GoodDoubleConv):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels)
        self.body[0].padding = (0, 0)
        self.body[3].padding = (0, 0)


class WithBias(GoodDoubleConv):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels)
        self.body[0] = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.body[3] = nn.Conv2d(out_channels, out_channels, 3, padding=1)


class NoAffine(GoodDoubleConv):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels)
        self.body[1] = nn.InstanceNorm2d(out_channels)
        self.body[4] = nn.InstanceNorm2d(out_channels)


class SecondConvUnused(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(out_channels, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm2d(out_channels, affine=True)

    def forward(self, x):
        return F.relu(self.norm2(F.relu(self.norm1(self.conv1(x)))))   # conv2 forgotten


class FiveByFive(GoodDoubleConv):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels)
        self.body[0] = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)


class Unfinished(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        raise NotImplementedError()


@pytest.mark.parametrize("wrong, message", [
    (OneConv, "exactly 2 convolution"),
    (NoPadding, r"padding=1"),
    (WithBias, "bias=True"),
    (NoAffine, "affine=True"),
    (SecondConvUnused, "get no gradient"),
    (FiveByFive, "should be 3x3"),
    (Unfinished, "NotImplementedError"),
])
def test_double_conv_check_fails_wrong_blocks(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_double_conv(wrong, seed=0)


def test_double_conv_check_wants_the_class():
    with pytest.raises(TypeError, match="pass the class DoubleConv itself"):
        check_double_conv(GoodDoubleConv(3, 4) and "DoubleConv", seed=0)
    with pytest.raises(ValueError, match="trials must be an int >= 1"):
        check_double_conv(GoodDoubleConv, trials=0)


# ----------------------------------------------------------------------------- wrong encoder step
class AvgPoolEncoder(GoodEncoderStep):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels)
        self.pool = nn.AvgPool2d(2)


class StridedConvEncoder(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.down = nn.Conv2d(in_channels, in_channels, 2, stride=2)
        self.conv = GoodDoubleConv(in_channels, out_channels)

    def forward(self, x):
        return self.conv(self.down(x))


class NoPoolEncoder(GoodEncoderStep):
    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("wrong, message", [
    (AvgPoolEncoder, "max pooling"),
    (StridedConvEncoder, "exactly 2 convolutions"),
    (NoPoolEncoder, "halves the height and width"),
])
def test_encoder_check_fails_wrong_steps(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_encoder_step(wrong, seed=0)


# ----------------------------------------------------------------------------- wrong decoder step
class ConcatCountedWrong(GoodDecoderStep):
    """Assumes the concatenation has in_channels channels (true only in some U-Nets)."""

    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.conv = GoodDoubleConv(in_channels, out_channels)


class SkipIgnored(nn.Module):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = GoodDoubleConv(out_channels, out_channels)

    def forward(self, x, skip):
        return self.conv(self.up(x))


class SkipMultipliedByZero(GoodDecoderStep):
    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), 0 * skip], dim=1))


class InterpolatingDecoder(nn.Module):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.conv = GoodDoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x, skip):
        return self.conv(torch.cat([F.interpolate(x, scale_factor=2), skip], dim=1))


class NoUpsample(GoodDecoderStep):
    """Uses a 1x1 conv instead of upsampling and shrinks the skip to fit."""

    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.up = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip[..., ::2, ::2]], dim=1))


@pytest.mark.parametrize("wrong, message", [
    (ConcatCountedWrong, "channel counts of the layers do not fit together"),
    (SkipIgnored, "fewer parameters"),
    (SkipMultipliedByZero, "does not change when the skip"),
    (InterpolatingDecoder, "more parameters than it should: a layer has more input or output channels"),
    (NoUpsample, "the skip's height and width"),
])
def test_decoder_check_fails_wrong_steps(wrong, message):
    with pytest.raises(AssertionError, match=message) as failure:
        check_decoder_step(wrong, seed=0)
    # the message names the failing property, not the answer: no layer recipe, no channel formula
    for answer in ("transposed conv", "skip_channels + out_channels", "2x2", "stride 2"):
        assert answer not in str(failure.value)


# ----------------------------------------------------------------------------- wrong U-Net
class NoHead(GoodUNet):
    def forward(self, x):
        skips = [self.stem(x)]
        for step in self.down:
            skips.append(step(skips[-1]))
        x = skips.pop()
        for step in reversed(self.up):
            x = step(x, skips.pop())
        return x


class FixedFeatures(GoodUNet):
    def __init__(self, in_channels, out_channels, features=(8, 16, 32)):
        super().__init__(in_channels, out_channels, features=(8, 16, 32))


class SkipsInWrongOrder(GoodUNet):
    def forward(self, x):
        skips = [self.stem(x)]
        for step in self.down:
            skips.append(step(skips[-1]))
        x = skips.pop()
        for step, skip in zip(reversed(self.up), skips):      # finest skip first: wrong sizes
            x = step(x, skip)
        return self.head(x)


class ExtraUnusedLayer(GoodUNet):
    def __init__(self, in_channels, out_channels, features=(8, 16, 32)):
        super().__init__(in_channels, out_channels, features)
        self.spare = nn.Conv2d(features[0], features[0], 1, bias=False)


@pytest.mark.parametrize("wrong, message", [
    (NoHead, "1x1 head"),
    (FixedFeatures, "parameters than it should"),
    (SkipsInWrongOrder, "finest-last"),
    (ExtraUnusedLayer, "more parameters"),
])
def test_unet_check_fails_wrong_networks(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_unet(wrong, seed=0, trials=2)


def test_unet_check_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels must be"):
        check_unet(GoodUNet, levels=(1,))
