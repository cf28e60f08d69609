"""Instructor tools: student versions of the notebooks, and grading without a course database.

The course notebooks in ``course/`` are the instructor source, in nbgrader's format (cell metadata
schema 3). Two jobs live here:

* ``release_course`` writes the student versions to ``course/student/``: solutions replaced by a
  ``raise NotImplementedError()`` stub, hidden tests removed, outputs cleared. It uses nbgrader's own
  preprocessors, so an instructor who runs ``nbgrader generate_assignment`` gets the same result.
* ``grade_submissions`` grades a class: it reads every instructor notebook into memory once, takes
  each student's answers (the solution cells, matched by ``grade_id``), puts them into the
  instructor's notebook (so hidden tests are back and edited or deleted test cells are restored), runs
  each in its own limited kernel (``medseg_edu.grading_job``, ``medseg_edu.grading_kernel``), and
  writes one JSON report per student and week plus ``gradebook.csv``. A broken submission gets a
  flagged report and the batch goes on; a cell that crashes or loops costs only the points of the
  tests that depend on it.

Used by ``medseg-edu release`` and ``medseg-edu grade``; the README's "For instructors" section
shows the whole round trip.
"""
from __future__ import annotations

import concurrent.futures
import copy
import csv
import hashlib
import json
import multiprocessing
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import nbformat

from medseg_edu.utils import atomic_path

__all__ = [
    "validate_nbgrader_metadata",
    "make_student_notebook",
    "release_course",
    "merge_submission",
    "grade_submissions",
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
    ``grade_id`` (the first one when a ``grade_id`` appears twice); a solution cell the student
    deleted gets a stub (it will fail its tests).
    Everything else (test cells with hidden tests, explanations, locked cells) comes from ``source``,
    so a student cannot change or delete the tests.
    """
    answers = {}
    for cell in submission.cells:
        meta = _nbgrader_meta(cell)
        if meta and meta.get("solution"):
            answers.setdefault(meta.get("grade_id"), cell.source)
    merged = copy.deepcopy(source)
    for cell in merged.cells:
        meta = _nbgrader_meta(cell)
        if meta and meta.get("solution"):
            cell.source = answers.get(meta["grade_id"], "# deleted by the student\nraise NotImplementedError()")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return merged


@dataclass
class _CourseNotebook:
    """An instructor notebook read once, before any student code runs."""

    path: Path
    nb: nbformat.NotebookNode
    sha256: str
    ids: set = field(default_factory=set)


def _grade_ids(nb) -> List[str]:
    return [meta["grade_id"] for meta in map(_nbgrader_meta, nb.get("cells", [])) if meta and "grade_id" in meta]


def _load_course(source: Path) -> Dict[str, _CourseNotebook]:
    """Every instructor notebook (``source`` itself, or ``source/week*.ipynb``), read into memory."""
    if source.is_file():
        paths = [source]
    elif source.is_dir():
        paths = sorted(source.glob("week*.ipynb"))
    else:
        raise FileNotFoundError(f"instructor notebook or folder {source} does not exist")
    if not paths:
        raise FileNotFoundError(f"no week*.ipynb notebooks in {source}")
    course = {}
    for path in paths:
        data = path.read_bytes()
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        course[path.stem] = _CourseNotebook(path, nb, hashlib.sha256(data).hexdigest(), set(_grade_ids(nb)))
    return course


def _changed_files(course: Dict[str, _CourseNotebook]) -> List[str]:
    """Names of instructor notebooks whose bytes changed since the last check (baseline updated)."""
    changed = []
    for item in course.values():
        try:
            digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
        except OSError:
            digest = "missing"
        if digest != item.sha256:
            changed.append(item.path.name)
            item.sha256 = digest
    return changed


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "student"


def _read_submission(path: Path):
    """(bytes, notebook) or (None, message) for a file that is not a readable notebook."""
    try:
        data = path.read_bytes()
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as err:  # missing file, bad encoding, broken JSON, unknown nbformat: all the student's
        first_line = (str(err).splitlines() or [""])[0][:120]
        return None, f"not a readable notebook ({type(err).__name__}: {first_line})"
    if not isinstance(nb.get("cells"), list):
        return None, "not a readable notebook (no list of cells)"
    return data, nb


def _prepare(path: Path, course: Dict[str, _CourseNotebook], student: Optional[str]) -> dict:
    """A grading job for one submission: who, which week, the merged notebook, flags and messages."""
    named = next((stem for stem, item in course.items() if item.path.name == path.name), None)
    who = student or (path.resolve().parent.name if named else path.stem)
    job = {"student": _safe_name(who), "week": named or _safe_name(path.stem), "notebook": None,
           "submission": str(path), "merged": None, "submission_bytes": b"", "flags": [], "messages": []}
    data, nb = _read_submission(path)
    if data is None:
        job["flags"].append("unreadable")
        job["messages"].append(nb)
        job.update(merged=course[named].nb if named else None, notebook=named and course[named].path.name, skip=True)
        return job
    ids = _grade_ids(nb)
    repeated = sorted({grade_id for grade_id in ids if ids.count(grade_id) > 1})
    if repeated:
        job["flags"].append("duplicate_grade_id")
        job["messages"].append(f"grade_id {', '.join(map(repr, repeated))} appears more than once: "
                               "the first cell was graded")
    overlap = {stem: len(set(ids) & item.ids) for stem, item in course.items()}
    best = max(overlap, key=lambda stem: (overlap[stem], stem == named))
    if overlap[best] == 0:
        job["flags"].append("wrong_week")
        job["messages"].append("not a notebook of this course (no exercise ids match)")
        job.update(merged=course[named].nb if named else None, notebook=named and course[named].path.name, skip=True)
        return job
    if named is not None and best != named:
        job["flags"].append("wrong_week")
        job["messages"].append(f"named like {named} but its exercise ids match {best}: graded as {best}")
    job.update(week=best, notebook=course[best].path.name, submission_bytes=data,
               merged=merge_submission(course[best].nb, nb))
    return job


def _prepare_safely(path: Path, course: Dict[str, _CourseNotebook], student: Optional[str]) -> dict:
    """``_prepare``, with a notebook too malformed to merge (cells that are not cells, ids that are not
    strings, ...) turned into an "unreadable" job instead of stopping the batch."""
    try:
        return _prepare(path, course, student)
    except Exception as err:  # the file is the student's: any failure to understand it is theirs
        return {"student": _safe_name(student or path.stem), "week": _safe_name(path.stem), "notebook": None,
                "submission": str(path), "merged": None, "submission_bytes": b"", "flags": ["unreadable"],
                "messages": [f"not a notebook this grader can read ({type(err).__name__})"], "skip": True}


def _mark_duplicate_students(jobs: List[dict]) -> None:
    """Two submissions for one student and week: neither is graded, both reports say why."""
    groups: Dict[tuple, List[dict]] = {}
    for job in jobs:
        groups.setdefault((job["student"], job["week"]), []).append(job)
    for (who, week), same in groups.items():
        if len(same) < 2:
            continue
        names = ", ".join(job["submission"] for job in same)
        for number, job in enumerate(same, start=1):
            job["flags"].append("duplicate_submission")
            job["messages"].append(f"{len(same)} submissions map to student {who!r}, {week}: {names}; "
                                   "rename a folder or grade them one by one with --student")
            job["report_name"] = f"{who}_{week}-{number}"
            job["skip"] = True


def _secrets(source: Path) -> List[str]:
    """Texts no report may contain: instructor paths and the grader's environment values."""
    paths = [str(source), str(source.resolve()), os.getcwd()]
    return paths + [value for value in os.environ.values() if len(value) >= 8]


def _run_jobs(jobs: List[dict], course: Dict[str, _CourseNotebook], workers: int) -> List[dict]:
    """Grade the runnable jobs (``workers`` at a time); after each one, check the instructor files."""
    from medseg_edu.grading_job import empty_report, grade_job

    reports: List[Optional[dict]] = [None] * len(jobs)
    todo = [i for i, job in enumerate(jobs) if not job.get("skip")]
    for i, job in enumerate(jobs):
        if i not in todo:
            reports[i] = empty_report(job)

    modified: Dict[int, List[str]] = {}  # job -> instructor files that changed while it ran

    def check(i: int, suspects: List[int]) -> None:
        changed = _changed_files(course)
        for j in [i, *suspects] if changed else []:
            modified.setdefault(j, []).extend(changed)

    if workers <= 1:
        for i in todo:
            reports[i] = _safe_grade(grade_job, jobs[i])
            check(i, [])
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            running: Dict[concurrent.futures.Future, int] = {}
            queue = list(todo)
            while queue or running:
                while queue and len(running) < workers:
                    i = queue.pop(0)
                    running[pool.submit(_safe_grade, grade_job, jobs[i])] = i
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    reports[i] = future.result()
                    check(i, list(running.values()))
    for i, names in modified.items():
        report = reports[i]
        report["flags"] = sorted({*report["flags"], "instructor_files_modified"})
        report["messages"].append(f"instructor files modified during grading: {', '.join(sorted(set(names)))} "
                                  "(graded from the copies read before grading started; review this submission)")
    return reports


def _safe_grade(grade_job, job: dict) -> dict:
    """``grade_job``, with a failure of the grader itself turned into a flagged report."""
    from medseg_edu.grading_job import empty_report

    try:
        return grade_job(job)
    except Exception as err:  # the grader failed (kernel would not start, ...): say so, keep going
        failed = {**job, "flags": [*job["flags"], "grader_error"],
                  "messages": [*job["messages"], f"the grader failed: {type(err).__name__}: {err}"]}
        return empty_report(failed)


def grade_submissions(submissions: Sequence[PathLike], *, source: PathLike = "course",
                      out_dir: Optional[PathLike] = None, jobs: int = 1, timeout_s: float = 60.0,
                      memory_mb: int = 4096, student: Optional[str] = None,
                      clear_flags: Sequence[str] = ()) -> List[dict]:
    """Grade a batch of student notebooks; return one report per submission (and write them).

    Every instructor notebook is read into memory first and never read again. Each submission is
    matched to a week (by file name, or by its exercise ids when these match another week better),
    its answers are merged into that week's instructor notebook, and it runs in its own limited
    kernel (see ``medseg_edu.grading_kernel``). A broken submission gets a report with a flag and a
    message; the batch goes on. Reports are named ``<student>_<week>.json``: the student is the
    submission's folder when the file keeps its course name (``alice/week2_slices_vs_patches.ipynb``),
    else the file stem, or ``student`` for a single submission. ``out_dir`` also gets
    ``gradebook.csv``.

    Args:
        jobs: submissions graded in parallel (worker processes).
        timeout_s, memory_mb: wall seconds per cell and memory of each kernel.
        clear_flags: students whose tampering findings the instructor reviewed and cleared.

    Returns:
        Reports: ``{"student", "week", "notebook", "submission", "score", "max_score", "flags",
        "messages", "exercises": [{"grade_id", "points", "max_points", "passed", "feedback"}]}``, plus
        ``tampering_findings`` and ``points_if_cleared`` when the scan found something.
    """
    if student is not None and len(submissions) != 1:
        raise ValueError(f"student names one submission; got {len(submissions)} submissions")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    from medseg_edu.grading_kernel import Limits

    source = Path(source)
    course = _load_course(source)
    limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb)
    secrets = _secrets(source)
    prepared = [_prepare_safely(Path(path), course, student) for path in submissions]
    _mark_duplicate_students(prepared)
    for job in prepared:
        job.update(limits=limits, secrets=secrets, cleared=job["student"] in set(clear_flags))
    reports = _run_jobs(prepared, course, jobs)
    if out_dir is not None:
        _write_reports(prepared, reports, Path(out_dir), course)
    return reports


def grade_notebook(submission: PathLike, *, source: PathLike = "course", out_dir: Optional[PathLike] = None,
                   timeout_s: float = 60.0, memory_mb: int = 4096, student: Optional[str] = None) -> dict:
    """Grade one student notebook (see ``grade_submissions``) and return its report."""
    return grade_submissions([submission], source=source, out_dir=out_dir, timeout_s=timeout_s,
                             memory_mb=memory_mb, student=student)[0]


def _write_reports(jobs: List[dict], reports: List[dict], out_dir: Path, course: Dict[str, _CourseNotebook]) -> None:
    for job, report in zip(jobs, reports):
        name = job.get("report_name", f"{report['student']}_{report['week']}")
        with atomic_path(out_dir / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    # one column per test grade_id, in course order; weeks share names (test_ex1), each row is one week
    used = {e["grade_id"] for r in reports for e in r["exercises"]}
    tests = [meta.get("grade_id") for item in course.values() for meta in map(_nbgrader_meta, item.nb.cells)
             if meta and meta.get("grade") and not meta.get("solution")]
    columns = list(dict.fromkeys(grade_id for grade_id in tests if grade_id in used))
    rows = sorted(reports, key=lambda r: (r["student"], r["week"], r["submission"]))
    with atomic_path(out_dir / "gradebook.csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["student", "week", *columns, "total", "max", "flags"])
            for r in rows:
                points = {e["grade_id"]: f"{e['points']:g}" for e in r["exercises"]}
                writer.writerow([r["student"], r["week"], *(points.get(c, "") for c in columns),
                                 f"{r['score']:g}", f"{r['max_score']:g}", ";".join(r["flags"])])


def format_report(report: dict) -> str:
    """A short human-readable version of a grade report (what ``medseg-edu grade`` prints)."""
    flags = f"  [{', '.join(report['flags'])}]" if report["flags"] else ""
    lines = [f"{report['student']} / {report['week']}: {report['score']:g} / {report['max_score']:g}{flags}"]
    lines += [f"  ! {message}" for message in report["messages"]]
    for e in report["exercises"]:
        mark = "ok " if e["points"] == e["max_points"] else "FAIL"
        lines.append(f"  [{mark}] {e['grade_id']}: {e['points']:g}/{e['max_points']:g}  {e['feedback']}")
    return "\n".join(lines)
