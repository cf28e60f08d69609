"""``medseg-edu demo``: the course's main job from start to finish, in about two minutes on a CPU.

1. generate (or reuse) the built-in synthetic brain-tumour data set;
2. split it by patient into train / validation / test (test patients are never seen in training);
3. train a 2D U-Net on axial slices (all tumour slices plus a share of empty ones);
4. predict every held-out test volume slice by slice, and score it per BraTS region
   (whole tumour WT, tumour core TC, enhancing tumour ET) with Dice and HD95;
5. write the results: ``metrics.csv``, ``overlay.png``, ``history.png``, ``predictions/<case>.nii.gz``
   (same geometry as the input image) and ``model.pt`` (read it back with
   ``medseg_edu.checkpoint.load_checkpoint``).

Everything here is a call into the library, so a notebook can run each step on its own.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from medseg_edu.checkpoint import save_checkpoint
from medseg_edu.data.io import list_brain_cases, load_brain_case
from medseg_edu.data.nifti import save_nifti
from medseg_edu.data.datasets import BrainSlices
from medseg_edu.data.phantoms import builtin_brain
from medseg_edu.data.splits import check_no_leakage, patient_split
from medseg_edu.inference import predict_slices
from medseg_edu.intensity import zscore_normalise
from medseg_edu.losses import dice_ce_loss
from medseg_edu.metrics import evaluate
from medseg_edu.models import UNet
from medseg_edu.training import fit, pick_device, plot_history, seed_everything
from medseg_edu.transforms import random_flip

__all__ = ["DEMO_SETTINGS", "load_normalised_case", "run_demo"]

# Data, network and training length of each mode. "default" is tuned to reach whole-tumour
# Dice >= 0.8 on held-out patients in about two minutes on 2 CPU cores.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"cases": 5, "shape": (48, 48, 48), "spacing_mm": (4.0, 4.0, 4.0), "features": (8, 16, 32),
              "epochs": 1, "max_steps": 2, "batch_size": 8, "empty_fraction": 0.1, "lr": 3e-3},
    "default": {"cases": 16, "shape": (64, 64, 64), "spacing_mm": (3.0, 3.0, 3.0), "features": (16, 32, 64, 128),
                "epochs": 12, "max_steps": None, "batch_size": 16, "empty_fraction": 0.1, "lr": 3e-3},
    "full": {"cases": 32, "shape": (96, 96, 96), "spacing_mm": (2.0, 2.0, 2.0), "features": (16, 32, 64, 128),
             "epochs": 20, "max_steps": None, "batch_size": 16, "empty_fraction": 0.2, "lr": 3e-3},
}


def load_normalised_case(image_path: Union[str, os.PathLike], label_path: Union[str, os.PathLike, None]) -> dict:
    """Load one brain case and z-score each channel inside the brain (the network's input scale).

    Shape: dict with image (4, X, Y, Z) float32 (normalised), label (X, Y, Z) uint8 or None,
    affine (4, 4), spacing_mm, case_id.
    """
    case = load_brain_case(image_path, label_path)
    case["image"] = zscore_normalise(case["image"])
    return case


def _save_overlay(path: Path, case: dict, pred: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    from medseg_edu.viz import compare_predictions, max_tumour_slice

    z = max_tumour_slice(case["label"], axis=2)
    figure = compare_predictions(case["image"][0, :, :, z], case["label"][:, :, z], pred[:, :, z],
                                 spacing_mm=case["spacing_mm"][:2])
    figure.suptitle(f"held-out case {case['case_id']}, axial slice {z} (FLAIR)", y=1.04)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def run_demo(*, out_dir: Union[str, os.PathLike] = "medseg-demo", full: bool = False, device: str = "auto",
             seed: int = 0, quick: bool = False, epochs: int | None = None) -> dict[str, Any]:
    """Train a 2D U-Net on the built-in brain data, evaluate it on held-out patients, write results.

    Args:
        out_dir: folder for ``metrics.csv``, ``overlay.png``, ``history.png``, ``predictions/`` and
            ``model.pt`` (created if needed).
        full: more cases and epochs (better results, several times longer).
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda" or "mps".
        seed: seeds the data split, the network's initialisation and the training order.
        quick: a tiny setting (small grid, 2 training steps) for tests; the Dice it reaches means nothing.
        epochs: override the number of epochs of the chosen setting.

    Returns:
        dict with ``table`` (one row per test case and region), ``summary`` (per region),
        ``mean_dice`` and ``mean_hd95`` (region -> float), ``history``, ``timings`` (wall seconds per
        stage, plus ``total_cpu``, CPU seconds summed over threads), ``settings``, ``test_cases``, ``data_root`` (the data set folder) and ``out_dir``.

    Shape: writes predictions (X, Y, Z) uint8 with the input image's affine.

    Example:
        >>> result = run_demo(out_dir="medseg-demo")      # doctest: +SKIP
        >>> result["mean_dice"]["WT"] >= 0.8              # doctest: +SKIP
        True
    """
    if quick and full:
        raise ValueError("quick and full exclude each other, got quick=True and full=True")
    mode = "quick" if quick else ("full" if full else "default")
    settings = dict(DEMO_SETTINGS[mode])
    if epochs is not None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        settings["epochs"] = int(epochs)
    out_dir = Path(out_dir)
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start, cpu_start = time.perf_counter(), time.process_time()

    # 1. data
    tick = time.perf_counter()
    root = builtin_brain(cases=settings["cases"], seed=0, shape=settings["shape"], spacing_mm=settings["spacing_mm"])
    table = list_brain_cases(root)
    timings["data"] = time.perf_counter() - tick
    print(f"data: {len(table)} cases in {root} ({timings['data']:.1f} s)")

    # 2. patient-level split
    split = patient_split(table["patient_id"].tolist(), fractions=(0.6, 0.15, 0.25), seed=seed)
    check_no_leakage(table["patient_id"].tolist(), split["train"], split["val"], split["test"])
    load = {name: [load_normalised_case(table["image_path"][i], table["label_path"][i]) for i in rows]
            for name, rows in split.items()}
    print("split by patient: " + ", ".join(f"{name} {len(rows)}" for name, rows in split.items()))

    # 3. train a 2D U-Net on slices
    tick = time.perf_counter()
    seed_everything(seed)
    # every tumour slice plus a share of the empty ones; random in-plane flips, new ones every epoch
    train_set = BrainSlices(load["train"], empty_fraction=settings["empty_fraction"], seed=seed,
                            transform=functools.partial(random_flip, p=0.5))
    val_set = BrainSlices(load["val"], empty_fraction=0.0, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=settings["batch_size"], shuffle=True, generator=generator)
    val_loader = DataLoader(val_set, batch_size=32)
    model = UNet(2, 4, 4, features=settings["features"])
    print(f"training a 2D U-Net on {len(train_set)} slices ({settings['epochs']} epochs)")
    history = fit(model, train_loader, val_loader, loss_fn=dice_ce_loss, epochs=settings["epochs"],
                  lr=settings["lr"], device=device, max_steps=settings["max_steps"], seed=seed)
    timings["train"] = time.perf_counter() - tick

    # 4. predict the held-out volumes and evaluate
    tick = time.perf_counter()
    run_device = pick_device(device, verbose=False)
    model = model.to(run_device).eval()
    preds = []
    for case in load["test"]:
        with torch.no_grad():
            logits = predict_slices(model, torch.from_numpy(case["image"]).to(run_device), axis=-1, batch_size=32)
        pred = logits.argmax(0).cpu().numpy().astype(np.uint8)
        preds.append(pred)
        save_nifti(out_dir / "predictions" / f"{case['case_id']}.nii.gz", pred, case["affine"])
    metrics, summary = evaluate(preds, [c["label"] for c in load["test"]],
                                spacing_mm=[c["spacing_mm"] for c in load["test"]], regions="brats",
                                case_ids=[c["case_id"] for c in load["test"]])
    timings["evaluate"] = time.perf_counter() - tick

    # 5. write the results
    metrics.to_csv(out_dir / "metrics.csv", index=False)
    _save_overlay(out_dir / "overlay.png", load["test"][0], preds[0])
    import matplotlib.pyplot as plt

    figure = plot_history(history)
    figure.savefig(out_dir / "history.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    save_checkpoint(model.cpu(), out_dir / "model.pt", extra={"settings": settings, "seed": seed})
    timings["total"] = time.perf_counter() - start
    timings["total_cpu"] = time.process_time() - cpu_start     # CPU seconds of all threads

    mean_dice = metrics.groupby("region", sort=False)["dice"].mean().to_dict()
    mean_hd95 = metrics.groupby("region", sort=False)["hd95"].mean().to_dict()
    print()
    print(metrics[["case_id", "region", "empty", "dice", "hd95"]].to_string(index=False, float_format="%.3f"))
    print()
    print("mean over test patients: " + ", ".join(
        f"{region} Dice {mean_dice[region]:.3f} HD95 {mean_hd95[region]:.1f} mm" for region in mean_dice))
    print("timings: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items()))
    print(f"results written to {out_dir}")
    return {"table": metrics, "summary": summary, "mean_dice": mean_dice, "mean_hd95": mean_hd95,
            "history": history, "timings": timings, "settings": settings,
            "test_cases": [c["case_id"] for c in load["test"]], "data_root": root, "out_dir": out_dir}
