"""Tests for medseg_edu.models.pretrained: the shipped checkpoints load, have the right shapes, and
segment freshly generated phantom data (seeds never used in training) to a sane Dice.

Dice is computed here with plain numpy (2|A and B| / (|A| + |B|)), independently of the library.
"""
import json

import numpy as np
import pytest
import torch

from medseg_edu.data.phantoms import make_brain_case, make_skin_case
from medseg_edu.models import UNet
from medseg_edu.models.pretrained import PRETRAINED_DIR, list_pretrained, load_pretrained, pretrained_info
from medseg_edu.intensity import zscore_normalise

NAMES = ["brain2d_unet", "brain3d_unet", "skin2d_unet"]
FRESH_SEED = 1000          # the training data used seeds 0.. (builtin data sets); these cases are new


def numpy_dice(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    pred_mask, true_mask = pred_mask.astype(bool), true_mask.astype(bool)
    return 2.0 * np.sum(pred_mask & true_mask) / (pred_mask.sum() + true_mask.sum())


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: tiny tensors run fastest on one thread


def test_the_three_checkpoints_are_listed():
    table = list_pretrained()
    assert set(NAMES) <= set(table["name"])
    assert {"name", "description", "features", "heldout", "size_kb"} <= set(table.columns)


def test_checkpoints_are_small():
    total = sum(p.stat().st_size for p in PRETRAINED_DIR.glob("*.pt"))
    assert total < 5 * 1024 * 1024, f"shipped checkpoints total {total / 1e6:.1f} MB"


@pytest.mark.parametrize("name", NAMES)
def test_sidecar_records_how_it_was_made(name):
    info = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())
    for key in ("name", "description", "model", "data", "preprocessing", "seed", "training",
                "training_seconds", "metrics", "command", "split"):
        assert key in info, key
    assert info["name"] == name
    assert info["metrics"] and all(np.isfinite(v) for v in info["metrics"].values())
    assert not set(info["split"]["case_ids"]["train"]) & set(info["split"]["case_ids"]["test"])
    assert pretrained_info(name) == info


@pytest.mark.parametrize("name", NAMES)
def test_load_pretrained_gives_a_float32_unet_in_eval_mode(name):
    net = load_pretrained(name)
    config = pretrained_info(name)["model"]
    assert isinstance(net, UNet) and not net.training
    assert all(p.dtype == torch.float32 for p in net.parameters())
    size = (16,) * config["spatial_dims"]
    with torch.no_grad():
        out = net(torch.zeros(2, config["in_channels"], *size))
    assert out.shape == (2, config["out_channels"], *size)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown pretrained model 'brain9d'.*brain2d_unet.*skin2d_unet"):
        load_pretrained("brain9d")
    with pytest.raises(TypeError, match="name must be a string"):
        load_pretrained(3)


def _fresh_brain_case(name):
    data = pretrained_info(name)["data"]
    case = make_brain_case(seed=FRESH_SEED, shape=tuple(data["shape"]), spacing_mm=tuple(data["spacing_mm"]))
    return torch.from_numpy(zscore_normalise(case["image"])), case["label"]


@pytest.mark.slow
def test_brain2d_segments_a_new_case():
    net = load_pretrained("brain2d_unet")
    image, label = _fresh_brain_case("brain2d_unet")
    with torch.no_grad():
        slices = image.permute(3, 0, 1, 2)                   # (Z, C, X, Y): every axial slice at once
        pred = net(slices).argmax(1).permute(1, 2, 0).numpy()   # back to (X, Y, Z)
    assert numpy_dice(pred > 0, label > 0) > 0.5


@pytest.mark.slow
def test_brain3d_segments_a_new_case():
    net = load_pretrained("brain3d_unet")
    image, label = _fresh_brain_case("brain3d_unet")
    with torch.no_grad():
        pred = net(image[None])[0].argmax(0).numpy()      # the whole 64^3 volume in one pass
    assert numpy_dice(pred > 0, label > 0) > 0.5


@pytest.mark.slow
def test_skin2d_segments_new_images():
    net = load_pretrained("skin2d_unet")
    size = pretrained_info("skin2d_unet")["data"]["size"]
    scores = []
    for k in range(3):
        case = make_skin_case(seed=FRESH_SEED + k, size=size)
        with torch.no_grad():
            pred = net(torch.from_numpy(case["image"])[None])[0].argmax(0).numpy()
        scores.append(numpy_dice(pred == 1, case["label"] == 1))
    assert np.mean(scores) > 0.5
