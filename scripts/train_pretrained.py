"""Train the checkpoints shipped in ``medseg_edu/pretrained/`` on the built-in phantoms.

Anyone can rerun it; each network takes a few minutes on 2 CPU cores::

    python scripts/train_pretrained.py                      # all of them
    python scripts/train_pretrained.py --name skin2d_unet   # one

For each name it writes ``<name>.pt`` (a checkpoint in the format of ``medseg_edu.checkpoint``, weights in
float16, a few hundred kB) and ``<name>.json``
(network config, data arguments, preprocessing, seed, training settings and time, and the metrics
reached on held-out patients). ``medseg_edu.models.load_pretrained(name)`` reads both.
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from medseg_edu.checkpoint import save_checkpoint
from medseg_edu.data.io import list_brain_cases, list_skin_cases, load_skin_case
from medseg_edu.data.datasets import BrainSlices, SkinImages, sample_patch
from medseg_edu.data.phantoms import builtin_brain, builtin_skin
from medseg_edu.data.splits import check_no_leakage, patient_split
from medseg_edu.demo import load_normalised_case
from medseg_edu.inference import predict_slices, sliding_window_inference
from medseg_edu.losses import dice_ce_loss
from medseg_edu.metrics import evaluate
from medseg_edu.models import UNet
from medseg_edu.runtime import seed_everything
from medseg_edu.training import fit
from medseg_edu.transforms import random_flip

RECIPES: dict[str, dict[str, Any]] = {
    "brain2d_unet": {
        "description": "2D U-Net on axial brain slices: 4 MRI channels -> 4 classes (BraTS labels)",
        "data": {"builtin": "brain", "cases": 16, "seed": 0, "shape": [64, 64, 64], "spacing_mm": [3.0, 3.0, 3.0]},
        "preprocessing": "z-score each channel inside the brain (medseg_edu.intensity.zscore_normalise) on the "
                         "whole volume; predict slice by slice along z (medseg_edu.inference.predict_slices)",
        "model": {"class": "UNet", "spatial_dims": 2, "in_channels": 4, "out_channels": 4,
                  "features": [16, 32, 64, 128]},
        "training": {"epochs": 6, "batch_size": 16, "lr": 3e-3, "loss": "dice_ce_loss",
                     "empty_fraction": 0.1, "augmentation": "random flips in-plane"},
    },
    "brain3d_unet": {
        "description": "3D patch U-Net: 4 MRI channels -> 4 classes (BraTS labels), 32^3 patches of a 3 mm grid",
        "data": {"builtin": "brain", "cases": 16, "seed": 0, "shape": [64, 64, 64], "spacing_mm": [3.0, 3.0, 3.0]},
        "preprocessing": "z-score each channel inside the brain (medseg_edu.intensity.zscore_normalise) on the "
                         "whole volume; sliding-window inference with roi 32^3, overlap 0.5 (or the whole 64^3 "
                         "volume at once)",
        "model": {"class": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 4,
                  "features": [8, 16, 32, 64]},
        "training": {"epochs": 24, "batch_size": 2, "lr": 3e-3, "loss": "dice_ce_loss", "patch_size": [32, 32, 32],
                     "patches_per_volume": 4, "min_tumour_fraction": 0.01, "tumour_patch_share": 0.75,
                     "augmentation": "random flips"},
    },
    "skin2d_unet": {
        "description": "2D U-Net on dermoscopy images: RGB in [0, 1] -> 2 classes (skin, lesion), 128 x 128",
        "data": {"builtin": "skin", "cases": 64, "seed": 0, "size": 128},
        "preprocessing": "RGB in [0, 1] as loaded by medseg_edu.data.io.load_skin_case, 128 x 128 pixels "
                         "(resize with medseg_edu.data.datasets.resize_image_and_label); softmax over 2 classes",
        "model": {"class": "UNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 2,
                  "features": [16, 32, 64, 128]},
        "training": {"epochs": 10, "batch_size": 8, "lr": 3e-3, "loss": "dice_ce_loss",
                     "augmentation": "random flips"},
    },
}
FRACTIONS = (0.6, 0.15, 0.25)   # train / val / test, split by patient


def _split(patient_ids: list, seed: int) -> dict[str, np.ndarray]:
    split = patient_split(patient_ids, fractions=FRACTIONS, seed=seed)
    check_no_leakage(patient_ids, split["train"], split["val"], split["test"])
    return split


def _brain_cases(data: dict[str, Any], seed: int) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    root = builtin_brain(cases=data["cases"], seed=data["seed"], shape=tuple(data["shape"]),
                         spacing_mm=tuple(data["spacing_mm"]))
    table = list_brain_cases(root)
    split = _split(table["patient_id"].tolist(), seed)
    cases = {name: [load_normalised_case(table["image_path"][i], table["label_path"][i]) for i in rows]
             for name, rows in split.items()}
    return cases, {name: [c["case_id"] for c in group] for name, group in cases.items()}


def _brain_metrics(model: torch.nn.Module, cases: list[dict], predict) -> dict[str, float]:
    preds = []
    with torch.no_grad():
        for case in cases:
            preds.append(predict(torch.from_numpy(case["image"])).argmax(0).numpy().astype(np.uint8))
    table, _ = evaluate(preds, [c["label"] for c in cases], spacing_mm=[c["spacing_mm"] for c in cases],
                        regions="brats")
    means = table.groupby("region", sort=False)[["dice", "hd95"]].mean()
    return {**{f"dice_{r}": float(means.loc[r, "dice"]) for r in means.index},
            "hd95_WT_mm": float(means.loc["WT", "hd95"])}


def train_brain2d(recipe: dict[str, Any], seed: int) -> tuple[torch.nn.Module, dict, dict]:
    cases, ids = _brain_cases(recipe["data"], seed)
    settings = recipe["training"]
    train_set = BrainSlices(cases["train"], empty_fraction=settings["empty_fraction"], seed=seed,
                            transform=functools.partial(random_flip, p=0.5))
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=settings["batch_size"], shuffle=True, generator=generator)
    val_loader = DataLoader(BrainSlices(cases["val"], empty_fraction=0.0, seed=seed), batch_size=32)
    model = UNet(2, 4, 4, features=tuple(recipe["model"]["features"]))
    fit(model, train_loader, val_loader, loss_fn=dice_ce_loss, epochs=settings["epochs"], lr=settings["lr"],
        device="cpu", seed=seed)
    _round_to_half(model)
    metrics = _brain_metrics(model, cases["test"], lambda image: predict_slices(model, image, axis=-1))
    return model, metrics, ids


def _round_to_half(model: torch.nn.Module) -> None:
    """Put the model in eval mode with its float weights rounded to float16, as they are shipped."""
    model.eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def _random_patches(cases: list[dict], settings: dict[str, Any], rng: np.random.Generator):
    images, labels = [], []
    n_tumour = round(settings["patches_per_volume"] * settings["tumour_patch_share"])
    for case in cases:
        for k in range(settings["patches_per_volume"]):
            fraction = settings["min_tumour_fraction"] if k < n_tumour else 0.0
            image, label, _ = sample_patch(case["image"], case["label"], patch_size=settings["patch_size"],
                                           min_tumour_fraction=fraction, rng=rng)
            flips = [axis for axis in range(3) if rng.random() < 0.5]
            image, label = np.flip(image, [a + 1 for a in flips]), np.flip(label, flips)
            images.append(image.copy())
            labels.append(label[None].astype(np.int64))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


class FreshPatches:
    """A loader for fit that draws new random patches, in a new order, each time it is iterated (each epoch)."""

    def __init__(self, cases: list[dict], settings: dict[str, Any], rng: np.random.Generator) -> None:
        self.cases, self.settings, self.rng = cases, settings, rng

    def __iter__(self):
        x, y = _random_patches(self.cases, self.settings, self.rng)
        order, size = torch.randperm(len(x)), self.settings["batch_size"]
        return iter([(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(x), size)])


def train_brain3d(recipe: dict[str, Any], seed: int) -> tuple[torch.nn.Module, dict, dict]:
    cases, ids = _brain_cases(recipe["data"], seed)
    settings = recipe["training"]
    rng = np.random.default_rng(seed)
    model = UNet(3, 4, 4, features=tuple(recipe["model"]["features"]))
    val_x = torch.stack([torch.from_numpy(c["image"]) for c in cases["val"]])
    val_y = torch.stack([torch.from_numpy(c["label"].astype(np.int64))[None] for c in cases["val"]])
    val_loader = [(val_x[i:i + 1], val_y[i:i + 1]) for i in range(len(val_x))]   # whole volumes
    seed_everything(seed)
    fit(model, FreshPatches(cases["train"], settings, rng), val_loader, loss_fn=dice_ce_loss,
        epochs=settings["epochs"], lr=settings["lr"], device="cpu")
    _round_to_half(model)
    roi = tuple(settings["patch_size"])
    metrics = _brain_metrics(model, cases["test"], lambda image: sliding_window_inference(
        model, image[None], roi_size=roi, overlap=0.5)[0])
    return model, metrics, ids


def train_skin2d(recipe: dict[str, Any], seed: int) -> tuple[torch.nn.Module, dict, dict]:
    data = recipe["data"]
    root = builtin_skin(cases=data["cases"], seed=data["seed"], size=data["size"])
    table = list_skin_cases(root)
    split = _split(table["patient_id"].tolist(), seed)
    loaded = {name: [load_skin_case(table["image_path"][i], table["mask_path"][i]) for i in rows]
              for name, rows in split.items()}
    stacked = {name: (torch.from_numpy(np.stack([c["image"] for c in group])),
                      torch.from_numpy(np.stack([c["label"] for c in group]).astype(np.int64)[:, None]))
               for name, group in loaded.items()}
    settings = recipe["training"]
    generator = torch.Generator().manual_seed(seed)
    train_set = SkinImages(table.iloc[split["train"]], transform=functools.partial(random_flip, p=0.5), seed=seed)
    train_loader = DataLoader(train_set, batch_size=settings["batch_size"], shuffle=True, generator=generator)
    val_loader = DataLoader(SkinImages(table.iloc[split["val"]]), batch_size=16)
    seed_everything(seed)
    model = UNet(2, 3, 2, features=tuple(recipe["model"]["features"]))
    fit(model, train_loader, val_loader, loss_fn=dice_ce_loss, epochs=settings["epochs"], lr=settings["lr"],
        device="cpu", seed=seed)
    _round_to_half(model)
    test_x, test_y = stacked["test"]
    with torch.no_grad():
        preds = model(test_x).argmax(1).numpy().astype(np.uint8)
    table_metrics, _ = evaluate(list(preds), list(test_y[:, 0].numpy().astype(np.uint8)), spacing_mm=(1.0, 1.0),
                                regions="binary")
    metrics = {"dice_lesion": float(table_metrics["dice"].mean()),
               "hd95_lesion_px": float(table_metrics["hd95"].replace(np.inf, np.nan).mean())}
    ids = {name: [str(table["case_id"][i]) for i in rows] for name, rows in split.items()}
    return model, metrics, ids


TRAINERS = {"brain2d_unet": train_brain2d, "brain3d_unet": train_brain3d, "skin2d_unet": train_skin2d}


def train_and_save(name: str, *, out_dir: Path, seed: int) -> dict[str, Any]:
    """Train one recipe, then write ``<name>.pt`` (a float16 checkpoint) and ``<name>.json``."""
    recipe = RECIPES[name]
    seed_everything(seed)
    start = time.perf_counter()
    cpu_start = time.process_time()
    model, metrics, ids = TRAINERS[name](recipe, seed)
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out_dir / f"{name}.pt", dtype=torch.float16, extra={"name": name, "sidecar": f"{name}.json"})
    sidecar = {"name": name, "description": recipe["description"], "model": recipe["model"],
               "data": recipe["data"], "split": {"fractions": list(FRACTIONS), "seed": seed, "case_ids": ids},
               "preprocessing": recipe["preprocessing"], "seed": seed, "training": recipe["training"],
               "training_seconds": round(seconds, 1),
               "training_cpu_seconds": round(time.process_time() - cpu_start, 1),
               "metrics": {key: round(value, 4) for key, value in metrics.items()},
               "metrics_note": "mean over the held-out test patients of the split above, scored with "
                               "the shipped float16 weights loaded back to float32",
               "command": f"python scripts/train_pretrained.py --name {name} --seed {seed}",
               "torch_version": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.machine()}
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"{name}: {sidecar['metrics']} in {seconds:.0f} s -> {out_dir / (name + '.pt')}")
    return sidecar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", action="append", choices=sorted(RECIPES), help="default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "medseg_edu" / "pretrained")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.name or sorted(RECIPES):
        train_and_save(name, out_dir=args.out, seed=args.seed)


if __name__ == "__main__":
    main()
