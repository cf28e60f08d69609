"""Self-checks for the week 7 exercises (the planning rules of a self-configuring U-Net).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it
with a reference and prints "exN looks right", or raises AssertionError saying *what* is wrong (a shape,
a rule, a case) without giving away an expected number. The references are the library's own rules
(:mod:`medseg_edu.planning`, :mod:`medseg_edu.unet_plan`, :mod:`medseg_edu.crossval`) or, where the
library has no single-channel form, written out below.

Taught in week 7.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from medseg_edu.checks import answer_array, self_check
from medseg_edu.crossval import determine_postprocessing
from medseg_edu.planning import target_spacing
from medseg_edu.unet_plan import pooling_plan

__all__ = [
    "reference_target_spacing",
    "reference_normalise_channel",
    "reference_pools_per_axis",
    "reference_batch_size",
    "reference_keep_largest_decision",
    "check_target_spacing",
    "check_normalise_channel",
    "check_pools_per_axis",
    "check_batch_size",
    "check_keep_largest_decision",
]


# ----------------------------------------------------------------------------------------------
# reference solutions
# ----------------------------------------------------------------------------------------------
def reference_target_spacing(spacings_mm: Any, shapes: Any) -> np.ndarray:
    """Median spacing per axis, with nnU-Net's anisotropic-axis rule (threshold 3).

    Shape: spacings_mm (N, 3), shapes (N, 3) -> (3,).

    Used in week 7 through `check_target_spacing`.
    """
    return target_spacing(spacings_mm, shapes)


def reference_normalise_channel(image: np.ndarray, *, modality: str, mask: Optional[np.ndarray] = None,
                                ct_stats: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """One channel normalised as nnU-Net does: "CT" clip + z-score with data-set statistics, else z-score.

    "CT": clip to ``ct_stats["percentile_00_5"]`` .. ``ct_stats["percentile_99_5"]``, then subtract
    ``ct_stats["mean"]`` and divide by ``ct_stats["std"]`` (the mask is ignored). Any other modality:
    this image's mean and standard deviation inside ``mask`` (all voxels when ``mask`` is None); with a
    mask, the voxels outside it become 0.

    Shape: image (*spatial), mask (*spatial) bool -> (*spatial) float64.

    Used in week 7 through `check_normalise_channel`.
    """
    image = np.asarray(image, dtype=np.float64)
    if str(modality).casefold() == "ct":
        clipped = np.clip(image, ct_stats["percentile_00_5"], ct_stats["percentile_99_5"])
        return (clipped - ct_stats["mean"]) / max(ct_stats["std"], 1e-8)
    region = np.ones(image.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    values = image[region]
    out = (image - values.mean()) / max(values.std(), 1e-8)
    return np.where(region, out, 0.0)


def reference_pools_per_axis(spacing_mm: Sequence[float], patch_size: Sequence[int], *, min_edge: int = 4) -> list[int]:
    """How often nnU-Net pools each axis of a patch (``unet_plan.pooling_plan``).

    Shape: spacing_mm (D,), patch_size (D,) -> list of D ints.

    Used in week 7 through `check_pools_per_axis`.
    """
    return pooling_plan(spacing_mm, patch_size, min_edge=min_edge)["pools_per_axis"]


def reference_batch_size(budget: float, estimate: float, *, reference_batch: int, dataset_voxels: float,
                         patch_size: Sequence[int], max_fraction: float = 0.05) -> int:
    """Batch size from the memory budget, capped so one batch covers at most 5% of the data set, at least 2.

    ``round(budget / estimate * reference_batch)``, capped at ``round(max_fraction * dataset_voxels /
    prod(patch_size))``, and never below 2 (as ``unet_plan.configure_unet``).

    Shape: numbers -> an int.

    Used in week 7 through `check_batch_size`.
    """
    batch = round(budget / estimate * reference_batch)
    cap = round(dataset_voxels * max_fraction / float(np.prod(patch_size, dtype=np.float64)))
    return int(max(min(batch, cap), 2))


def reference_keep_largest_decision(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                                    classes: Sequence[int]) -> bool:
    """Whether keeping the largest foreground component is accepted on cross-validation predictions.

    Accepted when the mean Dice over ``classes`` rises and no class gets worse
    (``crossval.determine_postprocessing``'s first step).

    Shape: preds, targets: N label maps (*spatial) -> bool.

    Used in week 7 through `check_keep_largest_decision`.
    """
    return bool(determine_postprocessing(preds, targets, classes=classes)["foreground"])


# ----------------------------------------------------------------------------------------------
# random inputs
# ----------------------------------------------------------------------------------------------
def _random_spacings(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A data set of spacings and shapes: isotropic-ish, or with one thick-slice axis (either rule)."""
    n = int(rng.integers(5, 20))
    in_plane = rng.uniform(0.5, 1.5, size=(n, 1)) * rng.uniform(0.9, 1.1, size=(n, 3))
    axis = int(rng.integers(0, 3))
    kind = int(rng.integers(0, 3))
    spacings = in_plane.copy()
    shapes = rng.integers(100, 300, size=(n, 3))
    if kind >= 1:                      # a thick axis: 3.5-8 times coarser
        spacings[:, axis] *= rng.uniform(3.5, 8.0, size=n)
        if kind == 2:                  # ... with few voxels on it: the anisotropic rule applies
            shapes[:, axis] = rng.integers(15, 30, size=n)
    return spacings, shapes


def _blob_label(rng: np.random.Generator, shape: tuple[int, ...], classes: Sequence[int]) -> np.ndarray:
    """A label map with one nested tumour and (sometimes) small spurious blobs."""
    grid = np.indices(shape).astype(float)
    centre = np.array([rng.uniform(0.35, 0.65) * s for s in shape]).reshape(-1, *([1] * len(shape)))
    radius = rng.uniform(0.15, 0.25) * min(shape)
    dist = np.sqrt(((grid - centre) ** 2).sum(axis=0))
    label = np.zeros(shape, dtype=np.int64)
    for k, c in enumerate(classes):
        label[dist <= radius * (1 - 0.3 * k)] = c
    return label


def _noisy_prediction(rng: np.random.Generator, target: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    pred = target.copy()
    for _ in range(int(rng.integers(0, 4))):         # spurious blobs far from the tumour
        corner = [int(rng.integers(0, max(1, s - 3))) for s in target.shape]
        box = tuple(slice(c, c + int(rng.integers(1, 3))) for c in corner)
        if not target[box].any():
            pred[box] = int(rng.choice(classes))
    if rng.random() < 0.4:                            # a second, real lesion that post-processing would cut
        corner = [int(rng.integers(0, max(1, s - 4))) for s in target.shape]
        box = tuple(slice(c, c + 3) for c in corner)
        if not target[box].any():
            target[box] = classes[0]
            pred[box] = classes[0]
    return pred


def _call_name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
@self_check("ex1")
def check_target_spacing(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(spacings_mm, shapes)`` against :func:`reference_target_spacing` on random data sets.

    Shape: fn maps spacings (N, 3) and shapes (N, 3) to a target spacing (3,).

    Taught in week 7.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(6):
        spacings, shapes = _random_spacings(rng)
        got = answer_array(fn(spacings.copy(), shapes.copy()), "the target spacing", "ex1")
        expected = reference_target_spacing(spacings, shapes)
        if got.shape != (3,):
            raise AssertionError(f"{name} must return one spacing per axis, shape (3,), got {got.shape}")
        # 1e-4 mm: far below any spacing difference the rules make (the +1e-5 guard is within it)
        if not np.allclose(got, expected, atol=1e-4):
            wrong = [a for a in range(3) if not np.isclose(got[a], expected[a], atol=1e-4)]
            raise AssertionError(f"{name}: axis {wrong} is wrong on a data set whose median spacing is "
                                 f"{np.round(np.median(spacings, axis=0), 3).tolist()} mm; check the median, "
                                 "then both conditions of the anisotropic-axis rule")
    print("ex1 looks right")


@self_check("ex2")
def check_normalise_channel(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(image, modality=, mask=, ct_stats=)`` against :func:`reference_normalise_channel`.

    Shape: fn maps one channel (*spatial) to the same shape.

    Taught in week 7.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(4):
        shape = tuple(int(s) for s in rng.integers(6, 14, size=3))
        mask = _blob_label(rng, shape, [1]) > 0
        mr = np.where(mask, rng.normal(rng.uniform(200, 800), rng.uniform(20, 100), size=shape), 0.0)
        got = answer_array(fn(mr.copy(), modality="MR", mask=mask.copy(), ct_stats=None), "the MR result", "ex2")
        expected = reference_normalise_channel(mr, modality="MR", mask=mask)
        if got.shape != shape:
            raise AssertionError(f"{name} must keep the image's shape {shape}, got {got.shape}")
        # 1e-5: float32 rounding of values of order 1-10 is ~1e-6
        if not np.allclose(got[mask], expected[mask], atol=1e-5):
            raise AssertionError("MR inside the mask: use the mean and standard deviation of the voxels "
                                 "inside the mask only, not of the whole image")
        if not np.allclose(got[~mask], 0.0, atol=1e-5):
            raise AssertionError("MR outside the mask: the voxels outside the mask must become 0")
        ct = rng.normal(40, 300, size=shape)
        stats = {"mean": float(rng.uniform(20, 80)), "std": float(rng.uniform(30, 60)),
                 "percentile_00_5": float(rng.uniform(-200, -50)), "percentile_99_5": float(rng.uniform(150, 400))}
        got = answer_array(fn(ct.copy(), modality="CT", mask=mask.copy(), ct_stats=dict(stats)), "the CT result", "ex2")
        expected = reference_normalise_channel(ct, modality="CT", ct_stats=stats)
        if got.shape != shape:
            raise AssertionError(f"{name} must keep the image's shape {shape}, got {got.shape}")
        if not np.allclose(got, expected, atol=1e-5):
            clipped_only = np.clip(ct, stats["percentile_00_5"], stats["percentile_99_5"])
            hint = ("clip first, then z-score with the data set's mean and std (ct_stats), over every voxel"
                    if not np.allclose(got, clipped_only) else "after clipping, z-score with ct_stats")
            raise AssertionError(f"CT: {hint}")
    print("ex2 looks right")


@self_check("ex3")
def check_pools_per_axis(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(spacing_mm, patch_size)`` against :func:`reference_pools_per_axis`.

    Shape: fn maps spacing (D,) and patch size (D,) to D ints.

    Taught in week 7.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(10):
        dim = 2 if trial % 3 == 2 else 3
        spacing = rng.uniform(0.6, 1.2, size=dim)
        if trial % 2:
            spacing[int(rng.integers(0, dim))] *= rng.uniform(2.5, 6.0)      # a coarse axis
        patch = [int(v) for v in rng.integers(8, 200, size=dim)]
        got = fn(spacing.tolist(), list(patch))
        expected = reference_pools_per_axis(spacing, patch)
        try:
            got = [int(v) for v in got]
        except TypeError:
            raise AssertionError(f"{name} must return one number of poolings per axis, got "
                                 f"{type(got).__name__}") from None
        if got != expected:    # integers: exact
            raise AssertionError(f"{name}: wrong for spacing {np.round(spacing, 2).tolist()} mm and patch "
                                 f"{patch}; check which axes may pool in each round (size and spacing), "
                                 "and the extra condition when only one axis may pool")
    print("ex3 looks right")


@self_check("ex4")
def check_batch_size(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(budget, estimate, reference_batch=, dataset_voxels=, patch_size=)``.

    Shape: fn maps numbers to an int.

    Taught in week 7.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    for trial in range(8):
        patch = [int(v) for v in rng.integers(32, 160, size=3)]
        budget = float(rng.uniform(2e8, 1e9))
        estimate = float(budget / rng.uniform(1.0, 20.0))
        # small data sets hit the 5% cap, large ones do not; some hit the minimum of 2
        voxels = float(np.prod(patch) * rng.choice([5.0, 40.0, 200.0, 5000.0]))
        reference_batch = int(rng.choice([2, 12]))
        got = fn(budget, estimate, reference_batch=reference_batch, dataset_voxels=voxels, patch_size=list(patch))
        expected = reference_batch_size(budget, estimate, reference_batch=reference_batch, dataset_voxels=voxels,
                                        patch_size=patch)
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise AssertionError(f"{name} must return an int (a batch size), got {type(got).__name__}")
        if int(got) != expected:    # integers: exact
            raise AssertionError(f"{name}: wrong batch size for a data set of {voxels:.3g} voxels and a patch "
                                 f"of {int(np.prod(patch))} voxels; check the budget rule, the 5% cap and "
                                 "the minimum of 2")
    print("ex4 looks right")


@self_check("ex5")
def check_keep_largest_decision(fn: Callable, *, seed: int = 0) -> None:
    """Check ``fn(preds, targets, classes=)`` against :func:`reference_keep_largest_decision`.

    Shape: fn maps N predicted and N true label maps to a bool.

    Taught in week 7.
    """
    rng = np.random.default_rng(seed)
    name = _call_name(fn)
    outcomes = set()
    for trial in range(12):
        classes = [1, 2] if trial % 2 else [1]
        targets, preds = [], []
        for _ in range(int(rng.integers(2, 6))):
            target = _blob_label(rng, (16, 16, 12), classes)
            preds.append(_noisy_prediction(rng, target, classes))
            targets.append(target)
        keep = [p.copy() for p in preds], [t.copy() for t in targets]
        got = fn(*keep, classes=list(classes))
        expected = reference_keep_largest_decision(preds, targets, classes=classes)
        outcomes.add(expected)
        if not isinstance(got, (bool, np.bool_)):
            raise AssertionError(f"{name} must return True or False, got {type(got).__name__}")
        if bool(got) != expected:
            raise AssertionError(f"{name}: wrong decision on a set of {len(preds)} cases (classes {classes}); "
                                 "compare the mean Dice over classes before and after, and check that no "
                                 "class gets worse")
    print("ex5 looks right")
