"""Medical Segmentation Decathlon tasks: from the extracted tar to the course's MSD layout.

The Decathlon archives already use the layout the course reads (``dataset.json``, ``imagesTr/``,
``labelsTr/``, ``imagesTs/``). They have no ``participants.tsv``, so one is written with
``patient_id`` = case id (one case per patient in the Decathlon), ``site`` and ``sex`` "unknown"
and ``age`` empty (read as NaN), so that the course's readers and patient-level splits work.

Not taught in a particular week; the README ("Real data") shows how a lesson switches to it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence

from medseg_edu.utils import atomic_path

from .download import FetchError

__all__ = ["find_msd_task", "write_participants_tsv", "prepare_msd"]

NIFTI_SUFFIX = ".nii.gz"


def find_msd_task(folder: "str | os.PathLike[str]") -> Path:
    """Find the one task folder (the folder holding ``dataset.json`` and ``imagesTr/``) in ``folder``.

    Shape: extracted folder -> task folder (``folder`` itself or one level below).
    """
    folder = Path(folder)
    candidates = [folder] if (folder / "dataset.json").is_file() else []
    candidates += sorted(p.parent for p in folder.glob("*/dataset.json"))
    candidates = [c for c in candidates if (c / "imagesTr").is_dir()]
    if len(candidates) != 1:
        raise FetchError(f"expected one MSD task folder (dataset.json + imagesTr/) in {folder}, "
                         f"found {len(candidates)}: {[str(c) for c in candidates]}")
    return candidates[0]


def _case_ids(task: Path) -> List[str]:
    names = sorted(p.name for p in (task / "imagesTr").iterdir()
                   if p.name.endswith(NIFTI_SUFFIX) and not p.name.startswith("."))
    return [name[: -len(NIFTI_SUFFIX)] for name in names]


def write_participants_tsv(task: "str | os.PathLike[str]") -> Path:
    """Write ``participants.tsv`` for an MSD task folder (one row per training case).

    Shape: columns case_id, patient_id, site, age, sex; patient_id = case_id, site/sex "unknown",
    age empty (the Decathlon publishes no demographics).
    """
    task = Path(task)
    case_ids = _case_ids(task)
    if not case_ids:
        raise FetchError(f"no {NIFTI_SUFFIX} images in {task / 'imagesTr'}")
    lines = ["case_id\tpatient_id\tsite\tage\tsex"]
    lines += [f"{case_id}\t{case_id}\tunknown\t\tunknown" for case_id in case_ids]
    with atomic_path(task / "participants.tsv") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return task / "participants.tsv"


def prepare_msd(extracted: Sequence["str | os.PathLike[str]"], out_dir: "str | os.PathLike[str]") -> Path:
    """Turn the extracted MSD archive into the course layout at ``out_dir`` (moved, not copied).

    Shape: ([extracted folder], new folder) -> out_dir with dataset.json, imagesTr/, labelsTr/,
    participants.tsv.
    """
    if len(extracted) != 1:
        raise ValueError(f"extracted must hold one folder for an MSD task, got {len(extracted)}")
    task = find_msd_task(extracted[0])
    if not (task / "labelsTr").is_dir():
        raise FetchError(f"{task} has no labelsTr/ folder: not a Decathlon training archive")
    write_participants_tsv(task)
    out_dir = Path(out_dir)
    os.replace(task, out_dir)
    return out_dir
