"""Cross-validation helpers (medseg_edu.crossval) on hand-made volumes with hand-worked answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg_edu.crossval import (apply_postprocessing, assign_folds, determine_postprocessing,
                                 ensemble_probabilities, keep_largest_component, predict_ensemble)


def test_assign_folds_keeps_each_patient_in_one_fold():
    patients = ["p1", "p1", "p2", "p3", "p3", "p3", "p4", "p5"]
    folds = assign_folds(patients, n_splits=3)
    assert folds.shape == (8,) and set(folds.tolist()) == {0, 1, 2}
    for patient in set(patients):
        assert len({f for f, p in zip(folds.tolist(), patients) if p == patient}) == 1
    with pytest.raises(ValueError, match="at least 3 distinct patients"):
        assign_folds(["a", "a", "b"], n_splits=3)


def test_ensemble_averages_probabilities_of_numpy_and_torch():
    a = np.array([[0.2, 0.9], [0.8, 0.1]])           # (K=2, 2)
    b = np.array([[0.6, 0.5], [0.4, 0.5]])
    np.testing.assert_allclose(ensemble_probabilities([a, b]), [[0.4, 0.7], [0.6, 0.3]], atol=1e-12)
    out = ensemble_probabilities([torch.tensor(a), torch.tensor(b)])
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), [[0.4, 0.7], [0.6, 0.3]], atol=1e-12)


def test_ensemble_rejects_mismatched_shapes_and_logits():
    with pytest.raises(ValueError, match="one shape"):
        ensemble_probabilities([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"probs\[1\] must hold probabilities"):
        ensemble_probabilities([np.zeros((2, 3)), np.full((2, 3), 3.0)])
    with pytest.raises(ValueError, match="at least one"):
        ensemble_probabilities([])


def _ramp_model(x: torch.Tensor) -> torch.Tensor:
    """Logits (0, position ramp 0, 2) whatever the input: not mirror-symmetric on purpose."""
    ramp = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 2).expand(x.shape[0], 1, 1, 2)
    return torch.cat([torch.zeros_like(ramp), ramp], dim=1)


def _flat_model(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(x.shape[0], 2, *x.shape[2:])


def test_predict_ensemble_mirrors_then_averages_models():
    image = torch.zeros(1, 1, 1, 2)
    sig2 = 1 / (1 + math.exp(-2.0))                  # softmax of (0, 2) for class 1: 0.8808
    plain = predict_ensemble([_ramp_model], image, mirror_axes=())
    np.testing.assert_allclose(plain[0, 1, 0].numpy(), [0.5, sig2], atol=1e-6)
    # mirrored along the width: (0.5, sig2) and its flip (sig2, 0.5) average to (0.5 + sig2) / 2 each
    mirrored = predict_ensemble([_ramp_model], image, mirror_axes=(1,))
    np.testing.assert_allclose(mirrored[0, 1, 0].numpy(), [(0.5 + sig2) / 2] * 2, atol=1e-6)
    # with a second model that always says 0.5, the ensemble is the mean of the two
    both = predict_ensemble([_ramp_model, _flat_model], image, mirror_axes=(1,))
    np.testing.assert_allclose(both[0, 1, 0].numpy(), [((0.5 + sig2) / 2 + 0.5) / 2] * 2, atol=1e-6)
    with pytest.raises(ValueError, match="at least one model"):
        predict_ensemble([], image)


def test_keep_largest_component_per_class_set():
    label = np.zeros((1, 1, 12), dtype=np.uint8)
    label[0, 0, 0:4] = 1
    label[0, 0, 6] = 1
    label[0, 0, 8:10] = 2
    out = keep_largest_component(label, [1])
    assert out[0, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 0, 0]
    assert label[0, 0, 6] == 1                          # the input is not modified
    # classes 1 and 2 as one foreground: components 4, 1, 2 voxels -> only the 4 stay
    assert keep_largest_component(label, [1, 2])[0, 0].tolist() == [1, 1, 1, 1] + [0] * 8
    with pytest.raises(TypeError, match="integer label map"):
        keep_largest_component(label.astype(float), [1])


def test_keep_largest_component_keeps_ties():
    label = np.array([1, 1, 0, 1, 1], dtype=np.int64)
    assert keep_largest_component(label, [1]).tolist() == [1, 1, 0, 1, 1]


def _line(n: int, spans: dict[int, list[tuple[int, int]]]) -> np.ndarray:
    out = np.zeros((1, 1, n), dtype=np.uint8)
    for value, ranges in spans.items():
        for start, stop in ranges:
            out[0, 0, start:stop] = value
    return out


def test_postprocessing_is_kept_only_where_it_raises_dice():
    # class 1: target 0:4, prediction adds a stray voxel at 7 -> Dice 8/9; its largest component gives 1.
    # class 2 has two true components (3 and 2 voxels), predicted exactly -> Dice 1; keeping only its
    # largest component drops 2 true voxels (Dice 6/8), and so does the all-foreground variant (class 2 gone).
    target = _line(20, {1: [(0, 4)], 2: [(10, 13), (15, 17)]})
    pred = _line(20, {1: [(0, 4), (7, 8)], 2: [(10, 13), (15, 17)]})
    decision = determine_postprocessing([pred], [target], classes=[1, 2])
    assert decision["foreground"] is False and decision["classes"] == [1]
    assert decision["dice_before"][1] == pytest.approx(8 / 9, abs=1e-12)
    assert decision["dice_after"] == pytest.approx({1: 1.0, 2: 1.0}, abs=1e-12)
    np.testing.assert_array_equal(apply_postprocessing(pred, decision, classes=[1, 2]), target)


def test_postprocessing_all_foreground_when_it_helps_every_class():
    target = _line(12, {1: [(0, 4)]})
    pred = _line(12, {1: [(0, 4), (7, 8)]})
    decision = determine_postprocessing([pred, target], [target, target], classes=[1])
    # case 1: 8/9 -> 1; case 2 unchanged at 1: mean rises from 17/18 to 1
    assert decision["foreground"] is True and decision["classes"] == []
    assert decision["dice_before"][1] == pytest.approx(17 / 18, abs=1e-12)


def test_postprocessing_checks_its_input():
    target = _line(5, {1: [(0, 2)]})
    with pytest.raises(ValueError, match="equally long"):
        determine_postprocessing([target], [], classes=[1])
    with pytest.raises(ValueError, match="same shape|one shape"):
        determine_postprocessing([target], [target[..., :4]], classes=[1])
    with pytest.raises(ValueError, match="not 0"):
        determine_postprocessing([target], [target], classes=[0, 1])
