"""Tests for medseg_edu.reweighting: per-sample losses, weighted datasets, fit on a step budget with
balanced sampling or loss weights, and per-image scoring (expected values worked out by hand)."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from medseg_edu.losses import dice_ce_loss
from medseg_edu.models import UNet
from medseg_edu.reweighting import (WeightedSamples, dice_per_image, fit_for_steps, per_sample_loss,
                                    predict_labels)
from medseg_edu.runtime import seed_everything


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: tiny tensors run fastest on one thread


class Items(Dataset):
    """Item i: a random image and a label that is all ones for item 0 and all zeros otherwise."""

    def __init__(self, n=10, size=8):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 1, size, size, generator=g)
        self.labels = torch.zeros(n, 1, size, size, dtype=torch.int64)
        self.labels[0] = 1

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "case_id": f"c{i}"}


class Sign(nn.Module):
    """Logits (-x, x): predicts class 1 exactly where the image is positive."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.cat([-x, x], dim=1) + 0 * self.dummy


def test_per_sample_loss_against_cross_entropy_by_hand():
    g = torch.Generator().manual_seed(1)
    logits, label = torch.randn(3, 2, 5, 5, generator=g), torch.randint(0, 2, (3, 1, 5, 5), generator=g)
    ce = per_sample_loss(lambda p, t: F.cross_entropy(p, t[:, 0]))(logits, label)
    expected = F.cross_entropy(logits, label[:, 0], reduction="none").mean(dim=(1, 2))
    torch.testing.assert_close(ce, expected, rtol=0, atol=1e-6)   # float32 means of 25 values
    # for dice_ce_loss (per-image Dice, CE over equal images) the mean per image is the batch loss
    assert torch.allclose(per_sample_loss(dice_ce_loss)(logits, label).mean(), dice_ce_loss(logits, label),
                          atol=1e-6)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        per_sample_loss("dice")


def test_weighted_samples_adds_the_weight():
    data = WeightedSamples(Items(3), [0.5, 1.0, 2.0])
    item = data[2]
    assert set(item) == {"image", "label", "case_id", "weight"} and float(item["weight"]) == 2.0
    with pytest.raises(ValueError, match=r"one entry per item of dataset \(3\), got shape \(2,\)"):
        WeightedSamples(Items(3), [1.0, 1.0])
    with pytest.raises(ValueError, match="finite and non-negative"):
        WeightedSamples(Items(3), [1.0, -1.0, 1.0])


def test_weighted_samples_passes_set_epoch_on():
    class WithEpoch(Items):
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

    inner = WithEpoch(2)
    WeightedSamples(inner, [1.0, 1.0]).set_epoch(4)
    assert inner.epoch == 4
    WeightedSamples(Items(2), [1.0, 1.0]).set_epoch(1)     # a dataset without epochs: nothing to do


def test_fit_for_steps_budget_and_balanced_sampling():
    seen = []

    def loss_fn(logits, label):
        seen.append(label.flatten(1).float().mean(1))
        return F.cross_entropy(logits, label[:, 0])

    seed_everything(0)
    net = UNet(2, 1, 2, features=(4, 8))
    # 10 items, batches of 4 -> 3 batches per epoch; 7 steps -> ceil(7/3) = 3 epochs of ceil(7/3) = 3 batches
    history = fit_for_steps(net, Items(10), steps=7, batch_size=4, loss_fn=loss_fn, device="cpu")
    assert len(history) == 3 and len(seen) == 9 and not net.training
    seen.clear()
    only_first = [1.0] + [0.0] * 9                     # balanced sampling that can draw item 0 only
    fit_for_steps(net, Items(10), steps=2, batch_size=4, loss_fn=loss_fn, device="cpu", sampling_weights=only_first)
    assert len(seen) == 2 and all(bool((s == 1).all()) for s in seen)


def test_fit_for_steps_with_loss_weights_and_bad_arguments():
    seed_everything(0)
    net = UNet(2, 1, 2, features=(4, 8))
    history = fit_for_steps(net, Items(6), steps=2, batch_size=3, loss_fn=dice_ce_loss, device="cpu",
                            loss_weights=[3.0, 1, 1, 1, 1, 1])
    assert len(history) == 1 and np.isfinite(history.train_loss[0])
    with pytest.raises(ValueError, match="not both"):
        fit_for_steps(net, Items(6), steps=2, batch_size=3, loss_fn=dice_ce_loss, sampling_weights=[1] * 6,
                      loss_weights=[1] * 6)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        fit_for_steps(net, Items(6), steps=0, batch_size=3, loss_fn=dice_ce_loss)


def test_predict_labels_and_dice_per_image_by_hand():
    images = np.full((2, 1, 2, 2), -1.0, np.float32)
    images[0, 0, 0, :] = 1.0                              # image 0: top row predicted
    images[1, 0, :, :] = 1.0                              # image 1: everything predicted
    labels = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], np.uint8)
    preds = predict_labels(Sign(), images)
    assert preds.dtype == np.uint8 and preds.tolist() == [[[1, 1], [0, 0]], [[1, 1], [1, 1]]]
    info = pd.DataFrame({"image_id": ["a", "b"], "group": [1, 2]})
    table = dice_per_image(Sign(), images, labels, info=info)
    assert list(table.columns) == ["image_id", "group", "dice"]
    # image 0: TP 1, FP 1, FN 0 -> 2/3; image 1: TP 0, FP 4 -> 0
    np.testing.assert_allclose(table["dice"], [2 / 3, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="labels must have shape"):
        dice_per_image(Sign(), images, labels[:1])
    with pytest.raises(ValueError, match="images must be a float stack"):
        predict_labels(Sign(), np.zeros((2, 2), np.uint8))
