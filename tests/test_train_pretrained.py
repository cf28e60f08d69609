"""Tests for scripts/train_pretrained.py: it imports, and the 3D recipe's loader gives fit fresh random
patches every epoch (so one fit call replaces the old loop of one-epoch fit calls)."""
import importlib.util
from pathlib import Path

import numpy as np
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_pretrained.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_pretrained", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fresh_patches_differ_between_epochs():
    script = load_script()
    rng = np.random.default_rng(0)
    label = np.zeros((16, 16, 16), np.uint8)
    label[4:12, 4:12, 4:12] = 1
    cases = [{"image": rng.standard_normal((4, 16, 16, 16)).astype(np.float32), "label": label}]
    settings = {"patch_size": [8, 8, 8], "patches_per_volume": 3, "tumour_patch_share": 0.67,
                "min_tumour_fraction": 0.01, "batch_size": 2}
    loader = script.FreshPatches(cases, settings, np.random.default_rng(1))
    torch.manual_seed(0)
    first, second = list(loader), list(loader)
    assert [len(x) for x, _ in first] == [2, 1]                     # 3 patches in batches of 2
    assert first[0][0].shape == (2, 4, 8, 8, 8) and first[0][1].shape == (2, 1, 8, 8, 8)
    assert first[0][1].dtype == torch.int64
    assert not torch.equal(torch.cat([x for x, _ in first]), torch.cat([x for x, _ in second]))
