"""PyTorch Datasets for the course: whole brain volumes, 2D slices, 3D patches, and skin images.

The Dataset classes are thin: they look up a case, call a plain function that does the work
(``select_slices``, ``sample_patch``, ``resize_image_and_label``) and turn numpy arrays into tensors.
Every item is a dict ``{"image": float32 (C, *spatial), "label": int64 (1, *spatial), "case_id": str,
...}``, so a DataLoader batch is ``image (N, C, *spatial)`` and ``label (N, 1, *spatial)``.

``transform`` follows the course's transform protocol ``transform(image, label, rng) -> (image, label)``
on numpy arrays, written down once in :mod:`medseg_edu.transforms` (with how the ``rng`` of each item is
made from the dataset's ``seed``, the epoch set by ``set_epoch`` and the item's index, and what that
means for DataLoader workers). It is applied to each item after slicing, patching or resizing.

Taught in week 2 (brain slices and patches) and week 3 (skin images).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg_edu.arguments import check_int
from medseg_edu.data._case_store import BrainCaseStore, CasesLike, cases_table
from medseg_edu.data.io import BRAIN_CHANNELS, list_skin_cases, load_skin_case
from medseg_edu.transforms import Transform, _call_transform, _check_transform

__all__ = ["select_slices", "sample_patch", "resize_image_and_label", "BrainVolumes", "BrainSlices",
           "BrainPatches", "SkinImages"]


# ------------------------------------------------------------------ plain functions: the actual work

def select_slices(label: np.ndarray, *, empty_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of axial slices (last axis) to keep: every slice with tumour plus a share of empty ones.

    Most slices of a brain volume contain no tumour; training only on them teaches a network to
    predict background. Keeping all tumour slices and a random ``empty_fraction`` of the empty ones
    rebalances the data (``empty_fraction=1`` keeps every slice, ``0`` only tumour slices).

    Shape: label (X, Y, Z) -> sorted int64 indices into Z.

    Used in week 2 through `BrainSlices`.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be a 3D label map (X, Y, Z), got shape {label.shape}")
    if not 0.0 <= empty_fraction <= 1.0:
        raise ValueError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    has_tumour = np.any(label > 0, axis=(0, 1))
    tumour = np.flatnonzero(has_tumour)
    empty = np.flatnonzero(~has_tumour)
    n_empty = int(round(empty_fraction * len(empty)))
    chosen_empty = rng.choice(empty, size=n_empty, replace=False) if n_empty else np.array([], dtype=np.int64)
    return np.sort(np.concatenate([tumour, chosen_empty]).astype(np.int64))


def sample_patch(image: np.ndarray, label: np.ndarray, *, patch_size: Sequence[int],
                 min_tumour_fraction: float, rng: np.random.Generator,
                 max_tries: int = 1000) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Cut a random sub-volume that contains at least ``min_tumour_fraction`` non-background voxels.

    The idea of the sub-volume sampler in Coursera's AI for Medicine course: draw a random corner,
    cut ``patch_size`` voxels from it, and keep the patch if the fraction of label voxels > 0 is at
    least ``min_tumour_fraction``; otherwise draw again, up to ``max_tries`` times. Whole volumes do
    not fit in GPU memory and are mostly background; patches fix both.

    Shape: image (C, *spatial), label (*spatial) -> image patch (C, *patch_size),
    label patch (*patch_size), corner (one start index per spatial axis). Works in 2D and 3D.

    Raises:
        ValueError when no patch reaches the fraction in ``max_tries`` draws (the message gives the
        best fraction seen: lower ``min_tumour_fraction`` or use a smaller patch).

    Taught in week 2.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != label.ndim + 1:
        raise ValueError(f"image must be channel-first (C, *spatial) with label (*spatial), got shapes "
                         f"{image.shape} and {label.shape}")
    if image.shape[1:] != label.shape:
        raise ValueError(f"image and label must have the same spatial shape, got {image.shape[1:]} and {label.shape}")
    patch_size = tuple(int(p) for p in patch_size)
    if len(patch_size) != label.ndim or any(p < 1 for p in patch_size):
        raise ValueError(f"patch_size must have {label.ndim} positive entries, got {patch_size}")
    if any(p > s for p, s in zip(patch_size, label.shape)):
        raise ValueError(f"patch_size must fit inside the volume, got patch_size {patch_size} for spatial "
                         f"shape {label.shape}")
    if not 0.0 <= min_tumour_fraction <= 1.0:
        raise ValueError(f"min_tumour_fraction must be in [0, 1], got {min_tumour_fraction}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    best = 0.0
    for _ in range(max_tries):
        corner = tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(label.shape, patch_size))
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
        label_patch = label[window]
        fraction = float(np.mean(label_patch > 0))
        if fraction >= min_tumour_fraction:
            return image[(slice(None),) + window].copy(), label_patch.copy(), corner
        best = max(best, fraction)
    raise ValueError(f"no patch of size {patch_size} with tumour fraction >= {min_tumour_fraction} found in "
                     f"{max_tries} tries (best {best:.4f}); lower min_tumour_fraction or patch_size")


def resize_image_and_label(image: np.ndarray, label: np.ndarray, *,
                           size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a 2D image bilinearly and its label map nearest-neighbour (labels never get blended).

    Shape: image (C, H, W), label (H, W) -> image (C, *size) float32, label (*size) same dtype.

    Used in week 3 through `SkinImages`.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or any(s < 1 for s in size):
        raise ValueError(f"size must be (height, width) with positive entries, got {size}")
    if image.ndim != 3 or label.shape != image.shape[1:]:
        raise ValueError(f"image must be (C, H, W) and label (H, W), got shapes {image.shape} and {label.shape}")
    image_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    resized = torch.nn.functional.interpolate(image_t, size=size, mode="bilinear", align_corners=False,
                                              antialias=True)[0]
    label_t = torch.from_numpy(np.ascontiguousarray(label).astype(np.float32))[None, None]
    resized_label = torch.nn.functional.interpolate(label_t, size=size, mode="nearest-exact")[0, 0]
    return resized.numpy(), resized_label.numpy().astype(label.dtype)


# ------------------------------------------------------------------- helpers shared by the Datasets

def _check_index(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexError(f"index must be in 0..{length - 1}, got {index}")
    return index % length


def _to_item(image: Any, label: Any, transform: Optional[Transform],
             rng: Optional[np.random.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the transform, then make float32 image (C, *sp) and int64 label (1, *sp) tensors."""
    if transform is not None:
        image, label = _call_transform(transform, image, label, rng)
    image = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
    label = torch.as_tensor(np.ascontiguousarray(label) if isinstance(label, np.ndarray) else label)
    if label.shape != image.shape[1:]:
        raise ValueError(f"transform must return image (C, *spatial) and label (*spatial), got shapes "
                         f"{tuple(image.shape)} and {tuple(label.shape)}")
    return image.to(torch.float32), label.to(torch.int64)[None]


class _SeededDataset(Dataset):
    """What the datasets share: a protocol ``transform`` and the rng of each item, from (seed, epoch, index)."""

    def _init_seeding(self, transform: Optional[Transform], seed: int) -> None:
        _check_transform(transform)
        self.transform = transform
        self.seed = check_int(seed, "seed", minimum=0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s randomness: item ``i`` then gets ``np.random.default_rng([seed, epoch, i])``.

        :func:`medseg_edu.training.fit` calls it at the start of every epoch, so augmentation (and
        :class:`BrainPatches`' patches) change from epoch to epoch and repeat exactly when a run is
        repeated; the rule and DataLoader workers are explained in :mod:`medseg_edu.transforms`.
        """
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _item(self, image: Any, label: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_item(image, label, self.transform, None if self.transform is None else self._rng(index))


# ------------------------------------------------------------------------------------- Datasets

class BrainVolumes(_SeededDataset):
    """Whole 3D brain volumes of an MSD-layout data set, one item per case.

    ``cases`` is a table from ``list_brain_cases`` (or a subset of it, e.g. one split) or the data
    set folder. Cases without a label file yield items without a ``"label"`` key (for inference);
    for them ``transform`` is called as ``transform(image, None, rng)`` and must accept that.

    Shape: item image (4, X, Y, Z) float32, label (1, X, Y, Z) int64, plus "case_id",
    "spacing_mm" (3 floats), "affine" (4x4 float64 tensor).
    """

    def __init__(self, cases: CasesLike, *, transform: Optional[Transform] = None, seed: int = 0,
                 cache: bool = True):
        self.store = BrainCaseStore(cases, cache=cache)
        self._init_seeding(transform, seed)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = _check_index(index, len(self))
        case = self.store.load(index)
        item = {"case_id": case["case_id"], "spacing_mm": case["spacing_mm"],
                "affine": torch.as_tensor(case["affine"], dtype=torch.float64)}
        if case["label"] is None:
            image = case["image"]
            if self.transform is not None:
                image = _call_transform(self.transform, image, None, self._rng(index))[0]
            item["image"] = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)
        else:
            item["image"], item["label"] = self._item(case["image"], case["label"], index)
        return item


def _channel_indices(channels: Optional[Sequence[Union[int, str]]]) -> Union[list[int], slice]:
    if channels is None:
        return slice(None)
    indices = []
    for channel in channels:
        if isinstance(channel, str):
            if channel not in BRAIN_CHANNELS:
                raise ValueError(f"channels: unknown channel name {channel!r}, expected one of {BRAIN_CHANNELS}")
            indices.append(BRAIN_CHANNELS.index(channel))
        elif isinstance(channel, (int, np.integer)) and 0 <= channel < len(BRAIN_CHANNELS):
            indices.append(int(channel))
        else:
            raise ValueError(f"channels: expected names {BRAIN_CHANNELS} or indices 0..{len(BRAIN_CHANNELS) - 1}, "
                             f"got {channel!r}")
    if not indices:
        raise ValueError("channels must select at least one channel, got an empty sequence")
    return indices


class BrainSlices(_SeededDataset):
    """2D axial slices (along the last spatial axis, z) of brain volumes, for 2D U-Nets.

    ``cases``: a table from ``list_brain_cases`` (or a subset of it), the data set folder, or cases
    already in memory, a list of dicts with ``"image"`` (C, X, Y, Z), ``"label"`` (X, Y, Z) and
    optionally ``"case_id"``. ``volume_transform`` (the protocol of :mod:`medseg_edu.transforms`) is
    applied once to each whole volume before slicing, e.g. to standardise it with statistics of the
    whole brain, or to map labels to a region; ``transform`` to each slice (augmentation).
    ``empty_fraction=None`` keeps every slice; a number keeps all slices with tumour plus that random
    share of the empty ones (see ``select_slices``), chosen once with ``seed``, case by case in order.
    ``channels`` selects sequences by name ("FLAIR", ...) or index; default all channels.

    Example:
        >>> def standardise(image, label, rng):
        ...     return zscore_normalise(image), label
        >>> slices = BrainSlices(root, empty_fraction=0.1, volume_transform=standardise,
        ...                      transform=brain_augmentation(2))              # doctest: +SKIP

    Shape: item image (C, X, Y) float32, label (1, X, Y) int64, plus "case_id", "slice_index".

    Taught in week 2. Used in week 5 through `train_slice_model`.
    """

    def __init__(self, cases: Union[CasesLike, Sequence[Mapping[str, Any]]], *,
                 channels: Optional[Sequence[Union[int, str]]] = None, empty_fraction: Optional[float] = None,
                 seed: int = 0, volume_transform: Optional[Transform] = None,
                 transform: Optional[Transform] = None, cache: bool = True):
        self._init_seeding(transform, seed)
        self.store = BrainCaseStore(cases, cache=cache, in_memory=True, volume_transform=volume_transform,
                                     seed=self.seed)
        self.store.require_labels()
        self.channels = _channel_indices(channels)
        rng = np.random.default_rng(self.seed)
        index = []
        for row in range(len(self.store)):
            label = np.asarray(self.store.load(row)["label"])
            if empty_fraction is None:
                slices = np.arange(label.shape[-1])
            else:
                slices = select_slices(label, empty_fraction=empty_fraction, rng=rng)
            index.extend((row, int(z)) for z in slices)
        self.index = index  # list of (case row, slice index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = _check_index(index, len(self))
        row, z = self.index[index]
        case = self.store.load(row)
        image, label = self._item(case["image"][self.channels, :, :, z], case["label"][:, :, z], index)
        return {"image": image, "label": label, "case_id": case["case_id"], "slice_index": z}


class BrainPatches(_SeededDataset):
    """Random 3D patches of brain volumes with a minimum tumour fraction (see ``sample_patch``).

    Item ``i`` is patch number ``i % patches_per_volume`` of case ``i // patches_per_volume``, cut
    (then transformed) with the item's rng ``np.random.default_rng([seed, epoch, i])`` (see
    :mod:`medseg_edu.transforms`): the same index gives the same patch, whatever the order or the
    DataLoader workers, and ``set_epoch`` (called by ``fit``) draws new patches every epoch.

    Shape: item image (4, *patch_size) float32, label (1, *patch_size) int64, plus "case_id",
    "corner" (start index per axis).

    Taught in week 2.
    """

    def __init__(self, cases: CasesLike, *, patch_size: Sequence[int], patches_per_volume: int = 4,
                 min_tumour_fraction: float = 0.0, max_tries: int = 1000, seed: int = 0,
                 transform: Optional[Transform] = None, cache: bool = True):
        self.store = BrainCaseStore(cases, cache=cache)
        self.store.require_labels()
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be 3 positive integers (X, Y, Z), got {tuple(patch_size)}")
        if not 0.0 <= min_tumour_fraction <= 1.0:
            raise ValueError(f"min_tumour_fraction must be in [0, 1], got {min_tumour_fraction}")
        self.patches_per_volume = check_int(patches_per_volume, "patches_per_volume", minimum=1)
        self.min_tumour_fraction = min_tumour_fraction
        self.max_tries = max_tries
        self._init_seeding(transform, seed)

    def __len__(self) -> int:
        return len(self.store) * self.patches_per_volume

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = _check_index(index, len(self))
        case = self.store.load(index // self.patches_per_volume)
        rng = self._rng(index)
        try:
            image, label, corner = sample_patch(case["image"], case["label"], patch_size=self.patch_size,
                                                min_tumour_fraction=self.min_tumour_fraction, rng=rng,
                                                max_tries=self.max_tries)
        except ValueError as error:
            raise ValueError(f"case {case['case_id']}: {error}") from error
        image, label = _to_item(image, label, self.transform, rng)
        return {"image": image, "label": label, "case_id": case["case_id"], "corner": corner}


class SkinImages(_SeededDataset):
    """Dermoscopy images and lesion masks of an ISIC-layout data set, one item per image.

    With ``size=(H, W)`` every image is resized (bilinear) and its mask too (nearest-neighbour), so
    images of different sizes can be batched; ``transform`` is applied after resizing.

    Shape: item image (3, H, W) float32 in [0, 1], label (1, H, W) int64 in {0, 1}, plus "case_id"
    (the ISIC image id).

    Taught in week 3.
    """

    def __init__(self, cases: CasesLike, *, size: Optional[tuple[int, int]] = None,
                 transform: Optional[Transform] = None, seed: int = 0):
        self.cases = cases_table(cases, lister=list_skin_cases, id_column="case_id",
                                 path_columns=("image_path", "mask_path"))
        unlabelled = self.cases.loc[self.cases["mask_path"].isna(), "case_id"].tolist()
        if unlabelled:
            raise ValueError(f"every case needs a label file in column 'mask_path', got none for {unlabelled[:5]}")
        if size is not None and (len(tuple(size)) != 2 or any(int(s) < 1 for s in size)):
            raise ValueError(f"size must be None or (height, width) with positive entries, got {size}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self._init_seeding(transform, seed)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = _check_index(index, len(self))
        record = self.cases.iloc[index]
        case = load_skin_case(record["image_path"], record["mask_path"])
        image, label = case["image"], case["label"]
        if self.size is not None:
            image, label = resize_image_and_label(image, label, size=self.size)
        image, label = self._item(image, label, index)
        return {"image": image, "label": label, "case_id": str(record["case_id"])}
