"""Self-checks for the week-2 exercises (sub-volumes, standardisation, paired rotation, reassembly).

Each ``check_*`` function calls the student's function on random inputs (seeded by ``seed``), compares it with the
package's reference (:func:`medseg_edu.data.datasets.sample_patch`,
:func:`medseg_edu.intensity.zscore_normalise`, :func:`medseg_edu.transforms.random_rot90`,
:func:`medseg_edu.inference.predict_slices`, :func:`medseg_edu.inference.sliding_window_inference`)
and prints ``"exN looks right"``. When something is off it raises ``AssertionError`` with a message
that says what is wrong (shape, alignment, a property) -- never the expected values.

Taught in week 2.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch

from medseg_edu.checks import answer_array, self_check
from medseg_edu.data.datasets import sample_patch
from medseg_edu.inference import predict_slices, sliding_window_inference, window_starts
from medseg_edu.intensity import zscore_normalise
from medseg_edu.transforms import random_rot90

__all__ = [
    "check_get_sub_volume",
    "check_standardise",
    "check_rotate_pair",
    "check_stack_slices",
    "check_average_windows",
]


def _rng(seed: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (checks are always seeded), got {seed!r}")
    return np.random.default_rng(int(seed))


def _pair(result: Any, exercise: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise AssertionError(f"{exercise}: return a tuple (image, label), got {type(result).__name__}"
                             + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return answer_array(result[0], "the image", exercise), answer_array(result[1], "the label", exercise)


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


# ------------------------------------------------------------------------------------------ ex1
def _random_case(rng: np.random.Generator, *, channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A small volume whose voxels all have different values (so a patch reveals where it came from)
    and a label map with one random box of tumour."""
    spatial = tuple(int(s) for s in rng.integers(10, 16, size=3))
    n = int(np.prod(spatial))
    image = np.stack([rng.permutation(n).reshape(spatial) + c * n for c in range(channels)]).astype(np.float32)
    label = np.zeros(spatial, dtype=np.uint8)
    size = [int(rng.integers(3, s // 2)) for s in spatial]
    start = [int(rng.integers(0, s - z)) for s, z in zip(spatial, size)]
    box = tuple(slice(a, a + z) for a, z in zip(start, size))
    label[box] = rng.integers(1, 4, size=size).astype(np.uint8)
    return image, label


def _corner_of(image: np.ndarray, patch: np.ndarray) -> Optional[tuple[int, ...]]:
    """Where ``patch`` (C, *p) was cut from ``image`` (C, *s) whose values are all distinct."""
    where = np.argwhere(image[0] == patch[0].flat[0])
    if len(where) != 1:
        return None
    corner = tuple(int(c) for c in where[0])
    window = tuple(slice(c, c + p) for c, p in zip(corner, patch.shape[1:]))
    if any(c + p > s for c, p, s in zip(corner, patch.shape[1:], image.shape[1:])):
        return None
    # exact: the voxels are distinct whole numbers and a patch is a copy of them, not a computation
    return corner if np.array_equal(image[(slice(None),) + window], patch) else None


@self_check("ex1")
def check_get_sub_volume(get_sub_volume: Callable, *, seed: int = 0) -> None:
    """Check ``get_sub_volume(image, label, *, patch_size, min_tumour_fraction, rng) -> (image, label)``.

    The same contract as :func:`medseg_edu.data.datasets.sample_patch` (without the corner): a
    channel-first image patch and its label patch, cut at one random corner, with at least
    ``min_tumour_fraction`` non-background label voxels; a ValueError when no such patch is found.

    Shape: image (C, X, Y, Z), label (X, Y, Z) -> image patch (C, *patch_size), label patch (*patch_size).
    Taught in week 2.
    """
    ex = "ex1"
    rng = _rng(seed)
    for trial in range(6):
        image, label = _random_case(rng, channels=int(rng.integers(1, 5)))
        patch_size = tuple(int(rng.integers(3, s - 2)) for s in label.shape)
        # a threshold the reference can reach, so a correct sampler must reach it too
        threshold = float(rng.choice([0.0, 0.05, 0.1]))
        try:
            sample_patch(image, label, patch_size=patch_size, min_tumour_fraction=threshold,
                         rng=np.random.default_rng(trial), max_tries=1000)
        except ValueError:
            threshold = 0.0
        result = get_sub_volume(image.copy(), label.copy(), patch_size=patch_size,
                                min_tumour_fraction=threshold, rng=np.random.default_rng(int(rng.integers(1 << 30))))
        image_patch, label_patch = _pair(result, ex)
        if image_patch.shape != (image.shape[0],) + patch_size:
            raise AssertionError(f"{ex}: the image patch should be channel-first (C, *patch_size) = "
                                 f"{_shape_text((image.shape[0],) + patch_size)}, got {_shape_text(image_patch.shape)}"
                                 " (keep every channel, cut only the spatial axes)")
        if label_patch.shape != patch_size:
            raise AssertionError(f"{ex}: the label patch should have shape patch_size = {_shape_text(patch_size)}, "
                                 f"got {_shape_text(label_patch.shape)}")
        corner = _corner_of(image, image_patch)
        if corner is None:
            raise AssertionError(f"{ex}: the image patch is not a block of the input image (cut every spatial axis "
                                 "with the same corner: image[:, x:x+px, y:y+py, z:z+pz])")
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
        if not np.array_equal(label[window], label_patch):
            raise AssertionError(f"{ex}: the label patch is not cut from the same place as the image patch "
                                 "(use one corner for both)")
        if np.mean(label_patch > 0) < threshold:
            raise AssertionError(f"{ex}: the tumour fraction of the label patch is below min_tumour_fraction="
                                 f"{threshold} (draw again until it is >= the threshold)")
    # randomness: many draws on one case give different corners, including near both ends
    image, label = _random_case(rng)
    patch_size = (4, 4, 4)
    first = []
    seen = set()
    for s in range(60):
        image_patch, _ = _pair(get_sub_volume(image, label, patch_size=patch_size, min_tumour_fraction=0.0,
                                              rng=np.random.default_rng(s)), ex)
        corner = _corner_of(image, image_patch)
        if corner is None:
            raise AssertionError(f"{ex}: the image patch is not a block of the input image")
        seen.add(corner)
        first.append(corner)
    if len(seen) < 10:
        raise AssertionError(f"{ex}: the corner does not look random: 60 different seeds gave only {len(seen)} "
                             "different patches (draw the corner from rng)")
    again = _corner_of(image, _pair(get_sub_volume(image, label, patch_size=patch_size, min_tumour_fraction=0.0,
                                                   rng=np.random.default_rng(0)), ex)[0])
    if again != first[0]:
        raise AssertionError(f"{ex}: the same seed gave a different patch: use only the rng you are given")
    last = tuple(s - p for s, p in zip(label.shape, patch_size))
    for axis in range(3):
        reached = {c[axis] for c in seen}
        if max(reached) > last[axis]:
            raise AssertionError(f"{ex}: a patch goes past the end of the volume along axis {axis}")
    extra = set()
    for s in range(60, 400):
        image_patch, _ = _pair(get_sub_volume(image, label, patch_size=patch_size, min_tumour_fraction=0.0,
                                              rng=np.random.default_rng(s)), ex)
        extra.add(_corner_of(image, image_patch))
    for axis in range(3):
        reached = {c[axis] for c in seen | extra if c is not None}
        if last[axis] not in reached or 0 not in reached:
            raise AssertionError(f"{ex}: along axis {axis} the corner never starts at 0 or at the last possible "
                                 "position (corner in 0 .. size - patch, inclusive; rng.integers excludes its "
                                 "upper bound)")
    # impossible threshold -> ValueError
    empty = np.zeros_like(label)
    try:
        get_sub_volume(image, empty, patch_size=patch_size, min_tumour_fraction=0.5, rng=np.random.default_rng(0))
    except ValueError:
        pass
    except Exception as error:   # noqa: BLE001 - we report whatever the student raised
        raise AssertionError(f"{ex}: when no patch reaches the threshold raise ValueError, got "
                             f"{type(error).__name__}") from None
    else:
        raise AssertionError(f"{ex}: a label without tumour cannot give a patch with tumour fraction 0.5; "
                             "stop after max_tries draws and raise ValueError")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex2
def _random_brain(rng: np.random.Generator, channels: int) -> np.ndarray:
    spatial = tuple(int(s) for s in rng.integers(6, 12, size=int(rng.integers(2, 4))))
    brain = rng.random(spatial) < 0.6
    scales = rng.uniform(0.5, 500.0, size=channels)
    image = np.stack([np.where(brain, rng.gamma(2.0, s, size=spatial) + 0.1, 0.0) for s in scales])
    return image.astype(np.float32)


@self_check("ex2")
def check_standardise(standardise: Callable, *, seed: int = 0) -> None:
    """Check ``standardise(image) -> image``: per channel mean 0 and std 1 over the brain voxels.

    Brain voxels are those where any channel is non-zero; background stays 0; a channel that is
    constant inside the brain becomes 0 (no division by a zero standard deviation). Compared with
    :func:`medseg_edu.intensity.zscore_normalise`.

    Shape: image (C, *spatial) -> (C, *spatial) float.
    Taught in week 2.
    """
    ex = "ex2"
    rng = _rng(seed)
    for _ in range(5):
        image = _random_brain(rng, int(rng.integers(1, 5)))
        original = image.copy()
        out = answer_array(standardise(image), "the standardised image", ex)
        if not np.array_equal(image, original):     # exact: the input must be untouched (vs its own copy)
            raise AssertionError(f"{ex}: your function changed its input array; work on a copy")
        if out.shape != image.shape:
            raise AssertionError(f"{ex}: the output should keep the shape {_shape_text(image.shape)}, got "
                                 f"{_shape_text(out.shape)}")
        brain = np.any(image != 0, axis=0)
        if not np.all(np.isfinite(out)):
            raise AssertionError(f"{ex}: the output contains NaN or inf")
        if np.any(out[:, ~brain] != 0):
            raise AssertionError(f"{ex}: background voxels (0 in every channel) must stay 0")
        reference = zscore_normalise(image, mask=brain)
        for c in range(image.shape[0]):
            values = out[c][brain]
            if abs(values.mean()) > 1e-4:
                raise AssertionError(f"{ex}: channel {c} does not have mean 0 over the brain voxels (subtract "
                                     "the mean of the non-zero voxels of that channel, not of the whole array)")
            if abs(values.std() - 1.0) > 1e-3:
                raise AssertionError(f"{ex}: channel {c} does not have standard deviation 1 over the brain "
                                     "voxels (divide by the std of the brain voxels of that channel)")
        if not np.allclose(out, reference, atol=1e-4):
            raise AssertionError(f"{ex}: mean 0 and std 1 hold, but the values differ from the reference; "
                                 "standardise each channel separately with its own mean and std")
    image = _random_brain(rng, 3)
    brain = np.any(image != 0, axis=0)
    image[1][brain] = 7.0
    out = answer_array(standardise(image), "the standardised image", ex)
    if not np.all(np.isfinite(out)):
        raise AssertionError(f"{ex}: a channel that is constant inside the brain gave NaN or inf; "
                             "when its std is 0, only subtract the mean")
    if np.any(out[1] != 0):
        raise AssertionError(f"{ex}: a channel that is constant inside the brain should become all 0")
    if not np.allclose(out[[0, 2]], zscore_normalise(image[[0, 2]], mask=brain), atol=1e-4):
        raise AssertionError(f"{ex}: one constant channel changed how the other channels were standardised")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex3
@self_check("ex3")
def check_rotate_pair(rotate_pair: Callable, *, seed: int = 0) -> None:
    """Check ``rotate_pair(image, label, *, k, plane) -> (image, label)`` against ``random_rot90``.

    ``k`` quarter turns in the spatial ``plane`` (two spatial axes, counted without the channel
    axis), the same direction as ``np.rot90``; image and label turn together.

    Shape: image (C, *spatial), label (*spatial) -> same (the two plane axes swap when k is odd).
    Taught in week 2.
    """
    ex = "ex3"
    rng = _rng(seed)
    for _ in range(8):
        ndim = int(rng.integers(2, 4))
        spatial = tuple(int(s) for s in rng.choice(np.arange(3, 9), size=ndim, replace=False))
        image = rng.normal(size=(int(rng.integers(1, 4)),) + spatial).astype(np.float32)
        label = rng.integers(0, 4, size=spatial).astype(np.uint8)
        plane = tuple(int(a) for a in rng.choice(ndim, size=2, replace=False))
        # the package's random rotation with p=1, then find which k the student must reproduce
        ref_image, ref_label = random_rot90(image, label, rng=np.random.default_rng(int(rng.integers(1 << 30))),
                                            p=1.0, plane=plane)
        k = next(k for k in (1, 2, 3) if np.array_equal(np.rot90(label, k=k, axes=plane), ref_label))
        got_image, got_label = _pair(rotate_pair(image.copy(), label.copy(), k=k, plane=plane), ex)
        if got_image.shape != ref_image.shape or got_label.shape != ref_label.shape:
            raise AssertionError(f"{ex}: wrong shapes for k={k}, plane={plane} on image {_shape_text(image.shape)}: "
                                 f"got image {_shape_text(got_image.shape)} and label {_shape_text(got_label.shape)} "
                                 "(plane names SPATIAL axes: the image has the channel axis in front)")
        if np.array_equal(got_label, ref_label) and not np.allclose(got_image, ref_image):
            raise AssertionError(f"{ex}: the label is right but the image is not: image and label are no longer "
                                 "aligned (shift the plane by one for the image's channel axis)")
        if not np.array_equal(got_label, ref_label):
            if np.array_equal(got_label, np.rot90(label, k=-k, axes=plane)):
                raise AssertionError(f"{ex}: you rotate the other way round; turn like np.rot90(..., k, axes)")
            raise AssertionError(f"{ex}: the label is not turned by k={k} quarter turns in plane {plane}")
        if not np.allclose(got_image, ref_image):
            raise AssertionError(f"{ex}: the image is not turned like the label (each channel must turn the same way)")
        if got_label.dtype.kind not in "iub":
            raise AssertionError(f"{ex}: the label must stay an integer array, got dtype {got_label.dtype}")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex4
class _SliceNet(torch.nn.Module):
    """A fixed random 2D 'network': one 3x3 convolution, channels C -> K."""

    def __init__(self, in_channels: int, out_channels: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"the 2D model expects a batch of slices (N, C, H, W), got shape {tuple(x.shape)}")
        return self.conv(x)


@self_check("ex4")
def check_stack_slices(stack_slices: Callable, *, seed: int = 0) -> None:
    """Check ``stack_slices(model, volume, *, axis) -> logits`` against ``predict_slices``.

    The student's function cuts ``volume`` (C, X, Y, Z) into 2D slices along spatial ``axis``,
    runs ``model`` on each (as a batch ``(1, C, a, b)`` or several at once) and stacks the logits
    back so that slice ``i`` lands at index ``i`` of that axis.

    Shape: volume (C, X, Y, Z) torch tensor -> logits (K, X, Y, Z).
    Taught in week 2.
    """
    ex = "ex4"
    rng = _rng(seed)
    for axis in (2, 0, 1):
        spatial = tuple(int(s) for s in rng.choice(np.arange(4, 10), size=3, replace=False))
        channels, classes = int(rng.integers(1, 4)), int(rng.integers(2, 4))
        volume = torch.from_numpy(rng.normal(size=(channels,) + spatial).astype(np.float32))
        model = _SliceNet(channels, classes, int(rng.integers(1 << 30))).eval()
        reference = predict_slices(model, volume, axis=axis).numpy()
        with torch.no_grad():
            got = answer_array(stack_slices(model, volume.clone(), axis=axis), "the stacked logits", ex)
        if got.shape != reference.shape:
            raise AssertionError(f"{ex}: for a volume {_shape_text(tuple(volume.shape))} sliced along axis {axis} "
                                 f"the logits should have shape (K, X, Y, Z) = {_shape_text(reference.shape)}, got "
                                 f"{_shape_text(got.shape)} (stack along the axis you sliced, behind the class axis)")
        if not np.allclose(got, reference, atol=1e-4):
            raise AssertionError(f"{ex}: right shape but wrong values when slicing along axis {axis}: each slice's "
                                 "logits must go back to the position of that slice, with the two in-plane axes "
                                 "in their original order")
    print(f"{ex} looks right")


# ------------------------------------------------------------------------------------------ ex5
@self_check("ex5")
def check_average_windows(average_windows: Callable, *, seed: int = 0) -> None:
    """Check ``average_windows(window_logits, corners, *, shape) -> logits`` (plain average of windows).

    ``window_logits`` is a list of ``(K, *roi)`` arrays cut at ``corners``; the result is, at each
    voxel, the mean over the windows that cover it -- what ``sliding_window_inference`` computes
    with ``blend="constant"``.

    Shape: list of (K, *roi), list of corners, shape (*spatial) -> (K, *spatial).
    Taught in week 2.
    """
    ex = "ex5"
    rng = _rng(seed)
    for _ in range(4):
        ndim = int(rng.integers(2, 4))
        spatial = tuple(int(s) for s in rng.integers(7, 14, size=ndim))
        roi = tuple(int(rng.integers(3, s)) for s in spatial)
        overlap = float(rng.choice([0.25, 0.5]))
        classes = int(rng.integers(2, 4))
        image = torch.from_numpy(rng.normal(size=(1, 1) + spatial).astype(np.float32))
        conv = (torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d)(1, classes, kernel_size=3, padding=1).eval()
        reference = sliding_window_inference(conv, image, roi_size=roi, overlap=overlap, blend="constant")[0]
        starts = [window_starts(s, r, overlap=overlap) for s, r in zip(spatial, roi)]
        corners = [tuple(int(c) for c in corner) for corner in np.array(np.meshgrid(*starts, indexing="ij"))
                   .reshape(ndim, -1).T]
        windows = []
        with torch.no_grad():
            for corner in corners:
                box = tuple(slice(c, c + r) for c, r in zip(corner, roi))
                windows.append(conv(image[(slice(None), slice(None)) + box])[0].numpy())
        got = answer_array(average_windows([w.copy() for w in windows], list(corners), shape=spatial),
                        "the averaged logits", ex)
        if got.shape != (classes,) + spatial:
            raise AssertionError(f"{ex}: the result should be (K, *shape) = {_shape_text((classes,) + spatial)}, got "
                                 f"{_shape_text(got.shape)}")
        if not np.all(np.isfinite(got)):
            raise AssertionError(f"{ex}: the result contains NaN or inf (did some voxel get a count of 0?)")
        if not np.allclose(got, reference.numpy(), atol=1e-4):
            summed = np.zeros_like(got)
            for w, corner in zip(windows, corners):
                summed[(slice(None),) + tuple(slice(c, c + r) for c, r in zip(corner, roi))] += w
            if np.allclose(got, summed, atol=1e-4):
                raise AssertionError(f"{ex}: you return the SUM of the overlapping windows; divide by how many "
                                     "windows cover each voxel")
            raise AssertionError(f"{ex}: wrong values where windows overlap or at the borders: add every window "
                                 "into its box, count the windows per voxel, divide")
    print(f"{ex} looks right")
