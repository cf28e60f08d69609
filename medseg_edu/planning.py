"""Self-configuring segmentation: a data set's fingerprint and the plans derived from it by rules.

nnU-Net (Isensee et al., Nature Methods 2021) reads a *fingerprint* of the training data -- voxel
spacings, image shapes after cropping to the non-zero region, foreground intensity statistics per
channel -- and derives the preprocessing and the network from it with fixed rules:

- target spacing: the median spacing; an axis much coarser than the others (more than 3 times the
  next spacing, with fewer than a third of the voxels) takes the 10th percentile of its spacings;
- normalisation by modality: CT is clipped to the foreground's 0.5/99.5 percentiles and z-scored
  with the foreground mean and standard deviation of the whole data set; everything else is z-scored
  per image, inside the non-zero mask when cropping to it removed more than a quarter of the image;
- patch size, depth and batch size from a memory budget (see :mod:`medseg_edu.unet_plan`);
- a 3D configuration when the data are 3D, and a 2D one on the slices across the coarsest axis.

The functions here reproduce nnunetv2's default planner (2.8.1) on the course's data; the tests
compare them with nnunetv2 itself when it is installed (``pip install medseg-edu[nnunet]``).
Axis order is the data's own (x, y, z as loaded), where nnU-Net works in reversed order.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from medseg_edu.arguments import check_int, check_spacing
from medseg_edu.intensity import zscore_normalise
from medseg_edu.unet_plan import configure_unet

__all__ = ["nonzero_mask", "dataset_fingerprint", "target_spacing", "normalisation_schemes", "normalise_image",
           "plan_experiment"]

ANISOTROPY_THRESHOLD = 3.0
_PERCENTILES = (0.5, 50.0, 99.5)


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """The voxels where any channel is non-zero, with holes filled (the region nnU-Net crops to).

    Shape: image (C, *spatial) -> bool (*spatial).

    Taught in week 7.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"image must be (C, *spatial) with 2 or 3 spatial axes, got shape {image.shape}")
    return ndi.binary_fill_holes(np.any(image != 0, axis=0))


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def dataset_fingerprint(cases: Iterable[Mapping[str, Any]], *, channel_names: Sequence[str],
                        samples_per_case: int = 10000, seed: int = 1234, keep_samples: bool = False) -> dict[str, Any]:
    """Spacings, shapes, foreground intensities and class volumes of a training set, one case at a time.

    Each case is a dict with ``image`` (C, *spatial), integer ``label`` (*spatial) and ``spacing_mm``
    (as ``load_brain_case`` returns it); cases may come from a generator, so only one is in memory.
    Each image is cropped to its ``nonzero_mask``; ``samples_per_case`` foreground voxels (label > 0,
    drawn with replacement, seeded) per case give the intensity statistics of each channel; with
    ``keep_samples`` they are returned too (``intensity_samples``, one array per channel), for histograms.

    Shape: returns a dict: ``spacings`` (N, D), ``shapes`` and ``shapes_after_crop`` (N, D),
    ``relative_size_after_crop`` (N,), ``median_relative_size_after_crop``, ``intensity`` (one dict per
    channel: mean, std, median, min, max, percentile_00_5, percentile_99_5), ``class_volumes_ml``
    (N, K), ``anisotropy`` (median of max/min spacing), ``channel_names``, ``num_cases``.

    Taught in week 7.
    """
    samples_per_case = check_int(samples_per_case, "samples_per_case", minimum=1)
    channel_names = list(channel_names)
    rng = np.random.default_rng(seed)
    spacings, shapes, cropped, relative, volumes = [], [], [], [], []
    samples: list[list[np.ndarray]] = [[] for _ in channel_names]
    for k, case in enumerate(cases):
        image, label = np.asarray(case["image"]), np.asarray(case["label"])
        if image.ndim != label.ndim + 1 or image.shape[1:] != label.shape:
            raise ValueError(f"case {k}: image must be (C, *spatial) and label (*spatial), got shapes "
                             f"{image.shape} and {label.shape}")
        if image.shape[0] != len(channel_names):
            raise ValueError(f"case {k}: image has {image.shape[0]} channels, channel_names names "
                             f"{len(channel_names)}")
        spacing = check_spacing(case["spacing_mm"], label.ndim)
        box = _bounding_box(nonzero_mask(image))
        crop_image, crop_label = image[(slice(None),) + box], label[box]
        spacings.append(spacing)
        shapes.append(label.shape)
        cropped.append(crop_label.shape)
        relative.append(crop_label.size / label.size)
        counts = np.bincount(label.astype(np.int64).ravel())
        volumes.append(counts * float(np.prod(spacing)) / 1000.0)
        foreground = crop_label > 0
        for c in range(len(channel_names)):
            values = crop_image[c][foreground]
            if values.size:
                samples[c].append(rng.choice(values, samples_per_case, replace=True))
    if not spacings:
        raise ValueError("cases must hold at least one case, got none")
    n_classes = max(len(v) for v in volumes)
    intensity = []
    for c, name in enumerate(channel_names):
        if not samples[c]:
            raise ValueError(f"no foreground voxel (label > 0) in any case: cannot describe channel {name!r}")
        values = np.concatenate(samples[c]).astype(np.float64)
        low, median, high = np.percentile(values, _PERCENTILES)
        intensity.append({"mean": float(values.mean()), "std": float(values.std()), "median": float(median),
                          "min": float(values.min()), "max": float(values.max()),
                          "percentile_00_5": float(low), "percentile_99_5": float(high)})
    spacings_array = np.asarray(spacings, dtype=float)
    extra = {"intensity_samples": [np.concatenate(per_channel) for per_channel in samples]} if keep_samples else {}
    return {**extra, "spacings": spacings_array, "shapes": np.asarray(shapes), "shapes_after_crop": np.asarray(cropped),
            "relative_size_after_crop": np.asarray(relative),
            "median_relative_size_after_crop": float(np.median(relative)), "intensity": intensity,
            "class_volumes_ml": np.array([np.pad(v, (0, n_classes - len(v))) for v in volumes]),
            "anisotropy": float(np.median(spacings_array.max(axis=1) / spacings_array.min(axis=1))),
            "channel_names": channel_names, "num_cases": len(spacings)}


def target_spacing(spacings_mm: Any, shapes: Any, *, threshold: float = ANISOTROPY_THRESHOLD) -> np.ndarray:
    """The spacing to resample every case to: the median, except on a much coarser axis.

    The coarsest axis of the median spacing counts as anisotropic when its spacing is more than
    ``threshold`` times the largest other spacing *and* its median size (``shapes``, voxels after
    cropping) times ``threshold`` is below the smallest other median size. Then it takes the 10th
    percentile of its spacings (finer, so thin-slice cases are not thrown away), but never finer than
    the other axes. Ties for the coarsest axis go to the last axis.

    Shape: spacings_mm (N, D), shapes (N, D) -> (D,).

    Example:
        >>> target_spacing([[1, 1, 1], [1, 1, 3]], [[90, 90, 90], [90, 90, 30]]).tolist()
        [1.0, 1.0, 2.0]

    Used in week 7 through `check_target_spacing`.
    """
    spacings = np.asarray(spacings_mm, dtype=float)
    sizes = np.asarray(shapes, dtype=float)
    if spacings.ndim != 2 or spacings.shape[1] not in (2, 3) or sizes.shape != spacings.shape:
        raise ValueError(f"spacings_mm and shapes must both be (N, D) with D = 2 or 3, got shapes "
                         f"{spacings.shape} and {sizes.shape}")
    if not np.all(np.isfinite(spacings) & (spacings > 0)):
        raise ValueError("spacings_mm values must be finite and > 0")
    target = np.percentile(spacings, 50, axis=0)
    median_size = np.percentile(sizes, 50, axis=0)
    worst = len(target) - 1 - int(np.argmax(target[::-1]))
    others = [d for d in range(len(target)) if d != worst]
    coarse = target[worst] > threshold * max(target[others])
    few_voxels = median_size[worst] * threshold < min(median_size[others])
    if coarse and few_voxels:
        tenth = np.percentile(spacings[:, worst], 10)
        if tenth < max(target[others]):
            tenth = max(target[others]) + 1e-5
        target[worst] = tenth
    return target


def normalisation_schemes(channel_names: Sequence[str], *,
                          median_relative_size_after_crop: float) -> tuple[list[str], list[bool]]:
    """Which normalisation each channel gets, and whether it is computed inside the non-zero mask.

    A channel named "CT" (any case) gets "ct"; every other channel "zscore". A z-score channel uses
    the mask when cropping to the non-zero region removed more than a quarter of the median image
    (``median_relative_size_after_crop < 0.75``): skull-stripped MRI, say. CT never uses the mask.

    Shape: channel_names (C,) -> (schemes (C,), use_mask (C,)).

    Example:
        >>> normalisation_schemes(["CT"], median_relative_size_after_crop=0.5)
        (['ct'], [False])

    Used in week 7 through `plan_experiment`.
    """
    schemes = ["ct" if str(name).casefold() == "ct" else "zscore" for name in channel_names]
    crop_matters = median_relative_size_after_crop < 0.75
    return schemes, [crop_matters and scheme == "zscore" for scheme in schemes]


def normalise_image(image: np.ndarray, *, schemes: Sequence[str], use_mask: Sequence[bool],
                    intensity: Optional[Sequence[Mapping[str, float]]] = None) -> np.ndarray:
    """Normalise each channel as planned by ``normalisation_schemes``.

    "ct": clip to the data set's foreground ``percentile_00_5``/``percentile_99_5`` and subtract its
    foreground ``mean``, divide by its ``std`` (from ``intensity``, one dict per channel as in the
    fingerprint). "zscore": this image's own mean and standard deviation, inside ``nonzero_mask`` when
    ``use_mask`` (0 outside), over the whole image otherwise.

    Shape: image (C, *spatial) -> (C, *spatial) float32.

    Taught in week 7.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (3, 4) or len(schemes) != image.shape[0] or len(use_mask) != image.shape[0]:
        raise ValueError(f"image must be (C, *spatial) with one scheme and one use_mask per channel, got shape "
                         f"{image.shape}, {len(schemes)} schemes and {len(use_mask)} use_mask values")
    mask = nonzero_mask(image)
    out = np.empty_like(image)
    for c, scheme in enumerate(schemes):
        if scheme == "ct":
            if intensity is None:
                raise ValueError("intensity (the fingerprint's foreground statistics) is needed for 'ct'")
            stats = intensity[c]
            clipped = np.clip(image[c], stats["percentile_00_5"], stats["percentile_99_5"])
            out[c] = (clipped - stats["mean"]) / max(stats["std"], 1e-8)
        elif scheme == "zscore":
            region = mask if use_mask[c] else np.ones(image.shape[1:], dtype=bool)
            out[c] = zscore_normalise(image[c:c + 1], mask=region)[0]
        else:
            raise ValueError(f"schemes must hold 'ct' or 'zscore', got {scheme!r} for channel {c}")
    return out


def _resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> list[int]:
    return [int(round(s / t * n)) for s, t, n in zip(spacing, target, shape)]


def plan_experiment(fingerprint: Mapping[str, Any], *, num_classes: int, memory_gb: float = 8.0) -> dict[str, Any]:
    """The plans for a data set: target spacing, normalisation, and a 3D and a 2D U-Net configuration.

    ``num_classes`` counts the background (4 for the brain set). The 3D configuration works at the
    target spacing on the median shape after resampling; it is left out (None) for 2D data (a
    fingerprint with 2 spatial axes, or a coarsest axis of 1 voxel). The 2D one works on the slices
    across the coarsest axis (``slice_axis``, the last one for isotropic data; None for 2D images).
    Which of the two is better, nnU-Net decides by cross-validation, not by a rule.
    ``lowres_advised`` is True when the 3D patch covers less than a quarter of the median image: there
    nnU-Net adds a low-resolution cascade, which these plans do not build.

    Shape: a dict with ``target_spacing_mm`` (D,), ``median_shape`` (D,), ``normalisation``,
    ``use_mask_for_norm``, ``slice_axis``, ``3d_fullres`` and ``2d`` (see ``configure_unet``; the 2D
    one gives sizes for the in-plane axes in order), ``lowres_advised``.

    Taught in week 7.
    """
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    shapes = np.asarray(fingerprint["shapes_after_crop"])
    target = target_spacing(spacings, shapes)
    new_shapes = [_resampled_shape(n, s, target) for n, s in zip(shapes, spacings)]
    median = np.median(new_shapes, axis=0)
    voxels = float(np.prod(median, dtype=np.float64) * len(shapes))
    schemes, use_mask = normalisation_schemes(
        fingerprint["channel_names"], median_relative_size_after_crop=fingerprint["median_relative_size_after_crop"])
    if len(target) == 3:                     # 2D slices across the coarsest axis (ties: the last)
        slice_axis: Optional[int] = len(target) - 1 - int(np.argmax(target[::-1]))
        in_plane = [d for d in range(3) if d != slice_axis]
    else:                                    # 2D images: no 3D configuration
        slice_axis, in_plane = None, [0, 1]
    full = configure_unet(target, median, num_classes=num_classes, dataset_voxels=voxels, memory_gb=memory_gb) \
        if slice_axis is not None and median[slice_axis] != 1 else None
    flat = configure_unet(target[in_plane], median[in_plane], num_classes=num_classes, dataset_voxels=voxels,
                          memory_gb=memory_gb)
    lowres = full is not None and np.prod(full["patch_size"], dtype=np.float64) / np.prod(median) < 0.25
    return {"target_spacing_mm": target.tolist(), "median_shape": median.tolist(), "normalisation": schemes,
            "use_mask_for_norm": use_mask, "slice_axis": slice_axis, "3d_fullres": full, "2d": flat,
            "lowres_advised": bool(lowres)}
