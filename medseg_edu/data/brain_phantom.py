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

Taught in week 1 (the data set; misalignment for registration), week 5 (sites) and week 6 (age bias).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from medseg_edu.utils import cache_dir, progress

__all__ = ["SITES", "CHANNELS", "TISSUE_LABELS", "make_brain_case", "write_brain_dataset"]

PathLike = Union[str, "os.PathLike[str]"]

#: Channel order of the image (as in the MSD Task01 files).
CHANNELS = ("FLAIR", "T1w", "T1gd", "T2w")
#: Values of the ``tissue`` map that ``make_brain_case`` returns (the dominant healthy tissue per voxel).
TISSUE_LABELS = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter"}
_REFERENCE_CHANNEL = "T1w"            # the label is drawn in this channel's frame
_TEMPLATE_VERSION = 1                 # bump when the template preparation changes
_NODE_MM = 6.0                        # spacing of the coarse grid on which smooth fields are drawn
_MNI_BRAIN_CENTRE = np.array([0.0, -17.0, 5.0])     # centre of the MNI brain (mm): the grid centre
_MNI_VENTRICLES = np.array([0.0, -10.0, 14.0])      # centre of the lateral ventricles (mm)

# Tissue classes whose intensities each sequence defines.
_TISSUES = ("wm", "gm", "csf", "wmh", "edema", "nonenh", "necrosis", "enhancing")
# Intensity of each pure tissue (site A, before noise and bias), in arbitrary MR units.
_BASE_INTENSITY = {
    #         wm    gm   csf   wmh  edema nonenh necro  enh
    "FLAIR": (420, 520, 90, 850, 920, 840, 420, 720),   # CSF suppressed, water in tissue bright
    "T1w": (820, 560, 180, 650, 520, 470, 260, 560),    # WM > GM > CSF, tumour hypointense
    "T1gd": (830, 580, 190, 660, 540, 490, 270, 1400),  # like T1w, the enhancing rim lights up
    "T2w": (330, 520, 1500, 900, 1050, 1000, 1300, 780),  # CSF very bright, WM darker than GM
}

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

_TEMPLATES: dict[int, dict[str, Any]] = {}     # prepared template per level (1 mm, 2 mm), loaded once


# ----------------------------------------------------------------------------------------------
# the template: MNI152 2009 tissue maps, skull-stripped, cached on disk and in memory
# ----------------------------------------------------------------------------------------------

def _prepare_template_arrays() -> dict[str, np.ndarray]:
    """GM, WM and CSF fractions (uint8, 0..255) of the MNI152 2009 template at 1 mm, cropped to the brain."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(), np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), np.float32)
    intensity = np.asarray(t1.get_fdata(), np.float32)
    # The template is already brain-masked; filling holes keeps the ventricles inside the mask.
    mask = ndi.binary_fill_holes(intensity > 0.02)
    gm = np.where(mask, np.clip(gm, 0, 1), 0)
    wm = np.where(mask, np.clip(wm, 0, 1), 0)
    csf = np.where(mask, np.clip(1.0 - gm - wm, 0, 1), 0)    # ventricles, sulci, cisterns
    lo = np.maximum(np.argwhere(mask).min(0) - 2, 0)
    hi = np.argwhere(mask).max(0) + 3
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    tissues = np.stack([gm[crop], wm[crop], csf[crop]])
    origin = t1.affine[:3, :3] @ lo + t1.affine[:3, 3]
    return {"tissues": np.round(tissues * 255).astype(np.uint8), "origin_mm": origin.astype(np.float64)}


def _template(level: int) -> dict[str, Any]:
    """The prepared template at ``level`` mm voxels (1 or 2), as a float32 tensor (3, X, Y, Z): GM, WM, CSF."""
    if level in _TEMPLATES:
        return _TEMPLATES[level]
    path = cache_dir("templates") / f"mni152_2009_tissues_v{_TEMPLATE_VERSION}.npz"
    try:
        with np.load(path) as npz:
            arrays = {"tissues": npz["tissues"], "origin_mm": npz["origin_mm"]}
    except (OSError, KeyError, ValueError):
        arrays = _prepare_template_arrays()
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.part.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    tissues = arrays["tissues"].astype(np.float32) / 255.0
    origin = arrays["origin_mm"]
    if level == 2:      # average 2x2x2 blocks: the partial-volume fractions of 2 mm voxels
        even = [s - s % 2 for s in tissues.shape[1:]]
        t = tissues[:, :even[0], :even[1], :even[2]]
        tissues = t.reshape(3, even[0] // 2, 2, even[1] // 2, 2, even[2] // 2, 2).mean(axis=(2, 4, 6))
        origin = origin + 0.5
    _TEMPLATES[level] = {"tensor": torch.from_numpy(np.ascontiguousarray(tissues)),
                         "origin_mm": origin, "voxel_mm": float(level)}
    return _TEMPLATES[level]


# ----------------------------------------------------------------------------------------------
# small geometric helpers
# ----------------------------------------------------------------------------------------------

def _rotation(degrees: Sequence[float]) -> np.ndarray:
    """3x3 rotation: about x, then y, then z (R = Rz @ Ry @ Rx), angles in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sample(volume: Union[np.ndarray, torch.Tensor], index: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``volume`` (C, X, Y, Z) at voxel positions ``index`` (3, P); 0 outside.

    Shape: volume (C, X, Y, Z), index (3, P) -> (C, P).
    """
    volume = torch.as_tensor(volume)[None]
    size = torch.tensor(volume.shape[2:], dtype=torch.float32).view(3, 1)
    normalised = 2.0 * torch.from_numpy(np.asarray(index, np.float32)) / (size - 1) - 1.0
    grid = normalised.flip(0).T.reshape(1, -1, 1, 1, 3)       # grid_sample wants (z, y, x) last
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, :, :, 0, 0].numpy()


def _smooth_noise(rng: np.random.Generator, count: int, shape: Sequence[int], sigma: float) -> np.ndarray:
    """``count`` smooth random fields with unit standard deviation, drawn on a coarse grid."""
    fields = rng.standard_normal((count, *shape)).astype(np.float32)
    fields = ndi.gaussian_filter(fields, sigma=(0, sigma, sigma, sigma), mode="reflect")
    return fields / fields.reshape(count, -1).std(axis=1).reshape(count, 1, 1, 1)


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


def _check_site(site) -> dict[str, Any]:
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    return SITES[site]


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

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _draw_patient(patient_seed: int, *, age, sex, grade, timepoint: int) -> dict[str, Any]:
    """Everything that belongs to the patient (the same for all scans of one patient).

    Separate random streams for demographics and head, tumour, and ageing, so that changing the age
    (or the time point) of a patient keeps its tumour where it was.
    """
    rng = np.random.default_rng([patient_seed, 1])
    p: dict[str, Any] = {}
    drawn_age, drawn_sex, drawn_grade = rng.uniform(20, 80), rng.choice(["F", "M"]), rng.random()
    p["age"] = int(round(float(drawn_age if age is None else age)))
    p["sex"] = str(drawn_sex) if sex is None else sex
    p["grade"] = ("high" if drawn_grade < 0.75 else "low") if grade is None else grade
    p["head_scale"] = ((1.025 if p["sex"] == "M" else 0.975) * rng.uniform(0.95, 1.05)
                       * rng.uniform(0.97, 1.03, 3))
    p["head_rotation"] = _rotation(rng.uniform(-5, 5, 3))
    p["head_shift_mm"] = rng.uniform(-4, 4, 3)

    rng = np.random.default_rng([patient_seed, 2])                   # the tumour
    high = p["grade"] == "high"
    first_radius = rng.uniform(9.0, 22.0) if high else rng.uniform(10.0, 24.0)
    p["first_radius_mm"] = first_radius
    radius = first_radius * 1.12 ** timepoint                        # follow-ups: it grows
    p["radius_mm"] = radius
    p["radii_mm"] = radius * rng.uniform(0.75, 1.25, 3)
    p["tumour_rotation"] = _rotation(rng.uniform(-180, 180, 3))
    p["necrosis_level"] = rng.uniform(0.35, 0.7) if radius > 11 else rng.uniform(0.0, 0.4)
    p["edema_reach"] = rng.uniform(1.6, 2.5) if high else rng.uniform(1.2, 1.7)
    p["hemisphere"] = 1.0 if rng.random() < 0.5 else -1.0
    p["mass_effect"] = (0.45 if high else 0.3) * min(1.0, radius / 18.0)
    p["tumour_pick"] = rng.random()                                  # which deep white-matter point
    p["tumour_jitter_mm"] = rng.uniform(-1.0, 1.0, 3)

    rng = np.random.default_rng([patient_seed, 3])                   # ageing
    old = float(np.clip((p["age"] - 30.0) / 50.0, 0.0, 1.0))        # 0 up to 30 years, 1 at 80
    p["ventricle_growth"] = 0.30 * old
    p["cortical_atrophy"] = 0.30 * old
    p["periventricular_wmh"] = 0.5 * old ** 2                        # caps and bands around the ventricles
    n_wmh = int(rng.poisson(12.0 * np.clip((p["age"] - 45.0) / 35.0, 0.0, 1.0)))
    p["wmh_centres"] = _MNI_VENTRICLES + rng.uniform(-1, 1, (n_wmh, 3)) * np.array([32.0, 40.0, 22.0])
    p["wmh_sizes_mm"] = rng.uniform(3.0, 6.0, n_wmh)
    return p


def _patient_to_template(points: np.ndarray, p: dict[str, Any], warp: np.ndarray,
                         tumour_centre: Optional[np.ndarray] = None) -> np.ndarray:
    """Map patient-space points (3, ...) in mm to template (MNI) mm: head pose, smooth warp, age, mass effect."""
    cols = (3,) + (1,) * (points.ndim - 1)
    if tumour_centre is not None:    # mass effect: tissue around the tumour is pushed outwards
        rel = points - tumour_centre.reshape(cols)
        push = 1.0 - p["mass_effect"] * np.exp(-0.5 * (rel ** 2).sum(0) / (1.3 * p["radius_mm"]) ** 2)
        points = tumour_centre.reshape(cols) + rel * push
    linear = np.diag(1.0 / p["head_scale"]) @ p["head_rotation"].T
    flat = points.reshape(3, -1) - p["head_shift_mm"][:, None]
    m = (linear @ flat).reshape(points.shape) + _MNI_BRAIN_CENTRE.reshape(cols) + warp
    rel = m - _MNI_VENTRICLES.reshape(cols)     # older: ventricles magnified
    g = np.exp(-0.5 * ((rel / np.array([14.0, 28.0, 14.0]).reshape(cols)) ** 2).sum(0))
    return _MNI_VENTRICLES.reshape(cols) + rel * (1.0 - p["ventricle_growth"] * g)


def _tumour_sites() -> tuple[np.ndarray, np.ndarray]:
    """Candidate tumour centres in template mm (deep cerebral white matter, 2 mm grid) and their depth."""
    if "sites" not in _TEMPLATES:
        level = _template(1)
        tissues = level["tensor"].numpy()[:, ::2, ::2, ::2]
        depth = ndi.distance_transform_edt(tissues.sum(0) > 0.5, sampling=2.0)
        index = np.argwhere(tissues[1] > 0.6)
        mm = level["origin_mm"] + 2.0 * index
        keep = (np.abs(mm[:, 0]) > 12) & (mm[:, 2] > -8) & (mm[:, 1] > -75)    # cerebrum, off the midline
        _TEMPLATES["sites"] = (mm[keep], depth[tuple(index[keep].T)])
    return _TEMPLATES["sites"]


def _tumour_centre(p: dict[str, Any], m_nodes: np.ndarray, nodes_mm: np.ndarray) -> np.ndarray:
    """Pick a deep white-matter point of one hemisphere in the template, find it in the patient (mm)."""
    sites, depth = _tumour_sites()
    ok = (sites[:, 0] * p["hemisphere"] > 0) & (depth > 0.6 * p["first_radius_mm"] + 8)
    if not ok.any():
        ok = sites[:, 0] * p["hemisphere"] > 0
    target = sites[ok][int(p["tumour_pick"] * ok.sum())] + p["tumour_jitter_mm"]
    # nearest node, then one step of the inverse of the (linear part of the) patient -> template map
    k = np.unravel_index(np.argmin(((m_nodes - target.reshape(3, 1, 1, 1)) ** 2).sum(0)), m_nodes.shape[1:])
    linear = np.diag(1.0 / p["head_scale"]) @ p["head_rotation"].T
    return nodes_mm[(slice(None), *k)] + np.linalg.solve(linear, target - m_nodes[(slice(None), *k)])


def _tumour(p: dict[str, Any], centre: np.ndarray, points_mm: np.ndarray, noise: np.ndarray,
            wm: np.ndarray, csf: np.ndarray, spacing: Sequence[float]):
    """Soft fractions (edema, core, necrosis) and labels of the tumour at brain points (3, P) in mm.

    The core is a level set of one irregular function ``f_core`` (an ellipsoid radius plus smooth
    noise); necrosis lies inside it (at least ~1.5 voxels of enhancing rim) and edema around it,
    reaching further where the white matter is (``wm``), staying out of the ventricles (``csf``) and
    fading towards its border. ``noise`` holds 3 smooth fields (core shape, edema shape, necrosis).
    """
    voxel = float(np.mean(spacing))
    rel = points_mm - centre[:, None]
    u = p["tumour_rotation"].T @ rel                                 # the tumour's own axes
    d = np.sqrt((((u / p["radii_mm"][:, None]) ** 2).sum(0))).astype(np.float32)
    f_core = d + 0.3 * np.clip(noise[0], -3, 3)
    f_edema = d / (p["edema_reach"] * (0.4 + 0.8 * wm)) + 0.15 * np.clip(noise[1], -2.5, 2.5)
    f_necrosis = f_core + 0.2 * noise[2]
    width = 0.35 * voxel / p["radius_mm"]                            # partial-volume width (f units)
    ring = 2.0 * voxel / p["radius_mm"]                              # edema at least ~2 voxels around the core
    rim = 1.5 * voxel / p["radius_mm"]                               # enhancing rim at least ~1.5 voxels
    high = p["grade"] == "high"
    core = _sigmoid((1.0 - f_core) / width)
    if high:
        necrosis = _sigmoid((p["necrosis_level"] - f_necrosis) / width) * _sigmoid((1.0 - rim - f_core) / width)
    else:
        necrosis = core
    fading = 0.55 + 0.45 * _sigmoid((0.7 - f_edema) / 0.1)          # more water near the tumour
    edema = np.maximum(_sigmoid((1.0 - f_edema) / width) * (1.0 - csf) * fading,
                       _sigmoid((1.0 + ring - f_core) / width))
    label = np.zeros(d.shape, np.uint8)
    label[((f_edema < 1.0) & (csf < 0.5)) | (f_core < 1.0 + ring)] = 1
    label[f_core < 1.0] = 3 if high else 2
    if high:
        label[(f_necrosis < p["necrosis_level"]) & (f_core < 1.0 - rim)] = 2
    return edema, core, necrosis, label


def _enforce_nesting(label: np.ndarray, brain: np.ndarray, *, high: bool) -> None:
    """Make sure, voxel by voxel, that edema wraps the core and (high grade) the rim wraps necrosis.

    The level sets already nest; this closes the rare one-voxel gaps where the noise is steep.
    """
    found = np.argwhere(label > 0)
    if len(found) == 0:
        return
    box = tuple(slice(max(a - 2, 0), b + 3) for a, b in zip(found.min(0), found.max(0)))
    sub, inside = label[box], brain[box]
    if high:
        sub[ndi.binary_dilation(sub == 2) & inside & ~np.isin(sub, (2, 3))] = 3
    sub[ndi.binary_dilation(np.isin(sub, (2, 3))) & inside & (sub == 0)] = 1


def _intensity_table(site: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Pure-tissue intensity per sequence for a site: base values times the site's contrast factors."""
    table = {}
    for seq in CHANNELS:
        factors = site["contrast"].get(seq, {})
        table[seq] = {t: v * factors.get(t, 1.0) * site["scale"] for t, v in zip(_TISSUES, _BASE_INTENSITY[seq])}
    return table


def _misalignment(rng: np.random.Generator, max_deg: float, max_mm: float,
                  centre_mm: np.ndarray) -> dict[str, dict[str, Any]]:
    """A random rigid transform per moving sequence (the reference T1w gets the identity)."""
    transforms = {}
    for channel in CHANNELS:
        moving = channel != _REFERENCE_CHANNEL
        degrees = rng.uniform(-max_deg, max_deg, 3) if moving else np.zeros(3)
        shift = rng.uniform(-max_mm, max_mm, 3) if moving else np.zeros(3)
        rotation = _rotation(degrees)
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = centre_mm + shift - rotation @ centre_mm
        transforms[channel] = {"matrix": matrix, "rotation_deg": degrees, "translation_mm": shift,
                               "center_mm": centre_mm.copy()}
    return transforms


def _voxels(flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Voxel coordinates (3, P) of flat (C-order) indices into a ``shape`` grid."""
    _, ny, nz = shape
    return np.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz])


def _move_channel(clean: np.ndarray, support: np.ndarray, matrix: np.ndarray, affine: np.ndarray,
                  shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample one channel so that it shows the reference anatomy moved by ``matrix`` (world mm).

    Voxel q of the moved channel shows the reference at ``inv(affine) @ inv(matrix) @ affine @ q``.
    ``clean`` is the flat channel, ``support`` the flat indices of its brain voxels; only voxels near
    the moved brain are computed. Returns the moved flat channel and its support.
    """
    forward = np.linalg.inv(affine) @ matrix @ affine                 # reference voxel -> moved voxel
    target = np.rint(forward[:3, :3] @ _voxels(support, shape) + forward[:3, 3:4]).astype(int)
    target = target[:, np.all((target >= 0) & (target < np.array(shape)[:, None]), axis=0)]
    near = np.zeros(shape, bool)
    near[tuple(target)] = True
    candidates = np.flatnonzero(ndi.binary_dilation(near, iterations=2))
    backward = np.linalg.inv(forward)
    source = backward[:3, :3] @ _voxels(candidates, shape) + backward[:3, 3:4]
    mask = np.zeros(clean.size, np.float32)
    mask[support] = 1.0
    values, inside = _sample(np.stack([clean, mask]).reshape(2, *shape), source)
    keep = inside > 0.5
    moved = np.zeros_like(clean)
    moved[candidates[keep]] = values[keep]
    return moved, candidates[keep]


def _bias_at(rng: np.random.Generator, shape: Sequence[int], strength: float, voxels: np.ndarray) -> np.ndarray:
    """A smooth multiplicative bias field at ``voxels`` (3, P): exp of a quadratic along each axis."""
    bias = np.ones(voxels.shape[1], np.float32)
    for k, n in enumerate(shape):
        u = np.linspace(-1, 1, n)
        a1, a2 = rng.normal(0, strength, 2)
        bias *= np.exp(a1 * u + a2 * (u ** 2 - 1 / 3)).astype(np.float32)[voxels[k]]
    return bias


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

    Taught in week 1.
    """
    shape, spacing = _check_geometry(shape, spacing_mm)
    profile = _check_site(site)
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
    p = _draw_patient(int(patient_seed), age=age, sex=sex, grade=grade, timepoint=int(timepoint))
    prng = np.random.default_rng([int(patient_seed), 4])             # the patient's smooth fields
    template = _template(2 if min(spacing) >= 2.0 else 1)

    # --- coarse grid of nodes (about 6 mm apart) on which smooth fields are drawn -----------------
    n, sp = np.array(shape), np.array(spacing)
    origin = -(n - 1) / 2.0 * sp                                      # world mm of voxel (0, 0, 0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    n_nodes = [max(2, int(math.ceil((k - 1) * s / _NODE_MM)) + 1) for k, s in zip(shape, spacing)]
    node_pos = [np.linspace(0, k - 1, m) for k, m in zip(shape, n_nodes)]
    nodes_mm = np.stack(np.meshgrid(*[o + s * q for o, s, q in zip(origin, sp, node_pos)], indexing="ij"))
    warp = _smooth_noise(prng, 3, n_nodes, sigma=2.5) * 2.5           # smooth deformation, about 2.5 mm
    noise = _smooth_noise(prng, 5, n_nodes, sigma=1.0)   # core, edema, necrosis, texture, atrophy

    def to_index(m_mm: np.ndarray) -> np.ndarray:                     # template mm -> template voxel
        return ((m_mm - template["origin_mm"].reshape(3, 1, 1, 1)) / template["voxel_mm"]).astype(np.float32)

    m_nodes = _patient_to_template(nodes_mm, p, warp)
    coarse = _sample(template["tensor"], to_index(m_nodes).reshape(3, -1)).reshape(3, *n_nodes)
    centre = _tumour_centre(p, m_nodes, nodes_mm)
    m_nodes = _patient_to_template(nodes_mm, p, warp, tumour_centre=centre)
    rel = (m_nodes - _MNI_VENTRICLES.reshape(3, 1, 1, 1)) / np.array([15.0, 30.0, 13.0]).reshape(3, 1, 1, 1)
    wmh_nodes = (p["periventricular_wmh"] * np.exp(-0.5 * (rel ** 2).sum(0))).astype(np.float32)
    for c, s in zip(p["wmh_centres"], p["wmh_sizes_mm"]):
        wmh_nodes += np.exp(-0.5 * ((m_nodes - c.reshape(3, 1, 1, 1)) ** 2).sum(0) / s ** 2).astype(np.float32)

    # --- anatomy, computed only at voxels near the brain ----------------------------------------
    near = ndi.binary_dilation(coarse.sum(0) > 0.02)
    nearest_node = [np.rint(np.arange(k) * (m - 1) / (k - 1)).astype(int) for k, m in zip(shape, n_nodes)]
    flat = np.flatnonzero(near[np.ix_(*nearest_node)])
    node_scale = np.array([(m - 1) / (k - 1) for k, m in zip(shape, n_nodes)], np.float32)[:, None]
    at_nodes = _voxels(flat, shape) * node_scale                     # voxel -> position on the node grid
    fields = _sample(np.concatenate([to_index(m_nodes), noise[4:5], wmh_nodes[None]]), at_nodes)
    gm, wm, csf = _sample(template["tensor"], fields[:3])            # the tissue maps, warped
    inside = (gm + wm + csf) > 0.5                                    # the skull-stripping mask
    flat, at_nodes = flat[inside], at_nodes[:, inside]
    atrophy, wmh, gm, wm, csf = fields[3, inside], fields[4, inside], gm[inside], wm[inside], csf[inside]
    loss = p["cortical_atrophy"] * np.clip(0.6 + 0.4 * atrophy, 0, 1) * gm   # thinner cortex, wider sulci
    gm, csf = gm - loss, csf + loss
    wmh = wm * np.clip(1.5 * wmh - 0.3, 0, 1)                         # white-matter hyperintensities
    tissue = np.zeros(shape, np.uint8)
    tissue.reshape(-1)[flat] = 1 + np.argmax(np.stack([csf, gm, wm]), axis=0)

    # --- the tumour, near its centre --------------------------------------------------------------
    voxels = _voxels(flat, shape)
    points_mm = origin[:, None] + sp[:, None] * voxels
    # f_core < 1 + ring and f_edema < 1 bound the normalised radius (noise is clipped in _tumour)
    extent = max(p["radii_mm"]) * max(2.0 + 2.0 * max(spacing) / p["radius_mm"], 1.7 * p["edema_reach"])
    extent += 2 * max(spacing)
    near_tumour = np.flatnonzero(np.all(np.abs(points_mm - centre[:, None]) < extent, axis=0))
    tumour_noise = _sample(noise[:4], at_nodes[:, near_tumour])
    edema, core, necrosis = (np.zeros(len(gm), np.float32) for _ in range(3))
    texture = np.zeros(len(gm), np.float32)
    t_edema, t_core, t_necrosis, t_label = _tumour(p, centre, points_mm[:, near_tumour], tumour_noise[:3],
                                                   wm[near_tumour], csf[near_tumour], spacing)
    edema[near_tumour], core[near_tumour], necrosis[near_tumour] = t_edema, t_core, t_necrosis
    texture[near_tumour] = tumour_noise[3]                            # patchy tumour tissue
    label = np.zeros(shape, np.uint8)
    label.reshape(-1)[flat[near_tumour]] = t_label
    _enforce_nesting(label, tissue > 0, high=p["grade"] == "high")

    # --- render the four sequences: tissue fractions (8, P) times tissue intensities (8, 4) --------
    high = p["grade"] == "high"
    healthy = 1.0 - edema
    solid = core - necrosis                                          # enhancing rim (high grade)
    fractions = np.stack([(wm - wmh) * healthy, gm * healthy, csf * healthy, wmh * healthy,
                          edema - core,
                          necrosis * (1.0 + 0.1 * texture) * (not high),       # non-enhancing tumour
                          necrosis * (1.0 + 0.1 * texture) * high,             # necrosis
                          solid * (1.0 + 0.2 * texture)])                      # enhancing tumour
    table = _intensity_table(profile)
    intensities = np.array([[table[seq][t] for t in _TISSUES] for seq in CHANNELS], np.float32)  # (4, 8)
    gains = crng.uniform(0.9, 1.1, 4).astype(np.float32)[:, None]    # arbitrary gain of each scan
    clean = np.zeros((4, int(np.prod(shape))), np.float32)           # flat channels
    clean[:, flat] = (intensities @ fractions) * gains
    support = [flat] * 4                                              # brain voxels of each channel

    # --- the scanner: misalignment, resolution, bias field, Rician noise ------------------------
    transforms = _misalignment(crng, max_deg, max_mm, np.zeros(3))
    if max_deg > 0 or max_mm > 0:
        for ch, seq in enumerate(CHANNELS):
            if seq != _REFERENCE_CHANNEL:
                clean[ch], support[ch] = _move_channel(clean[ch], support[ch], transforms[seq]["matrix"],
                                                       affine, shape)
    blur = [profile["blur_mm"] / 2.3548 / s for s in spacing[:2]]
    thick = profile["slice_mm"] or 0.0
    blur.append(math.sqrt(max(thick ** 2 - spacing[2] ** 2, 0.0)) / 2.3548 / spacing[2])
    if max(blur) > 0:
        clean = ndi.gaussian_filter(clean.reshape(4, *shape), sigma=(0, *blur), mode="constant").reshape(4, -1)
    image = np.zeros((4, int(np.prod(shape))), np.float32)
    sigma = profile["noise"] * 1000.0 * profile["scale"]
    for ch in range(4):
        values = clean[ch, support[ch]] * _bias_at(crng, shape, profile["bias"], _voxels(support[ch], shape))
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
    content = {"case_id": case["case_id"], "reference": _REFERENCE_CHANNEL,
               "convention": "p_moving = matrix @ p_reference, world coordinates in mm (RAS); "
                             "matrix = translate(center_mm + translation_mm) @ R @ translate(-center_mm), "
                             "R = Rz @ Ry @ Rx from rotation_deg",
               "channels": channels}
    text = json.dumps(content, indent=2)
    # one line per matrix row and per vector, so that the file reads like the matrix it holds
    return re.sub(r"\[\s+([^\[\]]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def write_brain_dataset(out_dir: PathLike, *, cases: int, seed: int, site: Union[str, Sequence[str]] = "A",
                        shape: Sequence[int] = (128, 128, 128), spacing_mm: Sequence[float] = (1.75, 1.75, 1.75),
                        misalign: Optional[tuple[float, float]] = None, cases_per_patient: int = 1,
                        age_range: tuple[float, float] = (20, 80), overwrite: bool = False) -> Path:
    """Write ``cases`` synthetic brain-tumour cases in the Medical Segmentation Decathlon Task01 layout.

    Writes ``dataset.json``, ``imagesTr/BRATS_001.nii.gz`` ... (4D x, y, z, channel float32; channels
    FLAIR, T1w, T1gd, T2w), ``labelsTr/BRATS_001.nii.gz`` (uint8), ``participants.tsv`` (case_id,
    patient_id, site, age, sex, timepoint, grade) and ``transforms/BRATS_001.json`` (the true rigid
    misalignment of each channel, see ``make_brain_case``). With ``cases_per_patient`` > 1 consecutive
    cases are follow-up scans of one patient (same anatomy and tumour, growing), so splits must be by
    patient. ``site`` is one site for all, or a list that patients take in turn. Ages are drawn
    uniformly from ``age_range``. Everything is written to a temporary folder that is renamed onto
    ``out_dir`` at the end: a failed run leaves nothing behind.

    Shape: each image (X, Y, Z, 4) on disk, (4, X, Y, Z) once loaded with ``load_brain_case``.

    Example:
        >>> write_brain_dataset("/tmp/brain", cases=4, seed=0, shape=(64, 64, 64),
        ...                     spacing_mm=(3, 3, 3))                           # doctest: +SKIP

    Taught in week 1.
    """
    from medseg_edu.data.io import write_msd_dataset_json
    from medseg_edu.data.nifti import save_nifti

    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or cases < 1:
        raise ValueError(f"cases must be an integer >= 1, got {cases!r}")
    if isinstance(cases_per_patient, bool) or not isinstance(cases_per_patient, (int, np.integer)) \
            or cases_per_patient < 1:
        raise ValueError(f"cases_per_patient must be an integer >= 1, got {cases_per_patient!r}")
    sites = [site] if isinstance(site, str) else list(site)
    if not sites:
        raise ValueError("site must be a site name or a non-empty list of them, got an empty list")
    for s in sites:
        _check_site(s)
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
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
        write_msd_dataset_json(tmp, name="BrainTumourPhantom", case_ids=case_ids,
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
