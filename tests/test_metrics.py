"""Tests for medseg_edu.metrics: hand-worked overlap scores, volumes, BraTS regions, evaluate()."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from medseg_edu.metrics import (METRIC_COLUMNS, brats_regions, confusion_counts, dice_score, evaluate,
                                iou_score, per_class_scores, precision_score, sensitivity_score,
                                specificity_score, volume_error, volume_ml)

# Hand-worked 3x3 case.
#   pred    target   TP at (0,0), (1,1)          -> TP = 2
#   1 1 0   1 0 0    FP at (0,1)                 -> FP = 1
#   0 1 0   1 1 0    FN at (1,0), (2,2)          -> FN = 2
#   0 0 0   0 0 1    TN: 9 - 2 - 1 - 2           -> TN = 4
# Dice = 2*2 / (2*2 + 1 + 2) = 4/7, IoU = 2 / (2 + 1 + 2) = 2/5, sensitivity = 2/4,
# specificity = 4/5, precision = 2/3.
PRED = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
TARGET = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])


def test_confusion_counts_hand_worked():
    assert confusion_counts(PRED, TARGET) == (2, 1, 2, 4)


def test_confusion_counts_large_array_crosses_blocks():
    rng = np.random.default_rng(0)
    a, b = rng.random(700_001) < 0.3, rng.random(700_001) < 0.6   # several counting blocks
    tp = int(np.sum(a & b))
    fp, fn = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert confusion_counts(a, b) == (tp, fp, fn, a.size - tp - fp - fn)


@pytest.mark.parametrize("fn, expected", [(dice_score, 4 / 7), (iou_score, 2 / 5),
                                          (sensitivity_score, 2 / 4), (specificity_score, 4 / 5),
                                          (precision_score, 2 / 3)])
def test_scores_hand_worked(fn, expected):
    assert fn(PRED, TARGET) == pytest.approx(expected)
    assert fn(torch.from_numpy(PRED), torch.from_numpy(TARGET).bool()) == pytest.approx(expected)
    assert fn(PRED.astype(np.float32), TARGET.astype(bool)) == pytest.approx(expected)


def test_dice_iou_relation_and_monai_dice():
    from monai.metrics import DiceMetric
    rng = np.random.default_rng(1)
    a, b = rng.random((12, 10, 8)) < 0.4, rng.random((12, 10, 8)) < 0.5
    ref = DiceMetric(include_background=True)(torch.from_numpy(a)[None, None].float(),
                                              torch.from_numpy(b)[None, None].float()).item()
    assert dice_score(a, b) == pytest.approx(ref, abs=1e-6)
    d, j = dice_score(a, b), iou_score(a, b)
    assert d == pytest.approx(2 * j / (1 + j))


# ----------------------------------------------------------------------------- empty policies
def test_dice_empty_policies():
    empty = np.zeros((4, 4), dtype=bool)
    some = empty.copy()
    some[1, 1] = True
    assert math.isnan(dice_score(empty, empty))
    assert dice_score(empty, empty, empty="one") == 1.0
    assert dice_score(empty, empty, empty="zero") == 0.0
    with pytest.raises(ValueError, match="both empty"):
        dice_score(empty, empty, empty="raise")
    assert dice_score(empty, some, empty="one") == 0.0  # only one empty: well defined, policy unused
    with pytest.raises(ValueError, match="empty must be one of"):
        dice_score(some, some, empty="ignore")


def test_other_score_empty_policies():
    empty = np.zeros((4, 4), dtype=bool)
    some = empty.copy()
    some[0, :2] = True
    assert math.isnan(iou_score(empty, empty))
    assert iou_score(empty, empty, empty="one") == 1.0
    assert math.isnan(sensitivity_score(some, empty))            # no target voxel to find
    assert sensitivity_score(some, empty, empty="zero") == 0.0
    with pytest.raises(ValueError, match="target is empty"):
        sensitivity_score(some, empty, empty="raise")
    assert math.isnan(precision_score(empty, some))              # nothing predicted
    assert precision_score(empty, some, empty="one") == 1.0
    full = np.ones((4, 4), dtype=bool)
    assert math.isnan(specificity_score(some, full))             # no background in the target
    with pytest.raises(ValueError, match="no background"):
        specificity_score(some, full, empty="raise")


# ----------------------------------------------------------------------------- label maps
def test_per_class_scores_hand_worked():
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    target = np.array([[0, 1, 2], [2, 2, 2]])
    # class 1: TP 1, FP 1, FN 0, TN 4 -> Dice 2/3, sens 1, spec 4/5, prec 1/2
    # class 2: TP 2, FP 0, FN 2, TN 2 -> Dice 4/6, IoU 2/4, sens 2/4, spec 1, prec 1
    scores = per_class_scores(pred, target, num_classes=3)
    assert list(scores) == [1, 2]
    assert scores[1]["dice"] == pytest.approx(2 / 3)
    assert scores[1]["specificity"] == pytest.approx(4 / 5)
    assert scores[1]["precision"] == pytest.approx(1 / 2)
    assert scores[2]["iou"] == pytest.approx(2 / 4)
    assert scores[2]["sensitivity"] == pytest.approx(2 / 4)
    with_bg = per_class_scores(pred, target, num_classes=3, include_background=True)
    assert list(with_bg) == [0, 1, 2]
    assert with_bg[0]["dice"] == pytest.approx(2 / 3)  # class 0: TP 1, FP 1, FN 0


def test_all_background_predictor_scores_zero_without_background():
    target = np.zeros((10, 10), dtype=np.int64)
    target[4:6, 4:6] = 1
    scores = per_class_scores(np.zeros_like(target), target, num_classes=2)
    assert scores == {1: pytest.approx({"dice": 0.0, "iou": 0.0, "sensitivity": 0.0, "specificity": 1.0,
                                        "precision": math.nan}, nan_ok=True)}


def test_brats_regions():
    label = np.array([0, 1, 2, 3, 3, 1])
    regions = brats_regions(label)
    assert list(regions) == ["WT", "TC", "ET"]
    np.testing.assert_array_equal(regions["WT"], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(regions["TC"], [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(regions["ET"], [0, 0, 0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"only hold the labels \[0, 1, 2, 3\], got \[0, 1, 4\]"):
        brats_regions(np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="probabilities or logits"):
        brats_regions(np.array([0.0, 0.4, 1.0]))


# ----------------------------------------------------------------------------- volume
def test_volume_hand_worked():
    mask = np.zeros((20, 20, 20), dtype=np.uint8)
    mask[:10, :10, :10] = 1                        # 1000 voxels x (0.5 * 2 * 3) mm^3 = 3000 mm^3 = 3 ml
    assert volume_ml(mask, spacing_mm=(0.5, 2.0, 3.0)) == pytest.approx(3.0)
    pred = np.zeros_like(mask)
    pred[:10, :10, :12] = 1                        # 1200 voxels -> 3.6 ml
    err = volume_error(pred, mask, spacing_mm=(0.5, 2.0, 3.0))
    assert err == pytest.approx({"abs_ml": 0.6, "rel": 0.2, "signed_ml": 0.6})
    err = volume_error(mask, pred, spacing_mm=(0.5, 2.0, 3.0))
    assert err["signed_ml"] == pytest.approx(-0.6) and err["rel"] == pytest.approx(0.6 / 3.6)
    assert math.isnan(volume_error(mask, np.zeros_like(mask), spacing_mm=(1, 1, 1))["rel"])
    with pytest.raises(ValueError, match="spacing_mm must be a sequence of 3"):
        volume_ml(mask, spacing_mm=(1.0, 1.0))
    with pytest.raises(ValueError, match="finite and > 0"):
        volume_ml(mask, spacing_mm=(1.0, 1.0, 0.0))


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs():
    mask = np.zeros((4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"same shape, got \(4, 4\) and \(4, 5\)"):
        dice_score(mask, np.zeros((4, 5), dtype=bool))
    with pytest.raises(ValueError, match="pred looks like probabilities.*threshold it first"):
        dice_score(np.full((4, 4), 0.3), mask)
    with pytest.raises(ValueError, match="pred looks like logits"):
        dice_score(np.full((4, 4), -2.0), mask)
    with pytest.raises(ValueError, match="target must be a binary mask"):
        dice_score(mask, np.arange(16).reshape(4, 4))
    with pytest.raises(ValueError, match="pred contains NaN"):
        iou_score(np.full((4, 4), np.nan), mask)
    with pytest.raises(TypeError, match="pred must be a numpy array or a torch tensor"):
        dice_score([[0, 1]], [[0, 1]])
    with pytest.raises(TypeError, match="dtype"):
        dice_score(np.array([["a", "b"]]), np.array([["a", "b"]]))
    labels = np.array([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        per_class_scores(labels, labels, num_classes=1)
    with pytest.raises(ValueError, match=r"only hold the labels \[0, 1, 2\]"):
        per_class_scores(labels, labels, num_classes=3)
    with pytest.raises(ValueError, match="same shape"):
        per_class_scores(labels, labels[:1], num_classes=4)
    with pytest.raises(ValueError, match="contains NaN"):
        per_class_scores(np.array([np.nan, 1.0]), np.array([0, 1]), num_classes=2)


# ----------------------------------------------------------------------------- evaluate
def _brain_label(shape=(24, 24, 16), et=True):
    label = np.zeros(shape, dtype=np.uint8)
    label[4:20, 4:20, 3:13] = 1          # edema
    label[7:17, 7:17, 5:11] = 2          # core
    if et:
        label[9:15, 9:15, 6:10] = 3      # enhancing
    return label


def test_evaluate_table_and_summary():
    target_a = _brain_label()
    target_b = _brain_label(et=False)                 # no enhancing tumour in the truth ...
    pred_b = target_b.copy()                          # ... nor in the prediction: ET both empty
    pred_c = _brain_label()
    pred_c[pred_c == 3] = 2                           # enhancing tumour missed: ET pred empty
    preds, targets = [target_a, pred_b, pred_c], [target_a, target_b, _brain_label()]
    table, summary = evaluate(preds, targets, spacing_mm=(1.0, 1.0, 2.0), case_ids=["a", "b", "c"])
    assert table.shape == (9, 3 + len(METRIC_COLUMNS))
    assert list(table.columns) == ["case_id", "region", "empty", "dice", "iou", "sensitivity",
                                   "specificity", "precision", "hd95", "assd", "nsd", "volume_pred_ml",
                                   "volume_true_ml", "volume_error_ml"]
    assert table["case_id"].tolist() == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert table["region"].tolist() == ["WT", "TC", "ET"] * 3
    row = table.set_index(["case_id", "region"])
    assert row.loc[("a", "WT"), "dice"] == 1.0 and row.loc[("a", "WT"), "hd95"] == 0.0
    # WT of case a: 16 x 16 x 10 voxels of 2 mm^3 = 5.12 ml
    assert row.loc[("a", "WT"), "volume_true_ml"] == pytest.approx(5.12)
    assert row.loc[("b", "ET"), "empty"] == "both" and math.isnan(row.loc[("b", "ET"), "dice"])
    assert math.isnan(row.loc[("b", "ET"), "hd95"])
    assert row.loc[("c", "ET"), "empty"] == "pred" and row.loc[("c", "ET"), "dice"] == 0.0
    assert row.loc[("c", "ET"), "hd95"] == math.inf and row.loc[("c", "ET"), "nsd"] == 0.0
    assert row.loc[("c", "ET"), "volume_error_ml"] == pytest.approx(-6 * 6 * 4 * 2 / 1000)

    assert summary.shape == (3 * len(METRIC_COLUMNS), 9)
    s = summary.set_index(["region", "metric"])
    assert s.loc[("ET", "dice"), ["count", "n_nan", "n_inf", "n_empty"]].tolist() == [2, 1, 0, 2]
    assert s.loc[("ET", "dice"), "mean"] == pytest.approx(0.5)          # mean of 1 and 0
    assert s.loc[("ET", "dice"), "median"] == pytest.approx(0.5)
    assert s.loc[("ET", "dice"), "std"] == pytest.approx(math.sqrt(0.5))  # sample std of {0, 1}
    assert s.loc[("ET", "hd95"), ["count", "n_nan", "n_inf"]].tolist() == [1, 1, 1]
    assert s.loc[("WT", "dice"), ["count", "n_nan", "n_empty"]].tolist() == [3, 0, 0]


def test_evaluate_policies_binary_labels_and_spacing_per_case():
    target = np.zeros((12, 12), dtype=np.uint8)
    target[3:7, 3:7] = 1
    empty = np.zeros_like(target)
    table, summary = evaluate([empty, target], [empty, target], spacing_mm=[(1.0, 1.0), (0.5, 0.5)],
                              regions="binary", empty="brats")
    assert table["region"].tolist() == ["foreground"] * 2
    assert table.loc[0, "dice"] == 1.0 and table.loc[0, "hd95"] == 0.0 and table.loc[0, "nsd"] == 1.0
    assert table.loc[1, "volume_true_ml"] == pytest.approx(16 * 0.25 / 1000)
    with pytest.raises(ValueError, match="case '0': the target of region 'foreground' is empty"):
        evaluate([empty], [empty], spacing_mm=(1.0, 1.0), regions="binary", empty="raise")
    labels = np.array([[0, 1, 2], [2, 2, 0]])
    table, _ = evaluate([labels], [labels], spacing_mm=(1.0, 1.0), regions=[1, 2])
    assert table["region"].tolist() == ["label_1", "label_2"]
    assert table["dice"].tolist() == [1.0, 1.0]
    table, _ = evaluate([target], [empty], spacing_mm=(1.0, 1.0), regions="binary", empty="nan")
    assert math.isnan(table.loc[0, "hd95"])


def test_evaluate_bad_inputs():
    label = _brain_label()
    with pytest.raises(ValueError, match="same number of cases, got 2 and 1"):
        evaluate([label, label], [label], spacing_mm=(1, 1, 1))
    with pytest.raises(ValueError, match="one id per case"):
        evaluate([label], [label], spacing_mm=(1, 1, 1), case_ids=["a", "b"])
    with pytest.raises(ValueError, match="regions must be"):
        evaluate([label], [label], spacing_mm=(1, 1, 1), regions="tumour")
    with pytest.raises(ValueError, match=r"one tuple per case \(1\), got 2"):
        evaluate([label], [label], spacing_mm=[(1, 1, 1), (1, 1, 1)])
    with pytest.raises(ValueError, match="spacing_mm must be a sequence of 3"):
        evaluate([label], [label], spacing_mm=(1, 1))
    with pytest.raises(ValueError, match="empty must be one of"):
        evaluate([label], [label], spacing_mm=(1, 1, 1), empty="one")
    with pytest.raises(ValueError, match="only hold the labels"):
        evaluate([label + 1], [label], spacing_mm=(1, 1, 1))
    assert isinstance(evaluate([label], [label], spacing_mm=(1, 1, 1))[0], pd.DataFrame)


def test_evaluate_rejects_non_finite_and_fractional_labels_naming_the_argument():
    label = _brain_label()
    for bad in (np.inf, -np.inf, np.nan):
        pred = label.astype(np.float32)
        pred[0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"preds\[1\] contains NaN or inf"):
            evaluate([label, pred], [label, label], spacing_mm=(1, 1, 1))
        with pytest.raises(ValueError, match=r"targets\[0\] contains NaN or inf"):
            evaluate([label], [torch.from_numpy(pred)], spacing_mm=(1, 1, 1), regions=[1, 2])
        mask = (label > 0).astype(np.float32)
        mask[0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"preds\[0\] (contains NaN|looks like logits)"):
            evaluate([mask], [label > 0], spacing_mm=(1, 1, 1), regions="binary")
        with pytest.raises(ValueError, match="pred contains NaN or inf"):
            per_class_scores(pred, label, num_classes=4)
        with pytest.raises(ValueError, match="label contains NaN or inf"):
            brats_regions(pred)
    fractional = label.astype(np.float64)
    fractional[5, 5, 5] = 0.5
    with pytest.raises(ValueError, match=r"targets\[0\] looks like probabilities or logits"):
        evaluate([label], [fractional], spacing_mm=(1, 1, 1))
    with pytest.raises(ValueError, match=r"preds\[0\] and targets\[0\] must have the same shape"):
        evaluate([label], [label[:-1]], spacing_mm=(1, 1, 1))


def test_evaluate_accepts_float_label_maps_whose_values_are_whole_numbers():
    # the documented convention: a float array is a label map exactly when every value is an integer
    label = _brain_label()
    pred = label.copy()
    pred[9:15, 9:15, 6:8] = 2                            # half of the enhancing tumour missed
    as_int, _ = evaluate([pred], [label], spacing_mm=(1, 1, 1))
    as_float, _ = evaluate([pred.astype(np.float32)], [torch.from_numpy(label.astype(np.float64))],
                           spacing_mm=(1, 1, 1))
    # ET: 6 x 6 x 2 of 6 x 6 x 4 voxels found -> Dice 2 * 72 / (72 + 144) = 2/3 (worked by hand)
    assert as_float.set_index("region").loc["ET", "dice"] == pytest.approx(2 / 3)
    pd.testing.assert_frame_equal(as_float, as_int)      # same integers in, same table out
