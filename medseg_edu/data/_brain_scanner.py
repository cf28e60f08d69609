"""The scanner of the brain phantom: sequence contrast, misalignment between sequences, bias field.

Private to :mod:`medseg_edu.data.brain_phantom`: pure-tissue intensities of the four MRI sequences
(scaled by a site's profile), a random rigid motion of each moving sequence and the resampling that
applies it, and a smooth multiplicative bias field.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage as ndi

from medseg_edu.data._brain_anatomy import rotation_matrix, sample, voxel_coordinates

__all__ = ["CHANNELS", "REFERENCE_CHANNEL", "TISSUES", "intensity_table", "misalignment", "move_channel",
           "bias_at"]

#: Channel order of the image (as in the MSD Task01 files).
CHANNELS = ("FLAIR", "T1w", "T1gd", "T2w")
REFERENCE_CHANNEL = "T1w"            # the label is drawn in this channel's frame

# Tissue classes whose intensities each sequence defines.
TISSUES = ("wm", "gm", "csf", "wmh", "edema", "nonenh", "necrosis", "enhancing")
# Intensity of each pure tissue (site A, before noise and bias), in arbitrary MR units.
_BASE_INTENSITY = {
    #         wm    gm   csf   wmh  edema nonenh necro  enh
    "FLAIR": (420, 520, 90, 850, 920, 840, 420, 720),   # CSF suppressed, water in tissue bright
    "T1w": (820, 560, 180, 650, 520, 470, 260, 560),    # WM > GM > CSF, tumour hypointense
    "T1gd": (830, 580, 190, 660, 540, 490, 270, 1400),  # like T1w, the enhancing rim lights up
    "T2w": (330, 520, 1500, 900, 1050, 1000, 1300, 780),  # CSF very bright, WM darker than GM
}


def intensity_table(site: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Pure-tissue intensity per sequence for a site: base values times the site's contrast factors."""
    table = {}
    for seq in CHANNELS:
        factors = site["contrast"].get(seq, {})
        table[seq] = {t: v * factors.get(t, 1.0) * site["scale"] for t, v in zip(TISSUES, _BASE_INTENSITY[seq])}
    return table


def misalignment(rng: np.random.Generator, max_deg: float, max_mm: float,
                  centre_mm: np.ndarray) -> dict[str, dict[str, Any]]:
    """A random rigid transform per moving sequence (the reference T1w gets the identity)."""
    transforms = {}
    for channel in CHANNELS:
        moving = channel != REFERENCE_CHANNEL
        degrees = rng.uniform(-max_deg, max_deg, 3) if moving else np.zeros(3)
        shift = rng.uniform(-max_mm, max_mm, 3) if moving else np.zeros(3)
        rotation = rotation_matrix(degrees)
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = centre_mm + shift - rotation @ centre_mm
        transforms[channel] = {"matrix": matrix, "rotation_deg": degrees, "translation_mm": shift,
                               "center_mm": centre_mm.copy()}
    return transforms


def move_channel(clean: np.ndarray, support: np.ndarray, matrix: np.ndarray, affine: np.ndarray,
                  shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample one channel so that it shows the reference anatomy moved by ``matrix`` (world mm).

    Voxel q of the moved channel shows the reference at ``inv(affine) @ inv(matrix) @ affine @ q``.
    ``clean`` is the flat channel, ``support`` the flat indices of its brain voxels; only voxels near
    the moved brain are computed. Returns the moved flat channel and its support.
    """
    forward = np.linalg.inv(affine) @ matrix @ affine                 # reference voxel -> moved voxel
    target = np.rint(forward[:3, :3] @ voxel_coordinates(support, shape) + forward[:3, 3:4]).astype(int)
    target = target[:, np.all((target >= 0) & (target < np.array(shape)[:, None]), axis=0)]
    near = np.zeros(shape, bool)
    near[tuple(target)] = True
    candidates = np.flatnonzero(ndi.binary_dilation(near, iterations=2))
    backward = np.linalg.inv(forward)
    source = backward[:3, :3] @ voxel_coordinates(candidates, shape) + backward[:3, 3:4]
    mask = np.zeros(clean.size, np.float32)
    mask[support] = 1.0
    values, inside = sample(np.stack([clean, mask]).reshape(2, *shape), source)
    keep = inside > 0.5
    moved = np.zeros_like(clean)
    moved[candidates[keep]] = values[keep]
    return moved, candidates[keep]


def bias_at(rng: np.random.Generator, shape: Sequence[int], strength: float, voxels: np.ndarray) -> np.ndarray:
    """A smooth multiplicative bias field at ``voxels`` (3, P): exp of a quadratic along each axis."""
    bias = np.ones(voxels.shape[1], np.float32)
    for k, n in enumerate(shape):
        u = np.linspace(-1, 1, n)
        a1, a2 = rng.normal(0, strength, 2)
        bias *= np.exp(a1 * u + a2 * (u ** 2 - 1 / 3)).astype(np.float32)[voxels[k]]
    return bias
