"""Benchmark: grading a class of N submissions of one week, ``medseg-edu grade`` vs nbgrader autograde.

The class is made from the week's own notebooks, in turn: the reference solution, the blank student
version, and a partly solved one (the first exercise answered). It is graded three ways, each on the
same files: ``grade_submissions(..., jobs=1)``, ``jobs=2``, and ``nbgrader autograde`` (which runs
one submission after another). Every kernel runs in fast mode (``MEDSEG_FAST=1``). Printed side by
side: seconds, seconds per submission, and the ratio to nbgrader; plus the class total of each of
our runs (the two must agree).

Usage: ``python benchmarks/grading.py [--week week1_registration] [--n 30] [--skip-nbgrader]``.
nbgrader is a test-only dependency (``pip install -e ".[dev]"``).
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from medseg_edu import grading

ROOT = Path(__file__).resolve().parents[1]


def make_class(week: Path, n: int, folder: Path) -> list:
    """N submissions ``folder/studentNN/<week>.ipynb``: solution, blank, partly solved, in turn."""
    source = nbformat.read(week, as_version=4)
    blank = grading.make_student_notebook(source)
    partly = copy.deepcopy(blank)
    first = next(i for i, c in enumerate(source.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    partly.cells[first].source = source.cells[first].source
    paths = []
    for i in range(n):
        path = folder / f"student{i:02d}" / week.name
        path.parent.mkdir(parents=True)
        nbformat.write((source, blank, partly)[i % 3], path)
        paths.append(path)
    return paths


def time_ours(paths: list, week: Path, jobs: int, out: Path) -> tuple:
    start = time.perf_counter()
    reports = grading.grade_submissions(paths, source=week.parent, out_dir=out, jobs=jobs)
    return time.perf_counter() - start, sum(r["score"] for r in reports)


def time_nbgrader(paths: list, week: Path, root: Path) -> float:
    """Seconds for ``nbgrader autograde`` of the same submissions (generate_assignment not timed)."""
    nbgrader = shutil.which("nbgrader") or str(Path(sys.executable).parent / "nbgrader")
    (root / "source" / "assignment").mkdir(parents=True)
    shutil.copy(week, root / "source" / "assignment" / week.name)
    students = [p.parent.name for p in paths]
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = %r\nc.CourseDirectory.db_assignments = [{'name': 'assignment'}]\n"
        "c.CourseDirectory.db_students = %r\nc.ExecutePreprocessor.timeout = 300\n"
        % (str(root), [{"id": s} for s in students]))
    env = {**os.environ, "MEDSEG_FAST": "1", "MEDSEG_QUIET": "1"}

    def run(*args):
        result = subprocess.run([nbgrader, *args], cwd=root, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader {args[0]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    run("generate_assignment", "assignment", "--force")
    for student, path in zip(students, paths):
        target = root / "submitted" / student / "assignment"
        target.mkdir(parents=True)
        shutil.copy(path, target / week.name)
        (target / "timestamp.txt").write_text("2026-11-25 12:00:00.000000 UTC")
    start = time.perf_counter()
    run("autograde", "assignment", "--force")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", default="week1_registration", help="course notebook stem")
    parser.add_argument("--n", type=int, default=30, help="submissions (default: 30)")
    parser.add_argument("--skip-nbgrader", action="store_true")
    args = parser.parse_args()
    week = ROOT / "course" / f"{args.week}.ipynb"
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="medseg-bench-") as tmp:
        tmp = Path(tmp)
        paths = make_class(week, args.n, tmp / "submissions")
        rows = []
        for jobs in (1, 2):
            seconds, total = time_ours(paths, week, jobs, tmp / f"grades-j{jobs}")
            rows.append((f"medseg-edu grade -j {jobs}", seconds, f"class total {total:g}"))
        if not args.skip_nbgrader:
            rows.append(("nbgrader autograde", time_nbgrader(paths, week, tmp / "nbgrader"), ""))
    reference = rows[-1][1]
    print(f"{args.n} submissions of {args.week} on {os.cpu_count()} CPUs "
          f"(1-minute load average before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f})")
    print(f"{'grader':<24}{'seconds':>9}{'s/submission':>14}{'ratio':>8}")
    for name, seconds, note in rows:
        print(f"{name:<24}{seconds:>9.1f}{seconds / args.n:>14.2f}{seconds / reference:>8.2f}  {note}")


if __name__ == "__main__":
    main()
