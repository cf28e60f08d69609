"""Similarity of two images: the scores that registration maximises, and a checkerboard to look at.

* :func:`ncc_score`: normalised cross-correlation, for two images of the same sequence (it ignores
  brightness and contrast, not the mapping between intensities).
* :func:`joint_histogram` and :func:`histogram_mutual_information`: how well one image's intensity
  predicts the other's, whatever the mapping, so it works across sequences (T1w vs FLAIR).
* :func:`mutual_information_score`: the same with Parzen windowing, smooth and differentiable, so a
  gradient optimiser can use it (:func:`medseg_edu.registration.register_rigid` does).
* :func:`checkerboard`: two images interleaved tile by tile; edges that jump at the tile borders
  show misalignment.

Numpy inputs give floats, torch inputs differentiable 0-d tensors.

Taught in week 1.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from medseg_edu.arguments import check_int, to_tensor

__all__ = ["ncc_score", "joint_histogram", "histogram_mutual_information", "mutual_information_score",
           "checkerboard"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _pair(a: ArrayLike, b: ArrayLike, mask: Optional[ArrayLike]) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Flattened float tensors of a and b (inside mask); bool: return a Python float (numpy input)."""
    ta, tb = to_tensor(a, "a"), to_tensor(b, "b")
    if ta.shape != tb.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    dtype = torch.float64 if torch.float64 in (ta.dtype, tb.dtype) else torch.float32
    ta, tb = ta.to(dtype).reshape(-1), tb.to(dtype).reshape(-1)
    if mask is not None:
        m = to_tensor(mask, "mask")
        if m.shape != to_tensor(a, "a").shape:
            raise ValueError(f"mask must have the shape of a, got {tuple(m.shape)} and {tuple(ta.shape)}")
        keep = m.reshape(-1).bool()
        ta, tb = ta[keep], tb[keep]
    if ta.numel() < 2:
        raise ValueError(f"a and b need at least 2 values (inside mask) to compare, got {ta.numel()}")
    return ta, tb, not (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor))


def ncc_score(a: ArrayLike, b: ArrayLike, *, mask: Optional[ArrayLike] = None) -> Union[float, torch.Tensor]:
    """Global normalised cross-correlation: the Pearson correlation of the voxel values, in [-1, 1].

    ``ncc = sum((a - mean a) (b - mean b)) / sqrt(sum((a - mean a)^2) sum((b - mean b)^2))``, over the
    voxels where ``mask`` is true (all by default). It ignores brightness and contrast (``ncc(a, 3a + 5)
    = 1``), so it suits two images of the SAME sequence. A constant image scores 0. Numpy inputs give a
    float, torch inputs a differentiable 0-d tensor.

    Shape: a, b and mask the same shape (any) -> scalar.
    Taught in week 1.
    """
    ta, tb, as_float = _pair(a, b, mask)
    da, db = ta - ta.mean(), tb - tb.mean()
    score = (da * db).sum() / torch.sqrt((da * da).sum() * (db * db).sum()).clamp_min(1e-12)
    return float(score) if as_float else score


def _bin_index(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins between the minimum and the maximum; the maximum goes into the last bin."""
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.zeros(values.shape, np.int64)
    return np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)


def joint_histogram(a: np.ndarray, b: np.ndarray, *, bins: int = 32) -> np.ndarray:
    """Counts of voxel-value pairs: ``hist[i, j]`` = number of voxels with a in bin i and b in bin j.

    Each image gets ``bins`` equal-width bins from its own minimum to its maximum. Two aligned images
    give a sharp histogram (few, heavy cells); misalignment blurs it.

    Shape: a, b (any, same shape) -> (bins, bins) int64.
    Taught in week 1.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    check_int(bins, "bins", minimum=2)
    ia, ib = _bin_index(a.ravel(), bins), _bin_index(b.ravel(), bins)
    return np.bincount(ia * bins + ib, minlength=bins * bins).reshape(bins, bins)


def histogram_mutual_information(hist: np.ndarray) -> float:
    """Mutual information (nats) of a joint histogram: ``sum p(i,j) log(p(i,j) / (p(i) p(j)))``.

    Empty cells contribute 0. It is 0 for independent images and largest when one image predicts
    the other, whatever the mapping between their intensities (so it works ACROSS sequences).

    Shape: (bins_a, bins_b) counts -> float.
    Taught in week 1.
    """
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 2 or hist.sum() <= 0 or (hist < 0).any():
        raise ValueError(f"hist must be a 2D array of non-negative counts with a positive sum, "
                         f"got shape {hist.shape}")
    p = hist / hist.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (pa @ pb)[nz])).sum())


def _parzen_weights(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Soft bin membership (N, bins) of values scaled to [0, 1], Gaussian kernel one bin wide."""
    lo, hi = values.min().detach(), values.max().detach()
    scaled = (values - lo) / (hi - lo).clamp_min(1e-12)
    centres = torch.linspace(0.0, 1.0, bins, dtype=values.dtype)
    sigma = 1.0 / (bins - 1)
    z2 = ((scaled[:, None] - centres[None, :]) / sigma) ** 2
    # cut the kernel at 6 sigma: exp(-0.5 z2) of far bins would be denormal floats, which are very slow
    w = torch.where(z2 < 36.0, torch.exp(-0.5 * z2.clamp_max(36.0)), torch.zeros_like(z2))
    return w / w.sum(dim=1, keepdim=True)


def mutual_information_score(a: ArrayLike, b: ArrayLike, *, bins: int = 32,
                             mask: Optional[ArrayLike] = None) -> Union[float, torch.Tensor]:
    """Mutual information (nats) with Parzen windowing: a smooth, differentiable joint histogram.

    Each value is spread over nearby bins with a Gaussian kernel (width one bin) instead of falling
    into exactly one bin, so the score changes smoothly with the transform and gradients flow. The
    bins span each image's own range. Symmetric in a and b; maximal when the images are aligned.
    Numpy inputs give a float, torch inputs a differentiable 0-d tensor.

    Shape: a, b and mask the same shape (any) -> scalar.
    Used in week 1 through `register_rigid`.
    """
    check_int(bins, "bins", minimum=2)
    ta, tb, as_float = _pair(a, b, mask)
    wa, wb = _parzen_weights(ta, int(bins)), _parzen_weights(tb, int(bins))
    joint = wa.T @ wb / ta.numel()
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    eps = 1e-10
    score = (joint * (torch.log(joint + eps) - torch.log(pa @ pb + eps))).sum()
    return float(score) if as_float else score


# ------------------------------------------------------------------------------ visual check
def checkerboard(a: np.ndarray, b: np.ndarray, *, tiles: int = 8) -> np.ndarray:
    """Interleave two images in a checkerboard: edges that jump at tile borders show misalignment.

    Each image is scaled to [0, 1] by its own range first, so two sequences with different
    brightness can be compared.

    Shape: a, b (H, W) -> (H, W) float32.
    Taught in week 1.
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be 2D images of the same shape, got {a.shape} and {b.shape}")
    check_int(tiles, "tiles", minimum=1)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x - x.min()) / max(float(x.max() - x.min()), 1e-12)

    rows = (np.arange(a.shape[0]) * tiles // a.shape[0])[:, None]
    cols = (np.arange(a.shape[1]) * tiles // a.shape[1])[None, :]
    return np.where((rows + cols) % 2 == 0, unit(a), unit(b)).astype(np.float32)
