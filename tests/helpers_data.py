"""Tiny on-disk data sets for the data tests, written with the library's own writers.

Deliberately independent of medseg_edu.data.phantoms: a few cubes of known labels, so the tests
know exactly which voxel holds which label.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from medseg_edu.data.io import save_skin_case
from medseg_edu.data.nifti import save_nifti

SPACING_MM = (1.0, 1.5, 2.0)


def tiny_brain_case(*, seed: int, shape: tuple[int, int, int] = (12, 10, 8)) -> tuple[np.ndarray, np.ndarray]:
    """A (X, Y, Z, 4) float image and (X, Y, Z) uint8 label: a 4x4x3 tumour cube with labels 1, 2, 3."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 10.0, size=shape + (4,)).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    x0, y0 = 2 + seed % 3, 3
    label[x0:x0 + 4, y0:y0 + 4, 2:5] = 1          # edema
    label[x0 + 1:x0 + 3, y0 + 1:y0 + 3, 3] = 2    # core
    label[x0 + 1, y0 + 1, 3] = 3                  # enhancing voxel
    image[label > 0, 0] += 50.0                   # FLAIR bright in the lesion
    return image, label


def write_tiny_brain_dataset(root: Path, *, cases: int = 4, shape: tuple[int, int, int] = (12, 10, 8),
                             patient_ids: Optional[Sequence[str]] = None,
                             sites: Optional[Sequence[str]] = None) -> Path:
    """MSD layout: imagesTr/case_00i.nii.gz (4D), labelsTr/..., participants.tsv when ids are given."""
    root = Path(root)
    affine = np.diag(SPACING_MM + (1.0,))
    affine[:3, 3] = (-10.0, -20.0, 5.0)
    rows = []
    for i in range(cases):
        case_id = f"case_{i:03d}"
        image, label = tiny_brain_case(seed=i, shape=shape)
        save_nifti(root / "imagesTr" / f"{case_id}.nii.gz", image, affine)
        save_nifti(root / "labelsTr" / f"{case_id}.nii.gz", label, affine)
        rows.append({"case_id": case_id,
                     "patient_id": patient_ids[i] if patient_ids is not None else case_id,
                     "site": sites[i] if sites is not None else "A",
                     "age": 40 + i, "sex": "F" if i % 2 else "M"})
    if patient_ids is not None or sites is not None:
        pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def write_tiny_skin_dataset(root: Path, *, cases: int = 3, size: tuple[int, int] = (20, 24)) -> Path:
    """ISIC layout: images/img_00i.jpg (flat colours), masks/img_00i_segmentation.png, metadata.csv."""
    root = Path(root)
    rows = []
    for i in range(cases):
        image = np.full((3,) + size, 0.8, dtype=np.float32)
        label = np.zeros(size, dtype=np.uint8)
        label[4:12, 6:14 + i] = 1
        image[:, label == 1] = 0.2
        save_skin_case(root, f"img_{i:03d}", image, label)
        rows.append({"case_id": f"img_{i:03d}", "patient_id": f"p{i // 2}", "site": "S1",
                     "fitzpatrick": 1 + i})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root
