"""The anatomy of the brain phantom: the MNI152 template, a patient's head and age, and the tumour.

Private to :mod:`medseg_edu.data.brain_phantom`, which builds a case from these pieces: the template's
tissue maps (cached on disk and in memory), the patient's random attributes, the map from patient
millimetres to template millimetres (head pose, smooth warp, ageing, mass effect), where the tumour
grows and its soft tissue fractions and labels. Everything is deterministic given its random generator.
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from medseg_edu.utils import cache_dir

__all__ = ["load_template", "rotation_matrix", "sample", "smooth_noise", "sigmoid", "voxel_coordinates",
           "draw_patient", "patient_to_template", "wmh_field", "tumour_centre", "tumour_fractions",
           "enforce_nesting"]

_TEMPLATE_VERSION = 1                 # bump when the template preparation changes
_MNI_BRAIN_CENTRE = np.array([0.0, -17.0, 5.0])     # centre of the MNI brain (mm): the grid centre
_MNI_VENTRICLES = np.array([0.0, -10.0, 14.0])      # centre of the lateral ventricles (mm)

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


def load_template(level: int) -> dict[str, Any]:
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

def rotation_matrix(degrees: Sequence[float]) -> np.ndarray:
    """3x3 rotation: about x, then y, then z (R = Rz @ Ry @ Rx), angles in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def sample(volume: Union[np.ndarray, torch.Tensor], index: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``volume`` (C, X, Y, Z) at voxel positions ``index`` (3, P); 0 outside.

    Shape: volume (C, X, Y, Z), index (3, P) -> (C, P).
    """
    volume = torch.as_tensor(volume)[None]
    size = torch.tensor(volume.shape[2:], dtype=torch.float32).view(3, 1)
    normalised = 2.0 * torch.from_numpy(np.asarray(index, np.float32)) / (size - 1) - 1.0
    grid = normalised.flip(0).T.reshape(1, -1, 1, 1, 3)       # grid_sample wants (z, y, x) last
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, :, :, 0, 0].numpy()


def smooth_noise(rng: np.random.Generator, count: int, shape: Sequence[int], sigma: float) -> np.ndarray:
    """``count`` smooth random fields with unit standard deviation, drawn on a coarse grid."""
    fields = rng.standard_normal((count, *shape)).astype(np.float32)
    fields = ndi.gaussian_filter(fields, sigma=(0, sigma, sigma, sigma), mode="reflect")
    return fields / fields.reshape(count, -1).std(axis=1).reshape(count, 1, 1, 1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def voxel_coordinates(flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Voxel coordinates (3, P) of flat (C-order) indices into a ``shape`` grid."""
    _, ny, nz = shape
    return np.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz])


# ----------------------------------------------------------------------------------------------
# the patient and the tumour
# ----------------------------------------------------------------------------------------------

def draw_patient(patient_seed: int, *, age, sex, grade, timepoint: int) -> dict[str, Any]:
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
    p["head_rotation"] = rotation_matrix(rng.uniform(-5, 5, 3))
    p["head_shift_mm"] = rng.uniform(-4, 4, 3)

    rng = np.random.default_rng([patient_seed, 2])                   # the tumour
    high = p["grade"] == "high"
    first_radius = rng.uniform(9.0, 22.0) if high else rng.uniform(10.0, 24.0)
    p["first_radius_mm"] = first_radius
    radius = first_radius * 1.12 ** timepoint                        # follow-ups: it grows
    p["radius_mm"] = radius
    p["radii_mm"] = radius * rng.uniform(0.75, 1.25, 3)
    p["tumour_rotation"] = rotation_matrix(rng.uniform(-180, 180, 3))
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


def patient_to_template(points: np.ndarray, p: dict[str, Any], warp: np.ndarray,
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


def wmh_field(p: dict[str, Any], m_nodes: np.ndarray) -> np.ndarray:
    """White-matter hyperintensity strength at template positions ``m_nodes`` (3, ...): caps and bands
    around the ventricles (older patients) plus the patient's scattered spots."""
    rel = (m_nodes - _MNI_VENTRICLES.reshape(3, 1, 1, 1)) / np.array([15.0, 30.0, 13.0]).reshape(3, 1, 1, 1)
    wmh_nodes = (p["periventricular_wmh"] * np.exp(-0.5 * (rel ** 2).sum(0))).astype(np.float32)
    for c, s in zip(p["wmh_centres"], p["wmh_sizes_mm"]):
        wmh_nodes += np.exp(-0.5 * ((m_nodes - c.reshape(3, 1, 1, 1)) ** 2).sum(0) / s ** 2).astype(np.float32)
    return wmh_nodes


def _tumour_sites() -> tuple[np.ndarray, np.ndarray]:
    """Candidate tumour centres in template mm (deep cerebral white matter, 2 mm grid) and their depth."""
    if "sites" not in _TEMPLATES:
        level = load_template(1)
        tissues = level["tensor"].numpy()[:, ::2, ::2, ::2]
        depth = ndi.distance_transform_edt(tissues.sum(0) > 0.5, sampling=2.0)
        index = np.argwhere(tissues[1] > 0.6)
        mm = level["origin_mm"] + 2.0 * index
        keep = (np.abs(mm[:, 0]) > 12) & (mm[:, 2] > -8) & (mm[:, 1] > -75)    # cerebrum, off the midline
        _TEMPLATES["sites"] = (mm[keep], depth[tuple(index[keep].T)])
    return _TEMPLATES["sites"]


def tumour_centre(p: dict[str, Any], m_nodes: np.ndarray, nodes_mm: np.ndarray) -> np.ndarray:
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


def tumour_fractions(p: dict[str, Any], centre: np.ndarray, points_mm: np.ndarray, noise: np.ndarray,
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
    core = sigmoid((1.0 - f_core) / width)
    if high:
        necrosis = sigmoid((p["necrosis_level"] - f_necrosis) / width) * sigmoid((1.0 - rim - f_core) / width)
    else:
        necrosis = core
    fading = 0.55 + 0.45 * sigmoid((0.7 - f_edema) / 0.1)          # more water near the tumour
    edema = np.maximum(sigmoid((1.0 - f_edema) / width) * (1.0 - csf) * fading,
                       sigmoid((1.0 + ring - f_core) / width))
    label = np.zeros(d.shape, np.uint8)
    label[((f_edema < 1.0) & (csf < 0.5)) | (f_core < 1.0 + ring)] = 1
    label[f_core < 1.0] = 3 if high else 2
    if high:
        label[(f_necrosis < p["necrosis_level"]) & (f_core < 1.0 - rim)] = 2
    return edema, core, necrosis, label


def enforce_nesting(label: np.ndarray, brain: np.ndarray, *, high: bool) -> None:
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
