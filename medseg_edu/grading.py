"""Instructor tools: student versions of the notebooks, and grading without a course database.

The course notebooks in ``course/`` are the instructor source, in nbgrader's format (cell metadata
schema 3). Two jobs live here:

* ``release_course`` writes the student versions to ``course/student/``: solutions replaced by a
  ``raise NotImplementedError()`` stub, hidden tests removed, outputs cleared. It uses nbgrader's own
  preprocessors, so an instructor who runs ``nbgrader generate_assignment`` gets the same result.
* ``grade_notebook`` grades one student notebook: it takes the student's answers (the solution cells,
  matched by ``grade_id``), puts them into the instructor's notebook (so hidden tests are back and
  edited or deleted test cells are restored), executes it with a time limit per cell, and writes a
  score report (JSON and CSV). A student cell that crashes or loops forever costs only the points of
  the tests that depend on it.

Used by ``medseg-edu release`` and ``medseg-edu grade``; the README's "For instructors" section
shows the whole round trip.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

import nbformat

from medseg_edu.utils import atomic_path

__all__ = [
    "validate_nbgrader_metadata",
    "make_student_notebook",
    "release_course",
    "merge_submission",
    "grade_notebook",
    "format_report",
]

PathLike = Union[str, "os.PathLike[str]"]
REQUIRED_KEYS = ("grade", "solution", "locked", "grade_id", "schema_version")


def _nbgrader_meta(cell) -> Optional[dict]:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else None


def validate_nbgrader_metadata(nb: nbformat.NotebookNode) -> List[str]:
    """List what is wrong with a notebook's nbgrader metadata (empty list: all good).

    Checks: schema 3 keys present, unique ``grade_id``, points > 0 on graded cells, graded test cells
    locked, solution cells carrying ``### BEGIN SOLUTION`` / ``### END SOLUTION``, and no solution or
    hidden-test markers outside cells that are marked for them.
    """
    problems = []
    seen: Dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader_meta(cell)
        source = cell.get("source", "")
        where = f"cell {index}"
        if meta is None:
            if "BEGIN SOLUTION" in source or "BEGIN HIDDEN TESTS" in source:
                problems.append(f"{where}: has solution/hidden-test markers but no nbgrader metadata")
            continue
        missing = [key for key in REQUIRED_KEYS if key not in meta]
        if missing:
            problems.append(f"{where}: nbgrader metadata lacks {missing}")
            continue
        if meta["schema_version"] != 3:
            problems.append(f"{where}: schema_version must be 3, got {meta['schema_version']}")
        grade_id = meta["grade_id"]
        if grade_id in seen:
            problems.append(f"{where}: grade_id {grade_id!r} already used by cell {seen[grade_id]}")
        seen[grade_id] = index
        if meta["grade"] and not (isinstance(meta.get("points"), (int, float)) and meta["points"] > 0):
            problems.append(f"{where} ({grade_id}): graded cell needs points > 0, got {meta.get('points')}")
        if meta["solution"] and cell.cell_type == "code":
            if "### BEGIN SOLUTION" not in source or "### END SOLUTION" not in source:
                problems.append(f"{where} ({grade_id}): solution cell without BEGIN/END SOLUTION markers")
        if meta["grade"] and not meta["solution"] and not meta["locked"]:
            problems.append(f"{where} ({grade_id}): test cell must be locked")
        if not meta["solution"] and "BEGIN SOLUTION" in source:
            problems.append(f"{where} ({grade_id}): solution markers in a cell not marked as solution")
    return problems


def make_student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the student version of an instructor notebook (the input is not changed).

    Runs nbgrader's ``LockCells``, ``ClearSolutions``, ``ClearHiddenTests`` and ``ClearOutput``
    preprocessors: solution regions become ``# YOUR CODE HERE`` + ``raise NotImplementedError()``
    (comments above ``### BEGIN SOLUTION`` stay, so hints survive), hidden tests disappear, outputs go.

    Raises:
        ValueError: the nbgrader metadata is invalid (see ``validate_nbgrader_metadata``).
    """
    problems = validate_nbgrader_metadata(nb)
    if problems:
        raise ValueError("invalid nbgrader metadata: " + "; ".join(problems))
    try:
        from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, LockCells
    except ImportError as err:  # nbgrader is in the "instructor" and "dev" extras
        raise ImportError("releasing student notebooks needs nbgrader: pip install 'medseg-edu[instructor]'") from err
    student = copy.deepcopy(nb)
    resources: dict = {}
    for preprocessor in (LockCells(), ClearSolutions(), ClearHiddenTests(), ClearOutput()):
        student, resources = preprocessor.preprocess(student, resources)
    for cell in student.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
    student.metadata.pop("widgets", None)
    return student


def _student_path_markdown(source: str) -> str:
    """Point "Open in Colab" links at the student copy (course/x.ipynb -> course/student/x.ipynb)."""
    return source.replace("/course/week", "/course/student/week")


def release_course(source_dir: PathLike, *, out_dir: Optional[PathLike] = None) -> List[Path]:
    """Write the student version of every ``week*.ipynb`` in ``source_dir`` to ``out_dir``.

    ``out_dir`` defaults to ``source_dir/student``. Files are written atomically; the output is
    deterministic, so a test can tell when the committed student notebooks are stale.
    """
    source_dir = Path(source_dir)
    out = Path(out_dir) if out_dir is not None else source_dir / "student"
    notebooks = sorted(source_dir.glob("week*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no week*.ipynb notebooks in {source_dir}")
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student = make_student_notebook(nb)
        for cell in student.cells:
            if cell.cell_type == "markdown":
                cell.source = _student_path_markdown(cell.source)
        target = out / path.name
        with atomic_path(target) as tmp:
            nbformat.write(student, tmp)
        written.append(target)
    return written


def merge_submission(source: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The instructor notebook with the student's answers put into its solution cells.

    Every solution cell of ``source`` takes the text of the submission's cell with the same
    ``grade_id``; a solution cell the student deleted keeps the stub (it will fail its tests).
    Everything else (test cells with hidden tests, explanations, locked cells) comes from ``source``,
    so a student cannot change or delete the tests.
    """
    answers = {}
    for cell in submission.cells:
        meta = _nbgrader_meta(cell)
        if meta and meta.get("solution"):
            answers[meta.get("grade_id")] = cell.source
    merged = copy.deepcopy(source)
    for cell in merged.cells:
        meta = _nbgrader_meta(cell)
        if meta and meta.get("solution"):
            cell.source = answers.get(meta["grade_id"], "# deleted by the student\nraise NotImplementedError()")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return merged


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cell_error(cell) -> Optional[str]:
    """"ErrorName: message" of the cell's error output (None when it ran cleanly). A bare ``assert``
    has no message, so then the failing line (the traceback's ``---->`` line) is quoted instead."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = str(output.get("evalue", "")).strip().splitlines()
            message = value[0] if value else ""
            if not message:
                arrows = [_ANSI.sub("", line) for frame in output.get("traceback", [])
                          for line in frame.splitlines() if "---->" in _ANSI.sub("", line)]
                if arrows:
                    message = "failed at: " + arrows[-1].split("---->", 1)[1].strip().lstrip("0123456789 ")
            return f"{output.get('ename', 'Error')}: {message}"[:300]
    return None


def _execute(nb: nbformat.NotebookNode, *, timeout_s: float, workdir: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True,
                            error_on_timeout={"ename": "TimeoutError",
                                              "evalue": f"cell ran longer than {timeout_s:g} s"},
                            resources={"metadata": {"path": str(workdir)}})
    # Graded runs never train long: the kernel (and only the kernel) runs in fast mode.
    with client.setup_kernel(env={**os.environ, "MEDSEG_FAST": "1"}):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                cell.outputs = [nbformat.v4.new_output("error", ename="DeadKernelError",
                                                       evalue="the kernel died in this cell", traceback=[])]
                client.km.restart_kernel()
                client.kc = client.km.client()
                client.kc.start_channels()
                client.kc.wait_for_ready(timeout=60)
    return nb


def _grade_ids(nb: nbformat.NotebookNode) -> set:
    return {meta["grade_id"] for meta in map(_nbgrader_meta, nb.cells) if meta and "grade_id" in meta}


def _find_source(submission: Path, student_nb: nbformat.NotebookNode, source: Path) -> Path:
    """The instructor notebook for a submission: ``source`` itself, the same file name in the
    ``source`` folder, or else the notebook sharing the most ``grade_id``s with the submission."""
    if source.is_file():
        return source
    if not source.is_dir():
        raise FileNotFoundError(f"instructor notebook or folder {source} does not exist")
    candidate = source / submission.name
    if candidate.exists():
        return candidate
    ids = _grade_ids(student_nb)
    overlaps = [(len(ids & _grade_ids(nbformat.read(p, as_version=4))), p) for p in sorted(source.glob("week*.ipynb"))]
    best = max(overlaps, default=(0, None), key=lambda pair: pair[0])
    if best[0] == 0:
        raise FileNotFoundError(f"no instructor notebook in {source} matches submission {submission.name}; "
                                f"pass --source with the instructor notebook")
    return best[1]


def grade_notebook(submission: PathLike, *, source: PathLike = "course", out_dir: Optional[PathLike] = None,
                   timeout_s: float = 60.0, student: Optional[str] = None) -> dict:
    """Grade one student notebook and return (and write) the score report.

    Args:
        submission: the student's ``.ipynb``.
        source: the instructor notebook, or the folder holding it (matched by file name).
        out_dir: where ``<student>_<week>.json`` and ``.csv`` reports go (nothing written when None).
        timeout_s: time limit per cell; a cell that runs longer is interrupted and fails.
        student: a name for the report (default: the submission's file stem).

    Returns:
        ``{"student", "notebook", "score", "max_score", "exercises": [{"grade_id", "points",
        "max_points", "passed", "feedback"}]}``: a graded test cell earns its points when it runs
        without an error.
    """
    submission = Path(submission)
    if not submission.exists():
        raise FileNotFoundError(f"submission {submission} does not exist")
    try:
        student_nb = nbformat.read(submission, as_version=4)
    except Exception as err:  # nbformat raises several types for broken JSON
        raise ValueError(f"submission {submission} is not a readable notebook: {err}") from err
    source_path = _find_source(submission, student_nb, Path(source))
    merged = merge_submission(nbformat.read(source_path, as_version=4), student_nb)
    with tempfile.TemporaryDirectory(prefix="medseg-grade-") as workdir:
        executed = _execute(merged, timeout_s=timeout_s, workdir=Path(workdir))
    exercises = []
    for cell in executed.cells:
        meta = _nbgrader_meta(cell)
        if not meta or not meta.get("grade") or meta.get("solution"):
            continue
        error = _cell_error(cell)
        max_points = float(meta.get("points", 0))
        exercises.append({"grade_id": meta["grade_id"], "points": 0.0 if error else max_points,
                          "max_points": max_points, "passed": error is None,
                          "feedback": "passed" if error is None else error})
    report = {"student": student or submission.stem, "notebook": source_path.name,
              "score": sum(e["points"] for e in exercises),
              "max_score": sum(e["max_points"] for e in exercises), "exercises": exercises}
    if out_dir is not None:
        _write_report(report, Path(out_dir))
    return report


def _write_report(report: dict, out_dir: Path) -> None:
    stem = f"{report['student']}_{Path(report['notebook']).stem}"
    with atomic_path(out_dir / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    with atomic_path(out_dir / f"{stem}.csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["student", "notebook", "grade_id", "points", "max_points", "feedback"])
            for e in report["exercises"]:
                writer.writerow([report["student"], report["notebook"], e["grade_id"], e["points"],
                                 e["max_points"], e["feedback"]])


def format_report(report: dict) -> str:
    """A short human-readable version of a grade report (what ``medseg-edu grade`` prints)."""
    lines = [f"{report['student']} / {report['notebook']}: {report['score']:g} / {report['max_score']:g}"]
    for e in report["exercises"]:
        mark = "ok " if e["passed"] else "FAIL"
        lines.append(f"  [{mark}] {e['grade_id']}: {e['points']:g}/{e['max_points']:g}  {e['feedback']}")
    return "\n".join(lines)
