"""Grade one prepared submission: scan it, run it in a limited kernel, score it, write safe feedback.

``medseg_edu.grading`` prepares a job (the instructor notebook with the student's answers merged in,
read from memory, never from the instructor's folder) and hands it to ``grade_job``, in the grader's
process or in a worker process for ``-j N``. Instructor tooling, used by ``medseg-edu grade``.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import List

import nbformat

from medseg_edu.grading_kernel import CellResult, Limits, run_notebook
from medseg_edu.grading_scan import scan_cells, scrub, failure_feedback

__all__ = ["grade_job", "empty_report"]


def _meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _is_test(cell) -> bool:
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _hidden_test_lines(cells) -> List[str]:
    """The lines between the hidden-test markers (scrubbed from feedback whatever route they took)."""
    lines, inside = [], False
    for cell in cells:
        for line in cell.source.splitlines():
            inside = inside or "BEGIN HIDDEN TESTS" in line
            if inside and len(line.strip()) >= 8:
                lines.append(line.strip())
            inside = inside and "END HIDDEN TESTS" not in line
    return lines


def empty_report(job: dict) -> dict:
    """The report of a submission that is not run (unreadable, no matching week, duplicate): every
    test of the matched week (if any) at 0 points, with the job's flags and messages."""
    exercises = []
    merged = job.get("merged")  # the matched week's notebook (for the list of tests), or None
    for cell in (merged.cells if merged is not None else []):
        if _is_test(cell):
            exercises.append({"grade_id": _meta(cell)["grade_id"], "points": 0.0,
                              "max_points": float(_meta(cell).get("points", 0)), "passed": False,
                              "feedback": "not graded: " + "; ".join(job["messages"])})
    return _report(job, exercises, [], 0.0)


def _report(job: dict, exercises: List[dict], findings: List[str], seconds: float) -> dict:
    earned = sum(e["points"] for e in exercises)
    flags = set(job["flags"])
    messages = [scrub(message, job.get("secrets", ())) for message in job["messages"]]
    report = {"student": job["student"], "week": job["week"], "notebook": job["notebook"],
              "submission": job["submission"], "score": earned,
              "max_score": sum(e["max_points"] for e in exercises), "flags": [], "messages": messages,
              "exercises": exercises, "seconds": round(seconds, 1)}
    if findings:
        report["tampering_findings"] = findings
        if job["cleared"]:
            messages.append("tampering findings cleared by the instructor: graded without penalty")
        else:
            flags.add("tampering")
            messages.append("tampering suspected: review (tests scored 0; clear with --clear-flag "
                            f"{job['student']} to grade without the penalty)")
            report["points_if_cleared"] = earned
            report["score"] = 0.0
            for e in exercises:
                if e["passed"]:
                    e["feedback"] = "passed, but 0 points until the instructor clears the tampering flag"
                e["points"] = 0.0
    report["flags"] = sorted(flags)
    return report


def _failure(result: CellResult, source: str, limits: Limits) -> str:
    if result.status == "ok":
        return "the test's completion could not be confirmed (the notebook changed its output)"
    if result.status == "timeout":
        return f"TimeoutError: the test ran longer than {limits.timeout_s:g} s"
    if result.status in ("died", "skipped"):
        return f"{result.ename}: {result.evalue}"
    if result.ename == "MemoryError":
        return f"MemoryError: the notebook needed more than the {limits.memory_mb} MB allowed"
    return failure_feedback(source, result.ename, result.evalue, result.traceback)


def _answer_problem(result: CellResult, limits: Limits) -> str:
    if result.status == "timeout":
        return f"ran longer than {limits.timeout_s:g} s"
    if result.status in ("died", "skipped"):
        return result.evalue
    return f"{result.ename}: {(result.evalue.strip().splitlines() or [''])[0]}"


def _cell_flags(results: List[CellResult]) -> set:
    flags = set()
    for result in results:
        if result.status in ("timeout", "skipped"):
            flags.add("timeout")
        elif result.status == "died":
            flags.add("crash")
        if result.ename == "MemoryError":
            flags.add("memory")
    return flags


def grade_job(job: dict) -> dict:
    """Grade one prepared submission and return its report.

    ``job`` keys: ``student``, ``week``, ``notebook``, ``submission`` (names for the report),
    ``merged`` (the instructor notebook with the student's answers), ``submission_bytes`` (copied into
    the throw-away folder), ``flags``/``messages`` (found while preparing), ``limits`` (a ``Limits``),
    ``secrets`` (texts to scrub from feedback: instructor paths, environment values), ``cleared``
    (the instructor cleared a tampering flag). Runs in a fresh kernel inside a throw-away folder that
    is deleted afterwards.
    """
    started = time.monotonic()
    merged: nbformat.NotebookNode = job["merged"]
    limits: Limits = job["limits"]
    code_cells = [cell for cell in merged.cells if cell.cell_type == "code"]
    answers = {_meta(c)["grade_id"]: c.source for c in code_cells if _meta(c).get("solution")}
    context = [c.source for c in code_cells if not _meta(c).get("solution")]
    findings = scan_cells(answers, context)
    workdir = Path(tempfile.mkdtemp(prefix="medseg-grade-"))
    try:
        (workdir / "submission.ipynb").write_bytes(job["submission_bytes"])
        results = run_notebook([c.source for c in code_cells], workdir=workdir, limits=limits,
                               is_test=lambda i: _is_test(code_cells[i]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    secrets = [*job["secrets"], str(workdir), str(workdir.resolve()), *_hidden_test_lines(code_cells)]
    exercises, last_answer = [], None  # last_answer: (grade_id, result) of the latest answer cell
    for cell, result in zip(code_cells, results):
        meta = _meta(cell)
        if meta.get("solution"):
            last_answer = (meta.get("grade_id"), result)
        if not _is_test(cell):
            continue
        passed = result.status == "ok" and result.nonce_seen
        feedback = "passed" if passed else _failure(result, cell.source, limits)
        if not passed and last_answer is not None and last_answer[1].status != "ok":
            feedback = f"your answer cell {last_answer[0]!r} failed ({_answer_problem(last_answer[1], limits)}); " \
                       + feedback
        max_points = float(meta.get("points", 0))
        exercises.append({"grade_id": meta["grade_id"], "points": max_points if passed else 0.0,
                          "max_points": max_points, "passed": passed,
                          "feedback": scrub(feedback, secrets)[:300]})
    job = {**job, "flags": sorted(set(job["flags"]) | _cell_flags(results))}
    return _report(job, exercises, [scrub(f, secrets) for f in findings], time.monotonic() - started)

