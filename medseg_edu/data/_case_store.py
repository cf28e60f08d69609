"""Where the course's Datasets get their cases: a table, a data set folder, or cases in memory.

Private to :mod:`medseg_edu.data.datasets`: the checks of a ``cases`` argument (a table from
``list_brain_cases``/``list_skin_cases`` or the folder it lists; for ``BrainSlices`` also a list of
in-memory case dicts) and the brain-case store that loads a case by row, applies a whole-volume
transform and keeps the result in memory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from medseg_edu.data.io import list_brain_cases, load_brain_case
from medseg_edu.transforms import Transform, _call_transform, _check_transform

__all__ = ["CasesLike", "cases_table", "BrainCaseStore"]

CasesLike = Union[pd.DataFrame, str, "os.PathLike[str]"]


def cases_table(cases: CasesLike, *, lister: Callable[[Any], pd.DataFrame], id_column: str,
                path_columns: tuple[str, str], expected: str = "a pandas DataFrame or a folder path") -> pd.DataFrame:
    """A non-empty case table with the id and path columns: ``cases`` itself, or ``lister(folder)``."""
    if isinstance(cases, (str, os.PathLike)):
        cases = lister(Path(cases))
    if not isinstance(cases, pd.DataFrame):
        raise TypeError(f"cases must be {expected}, got {type(cases).__name__}")
    missing = [c for c in (id_column,) + path_columns if c not in cases.columns]
    if missing:
        raise ValueError(f"cases must have columns {[id_column, *path_columns]}, missing {missing}")
    if len(cases) == 0:
        raise ValueError("cases must hold at least one case, got an empty table")
    return cases.reset_index(drop=True)


def _memory_cases(cases: Sequence[Any]) -> list[dict[str, Any]]:
    """Check a list of in-memory brain cases: dicts with image (C, X, Y, Z) and label (X, Y, Z) or None."""
    if len(cases) == 0:
        raise ValueError("cases must hold at least one case, got an empty list")
    checked = []
    for i, case in enumerate(cases):
        if not isinstance(case, Mapping) or "image" not in case:
            keys = f" with keys {sorted(case)}" if isinstance(case, Mapping) else ""
            raise TypeError(f"cases[{i}] must be a dict with 'image' (C, X, Y, Z) and 'label' (X, Y, Z), "
                            f"got {type(case).__name__}{keys}")
        image, label = np.asarray(case["image"]), case.get("label")
        if image.ndim != 4 or (label is not None and np.shape(label) != image.shape[1:]):
            raise ValueError(f"cases[{i}] must have image (C, X, Y, Z) and label (X, Y, Z), got shapes "
                             f"{image.shape} and {None if label is None else np.shape(label)}")
        checked.append({**case, "image": image, "label": label,
                        "case_id": str(case.get("case_id", f"case_{i:03d}"))})
    return checked


class BrainCaseStore:
    """Brain cases by row number, from disk (a table or folder) or from memory (a list of case dicts).

    ``volume_transform`` (protocol of :mod:`medseg_edu.transforms`) is applied to each whole case with
    ``rng = np.random.default_rng([seed, row])``; with ``cache`` the result is kept in memory.
    """

    def __init__(self, cases: Any, *, cache: bool, in_memory: bool = False,
                 volume_transform: Optional[Transform] = None, seed: int = 0):
        self.memory = None
        if in_memory and isinstance(cases, (list, tuple)):
            self.memory = _memory_cases(cases)
            self.case_ids = [c["case_id"] for c in self.memory]
            self.unlabelled = [c["case_id"] for c in self.memory if c["label"] is None]
        else:
            expected = ("a pandas DataFrame, a folder path or a list of case dicts" if in_memory
                        else "a pandas DataFrame or a folder path")
            self.cases = cases_table(cases, lister=list_brain_cases, id_column="case_id",
                                     path_columns=("image_path", "label_path"), expected=expected)
            self.case_ids = [str(c) for c in self.cases["case_id"]]
            self.unlabelled = [str(c) for c in self.cases.loc[self.cases["label_path"].isna(), "case_id"]]
        _check_transform(volume_transform, name="volume_transform")
        self.volume_transform, self.seed, self.cache = volume_transform, seed, cache
        self._loaded: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.case_ids)

    def require_labels(self) -> None:
        if self.unlabelled:
            where = "a 'label' array" if self.memory is not None else "a label file in column 'label_path'"
            raise ValueError(f"every case needs {where}, got none for {self.unlabelled[:5]}")

    def load(self, row: int) -> dict[str, Any]:
        if row in self._loaded:
            return self._loaded[row]
        if self.memory is not None:
            case = dict(self.memory[row])
        else:
            record = self.cases.iloc[row]
            label_path = None if pd.isna(record["label_path"]) else record["label_path"]
            case = load_brain_case(record["image_path"], label_path)
            case["case_id"] = self.case_ids[row]
        if self.volume_transform is not None:
            case["image"], case["label"] = _call_transform(
                self.volume_transform, case["image"], case["label"], np.random.default_rng([self.seed, row]),
                name="volume_transform")
        if self.cache:
            self._loaded[row] = case
        return case
