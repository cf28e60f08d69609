"""Benchmark: metrics on a 240 x 240 x 155 volume (the BraTS grid), against numpy and MONAI.

Prints, in one run, the two performance goals of the metrics issue as ratios:

- binary Dice: ``medseg_edu.metrics.dice_score`` vs ``np.count_nonzero(a & b)`` (goal: within 2x)
  and vs MONAI ``DiceMetric`` (goal: at least 50x faster);
- HD95 + ASSD + NSD together (``surface_metrics``, one pass) vs MONAI
  ``compute_hausdorff_distance(percentile=95)`` alone on a pair of spheres (goal: at most 0.5x), with
  the values of both libraries side by side (they must agree).

Calls are interleaved (A, B, C, A, B, C, ...) and the median is reported, which keeps the ratios fair
on a busy machine. Usage: ``python benchmarks/metrics.py [--repeats 15]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from medseg_edu.metrics import (assd_distance, dice_score, hd95_distance, surface_dice_score,
                                surface_metrics)

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)
TOLERANCE_MM = 1.0


def sphere(shape, centre, radius):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius ** 2


def interleaved_medians(functions: dict, repeats: int) -> dict:
    """Median wall time in ms of each function, calling them in turn ``repeats`` times."""
    for fn in functions.values():  # warm-up
        fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from monai.metrics import (DiceMetric, compute_average_surface_distance, compute_hausdorff_distance,
                               compute_surface_dice)

    pred = sphere(SHAPE, (120, 120, 77), 40)
    target = sphere(SHAPE, (123, 118, 79), 38)
    pred_t = torch.from_numpy(pred)[None, None].float()
    target_t = torch.from_numpy(target)[None, None].float()
    name = "x".join(map(str, SHAPE))
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.repeats} interleaved calls")

    # ---------------------------------------------------------------- Dice
    monai_dice = DiceMetric(include_background=True)
    t = interleaved_medians({
        "ours": lambda: dice_score(pred, target),
        "count_nonzero": lambda: np.count_nonzero(pred & target),
        "one-liner": lambda: 2 * np.sum(pred & target) / (np.sum(pred) + np.sum(target)),
        "monai": lambda: monai_dice(pred_t, target_t),
    }, args.repeats)
    ours_dice, ref_dice = dice_score(pred, target), monai_dice(pred_t, target_t).item()
    print(f"dice {name}: ours {t['ours']:.2f} ms, count_nonzero {t['count_nonzero']:.2f} ms "
          f"({t['ours'] / t['count_nonzero']:.2f}x), numpy one-liner {t['one-liner']:.2f} ms, "
          f"MONAI {t['monai']:.1f} ms ({t['monai'] / t['ours']:.0f}x faster)")
    print(f"  values: ours {ours_dice:.6f}, MONAI {ref_dice:.6f}; goals: within 2x of count_nonzero "
          f"{'OK' if t['ours'] <= 2 * t['count_nonzero'] else 'MISSED'}, >= 50x faster than MONAI "
          f"{'OK' if t['monai'] >= 50 * t['ours'] else 'MISSED'}")

    # ---------------------------------------------------------------- surface
    t = interleaved_medians({
        "ours": lambda: surface_metrics(pred, target, spacing_mm=SPACING, tolerance_mm=TOLERANCE_MM),
        "ours_separate": lambda: (hd95_distance(pred, target, spacing_mm=SPACING),
                                  assd_distance(pred, target, spacing_mm=SPACING),
                                  surface_dice_score(pred, target, spacing_mm=SPACING,
                                                     tolerance_mm=TOLERANCE_MM)),
        "monai_hd95": lambda: compute_hausdorff_distance(pred_t, target_t, include_background=True,
                                                         percentile=95, spacing=SPACING),
    }, max(3, args.repeats // 3))
    ours = surface_metrics(pred, target, spacing_mm=SPACING, tolerance_mm=TOLERANCE_MM)
    ref = {"hd95": compute_hausdorff_distance(pred_t, target_t, include_background=True, percentile=95,
                                              spacing=SPACING).item(),
           "assd": compute_average_surface_distance(pred_t, target_t, include_background=True,
                                                    symmetric=True, spacing=SPACING).item(),
           "nsd": compute_surface_dice(pred_t, target_t, [TOLERANCE_MM], include_background=True,
                                       spacing=SPACING).item()}
    ratio = t["ours"] / t["monai_hd95"]
    print(f"hd95+assd+nsd {name} sphere pair: ours {t['ours']:.1f} ms (one pass), "
          f"MONAI compute_hausdorff_distance(percentile=95) alone {t['monai_hd95']:.1f} ms ({ratio:.2f}x); "
          f"our three separate calls {t['ours_separate']:.1f} ms")
    same = all(abs(ours[k] - ref[k]) <= 1e-5 * max(1.0, abs(ref[k])) for k in ref)
    print("  values: " + ", ".join(f"{k} ours {ours[k]:.6f} MONAI {ref[k]:.6f}" for k in ref)
          + f"; same values {'OK' if same else 'MISSED'}; goal <= 0.5x {'OK' if ratio <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
