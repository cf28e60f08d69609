"""Tests for medseg_edu.external_validation (week 5's helpers): hand-worked scores, training plumbing, errors."""
import numpy as np
import pandas as pd
import pytest
import torch

from medseg_edu.external_validation import score_whole_tumour, train_slice_model


def tiny_case(seed, *, shape=(16, 16, 6), case_id=None):
    """A 4-channel case: a bright box of tumour (labels 1 and 3) in a dimmer brain, BraTS labels."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    label[4:10, 5:11, 1:4] = 1
    label[6:8, 7:9, 2] = 3
    image = np.zeros((4, *shape), np.float32)
    image[:, 2:14, 2:14, :] = 500 + rng.normal(0, 20, size=(4, 12, 12, shape[2]))
    image[:, label > 0] += 800
    return {"image": image, "label": label, "spacing_mm": (2.0, 2.0, 2.0),
            "case_id": case_id or f"c{seed}", "patient_id": f"p{seed}", "site": "A"}


class FirstChannelIsTumour(torch.nn.Module):
    """A 'model' whose WT prediction is exactly channel 0 > 0 of its input: logits (-x, x)."""

    def forward(self, x):
        return torch.cat([-x[:, :1], x[:, :1]], dim=1)


def test_score_whole_tumour_by_hand():
    label = np.zeros((4, 4, 2), np.uint8)
    label[0:2, 0:3, 0] = 2                      # 6 tumour voxels
    label[0, 0, 1] = 1                          # 7th
    perfect = np.zeros((4, 4, 4, 2), np.float32)
    perfect[0] = label > 0
    half = np.zeros((4, 4, 4, 2), np.float32)
    half[0, 0:2, 0:3, 0] = 1                    # 6 of the 7 tumour voxels ...
    half[0, 3, 3, 1] = 1                        # ... and one false positive
    cases = [{"image": perfect, "label": label, "spacing_mm": (2.0, 2.0, 2.0), "case_id": "a", "site": "B"},
             {"image": half, "label": label, "spacing_mm": (1.0, 1.0, 1.0)}]
    table = score_whole_tumour(FirstChannelIsTumour(), cases, lambda image: image)
    assert list(table.columns) == ["case_id", "site", "dice", "volume_pred_ml", "volume_true_ml"]
    assert table["case_id"].tolist() == ["a", "case_001"]
    # Dice 2 TP / (2 TP + FP + FN): case a 14 / 14; case 2: TP 6, FP 1, FN 1 -> 12 / 14
    np.testing.assert_allclose(table["dice"], [1.0, 12 / 14], atol=1e-12)
    # 7 voxels of 8 mm^3 = 0.056 ml; 7 voxels of 1 mm^3 = 0.007 ml
    np.testing.assert_allclose(table["volume_true_ml"], [0.056, 0.007], atol=1e-12)
    np.testing.assert_allclose(table["volume_pred_ml"], [0.056, 0.007], atol=1e-12)
    # preprocess is applied before predicting: a pipeline that zeroes the image predicts nothing
    empty = score_whole_tumour(FirstChannelIsTumour(), cases[:1], lambda image: 0 * image)
    np.testing.assert_allclose(empty[["volume_pred_ml", "dice"]].to_numpy(dtype=float), [[0.0, 0.0]], atol=1e-12)


def test_train_slice_model_trains_a_whole_tumour_model_and_fine_tunes_a_copy():
    cases = [tiny_case(s) for s in range(3)]
    model = train_slice_model(cases, lambda image: image / 1000.0, steps=3, features=(4, 8), batch_size=4,
                              seed=0, device="cpu")
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 16, 16)).shape == (1, 2, 16, 16)       # background, whole tumour
    table = score_whole_tumour(model, cases, lambda image: image / 1000.0)
    assert isinstance(table, pd.DataFrame) and len(table) == 3
    assert table["patient_id"].tolist() == ["p0", "p1", "p2"] and set(table["site"]) == {"A"}
    assert table["volume_true_ml"].tolist() == pytest.approx([0.864] * 3, abs=1e-9)   # 6 x 6 x 3 voxels x 8 mm^3
    before = [p.detach().clone() for p in model.parameters()]
    tuned = train_slice_model(cases[:1], lambda image: image / 1000.0, steps=2, start_from=model, lr=1e-2,
                              batch_size=4, seed=1, device="cpu")
    assert tuned is not model
    for old, new in zip(before, model.parameters()):
        torch.testing.assert_close(new, old, rtol=0, atol=0)                 # the original is untouched
    assert any(not torch.allclose(a, b) for a, b in zip(tuned.parameters(), model.parameters()))


def test_same_seed_same_model():
    cases = [tiny_case(s) for s in range(2)]
    a, b = (train_slice_model(cases, lambda image: image / 1000.0, steps=2, features=(4, 8), batch_size=4,
                              seed=3, device="cpu") for _ in range(2))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)    # same CPU arithmetic in the same order


def test_bad_arguments():
    case = tiny_case(0)
    with pytest.raises(ValueError, match="cases must be a non-empty list of case dicts"):
        train_slice_model([], lambda image: image, steps=1)
    with pytest.raises(ValueError, match=r"cases\[0\] must be a dict with keys \['image', 'label'\], missing \['label'\]"):
        train_slice_model([{"image": case["image"]}], lambda image: image, steps=1)
    with pytest.raises(TypeError, match="preprocess must be a function image -> image"):
        train_slice_model([case], "zscore", steps=1)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        train_slice_model([case], lambda image: image, steps=0)
    with pytest.raises(ValueError, match=r"preprocess must return an image of the input's shape \(4, 16, 16, 6\)"):
        score_whole_tumour(FirstChannelIsTumour(), [case], lambda image: image[:3])
    with pytest.raises(ValueError, match=r"missing \['spacing_mm'\]"):
        score_whole_tumour(FirstChannelIsTumour(), [{"image": case["image"], "label": case["label"]}],
                           lambda image: image)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        score_whole_tumour(lambda x: x, [case], lambda image: image)
