"""Benchmark: sliding-window inference of medseg_edu against MONAI, same network, same settings.

Input (1, 4, 128, 128, 128), window 64^3, overlap 0.5 (27 windows), Gaussian blending,
sw_batch_size 4; the network is a medseg_edu ``UNet(3, 4, 4, features=...)`` with random weights
in eval mode. Both runs happen under ``torch.inference_mode()``, alternate which goes first, and
the median and minimum over ``--repeats`` runs are printed with the ratio (medseg / MONAI;
below 1 means medseg_edu is faster). The two outputs are compared (max abs difference).

Optionally (``--slices``) the throughput of ``predict_slices`` with a 2D U-Net on a 128^3 volume.

Usage: ``python benchmarks/inference.py [--size 128] [--roi 64] [--repeats 3]
[--features 4,8,16,32] [--sw-batch 4] [--slices]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from medseg_edu.inference import predict_slices, sliding_window_inference
from medseg_edu.models import UNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--roi", type=int, default=64)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--features", default="4,8,16,32")
    parser.add_argument("--sw-batch", type=int, default=4)
    parser.add_argument("--slices", action="store_true", help="also time predict_slices")
    args = parser.parse_args()
    from monai.inferers import sliding_window_inference as monai_sliding_window

    features = tuple(int(f) for f in args.features.split(","))
    torch.manual_seed(0)
    net = UNet(3, 4, 4, features=features).eval()
    image = torch.randn(1, 4, args.size, args.size, args.size)
    settings = dict(overlap=args.overlap, mode="gaussian", sigma_scale=0.125)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; input {tuple(image.shape)}, "
          f"roi {args.roi}^3, overlap {args.overlap}, sw_batch_size {args.sw_batch}, "
          f"UNet features {features}")

    def compare(network, repeats, label):
        def run_medseg():
            return sliding_window_inference(network, image, roi_size=args.roi,
                                            overlap=args.overlap, blend="gaussian",
                                            sigma_scale=0.125, sw_batch_size=args.sw_batch)

        def run_monai():
            with torch.inference_mode():
                return monai_sliding_window(image, args.roi, args.sw_batch, network, **settings)

        runners = {"medseg_edu": run_medseg, "MONAI": run_monai}
        times = {name: [] for name in runners}
        outputs = {name: fn() for name, fn in runners.items()}     # warm-up (allocator, oneDNN)
        for repeat in range(repeats):
            order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
            for name in order:
                start = time.perf_counter()
                runners[name]()
                times[name].append(time.perf_counter() - start)
        diff = (outputs["medseg_edu"] - outputs["MONAI"]).abs().max().item()
        print(label)
        for name, values in times.items():
            print(f"{name:>13}: median {1000 * statistics.median(values):9.1f} ms, "
                  f"min {1000 * min(values):9.1f} ms over {len(values)} runs")
        ratio_median = statistics.median(times["medseg_edu"]) / statistics.median(times["MONAI"])
        ratio_min = min(times["medseg_edu"]) / min(times["MONAI"])
        print(f"  ratio medseg_edu / MONAI: median {ratio_median:.3f}, min {ratio_min:.3f} "
              f"(<= 1 is the goal); max |difference| of the outputs {diff:.2e}")

    compare(net, args.repeats, "sliding window with the UNet:")
    # the same windows with a network that costs almost nothing: the blending machinery alone
    compare(lambda windows: windows * 1.0, 2 * args.repeats + 1,
            "machinery only (network = multiply by 1):")

    if args.slices:
        torch.manual_seed(0)
        net2d = UNet(2, 4, 4, features=(16, 32, 64, 128)).eval()
        volume = torch.randn(4, args.size, args.size, args.size)
        predict_slices(net2d, volume[:, :, :, :4])
        start = time.perf_counter()
        predict_slices(net2d, volume, axis=-1, batch_size=16)
        seconds = time.perf_counter() - start
        print(f"predict_slices: 2D UNet (16..128) on {tuple(volume.shape)}: {seconds * 1000:.0f} ms, "
              f"{args.size / seconds:.1f} slices/s")


if __name__ == "__main__":
    main()
