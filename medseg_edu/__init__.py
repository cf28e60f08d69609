"""medseg_edu: the library behind the medseg-edu course on medical image segmentation.

Everything public is available from the top level (``from medseg_edu import dice_score, UNet``) as
well as from its own module (``from medseg_edu.metrics import dice_score``). The top-level names
are imported on first use, so ``import medseg_edu`` stays fast and a command that needs only the
data tools does not load PyTorch.

Modules, in the order the course meets them:
    data (nifti, io, phantoms, datasets, splits, nnunet), registration, similarity, transforms, intensity, models,
    runtime, training, checkpoint, inference, uncertainty, interpret, losses, metrics, clinical, bootstrap,
    reweighting, viz, widgets, planning, unet_plan, crossval, interactive (prompts, refine, evaluation,
    viewer, sam).
"""
from __future__ import annotations

import importlib
import os
from typing import Any, List

# PyTorch's CPU threads busy-wait for work by default. On a small or shared machine (2 cores, a
# JupyterHub, a laptop running other programs) that made training 5-7 times slower in our
# measurements; passive waiting costs nothing on an idle machine. It must be set before torch loads,
# so it is set here and in the notebooks' set-up cell (the user's own setting wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# module -> the public names re-exported at the top level (tests/test_api.py keeps this in sync)
_EXPORTS = {
    "medseg_edu.data.nifti": ["load_nifti", "save_nifti"],
    "medseg_edu.data.io": ["BRAIN_CHANNELS", "BRAIN_LABELS", "load_brain_case", "list_brain_cases",
                           "write_msd_dataset_json", "read_dataset_json", "load_skin_case", "list_skin_cases",
                           "save_skin_case"],
    "medseg_edu.data.phantoms": ["make_brain_case", "write_brain_dataset", "make_skin_case",
                                 "write_skin_dataset", "builtin_brain", "builtin_skin"],
    "medseg_edu.data.datasets": ["sample_patch", "BrainVolumes", "BrainSlices", "BrainPatches", "SkinImages"],
    "medseg_edu.data.splits": ["patient_split", "patient_kfold", "check_no_leakage", "site_split"],
    "medseg_edu.data.nnunet": ["nnunet_label_names", "export_nnunet", "read_nnunet_predictions"],
    "medseg_edu.registration": ["rigid_matrix", "resample", "register_rigid", "register_affine",
                                "transform_error"],
    "medseg_edu.similarity": ["ncc_score", "joint_histogram", "mutual_information_score"],
    "medseg_edu.transforms": ["random_flip", "random_rot90", "random_affine", "random_elastic", "compose",
                              "brain_augmentation", "skin_augmentation"],
    "medseg_edu.intensity": ["zscore_normalise", "percentile_clip", "random_gamma", "random_noise",
                             "random_bias_field"],
    "medseg_edu.models": ["UNet", "UNetPlusPlus", "PSPNet", "count_parameters", "deep_supervision_loss",
                          "load_pretrained", "list_pretrained", "pretrained_info"],
    "medseg_edu.runtime": ["seed_everything", "pick_device"],
    "medseg_edu.training": ["History", "fit", "plot_history", "EarlyStopping", "train_one_epoch", "validate"],
    "medseg_edu.checkpoint": ["save_checkpoint", "read_checkpoint", "load_checkpoint"],
    "medseg_edu.reweighting": ["per_sample_loss", "WeightedSamples", "fit_for_steps", "predict_labels",
                               "dice_per_image"],
    "medseg_edu.inference": ["sliding_window_inference", "predict_slices", "probs_to_labels"],
    "medseg_edu.uncertainty": ["flip_tta", "mc_dropout"],
    "medseg_edu.interpret": ["cam", "grad_cam", "overlay_cam"],
    "medseg_edu.losses": ["soft_dice_loss", "dice_ce_loss", "dice_bce_loss", "focal_loss", "tversky_loss",
                          "DiceLoss", "DiceCELoss", "DiceBCELoss", "FocalLoss", "TverskyLoss"],
    "medseg_edu.metrics": ["confusion_counts", "dice_score", "iou_score", "sensitivity_score",
                           "specificity_score", "precision_score", "per_class_scores", "brats_regions",
                           "volume_ml", "volume_error", "evaluate", "surface_distances", "hd95_distance",
                           "hausdorff_distance", "assd_distance", "surface_dice_score", "surface_metrics"],
    "medseg_edu.clinical": ["roc_curve_points", "pr_curve_points", "roc_auc_score", "average_precision_score",
                            "threshold_for_sensitivity", "find_optimal_threshold", "net_benefit",
                            "decision_curve"],
    "medseg_edu.bootstrap": ["bootstrap_ci", "subgroup_table", "subgroup_gap"],
    "medseg_edu.external_validation": ["train_slice_model", "score_whole_tumour"],
    "medseg_edu.viz": ["show_case", "draw_slice", "overlay", "show_skin_montage", "compare_predictions"],
    "medseg_edu.widgets": ["slice_viewer"],
    "medseg_edu.dicom.series": ["read_dicom_series", "write_dicom_series"],
    "medseg_edu.dicom.seg": ["write_dicom_seg", "read_dicom_seg"],
    "medseg_edu.dicom.rtstruct": ["write_rtstruct", "read_rtstruct"],
    "medseg_edu.qc": ["QC_FLAGS", "case_features", "prediction_uncertainty", "fit_qc_reference", "qc_flags",
                      "qc_summary"],
    "medseg_edu.raters": ["RATER_STYLES", "simulate_rater", "simulate_raters", "pairwise_agreement",
                          "majority_vote", "staple"],
    "medseg_edu.model_card": ["markdown_table", "group_metrics", "model_card_markdown"],
    "medseg_edu.planning": ["nonzero_mask", "dataset_fingerprint", "target_spacing", "normalisation_schemes",
                            "normalise_image", "plan_experiment"],
    "medseg_edu.unet_plan": ["pooling_plan", "feature_map_size", "configure_unet"],
    "medseg_edu.crossval": ["assign_folds", "ensemble_probabilities", "predict_ensemble", "keep_largest_component",
                            "determine_postprocessing", "apply_postprocessing"],
    "medseg_edu.interactive.prompts": ["PROMPT_CHANNELS", "Click", "box_map", "click_map", "encode_prompts",
                                       "box_from_mask", "next_click"],
    "medseg_edu.interactive.refine": ["add_prompts", "refine", "click_session"],
    "medseg_edu.interactive.evaluation": ["number_of_clicks", "noc_summary", "box_vs_automatic_dice",
                                          "grey_channel"],
    "medseg_edu.interactive.viewer": ["draw_prompts", "ClickViewer"],
    "medseg_edu.interactive.sam": ["SAM_PIXEL_MEAN", "SAM_PIXEL_STD", "load_sam", "sam_resize_shape",
                                   "sam_scale_box", "sam_preprocess", "sam_postprocess", "sam_segment"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is used."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'medseg_edu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
