"""Benchmark: one 2D U-Net training step (forward + backward + Adam step).

Compares, in the same run and on the same inputs (batch 16 x 4 x 128 x 128, 4 classes, base width 16):

- medseg_edu ``UNet(2, 4, 4, features=(16, 32, 64, 128, 256))`` with instance norm (default) and
  with batch norm;
- MONAI ``BasicUNet(spatial_dims=2, features=(16, 32, 64, 128, 256, 16))``: the same widths
  (5 levels of 16..256 channels, last decoder 16 channels), instance norm + LeakyReLU;
- a plain minimal PyTorch U-Net written below (conv-BN-ReLU x2 per level, max pooling,
  transposed convolutions, same widths), the reference.

FLOPs of forward + backward are counted with ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matrix products; norms and activations are not counted), so GFLOP/s compares
how well each network keeps the CPU busy. Steps of the models are interleaved and the median
time is reported, which keeps the ratios fair on a busy machine.

Usage: ``python benchmarks/train.py [--batch 16] [--size 128] [--steps 5]``. A CUDA section
(fp32 vs automatic mixed precision) runs only when a GPU is present.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medseg_edu.models import UNet


class PlainUNet(nn.Module):
    """The textbook U-Net in as few lines as possible: the reference for the FLOP rate."""

    def __init__(self, in_channels: int, out_channels: int, features=(16, 32, 64, 128, 256)):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.down = nn.ModuleList([block(in_channels, features[0])] +
                                  [block(a, b) for a, b in zip(features[:-1], features[1:])])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2)
                                 for a, b in zip(features[:-1], features[1:]))
        self.up_blocks = nn.ModuleList(block(2 * a, a) for a in features[:-1])
        self.head = nn.Conv2d(features[0], out_channels, 1)

    def forward(self, x):
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, blk, skip in zip(reversed(self.ups), reversed(self.up_blocks), reversed(skips[:-1])):
            x = blk(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


def build_models(in_ch: int, out_ch: int) -> dict:
    models = {
        "medseg UNet (instance)": UNet(2, in_ch, out_ch, features=(16, 32, 64, 128, 256)),
        "medseg UNet (batch)": UNet(2, in_ch, out_ch, features=(16, 32, 64, 128, 256), norm="batch"),
        "plain PyTorch U-Net": PlainUNet(in_ch, out_ch),
    }
    try:
        from monai.networks.nets import BasicUNet
        models["MONAI BasicUNet"] = BasicUNet(spatial_dims=2, in_channels=in_ch, out_channels=out_ch,
                                              features=(16, 32, 64, 128, 256, 16))
    except ImportError:
        print("MONAI not installed: skipping BasicUNet")
    return models


def train_step(model, optimizer, x, y, autocast_dtype=None):
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    optimizer.step()


def count_flops(model, x, y) -> float:
    """FLOPs of one forward + backward pass."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def run(models: dict, x, y, *, steps: int, autocast_dtype=None, sync=lambda: None) -> dict:
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    for name, m in models.items():          # warm-up (allocations, cuDNN autotuning)
        m.to(x.device).train()
        train_step(m, optimizers[name], x, y, autocast_dtype)
    times = {name: [] for name in models}
    for _ in range(steps):                  # interleave the models: same machine load for all
        for name, m in models.items():
            sync()
            start = time.perf_counter()
            train_step(m, optimizers[name], x, y, autocast_dtype)
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, models: dict, seconds: dict, flops: dict, batch: int, reference: str) -> None:
    print(f"\n{title}")
    print(f"{'model':26s} {'params':>9s} {'GFLOP/step':>11s} {'s/step':>8s} {'img/s':>8s} "
          f"{'GFLOP/s':>8s} {'img/s ratio':>12s} {'GFLOP/s ratio':>14s}")
    ref_ips = batch / seconds[reference]
    ref_rate = flops[reference] / seconds[reference]
    for name in models:
        params = sum(p.numel() for p in models[name].parameters())
        ips, rate = batch / seconds[name], flops[name] / seconds[name]
        print(f"{name:26s} {params:9d} {flops[name] / 1e9:11.2f} {seconds[name]:8.3f} {ips:8.1f} "
              f"{rate / 1e9:8.1f} {ips / ref_ips:12.2f} {rate / ref_rate:14.2f}")
    print(f"(ratios relative to the {reference})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    in_ch, out_ch = 4, 4
    models = build_models(in_ch, out_ch)
    x = torch.randn(args.batch, in_ch, args.size, args.size)
    y = torch.randint(0, out_ch, (args.batch, args.size, args.size))
    flops = {name: count_flops(m, x, y) for name, m in models.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch} x "
          f"{in_ch} x {args.size}^2, {args.steps} timed steps per model (median)")
    seconds = run(models, x, y, steps=args.steps)
    report("CPU, float32, training step (forward + backward + Adam)", models, seconds, flops,
           args.batch, "plain PyTorch U-Net")

    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        xg, yg = x.cuda(), y.cuda()
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        print(f"\nCUDA: {torch.cuda.get_device_name()}")
        for label, dtype in (("float32", None), (f"AMP {str(amp_dtype)[6:]}", amp_dtype)):
            secs = run(models, xg, yg, steps=max(args.steps, 20), autocast_dtype=dtype,
                       sync=torch.cuda.synchronize)
            report(f"CUDA, {label}", models, secs, flops, args.batch, "plain PyTorch U-Net")
    else:
        print("\nNo CUDA device: GPU section skipped.")


if __name__ == "__main__":
    main()
