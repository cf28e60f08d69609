"""ISIC 2018 Task 1: from the two extracted zips to the course's ISIC layout.

The zips hold ``ISIC2018_Task1-2_Training_Input/ISIC_xxxxxxx.jpg`` and
``ISIC2018_Task1_Training_GroundTruth/ISIC_xxxxxxx_segmentation.png``. The course reads
``images/<id>.jpg``, ``masks/<id>_segmentation.png`` and ``metadata.csv`` (case_id, patient_id,
site, fitzpatrick). ISIC 2018 publishes neither patient ids nor skin types, so patient_id = case_id
(one image per lesion is the best we can assume), site "unknown" and fitzpatrick empty: the
subgroup lesson (week 6) cannot be done on this set without extra metadata.

Not taught in a particular week; the README ("Real data") shows how a lesson switches to it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List, Sequence

from medseg_edu.utils import atomic_path

from .download import FetchError

__all__ = ["IMAGES_FOLDER", "MASKS_FOLDER", "prepare_isic", "verify_isic"]

IMAGES_FOLDER = "ISIC2018_Task1-2_Training_Input"
MASKS_FOLDER = "ISIC2018_Task1_Training_GroundTruth"
MASK_SUFFIX = "_segmentation.png"
VERIFY_SAMPLE = 16   # cases decoded by verify_isic (first, last and evenly spaced between)


def _find_folder(extracted: Sequence[Path], name: str) -> Path:
    found = [root / name for root in extracted if (root / name).is_dir()]
    found += [p for root in extracted for p in root.glob(f"*/{name}") if p.is_dir()]
    if len(found) != 1:
        raise FetchError(f"expected one {name}/ folder in the extracted ISIC archives, "
                         f"found {len(found)}")
    return found[0]


def prepare_isic(extracted: Sequence["str | os.PathLike[str]"], out_dir: "str | os.PathLike[str]") -> Path:
    """Move the ISIC 2018 Task 1 images and masks into ``out_dir`` and write ``metadata.csv``.

    Every image must have a mask and every mask an image (else FetchError, naming a few ids).

    Shape: (extracted folders, new folder) -> out_dir with images/, masks/, metadata.csv.
    """
    roots = [Path(p) for p in extracted]
    images_src = _find_folder(roots, IMAGES_FOLDER)
    masks_src = _find_folder(roots, MASKS_FOLDER)
    image_ids = sorted(p.stem for p in images_src.glob("ISIC_*.jpg"))
    mask_ids = sorted(p.name[: -len(MASK_SUFFIX)] for p in masks_src.glob(f"ISIC_*{MASK_SUFFIX}"))
    if not image_ids:
        raise FetchError(f"no ISIC_*.jpg images in {images_src}")
    without_mask = sorted(set(image_ids) - set(mask_ids))
    without_image = sorted(set(mask_ids) - set(image_ids))
    if without_mask or without_image:
        raise FetchError(f"ISIC images and masks do not pair up: {len(without_mask)} images without "
                         f"a mask (e.g. {without_mask[:3]}), {len(without_image)} masks without an "
                         f"image (e.g. {without_image[:3]})")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True)
    (out_dir / "masks").mkdir()
    for image_id in image_ids:
        os.replace(images_src / f"{image_id}.jpg", out_dir / "images" / f"{image_id}.jpg")
        os.replace(masks_src / f"{image_id}{MASK_SUFFIX}", out_dir / "masks" / f"{image_id}{MASK_SUFFIX}")
    for source in (images_src, masks_src):   # keep ISIC's LICENSE / ATTRIBUTION texts
        for text in source.glob("*.txt"):
            shutil.copyfile(text, out_dir / f"{source.name}_{text.name}")
    lines: List[str] = ["case_id,patient_id,site,fitzpatrick"]
    lines += [f"{image_id},{image_id},unknown," for image_id in image_ids]
    with atomic_path(out_dir / "metadata.csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


def verify_isic(folder: "str | os.PathLike[str]") -> None:
    """Check that the course's skin readers accept ``folder``; raise FetchError naming what fails.

    Every image must be listed with its mask, and a sample of cases (first, last and evenly spaced
    between, about ``VERIFY_SAMPLE`` in all) must decode as an RGB image with a binary mask of its size.
    Together with the CRC-32 check of every zip member during unpacking, this is what "verified"
    means for a download that has no published checksum.

    Shape: folder with images/, masks/, metadata.csv -> None.
    """
    import medseg_edu

    folder = Path(folder)
    try:
        cases = medseg_edu.list_skin_cases(folder)
        missing = cases.loc[cases["mask_path"].isna(), "case_id"].tolist()
        if missing:
            raise ValueError(f"{len(missing)} images have no mask (e.g. {missing[:3]})")
        step = max(1, (len(cases) - 1) // (VERIFY_SAMPLE - 1))
        rows = sorted(set(range(0, len(cases), step)) | {len(cases) - 1})
        for row in rows:
            medseg_edu.load_skin_case(cases["image_path"].iloc[row], cases["mask_path"].iloc[row])
    except (ValueError, FileNotFoundError) as error:
        raise FetchError(f"the unpacked ISIC data in {folder} are not readable by the course: "
                         f"{error}") from None
