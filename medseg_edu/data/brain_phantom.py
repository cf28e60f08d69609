"""A synthetic brain-tumour MRI phantom that looks like a skull-stripped BraTS case.

Anatomy comes from a real brain: the MNI152 2009 template and its grey- and white-matter maps, which
nilearn ships inside its package (no download). Each patient gets a smooth random deformation of that
anatomy, a head size and position, and age effects (larger ventricles, thinner cortex, small white-matter
hyperintensities). A glioma is grown inside the white matter: an irregular core (enhancing rim around
necrosis, or only non-enhancing tumour for a lower-grade-like case) inside edema that follows the
white matter. Four sequences (FLAIR, T1w, T1gd, T2w) are rendered from tissue fractions with realistic
relative contrast, then degraded like a real scanner: optional rigid misalignment of the moving
sequences, slice thickness, a smooth bias field per sequence and Rician noise. Background is 0
(skull-stripped), intensities are arbitrary MR units in the hundreds to about 1500.

Besides the image and the BraTS label map, each case carries a ``tissue`` map (CSF, grey and white
matter) of the healthy brain, the patient's attributes and the true misalignment of each sequence.
Everything is deterministic by seed: the same arguments give the same arrays (and the same file bytes).
The anatomy (template, patient, tumour) lives in ``_brain_anatomy`` and the scanner (sequence
contrast, misalignment, bias field) in ``_brain_scanner``; this module puts a case together and
writes data sets.

Used in week 1 (misalignment for registration) and week 5 (sites) through `builtin_brain`. Taught in
week 4 (cases to evaluate) and week 6 (age bias).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from scipy import ndimage as ndi

from medseg_edu.arguments import check_choice, check_int
from medseg_edu.data._brain_anatomy import (draw_patient, enforce_nesting, load_template, patient_to_template,
                                            sample, smooth_noise, tumour_centre, tumour_fractions,
                                            voxel_coordinates, wmh_field)
from medseg_edu.data._brain_scanner import (CHANNELS, REFERENCE_CHANNEL, TISSUES, bias_at, intensity_table,
                                            misalignment, move_channel)
from medseg_edu.utils import progress, staging_dir

__all__ = ["SITES", "CHANNELS", "TISSUE_LABELS", "make_brain_case", "write_brain_dataset"]

PathLike = Union[str, "os.PathLike[str]"]

#: Values of the ``tissue`` map that ``make_brain_case`` returns (the dominant healthy tissue per voxel).
TISSUE_LABELS = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter"}
_NODE_MM = 6.0                        # spacing of the coarse grid on which smooth fields are drawn

#: Scanner/site profiles. ``scale``: overall intensity gain; ``contrast``: factor per sequence and
#: tissue on top of the base intensities; ``noise``: Rician noise sigma as a fraction of 1000 units;
#: ``bias``: strength of the smooth multiplicative bias field; ``slice_mm``: effective slice thickness
#: along z (None: as acquired); ``blur_mm``: extra in-plane blur (FWHM, mm).
SITES: dict[str, dict[str, Any]] = {
    "A": {"description": "3T research scanner, 1 mm isotropic, little noise and bias",
          "scale": 1.0, "contrast": {}, "noise": 0.020, "bias": 0.10, "slice_mm": None, "blur_mm": 0.0},
    "B": {"description": "1.5T clinical scanner, 5 mm axial slices, noisier, strong bias field",
          "scale": 0.6, "contrast": {"FLAIR": {"edema": 0.85, "wmh": 0.9}, "T1gd": {"enhancing": 0.85},
                                     "T1w": {"gm": 1.06}},
          "noise": 0.040, "bias": 0.30, "slice_mm": 5.0, "blur_mm": 0.0},
    "C": {"description": "3T scanner of another vendor: other contrast, smoother images",
          "scale": 2.2, "contrast": {"T1w": {"gm": 1.12, "csf": 1.4}, "T1gd": {"gm": 1.12, "csf": 1.4},
                                     "FLAIR": {"csf": 2.0, "gm": 1.08}, "T2w": {"wm": 1.2}},
          "noise": 0.030, "bias": 0.20, "slice_mm": None, "blur_mm": 2.0},
}


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------

def _check_geometry(shape, spacing_mm) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    shape = tuple(int(s) for s in shape) if isinstance(shape, (tuple, list)) else shape
    if not isinstance(shape, tuple) or len(shape) != 3 or min(shape) < 24:
        raise ValueError(f"shape must be three integers of at least 24 voxels, got {shape!r}")
    spacing = tuple(float(s) for s in spacing_mm) if isinstance(spacing_mm, (tuple, list)) else None
    if spacing is None or len(spacing) != 3 or not all(0.5 <= s <= 6.0 for s in spacing):
        raise ValueError(f"spacing_mm must be three numbers between 0.5 and 6 mm, got {spacing_mm!r}")
    fov = [n * s for n, s in zip(shape, spacing)]
    if min(fov) < 100:
        raise ValueError(f"shape * spacing_mm (the field of view) must be at least 100 mm along each axis "
                         f"for a brain to fit, got {tuple(round(f) for f in fov)} mm")
    return shape, spacing


def _check_misalign(misalign) -> tuple[float, float]:
    if misalign is None or (not isinstance(misalign, (tuple, list)) and misalign == 0):
        return 0.0, 0.0
    if not isinstance(misalign, (tuple, list)) or len(misalign) != 2 or min(misalign) < 0:
        raise ValueError(f"misalign must be None or (max_rotation_deg, max_translation_mm) with values >= 0, "
                         f"got {misalign!r}")
    return float(misalign[0]), float(misalign[1])


# ----------------------------------------------------------------------------------------------
# one case: patient -> anatomy -> tumour -> sequences -> scanner
# ----------------------------------------------------------------------------------------------

def make_brain_case(*, seed: int, shape: Sequence[int] = (128, 128, 128),
                    spacing_mm: Sequence[float] = (1.75, 1.75, 1.75), site: str = "A",
                    age: Optional[float] = None, sex: Optional[str] = None,
                    misalign: Optional[tuple[float, float]] = None, grade: Optional[str] = None,
                    patient_seed: Optional[int] = None, timepoint: int = 0,
                    case_id: Optional[str] = None) -> dict[str, Any]:
    """Generate one synthetic brain-tumour MRI case (FLAIR, T1w, T1gd, T2w and a BraTS label map).

    ``patient_seed`` (default: ``seed``) fixes the patient: anatomy, age, sex and the tumour's place and
    shape; ``seed`` fixes the scan: noise, bias field, misalignment. Follow-up scans of one patient use
    the same ``patient_seed`` with ``timepoint`` 1, 2, ... (the tumour grows about 12 % in radius each).
    ``grade`` is "high" (enhancing rim around necrosis) or "low" (non-enhancing tumour only, label 2);
    None draws it (high in 3 of 4 patients). ``age`` (years) and ``sex`` ("F"/"M") are drawn when None;
    older brains have larger ventricles, thinner cortex and white-matter hyperintensities (FLAIR-bright
    spots that are *not* tumour).

    The image grid is RAS: ``affine`` is diagonal (``spacing_mm``) and the grid centre is at 0 mm.
    The default grid, 128^3 voxels of 1.75 mm (224 mm), holds any adult brain; for fast notebooks
    use e.g. ``shape=(64, 64, 64), spacing_mm=(3.5, 3.5, 3.5)``.
    The label map is in the frame of the reference sequence T1w. With ``misalign=(max_rotation_deg,
    max_translation_mm)`` the other three sequences are moved by a random rigid transform each.
    ``transforms[channel]["matrix"]`` (4x4, world mm) maps a point p of the reference (T1w / label)
    frame to where the same anatomy appears in that channel: ``p_moving = matrix @ p_reference``
    (the fixed-to-moving map that resamplers use: ``aligned(p) = moving(matrix @ p)`` undoes it).
    It equals ``p -> R @ (p - center_mm) + center_mm + translation_mm`` with
    ``R = Rz @ Ry @ Rx`` built from ``rotation_deg`` (about x, then y, then z).

    Shape: image (4, X, Y, Z) float32 (channels FLAIR, T1w, T1gd, T2w; background exactly 0);
    label (X, Y, Z) uint8 in {0: background, 1: edema, 2: necrosis / non-enhancing, 3: enhancing};
    tissue (X, Y, Z) uint8, the dominant healthy tissue (``TISSUE_LABELS``: 1 CSF, 2 GM, 3 WM), T1w frame.
    Other keys: affine (4, 4), spacing_mm, case_id, attributes (age, sex, site, grade, ...), transforms.

    Example:
        >>> case = make_brain_case(seed=0, shape=(64, 64, 64), spacing_mm=(3.5, 3.5, 3.5))
        >>> case["image"].shape, case["label"].shape
        ((4, 64, 64, 64), (64, 64, 64))

    Used in week 1 through `builtin_brain`. Taught in weeks 4 and 6.
    """
    shape, spacing = _check_geometry(shape, spacing_mm)
    profile = SITES[check_choice(site, sorted(SITES), "site")]
    max_deg, max_mm = _check_misalign(misalign)
    if grade not in (None, "high", "low"):
        raise ValueError(f"grade must be None, 'high' or 'low', got {grade!r}")
    if sex not in (None, "F", "M"):
        raise ValueError(f"sex must be None, 'F' or 'M', got {sex!r}")
    if age is not None and not 0 <= float(age) <= 120:
        raise ValueError(f"age must be between 0 and 120 years, got {age!r}")
    if int(timepoint) < 0:
        raise ValueError(f"timepoint must be >= 0, got {timepoint!r}")
    patient_seed = seed if patient_seed is None else patient_seed
    crng = np.random.default_rng([int(seed), int(timepoint), 11])     # this scan
    p = draw_patient(int(patient_seed), age=age, sex=sex, grade=grade, timepoint=int(timepoint))
    prng = np.random.default_rng([int(patient_seed), 4])             # the patient's smooth fields
    template = load_template(2 if min(spacing) >= 2.0 else 1)

    # --- coarse grid of nodes (about 6 mm apart) on which smooth fields are drawn -----------------
    n, sp = np.array(shape), np.array(spacing)
    origin = -(n - 1) / 2.0 * sp                                      # world mm of voxel (0, 0, 0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    n_nodes = [max(2, int(math.ceil((k - 1) * s / _NODE_MM)) + 1) for k, s in zip(shape, spacing)]
    node_pos = [np.linspace(0, k - 1, m) for k, m in zip(shape, n_nodes)]
    nodes_mm = np.stack(np.meshgrid(*[o + s * q for o, s, q in zip(origin, sp, node_pos)], indexing="ij"))
    warp = smooth_noise(prng, 3, n_nodes, sigma=2.5) * 2.5           # smooth deformation, about 2.5 mm
    noise = smooth_noise(prng, 5, n_nodes, sigma=1.0)   # core, edema, necrosis, texture, atrophy

    def to_index(m_mm: np.ndarray) -> np.ndarray:                     # template mm -> template voxel
        return ((m_mm - template["origin_mm"].reshape(3, 1, 1, 1)) / template["voxel_mm"]).astype(np.float32)

    m_nodes = patient_to_template(nodes_mm, p, warp)
    coarse = sample(template["tensor"], to_index(m_nodes).reshape(3, -1)).reshape(3, *n_nodes)
    centre = tumour_centre(p, m_nodes, nodes_mm)
    m_nodes = patient_to_template(nodes_mm, p, warp, tumour_centre=centre)
    wmh_nodes = wmh_field(p, m_nodes)

    # --- anatomy, computed only at voxels near the brain ----------------------------------------
    near = ndi.binary_dilation(coarse.sum(0) > 0.02)
    nearest_node = [np.rint(np.arange(k) * (m - 1) / (k - 1)).astype(int) for k, m in zip(shape, n_nodes)]
    flat = np.flatnonzero(near[np.ix_(*nearest_node)])
    node_scale = np.array([(m - 1) / (k - 1) for k, m in zip(shape, n_nodes)], np.float32)[:, None]
    at_nodes = voxel_coordinates(flat, shape) * node_scale                     # voxel -> position on the node grid
    fields = sample(np.concatenate([to_index(m_nodes), noise[4:5], wmh_nodes[None]]), at_nodes)
    gm, wm, csf = sample(template["tensor"], fields[:3])            # the tissue maps, warped
    inside = (gm + wm + csf) > 0.5                                    # the skull-stripping mask
    flat, at_nodes = flat[inside], at_nodes[:, inside]
    atrophy, wmh, gm, wm, csf = fields[3, inside], fields[4, inside], gm[inside], wm[inside], csf[inside]
    loss = p["cortical_atrophy"] * np.clip(0.6 + 0.4 * atrophy, 0, 1) * gm   # thinner cortex, wider sulci
    gm, csf = gm - loss, csf + loss
    wmh = wm * np.clip(1.5 * wmh - 0.3, 0, 1)                         # white-matter hyperintensities
    tissue = np.zeros(shape, np.uint8)
    tissue.reshape(-1)[flat] = 1 + np.argmax(np.stack([csf, gm, wm]), axis=0)

    # --- the tumour, near its centre --------------------------------------------------------------
    voxels = voxel_coordinates(flat, shape)
    points_mm = origin[:, None] + sp[:, None] * voxels
    # f_core < 1 + ring and f_edema < 1 bound the normalised radius (noise is clipped in tumour_fractions)
    extent = max(p["radii_mm"]) * max(2.0 + 2.0 * max(spacing) / p["radius_mm"], 1.7 * p["edema_reach"])
    extent += 2 * max(spacing)
    near_tumour = np.flatnonzero(np.all(np.abs(points_mm - centre[:, None]) < extent, axis=0))
    tumour_noise = sample(noise[:4], at_nodes[:, near_tumour])
    edema, core, necrosis = (np.zeros(len(gm), np.float32) for _ in range(3))
    texture = np.zeros(len(gm), np.float32)
    t_edema, t_core, t_necrosis, t_label = tumour_fractions(p, centre, points_mm[:, near_tumour], tumour_noise[:3],
                                                   wm[near_tumour], csf[near_tumour], spacing)
    edema[near_tumour], core[near_tumour], necrosis[near_tumour] = t_edema, t_core, t_necrosis
    texture[near_tumour] = tumour_noise[3]                            # patchy tumour tissue
    label = np.zeros(shape, np.uint8)
    label.reshape(-1)[flat[near_tumour]] = t_label
    enforce_nesting(label, tissue > 0, high=p["grade"] == "high")

    # --- render the four sequences: tissue fractions (8, P) times tissue intensities (8, 4) --------
    high = p["grade"] == "high"
    healthy = 1.0 - edema
    solid = core - necrosis                                          # enhancing rim (high grade)
    fractions = np.stack([(wm - wmh) * healthy, gm * healthy, csf * healthy, wmh * healthy,
                          edema - core,
                          necrosis * (1.0 + 0.1 * texture) * (not high),       # non-enhancing tumour
                          necrosis * (1.0 + 0.1 * texture) * high,             # necrosis
                          solid * (1.0 + 0.2 * texture)])                      # enhancing tumour
    table = intensity_table(profile)
    intensities = np.array([[table[seq][t] for t in TISSUES] for seq in CHANNELS], np.float32)  # (4, 8)
    gains = crng.uniform(0.9, 1.1, 4).astype(np.float32)[:, None]    # arbitrary gain of each scan
    clean = np.zeros((4, int(np.prod(shape))), np.float32)           # flat channels
    clean[:, flat] = (intensities @ fractions) * gains
    support = [flat] * 4                                              # brain voxels of each channel

    # --- the scanner: misalignment, resolution, bias field, Rician noise ------------------------
    transforms = misalignment(crng, max_deg, max_mm, np.zeros(3))
    if max_deg > 0 or max_mm > 0:
        for ch, seq in enumerate(CHANNELS):
            if seq != REFERENCE_CHANNEL:
                clean[ch], support[ch] = move_channel(clean[ch], support[ch], transforms[seq]["matrix"],
                                                       affine, shape)
    blur = [profile["blur_mm"] / 2.3548 / s for s in spacing[:2]]
    thick = profile["slice_mm"] or 0.0
    blur.append(math.sqrt(max(thick ** 2 - spacing[2] ** 2, 0.0)) / 2.3548 / spacing[2])
    if max(blur) > 0:
        clean = ndi.gaussian_filter(clean.reshape(4, *shape), sigma=(0, *blur), mode="constant").reshape(4, -1)
    image = np.zeros((4, int(np.prod(shape))), np.float32)
    sigma = profile["noise"] * 1000.0 * profile["scale"]
    for ch in range(4):
        values = clean[ch, support[ch]] * bias_at(crng, shape, profile["bias"], voxel_coordinates(support[ch], shape))
        n1 = crng.standard_normal(values.size, dtype=np.float32) * sigma
        n2 = crng.standard_normal(values.size, dtype=np.float32) * sigma
        image[ch, support[ch]] = np.sqrt((values + n1) ** 2 + n2 ** 2)   # Rician: magnitude of complex noise

    attributes = {"age": p["age"], "sex": p["sex"], "site": site, "grade": p["grade"],
                  "timepoint": int(timepoint), "seed": int(seed), "patient_seed": int(patient_seed),
                  "tumour_center_mm": [round(float(c), 2) for c in centre]}
    return {"image": image.reshape(4, *shape), "label": label, "tissue": tissue, "affine": affine,
            "spacing_mm": spacing,
            "case_id": case_id if case_id is not None else f"phantom_{seed}",
            "attributes": attributes, "transforms": transforms}


# ----------------------------------------------------------------------------------------------
# a data set in the MSD Task01 layout
# ----------------------------------------------------------------------------------------------

def _transforms_json(case: dict[str, Any]) -> str:
    channels = {name: {"matrix": np.round(t["matrix"], 10).tolist(),
                       "rotation_deg": np.round(t["rotation_deg"], 10).tolist(),
                       "translation_mm": np.round(t["translation_mm"], 10).tolist(),
                       "center_mm": np.round(t["center_mm"], 10).tolist()}
                for name, t in case["transforms"].items()}
    content = {"case_id": case["case_id"], "reference": REFERENCE_CHANNEL,
               "convention": "p_moving = matrix @ p_reference, world coordinates in mm (RAS); "
                             "matrix = translate(center_mm + translation_mm) @ R @ translate(-center_mm), "
                             "R = Rz @ Ry @ Rx from rotation_deg",
               "channels": channels}
    text = json.dumps(content, indent=2)
    # one line per matrix row and per vector, so that the file reads like the matrix it holds
    return re.sub(r"\[\s+([^\[\]]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def _write_test_cases(tmp: Path, count: int, *, seed: int, first: int, n_patients: int, sites: list[str],
                      age_range: tuple[float, float], shape: Sequence[int], spacing_mm: Sequence[float],
                      misalign: Optional[tuple[float, float]]) -> list[str]:
    """Held-out cases (imagesTs, no labels) from their own random stream, numbered after the training ones."""
    from medseg_edu.data.nifti import save_nifti

    rng = np.random.default_rng([int(seed), 2024, 1])
    patient_seeds, case_seeds = rng.integers(0, 2 ** 31 - 1, count), rng.integers(0, 2 ** 31 - 1, count)
    ages, sexes = rng.uniform(age_range[0], age_range[1], count), rng.choice(["F", "M"], count)
    test_ids = []
    for j in range(count):
        case_id = f"BRATS_{first + j:03d}"
        case = make_brain_case(seed=int(case_seeds[j]), patient_seed=int(patient_seeds[j]), timepoint=0,
                               shape=shape, spacing_mm=spacing_mm, site=sites[(n_patients + j) % len(sites)],
                               age=float(ages[j]), sex=str(sexes[j]), misalign=misalign, case_id=case_id)
        save_nifti(tmp / "imagesTs" / f"{case_id}.nii.gz", np.moveaxis(case["image"], 0, -1), case["affine"])
        test_ids.append(case_id)
    (tmp / "imagesTs").mkdir(exist_ok=True)             # the folder exists even without test cases
    return test_ids


def write_brain_dataset(out_dir: PathLike, *, cases: int, seed: int, site: Union[str, Sequence[str]] = "A",
                        shape: Sequence[int] = (128, 128, 128), spacing_mm: Sequence[float] = (1.75, 1.75, 1.75),
                        misalign: Optional[tuple[float, float]] = None, cases_per_patient: int = 1,
                        age_range: tuple[float, float] = (20, 80), test_cases: int = 2,
                        overwrite: bool = False) -> Path:
    """Write ``cases`` synthetic brain-tumour cases in the Medical Segmentation Decathlon Task01 layout.

    Writes ``dataset.json``, ``imagesTr/BRATS_001.nii.gz`` ... (4D x, y, z, channel float32; channels
    FLAIR, T1w, T1gd, T2w), ``labelsTr/BRATS_001.nii.gz`` (uint8), ``participants.tsv`` (case_id,
    patient_id, site, age, sex, timepoint, grade) and ``transforms/BRATS_001.json`` (the true rigid
    misalignment of each channel, see ``make_brain_case``). With ``cases_per_patient`` > 1 consecutive
    cases are follow-up scans of one patient (same anatomy and tumour, growing), so splits must be by
    patient. ``site`` is one site for all, or a list that patients take in turn. Ages are drawn
    uniformly from ``age_range``. ``test_cases`` more patients (one scan each, drawn from their own
    seeds, so the training cases do not depend on them) go to ``imagesTs/`` without labels and are
    listed under "test" in dataset.json, as in the real MSD task (nnU-Net's converter needs the
    folder); ``list_brain_cases`` does not see them. Everything is written to a temporary folder that
    is renamed onto ``out_dir`` at the end: a failed run leaves nothing behind.

    Shape: each image (X, Y, Z, 4) on disk, (4, X, Y, Z) once loaded with ``load_brain_case``.

    Example:
        >>> write_brain_dataset("/tmp/brain", cases=4, seed=0, shape=(64, 64, 64),
        ...                     spacing_mm=(3, 3, 3))                           # doctest: +SKIP

    Used in week 1 through `builtin_brain`.
    """
    from medseg_edu.data.io import write_msd_dataset_json
    from medseg_edu.data.nifti import save_nifti

    cases = check_int(cases, "cases", minimum=1)
    cases_per_patient = check_int(cases_per_patient, "cases_per_patient", minimum=1)
    test_cases = check_int(test_cases, "test_cases", minimum=0)
    sites = [site] if isinstance(site, str) else list(site)
    if not sites:
        raise ValueError("site must be a site name or a non-empty list of them, got an empty list")
    for s in sites:
        check_choice(s, sorted(SITES), "site")
    _check_geometry(shape, spacing_mm)
    _check_misalign(misalign)
    if len(age_range) != 2 or not 0 <= age_range[0] <= age_range[1] <= 120:
        raise ValueError(f"age_range must be (low, high) with 0 <= low <= high <= 120, got {age_range!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"out_dir {str(out)!r} exists and is not empty; pass overwrite=True to replace it")

    rng = np.random.default_rng([int(seed), 2024])
    n_patients = -(-cases // cases_per_patient)
    patient_seeds = rng.integers(0, 2 ** 31 - 1, n_patients)
    ages = rng.uniform(age_range[0], age_range[1], n_patients)
    sexes = rng.choice(["F", "M"], n_patients)
    case_seeds = rng.integers(0, 2 ** 31 - 1, cases)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    try:
        rows = ["case_id\tpatient_id\tsite\tage\tsex\ttimepoint\tgrade"]
        case_ids = []
        for k in progress(range(cases), desc="brain phantom", total=cases):
            patient, timepoint = divmod(k, cases_per_patient)
            case_id = f"BRATS_{k + 1:03d}"
            case = make_brain_case(seed=int(case_seeds[k]), patient_seed=int(patient_seeds[patient]),
                                   timepoint=timepoint, shape=shape, spacing_mm=spacing_mm,
                                   site=sites[patient % len(sites)], age=float(ages[patient]),
                                   sex=str(sexes[patient]), misalign=misalign, case_id=case_id)
            save_nifti(tmp / "imagesTr" / f"{case_id}.nii.gz", np.moveaxis(case["image"], 0, -1), case["affine"])
            save_nifti(tmp / "labelsTr" / f"{case_id}.nii.gz", case["label"], case["affine"])
            (tmp / "transforms").mkdir(exist_ok=True)
            (tmp / "transforms" / f"{case_id}.json").write_text(_transforms_json(case))
            a = case["attributes"]
            rows.append(f"{case_id}\tP{patient + 1:03d}\t{a['site']}\t{a['age']}\t{a['sex']}\t"
                        f"{a['timepoint']}\t{a['grade']}")
            case_ids.append(case_id)
        (tmp / "participants.tsv").write_text("\n".join(rows) + "\n")
        test_ids = _write_test_cases(tmp, test_cases, seed=seed, first=cases + 1, n_patients=n_patients,
                                     sites=sites, age_range=age_range, shape=shape, spacing_mm=spacing_mm,
                                     misalign=misalign)
        write_msd_dataset_json(tmp, name="BrainTumourPhantom", case_ids=case_ids, test_ids=test_ids,
                               description="Synthetic gliomas on the MNI152 2009 brain (medseg-edu phantom)",
                               reference="medseg_edu.data.brain_phantom", licence="CC0")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
