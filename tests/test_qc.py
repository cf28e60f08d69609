"""Quality-control flags on hand-made volumes, and the TTA / MC-dropout uncertainty scores."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from medseg_edu.qc import QC_FLAGS, case_features, fit_qc_reference, prediction_uncertainty, qc_flags, qc_summary

SPACING = (1.0, 1.0, 2.0)  # 2 mm^3 voxels: 500 voxels = 1 ml


def _cube(side, shape=(20, 20, 20), corner=2):
    mask = np.zeros(shape, bool)
    mask[corner:corner + side, corner:corner + side, corner:corner + side] = True
    return mask


def _image(shape=(20, 20, 20), scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (scale * (100.0 + 10.0 * rng.standard_normal(shape))).astype(np.float32)


def test_case_features_by_hand():
    mask = _cube(5)                      # 125 voxels x 2 mm^3 = 250 mm^3 = 0.25 ml
    mask[15, 15, 15] = True              # a second component
    mask[12, 12, 12] = True              # diagonal neighbour of nothing: a third
    image = np.zeros((20, 20, 20))
    image[mask] = 50.0                   # only non-zero voxels count for the intensity percentiles
    features = case_features(mask, spacing_mm=SPACING, image=image[None],
                             uncertainty={"tta_disagreement": 0.1})
    assert features["volume_ml"] == pytest.approx(127 * 2 / 1000, abs=1e-12)
    assert features["n_components"] == 3
    assert features["spacing_min_mm"] == pytest.approx(1.0, abs=1e-12)
    assert features["spacing_max_mm"] == pytest.approx(2.0, abs=1e-12)
    assert features["intensity_p01"] == pytest.approx(50.0, abs=1e-9)
    assert features["intensity_p99"] == pytest.approx(50.0, abs=1e-9)
    assert features["tta_disagreement"] == pytest.approx(0.1, abs=1e-12)
    assert np.isnan(features["mc_uncertainty"])


def test_diagonal_voxels_are_one_component():
    mask = np.zeros((5, 5, 5), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # touching at a corner: 26-connected
    assert case_features(mask, spacing_mm=SPACING)["n_components"] == 1


def _training_reference():
    rows = [case_features(_cube(side), spacing_mm=SPACING, image=_image(seed=side)) for side in range(6, 11)]
    return fit_qc_reference(pd.DataFrame(rows), low_percentile=0, high_percentile=100)


def test_each_flag_on_its_own_hand_made_case():
    reference = _training_reference()  # cubes of side 6..10, one component, spacing 1-2 mm, intensity ~100
    assert reference["volume_ml"] == pytest.approx((6 ** 3 * 2 / 1000, 10 ** 3 * 2 / 1000), abs=1e-12)
    speckle = _cube(8)
    for i in range(0, 20, 4):
        speckle[i, 19, 19] = True         # 5 extra islands
    image = _image(seed=8)  # the image of a training case: its intensities are inside the range
    cases = {
        "clean": case_features(_cube(8), spacing_mm=SPACING, image=image),
        "empty": case_features(np.zeros((20, 20, 20), bool), spacing_mm=SPACING, image=image),
        "small": case_features(_cube(3), spacing_mm=SPACING, image=image),
        "large": case_features(_cube(14), spacing_mm=SPACING, image=image),
        "speckle": case_features(speckle, spacing_mm=SPACING, image=image),
        "thick": case_features(_cube(6), spacing_mm=(1.0, 1.0, 6.0), image=image),  # 1.3 ml: volume in range
        "bright": case_features(_cube(8), spacing_mm=SPACING, image=_image(scale=10.0, seed=8)),
    }
    features = pd.DataFrame(cases.values(), index=list(cases))
    features.loc["uncertain"] = features.loc["clean"]
    features.loc["uncertain", "tta_disagreement"] = 0.5
    reference["tta_disagreement"] = (0.0, 0.05)
    table = qc_flags(features, reference)
    expected = {"clean": "", "empty": "empty", "small": "small_volume", "large": "large_volume",
                "speckle": "many_components", "thick": "unusual_spacing", "bright": "unusual_intensity",
                "uncertain": "high_uncertainty"}
    assert table["flags"].to_dict() == expected
    assert table["n_flags"].to_dict() == {k: int(v != "") for k, v in expected.items()}
    assert list(table.columns[:len(QC_FLAGS)]) == list(QC_FLAGS)


def test_thick_slices_change_volume_too_and_both_flags_show():
    reference = _training_reference()
    features = pd.DataFrame([case_features(_cube(10), spacing_mm=(1.0, 1.0, 6.0))])  # 6 ml, above 2 ml
    assert qc_flags(features, reference)["flags"].iloc[0] == "large_volume, unusual_spacing"


def test_missing_features_raise_no_flag_and_dice_is_copied():
    reference = _training_reference()
    features = pd.DataFrame([case_features(_cube(8), spacing_mm=SPACING)])  # no image, no uncertainty
    table = qc_flags(features, reference, dice=[0.9])
    assert table["n_flags"].iloc[0] == 0 and table["dice"].iloc[0] == pytest.approx(0.9, abs=1e-12)
    with pytest.raises(ValueError, match=r"one value per case \(1\)"):
        qc_flags(features, reference, dice=[0.9, 0.8])


def test_qc_summary_by_hand():
    table = pd.DataFrame({"dice": [0.9, 0.8, 0.4, 0.2, np.nan, 0.7],
                          "flags": ["", "", "small_volume", "small_volume, many_components", "empty", None]})
    summary = qc_summary(table)
    assert list(summary["flag"]) == ["empty", "many_components", "small_volume"]
    assert list(summary["cases"]) == [1, 1, 2]
    # clean: 0.9, 0.8 and the case with no flags (None) 0.7 -> 0.8; small_volume: (0.4 + 0.2) / 2
    np.testing.assert_allclose(summary["mean_flagged"], [np.nan, 0.2, 0.3], atol=1e-12)
    np.testing.assert_allclose(summary["mean_clean"], 0.8, atol=1e-12)
    with pytest.raises(ValueError, match=r"no column\(s\) \['flags'\]"):
        qc_summary(table.drop(columns=["flags"]))


def test_reference_leaves_empty_training_cases_out_of_the_volume_range():
    rows = [case_features(_cube(s), spacing_mm=SPACING) for s in (6, 8)]
    rows.append(case_features(np.zeros((20, 20, 20), bool), spacing_mm=SPACING))
    reference = fit_qc_reference(pd.DataFrame(rows), low_percentile=0, high_percentile=100)
    assert reference["volume_ml"][0] == pytest.approx(6 ** 3 * 2 / 1000, abs=1e-12)
    assert "intensity_p01" not in reference  # all NaN: no range


def test_qc_errors():
    with pytest.raises(ValueError, match="spacing_mm must be a sequence of 3 numbers"):
        case_features(_cube(3), spacing_mm=(1.0, 1.0))
    with pytest.raises(ValueError, match="looks like probabilities"):
        case_features(np.full((4, 4, 4), 0.3), spacing_mm=SPACING)
    with pytest.raises(ValueError, match="image must have pred's spatial shape"):
        case_features(_cube(3), spacing_mm=SPACING, image=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="uncertainty keys must be"):
        case_features(_cube(3), spacing_mm=SPACING, uncertainty={"entropy": 1.0})
    with pytest.raises(ValueError, match="non-empty pandas DataFrame"):
        fit_qc_reference(pd.DataFrame())
    with pytest.raises(ValueError, match="percentiles must satisfy"):
        fit_qc_reference(pd.DataFrame([{"volume_ml": 1.0}]), low_percentile=50, high_percentile=10)
    with pytest.raises(TypeError, match="features must be a pandas DataFrame"):
        qc_flags([{"volume_ml": 1.0}], {})


class _Threshold(nn.Module):
    """Voxel-wise logits (background 0, foreground x - 0.5) with optional dropout: flip-equivariant."""

    def __init__(self, p=0.0):
        super().__init__()
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), self.dropout(x - 0.5)], dim=1)


class _Ramp(_Threshold):
    """Adds a ramp along the last axis: flipping the input changes the answer."""

    def forward(self, x):
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1])
        return torch.cat([torch.zeros_like(x), x - 0.5 + ramp], dim=1)


def _tensor_image():
    image = torch.zeros(1, 1, 8, 8)
    image[..., 2:6, 2:6] = 1.0
    return image


def test_flip_equivariant_model_has_no_tta_disagreement_and_no_mc_spread_without_dropout():
    with pytest.warns(UserWarning, match="no dropout layer"):
        scores = prediction_uncertainty(_Threshold(p=0.0), _tensor_image())
    assert scores["tta_disagreement"] == pytest.approx(0.0, abs=1e-12)
    assert scores["mc_uncertainty"] == pytest.approx(0.0, abs=1e-12)


def test_dropout_and_flip_dependence_raise_the_scores():
    with_dropout = prediction_uncertainty(_Threshold(p=0.5), _tensor_image(), mc_samples=8, seed=0)
    again = prediction_uncertainty(_Threshold(p=0.5), _tensor_image(), mc_samples=8, seed=0)
    assert with_dropout["mc_uncertainty"] > 0.01
    assert with_dropout["mc_uncertainty"] == pytest.approx(again["mc_uncertainty"], abs=1e-12)  # seeded
    with pytest.warns(UserWarning, match="no dropout layer"):
        ramp = prediction_uncertainty(_Ramp(), _tensor_image())
    # plain: x - 0.5 + ramp > 0 only where ramp > -0.5 inside the square; TTA averages the flips
    assert ramp["tta_disagreement"] > 0.05
    with pytest.raises(ValueError, match=r"one case as a tensor \(1, C, \*spatial\)"):
        prediction_uncertainty(_Threshold(), torch.zeros(2, 1, 8, 8))
