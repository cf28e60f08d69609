"""A U-Net configured by rules: pooling per axis, patch size and batch size from a memory budget.

These are the rules of nnU-Net's default experiment planner (nnunetv2 ``ExperimentPlanner``), written
as small plain functions so that each one can be read, tested and re-derived on its own:

1. ``pooling_plan``: pool an axis while its feature map is at least ``2 * min_edge`` voxels and its
   spacing is within a factor 2 of the finest spacing (coarse axes wait until the fine ones catch up);
   3x3(x3) convolutions once an axis is within a factor 2 of the finest spacing, 1 before. The patch is
   padded up to a multiple of ``2 ** pools`` on every axis.
2. ``feature_map_size``: the memory a U-Net needs grows with the sum of all its feature maps; this
   counts them (encoder, decoder, transposed convolutions, segmentation output) for the plain
   two-convolutions-per-stage U-Net with 32 features doubling per stage up to a cap.
3. ``configure_unet``: start from a patch with the aspect ratio of the spacing (as many voxels as
   256^3 or 2048^2), clipped to the median image shape; while the feature maps exceed the budget,
   shrink the axis that is largest relative to the median shape; spend what is left of the budget
   on the batch, capped so that one batch covers at most 5% of the data set's voxels.

Axis order is the data's own (x, y, z as loaded). Where two axes tie, the first one is shrunk.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from medseg_edu.arguments import check_int, check_spacing

__all__ = ["pooling_plan", "feature_map_size", "configure_unet"]

#: Feature-map budget of nnU-Net for 8 GB of GPU memory and the batch size it corresponds to.
_REFERENCE = {3: (560_000_000, 2), 2: (85_000_000, 12)}
_MAX_FEATURES = {3: 320, 2: 512}
_BASE_FEATURES = 32
_MIN_BATCH = 2
_MAX_DATASET_COVERED = 0.05


def _check_shape(shape: Any, name: str, ndim: int) -> np.ndarray:
    values = np.asarray(shape, dtype=float)
    if values.shape != (ndim,) or not np.all(np.isfinite(values)) or np.any(values < 1):
        raise ValueError(f"{name} must be {ndim} sizes >= 1 (one per spatial axis), got {shape!r}")
    return values


def pooling_plan(spacing_mm: Sequence[float], patch_size: Sequence[float], *, min_edge: int = 4) -> dict[str, Any]:
    """How often to pool each axis, the convolution kernels, and the patch padded to fit the pooling.

    Each round pools every axis that is still at least ``2 * min_edge`` voxels long and whose current
    spacing is below twice the finest current spacing; an axis pooled alone must be ``3 * min_edge``
    long. Pooling an axis halves its size (rounded up) and doubles its spacing.

    Shape: spacing_mm (D,), patch_size (D,) -> dict with ``pools_per_axis`` (D,), ``pool_kernels``
    (stages, D) (first row all 1), ``conv_kernels`` (stages, D), ``patch_size`` (D,) and
    ``divisible_by`` (D,) = ``2 ** pools_per_axis``.

    Example:
        >>> pooling_plan([1.0, 1.0], [100, 50])["pools_per_axis"]     # 100 -> 7 (4 pools), 50 -> 7 (3)
        [4, 3]

    Used in week 7 through `check_pools_per_axis`.
    """
    spacing = list(check_spacing(spacing_mm))
    dim = len(spacing)
    size = list(_check_shape(patch_size, "patch_size", dim))
    min_edge = check_int(min_edge, "min_edge", minimum=1)
    pools = [0] * dim
    kernel = [1] * dim
    pool_kernels, conv_kernels = [[1] * dim], []
    while True:
        valid = [d for d in range(dim) if size[d] >= 2 * min_edge]
        if not valid:
            break
        finest = min(spacing[d] for d in valid)
        valid = [d for d in valid if spacing[d] / finest < 2]
        if len(valid) == 1 and size[valid[0]] < 3 * min_edge:
            break
        for d in range(dim):                   # once 3, a kernel stays 3
            if spacing[d] / min(spacing) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for d in valid:
            stride[d] = 2
            pools[d] += 1
            spacing[d] *= 2
            size[d] = np.ceil(size[d] / 2)
        pool_kernels.append(stride)
        conv_kernels.append(list(kernel))
    conv_kernels.append([3] * dim)             # the bottleneck always has full kernels
    divisible = [2 ** p for p in pools]
    # round up to the next multiple (a multiple stays as it is)
    original = _check_shape(patch_size, "patch_size", dim)
    padded = [int(s + m - s % m - (m if s % m == 0 else 0)) for s, m in zip(original, divisible)]
    return {"pools_per_axis": pools, "pool_kernels": pool_kernels, "conv_kernels": conv_kernels,
            "patch_size": padded, "divisible_by": divisible}


def feature_map_size(patch_size: Sequence[int], pool_kernels: Sequence[Sequence[int]], *, num_classes: int,
                     max_features: int = 320) -> int:
    """Number of values in all feature maps of a plain U-Net: nnU-Net's stand-in for GPU memory.

    Stage ``s`` has ``min(max_features, 32 * 2 ** s)`` features and size ``patch // prod(strides)``;
    the encoder has two convolutions per stage, each decoder stage a transposed convolution and two
    convolutions at the size of its skip connection, and the last one a ``num_classes`` output.

    Shape: patch_size (D,), pool_kernels (stages, D) as from ``pooling_plan`` -> an int.

    Example:
        >>> feature_map_size([8], [[1], [2]], num_classes=2)   # 2*32*8 + 2*64*4 + 3*32*8 + 2*8
        1808

    Taught in week 7.
    """
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    size = np.asarray(patch_size, dtype=np.int64)
    kernels = np.asarray(pool_kernels, dtype=np.int64)
    if kernels.ndim != 2 or kernels.shape[1] != size.size or kernels.shape[0] < 1:
        raise ValueError(f"pool_kernels must be (stages, {size.size}) strides, got shape {kernels.shape}")
    total = 0
    voxels = []
    for s, stride in enumerate(kernels):
        size = size // stride
        voxels.append(int(np.prod(size)))
        total += 2 * min(max_features, _BASE_FEATURES * 2 ** s) * voxels[-1]
    for s in range(len(kernels) - 1):           # decoder: two convolutions + transposed convolution
        total += 3 * min(max_features, _BASE_FEATURES * 2 ** s) * voxels[s]
    return total + num_classes * voxels[0]


def configure_unet(spacing_mm: Sequence[float], median_shape: Sequence[float], *, num_classes: int,
                   dataset_voxels: float, memory_gb: float = 8.0) -> dict[str, Any]:
    """Patch size, batch size and network depth for one configuration (2D or 3D), as nnU-Net plans them.

    ``median_shape`` is the median image shape in voxels at ``spacing_mm`` (after cropping to the
    non-zero region); ``dataset_voxels`` the number of voxels of the whole training set at that
    spacing (median image voxels times the number of cases); ``num_classes`` counts the background.
    The budget is nnU-Net's: 560e6 feature-map values for batch 2 in 3D, 85e6 for batch 12 in 2D,
    for 8 GB, scaled by ``memory_gb / 8``.

    Shape: spacing_mm (D,), median_shape (D,) -> dict with ``patch_size`` (D,), ``batch_size``,
    ``pools_per_axis`` (D,), ``n_stages``, ``pool_kernels``, ``conv_kernels``, ``features_per_stage``,
    ``feature_map_size`` and ``spacing_mm``.

    Taught in week 7.
    """
    spacing = check_spacing(spacing_mm)
    dim = len(spacing)
    median = _check_shape(median_shape, "median_shape", dim)
    if not (isinstance(memory_gb, (int, float)) and memory_gb > 0):
        raise ValueError(f"memory_gb must be a number > 0, got {memory_gb!r}")
    if not (isinstance(dataset_voxels, (int, float, np.number)) and dataset_voxels > 0):
        raise ValueError(f"dataset_voxels must be a number > 0, got {dataset_voxels!r}")
    max_features = _MAX_FEATURES[dim]
    reference_values, reference_batch = _REFERENCE[dim]
    budget = reference_values * (memory_gb / 8)

    inverse = 1 / np.asarray(spacing)           # aspect ratio of the spacing, volume of 256^3 / 2048^2
    side = 256 if dim == 3 else 2048
    start = [round(v) for v in inverse * (side ** dim / np.prod(inverse)) ** (1 / dim)]
    plan = pooling_plan(spacing, np.minimum(start, median))
    estimate = feature_map_size(plan["patch_size"], plan["pool_kernels"], num_classes=num_classes,
                                max_features=max_features)
    while estimate / reference_batch * 2 > budget:
        patch = list(plan["patch_size"])
        axis = int(np.argmax(np.asarray(patch) / median))      # largest relative to the median shape
        # step down by the divisor of the smaller patch: stepping by the current divisor could skip sizes
        trial = list(patch)
        trial[axis] -= plan["divisible_by"][axis]
        patch[axis] -= pooling_plan(spacing, trial)["divisible_by"][axis]
        plan = pooling_plan(spacing, patch)
        estimate = feature_map_size(plan["patch_size"], plan["pool_kernels"], num_classes=num_classes,
                                    max_features=max_features)
    batch = round(budget / estimate * reference_batch)
    cap = round(dataset_voxels * _MAX_DATASET_COVERED / np.prod(plan["patch_size"], dtype=np.float64))
    n_stages = len(plan["pool_kernels"])
    return {"spacing_mm": list(spacing), "patch_size": plan["patch_size"],
            "batch_size": int(max(min(batch, cap), _MIN_BATCH)), "pools_per_axis": plan["pools_per_axis"],
            "n_stages": n_stages, "pool_kernels": plan["pool_kernels"], "conv_kernels": plan["conv_kernels"],
            "features_per_stage": [min(max_features, _BASE_FEATURES * 2 ** s) for s in range(n_stages)],
            "feature_map_size": int(estimate)}
