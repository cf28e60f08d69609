"""Synthetic dermoscopy photographs of skin lesions, written in the ISIC segmentation layout.

A phantom image is built in layers, the way light reaches a dermoscope camera:

1. **Skin**: a base colour per Fitzpatrick skin type (I very light ... VI deep brown), with
   low-amplitude multi-scale texture, faint furrows, pores and patchy redness.
2. **Lesion**: an irregular shape (a polar boundary with random harmonics, sometimes extra lobes,
   plus fine border noise). Inside it, extra melanin darkens the skin following Beer-Lambert
   absorption (blue and green absorbed more than red), with variegation: darker blotches, a
   pigment-network-like mesh, reddish (vascular) and blue-grey zones. The image border of the
   lesion is soft; the mask is crisp (the 50 % opacity contour).
3. **Artefacts** (some cases): hair, air bubbles and specular highlights, a ruler.
4. **Camera** (per site): white balance, brightness, vignetting, a circular dermoscope field of
   view with dark corners, optical blur and sensor noise.

Darker skin already holds more melanin, so the same lesion adds relatively less: the lesion is
drawn with less *excess* pigment on types V-VI, and the camera's additive noise weighs more on a
darker image. ``lesion_contrast`` measures the result, so week 6 can show that a model trained
mostly on light skin meets harder cases on dark skin.

Everything is deterministic: the same arguments give the same array and the same file bytes.
For one seed, the lesion *shape* (and the label) does not depend on ``fitzpatrick`` or ``site``:
the same lesion can be shown on every skin type.

The layers themselves are drawn in ``_skin_layers``; this module composes a case, measures lesion
contrast and writes data sets.

Taught in week 6 (skin types and lesion contrast). Used in weeks 3 and 4 through `builtin_skin`.
"""
from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
from scipy import ndimage

from medseg_edu.arguments import check_choice, check_int
from medseg_edu.data._skin_layers import (FIELD_OF_VIEW_MM, HAEMOGLOBIN_ABSORPTION, MELANIN_ABSORPTION, blend,
                                          bubbles, camera, hair_alpha, lesion_pigment, lesion_shape, ruler_alpha,
                                          skin_layer, smoothstep)
from medseg_edu.utils import progress, staging_dir

__all__ = [
    "FITZPATRICK_TYPES",
    "SKIN_TONES",
    "SITES",
    "make_skin_case",
    "write_skin_dataset",
    "lesion_contrast",
]

FITZPATRICK_TYPES = (1, 2, 3, 4, 5, 6)

# Base skin colour (RGB in [0, 1], as a dermoscope photographs it) per Fitzpatrick type.
SKIN_TONES: dict[int, tuple[float, float, float]] = {
    1: (0.95, 0.80, 0.76),   # I: very light, pinkish
    2: (0.91, 0.73, 0.64),   # II: light
    3: (0.84, 0.63, 0.50),   # III: intermediate
    4: (0.70, 0.50, 0.36),   # IV: olive / light brown
    5: (0.50, 0.33, 0.23),   # V: brown
    6: (0.32, 0.21, 0.15),   # VI: deep brown
}

# Excess melanin of a lesion relative to its surrounding skin, per type (1.0 on type I).
_LESION_STRENGTH = {1: 1.0, 2: 0.9, 3: 0.78, 4: 0.64, 5: 0.5, 6: 0.4}

# Camera / clinic profiles. gains: white balance (R, G, B); vignetting: darkening at the corners;
# fov_radius: radius of the circular dermoscope field of view as a fraction of the image size
# (None: the lens fills the frame); noise: standard deviation of the additive sensor noise.
SITES: dict[str, dict] = {
    "A": {"gains": (1.00, 1.00, 1.00), "brightness": 1.00, "vignetting": 0.18, "fov_radius": None,
          "noise": 0.010, "description": "reference clinic: neutral white balance, lens fills the frame"},
    "B": {"gains": (1.06, 0.96, 0.84), "brightness": 0.95, "vignetting": 0.35, "fov_radius": 0.52,
          "noise": 0.014, "description": "warm light, contact dermoscope with a circular field of view"},
    "C": {"gains": (0.93, 1.00, 1.08), "brightness": 1.05, "vignetting": 0.08, "fov_radius": None,
          "noise": 0.007, "description": "cool, bright, polarised light; little vignetting"},
}


def make_skin_case(*, seed: int, fitzpatrick: Optional[int] = None, size: int = 256,
                   site: str = "A") -> dict:
    """Make one synthetic dermoscopy image of a skin lesion and its segmentation mask.

    Args:
        seed: any int >= 0; the same arguments always give the same image.
        fitzpatrick: skin type 1 (I, very light) ... 6 (VI, deep brown); None draws one from ``seed``.
            For one seed the lesion shape and the label do not depend on ``fitzpatrick`` or ``site``.
        size: height and width in pixels (>= 32).
        site: a key of ``SITES`` (camera white balance, vignetting, circular field of view, noise).

    Returns:
        dict with ``image`` float32 (3, H, W) in [0, 1], ``label`` uint8 (H, W) in {0, 1},
        ``fitzpatrick`` (int), ``site`` (str), ``case_id`` (str), and ``artefacts``
        (dict of bools: hair, bubbles, ruler).

    Shape: image (3, size, size); label (size, size).

    Example:
        >>> case = make_skin_case(seed=0, fitzpatrick=2, size=128)
        >>> case["image"].shape, case["label"].dtype
        ((3, 128, 128), dtype('uint8'))

    Taught in week 6. Used in weeks 3 and 4 through `builtin_skin`.
    """
    seed = check_int(seed, "seed", minimum=0)
    size = check_int(size, "size", minimum=32)
    site_profile = SITES[check_choice(site, sorted(SITES), "site")]
    if fitzpatrick is not None:
        if isinstance(fitzpatrick, bool) or not isinstance(fitzpatrick, (int, np.integer)):
            raise TypeError(f"fitzpatrick must be an int in {FITZPATRICK_TYPES} or None, "
                            f"got {type(fitzpatrick).__name__}")
        if fitzpatrick not in FITZPATRICK_TYPES:
            raise ValueError(f"fitzpatrick must be one of {FITZPATRICK_TYPES} or None, got {fitzpatrick}")

    # Separate random streams, so that choosing a skin type or a site never changes the lesion.
    streams = np.random.SeedSequence(seed).spawn(4)
    rng_type, rng_shape, rng_look, rng_camera = (np.random.default_rng(s) for s in streams)
    drawn_type = int(rng_type.choice(FITZPATRICK_TYPES))
    skin_type = drawn_type if fitzpatrick is None else int(fitzpatrick)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    f = lesion_shape(rng_shape, size, yy, xx)
    label = f < 1.0
    labelled, count = ndimage.label(label)
    if count > 1:   # the annotation is one connected lesion: keep the largest piece
        sizes = ndimage.sum_labels(label, labelled, index=np.arange(1, count + 1))
        label = labelled == (1 + int(np.argmax(sizes)))
    label = ndimage.binary_fill_holes(label)
    border_width = rng_shape.uniform(0.06, 0.3)      # soft lesion border in the image
    alpha = smoothstep(0.5 + (1.0 - f) / border_width).astype(np.float32)

    # skin, then lesion pigment (Beer-Lambert absorption), then texture on top of both
    base, texture = skin_layer(rng_look, size, SKIN_TONES[skin_type])
    melanin, haemoglobin, blue_grey = lesion_pigment(rng_look, size, f, alpha,
                                                      _LESION_STRENGTH[skin_type])
    image = base * np.exp(-melanin[None] * MELANIN_ABSORPTION[:, None, None]
                          - haemoglobin[None] * HAEMOGLOBIN_ABSORPTION[:, None, None])
    grey_level = 0.55 * float(np.mean(SKIN_TONES[skin_type])) + 0.1
    image = blend(image, np.array([0.86, 0.92, 1.0]) * grey_level, blue_grey)
    image = image * texture[None]

    artefacts = {"hair": bool(rng_look.random() < 0.4), "bubbles": bool(rng_look.random() < 0.2),
                 "ruler": bool(rng_look.random() < 0.15)}
    if artefacts["hair"]:
        hair_colour = np.array([0.09, 0.06, 0.05]) if rng_look.random() < 0.7 else np.array([0.3, 0.2, 0.12])
        image = blend(image, hair_colour * (1.0 - 0.06 * skin_type), hair_alpha(rng_look, size))
    if artefacts["bubbles"]:
        white, rim = bubbles(rng_look, size, yy, xx)
        image = blend(blend(image, (0.2, 0.18, 0.18), rim), (1.0, 1.0, 1.0), white)
    if artefacts["ruler"]:
        image = blend(image, (0.05, 0.05, 0.06), ruler_alpha(rng_look, size, yy, xx,
                                                                site_profile["fov_radius"]))
    image = camera(rng_camera, image, site_profile, yy, xx)
    return {"image": image, "label": label.astype(np.uint8), "fitzpatrick": skin_type, "site": site,
            "case_id": f"ISIC_{seed:07d}", "artefacts": artefacts}


def _luminance(image: np.ndarray) -> np.ndarray:
    return 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]


def lesion_contrast(image: np.ndarray, label: np.ndarray, *, gap_px: int = 3,
                    ring_px: Optional[int] = None) -> float:
    """How well a lesion stands out from the skin around it (a contrast-to-noise ratio).

    Luminance is ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601). The *ring* is the skin outside
    the mask at a distance of more than ``gap_px`` and at most ``gap_px + ring_px`` pixels (the gap
    skips the soft lesion border; ``ring_px`` defaults to 6 % of the image side, at least 4). Then

        contrast = (mean Y in ring - mean Y in lesion) / (std of Y in ring)

    i.e. how many "skin-texture standard deviations" darker the lesion is: 0 means invisible,
    larger means easier to see. Hair, bubbles and noise in the ring lower it, as they lower a
    human's (or a network's) ability to see the border.

    Args:
        image: RGB image, float in [0, 1].
        label: binary mask of the lesion (non-empty, not the whole image).

    Shape: image (3, H, W); label (H, W).

    Example:
        >>> case = make_skin_case(seed=1, fitzpatrick=1, size=128)
        >>> lesion_contrast(case["image"], case["label"]) > 0
        True

    Taught in week 6.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), got {image.shape}")
    if label.shape != image.shape[1:]:
        raise ValueError(f"label must have shape {image.shape[1:]} (image's H, W), got {label.shape}")
    if not np.isin(label, (0, 1)).all():
        raise ValueError(f"label must be binary (0/1), got values {np.unique(label)[:5].tolist()}")
    mask = label.astype(bool)
    if not mask.any() or mask.all():
        raise ValueError("label must contain both lesion and skin pixels, got "
                         f"{int(mask.sum())} lesion pixels out of {mask.size}")
    if ring_px is None:
        ring_px = max(4, round(0.06 * min(mask.shape)))
    distance = ndimage.distance_transform_edt(~mask)
    ring = (distance > gap_px) & (distance <= gap_px + ring_px)
    if ring.sum() < 2:
        raise ValueError("the ring of skin around the lesion is empty; is the lesion the whole image?")
    lum = _luminance(image.astype(np.float64))
    outside = lum[ring]
    if outside.std() == 0:
        raise ValueError("the skin ring around the lesion has constant luminance: contrast is undefined")
    return float((outside.mean() - lum[mask].mean()) / outside.std())


def _type_weights(fitzpatrick_weights) -> np.ndarray:
    """Validate ``fitzpatrick_weights`` and return 6 probabilities for types I..VI."""
    if fitzpatrick_weights is None:
        return np.full(6, 1 / 6)
    if isinstance(fitzpatrick_weights, Mapping):
        unknown = set(fitzpatrick_weights) - set(FITZPATRICK_TYPES)
        if unknown:
            raise ValueError(f"fitzpatrick_weights keys must be skin types in {FITZPATRICK_TYPES}, "
                             f"got {sorted(unknown, key=str)}")
        weights = [fitzpatrick_weights.get(t, 0.0) for t in FITZPATRICK_TYPES]
    else:
        weights = list(fitzpatrick_weights)
        if len(weights) != 6:
            raise ValueError(f"fitzpatrick_weights must have 6 values (types I..VI), got {len(weights)}")
    weights = np.asarray(weights, dtype=float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"fitzpatrick_weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
    return weights / weights.sum()


def _allocate(total: int, probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Skin type of each of ``total`` patients: exact proportions (largest remainder), shuffled."""
    exact = probabilities * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    types = np.repeat(np.array(FITZPATRICK_TYPES), counts)
    return rng.permutation(types)


def write_skin_dataset(out_dir: Union[str, "os.PathLike[str]"], *, cases: int, seed: int,
                       fitzpatrick_weights: Union[Sequence[float], Mapping[int, float], None] = None,
                       size: int = 256, site: str = "A", patients: Optional[int] = None) -> Path:
    """Write a synthetic skin-lesion data set in the ISIC 2018 segmentation layout.

    Files::

        out_dir/images/ISIC_0000000.jpg                 RGB, JPEG quality 90
        out_dir/masks/ISIC_0000000_segmentation.png     8-bit, one channel, 0 (skin) / 255 (lesion)
        out_dir/metadata.csv                            one row per image

    metadata.csv columns: case_id, patient_id, site, fitzpatrick (1..6), age, sex,
    lesion_area_fraction, lesion_diameter_mm (diameter of the circle with the lesion's area, for a
    field of view 20 mm wide), hair, bubbles, ruler (artefacts present, True/False).

    Args:
        out_dir: folder to create; it must not exist yet or be empty. Everything is written to a
            temporary folder next to it and renamed at the end, so a failure leaves nothing behind.
        cases: number of cases, one image each (>= 1); ``cases=`` as in ``write_brain_dataset``.
        seed: the same arguments give the same bytes in every file.
        fitzpatrick_weights: relative frequency of skin types I..VI: 6 numbers, or a dict
            {type: weight} (missing types get 0). None: all types equally often. Patients get their
            type in exact proportions (largest remainder), e.g. ``(3, 3, 2, 1, 0.5, 0.5)`` for a
            training set that under-represents dark skin.
        size: image height and width in pixels (>= 32).
        site: a key of ``SITES``; the whole data set comes from that site's camera.
        patients: number of distinct patients (1..cases); each patient has one skin type, age and
            sex, and one or more images of different lesions. None: one image per patient.

    Returns:
        ``out_dir`` as a Path.

    Shape: each image (H, W, 3) uint8 on disk; each mask (H, W) uint8 on disk, H = W = size.

    Example:
        >>> root = write_skin_dataset("/tmp/skin", cases=8, seed=0, patients=4)   # doctest: +SKIP

    Used in weeks 3, 4 and 6 through `builtin_skin`.
    """
    from medseg_edu.data.io import save_skin_case

    cases = check_int(cases, "cases", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    size = check_int(size, "size", minimum=32)
    check_choice(site, sorted(SITES), "site")
    probabilities = _type_weights(fitzpatrick_weights)
    if patients is None:
        patients = cases
    patients = check_int(patients, "patients", minimum=1)
    if patients > cases:
        raise ValueError(f"patients must be <= cases ({cases}), got {patients}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"out_dir must not exist or be an empty folder, got {out_dir} (not empty)")

    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    patient_types = _allocate(patients, probabilities, rng)
    patient_ages = np.clip(np.rint(rng.normal(52, 16, patients)), 18, 90).astype(int)
    patient_sexes = rng.choice(["F", "M"], patients)   # as DICOM PatientSex
    # every patient gets at least one image; the remaining images go to random patients
    owner = np.concatenate([np.arange(patients), rng.integers(0, patients, cases - patients)])
    owner = rng.permutation(owner)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = staging_dir(out_dir)
    try:
        rows = []
        for index in progress(range(cases), desc="skin phantom", total=cases):
            patient = int(owner[index])
            image_seed = int(np.random.SeedSequence([seed, 1, index]).generate_state(1)[0])
            case = make_skin_case(seed=image_seed, fitzpatrick=int(patient_types[patient]),
                                  size=size, site=site)
            image_id = f"ISIC_{index:07d}"
            save_skin_case(tmp_dir, image_id, case["image"], case["label"], quality=90)
            area = float(case["label"].mean())
            diameter_mm = 2 * np.sqrt(case["label"].sum() / np.pi) * FIELD_OF_VIEW_MM / size
            rows.append([image_id, f"P{patient:05d}", site, case["fitzpatrick"],
                         int(patient_ages[patient]), str(patient_sexes[patient]), f"{area:.4f}",
                         f"{diameter_mm:.2f}", case["artefacts"]["hair"], case["artefacts"]["bubbles"],
                         case["artefacts"]["ruler"]])
        with open(tmp_dir / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["case_id", "patient_id", "site", "fitzpatrick", "age", "sex",
                             "lesion_area_fraction", "lesion_diameter_mm", "hair", "bubbles", "ruler"])
            writer.writerows(rows)
        if out_dir.exists():
            out_dir.rmdir()          # empty (checked above)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir
