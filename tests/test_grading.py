"""medseg_edu.grading: student versions and grading, on a small nbgrader-format notebook."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from medseg_edu import grading


def _meta(grade_id, *, solution=False, grade=False, locked=False, points=None):
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def toy_notebook():
    """Two exercises: double(x) worth 2 points, mean_of(xs) worth 3 points."""
    nb = new_notebook(cells=[
        new_markdown_cell("# Week 0\n[Open in Colab](https://colab.example/github/o/r/blob/main/course/week0_toy.ipynb)",
                          metadata=_meta("intro", locked=True)),
        new_code_cell("import math", metadata=_meta("imports", locked=True)),
        new_code_cell("def double(x):\n    # Hint: multiply.\n    ### BEGIN SOLUTION\n    return 2 * x\n"
                      "    ### END SOLUTION", metadata=_meta("double", solution=True)),
        new_code_cell("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n"
                      "### END HIDDEN TESTS", metadata=_meta("test_double", grade=True, locked=True, points=2)),
        new_code_cell("def mean_of(xs):\n    ### BEGIN SOLUTION\n    return math.fsum(xs) / len(xs)\n"
                      "    ### END SOLUTION", metadata=_meta("mean_of", solution=True)),
        new_code_cell("assert mean_of([1, 2, 3]) == 2\n### BEGIN HIDDEN TESTS\nassert mean_of([0.5]) == 0.5\n"
                      "### END HIDDEN TESTS", metadata=_meta("test_mean_of", grade=True, locked=True, points=3)),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def course(tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    nbformat.write(toy_notebook(), folder / "week0_toy.ipynb")
    return folder


def _answer(nb, grade_id, source):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
            return nb
    raise KeyError(grade_id)


def test_valid_metadata_has_no_problems():
    assert grading.validate_nbgrader_metadata(toy_notebook()) == []


def test_metadata_problems_are_named():
    nb = toy_notebook()
    nb.cells[5].metadata["nbgrader"]["grade_id"] = "test_double"
    nb.cells[3].metadata["nbgrader"]["points"] = 0
    nb.cells[4].metadata["nbgrader"]["schema_version"] = 2
    problems = "\n".join(grading.validate_nbgrader_metadata(nb))
    assert "grade_id 'test_double' already used" in problems
    assert "points > 0" in problems
    assert "schema_version must be 3" in problems
    with pytest.raises(ValueError, match="invalid nbgrader metadata"):
        grading.make_student_notebook(nb)


def test_student_version_has_no_solution_and_no_hidden_tests(course):
    written = grading.release_course(course)
    assert written == [course / "student" / "week0_toy.ipynb"]
    text = written[0].read_text()
    for secret in ("return 2 * x", "math.fsum", "BEGIN SOLUTION", "HIDDEN TESTS", "double(-3)", "[0.5]"):
        assert secret not in text
    assert "raise NotImplementedError()" in text and "# Hint: multiply." in text
    assert "course/student/week0_toy.ipynb" in text
    # deterministic: releasing again gives the same bytes
    before = written[0].read_bytes()
    grading.release_course(course)
    assert written[0].read_bytes() == before


@pytest.mark.slow
def test_solution_scores_full_marks_and_blank_scores_zero(course, tmp_path):
    solution = grading.grade_notebook(course / "week0_toy.ipynb", source=course, out_dir=tmp_path / "grades",
                                      student="teacher")
    assert (solution["score"], solution["max_score"]) == (5, 5)
    grading.release_course(course)
    blank = grading.grade_notebook(course / "student" / "week0_toy.ipynb", source=course, student="blank")
    assert blank["score"] == 0 and all("NotImplementedError" in e["feedback"] for e in blank["exercises"])
    report = json.loads((tmp_path / "grades" / "teacher_week0_toy.json").read_text())
    assert report["score"] == 5 and report["flags"] == []
    assert (tmp_path / "grades" / "gradebook.csv").read_text().splitlines() == [
        "student,week,test_double,test_mean_of,total,max,flags", "teacher,week0_toy,2,3,5,5,"]


@pytest.mark.slow
def test_partial_crash_loop_and_deleted_tests(course, tmp_path):
    grading.release_course(course)
    nb = nbformat.read(course / "student" / "week0_toy.ipynb", as_version=4)
    # correct first exercise, but the visible test cell is deleted by the student: it is restored
    _answer(nb, "double", "def double(x):\n    return x + x")
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_double"]
    # second exercise loops forever: only its own points are lost
    _answer(nb, "mean_of", "def mean_of(xs):\n    while True:\n        pass")
    path = tmp_path / "alice.ipynb"
    nbformat.write(nb, path)
    report = grading.grade_notebook(path, source=course / "week0_toy.ipynb", timeout_s=3)
    by_id = {e["grade_id"]: e for e in report["exercises"]}
    assert by_id["test_double"]["points"] == 2
    assert by_id["test_mean_of"]["points"] == 0
    assert report["score"] == 2


@pytest.mark.slow
def test_cell_that_hangs_is_interrupted(course, tmp_path):
    nb = toy_notebook()
    _answer(nb, "double", "import time\ntime.sleep(600)\ndef double(x):\n    return 2 * x")
    path = tmp_path / "bob.ipynb"
    nbformat.write(nb, path)
    report = grading.grade_notebook(path, source=course, timeout_s=2)
    by_id = {e["grade_id"]: e for e in report["exercises"]}
    assert by_id["test_double"]["points"] == 0 and by_id["test_mean_of"]["points"] == 3


def test_unreadable_submissions_get_a_flagged_report(course, tmp_path):
    missing = grading.grade_notebook(tmp_path / "missing.ipynb", source=course)
    assert missing["flags"] == ["unreadable"] and "not a readable notebook" in missing["messages"][0]
    broken = tmp_path / "alice" / "week0_toy.ipynb"
    broken.parent.mkdir()
    broken.write_text("{not json")
    report = grading.grade_notebook(broken, source=course)
    assert (report["student"], report["week"], report["score"]) == ("alice", "week0_toy", 0)
    assert report["flags"] == ["unreadable"]
    odd = tmp_path / "bob.ipynb"  # valid JSON, but its cells are not cells
    odd.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [1, "x"]}))
    report = grading.grade_notebook(odd, source=course)
    assert report["flags"] == ["unreadable"] and report["student"] == "bob"


def test_grader_errors_are_clear(course, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grading.grade_submissions([tmp_path / "a.ipynb"], source=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="student names one submission; got 2"):
        grading.grade_submissions([tmp_path / "a.ipynb", tmp_path / "b.ipynb"], source=course, student="x")


def _nbgrader_round_trip(tmp_path, notebook):
    """nbgrader generate_assignment + autograde of one notebook; returns (released path, passed test cells
    per student, number of graded test cells). Students: "solution" (the instructor notebook) and
    "blank" (the released version, untouched)."""
    nbgrader = shutil.which("nbgrader") or str(Path(sys.executable).parent / "nbgrader")
    root = tmp_path / "nbgrader_course"
    (root / "source" / "assignment").mkdir(parents=True)
    shutil.copy(notebook, root / "source" / "assignment" / notebook.name)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = %r\nc.CourseDirectory.db_assignments = [{'name': 'assignment'}]\n"
        "c.CourseDirectory.db_students = [{'id': 'solution'}, {'id': 'blank'}]\n"
        "c.ExecutePreprocessor.timeout = 300\n" % str(root))

    def run(*args):
        result = subprocess.run([nbgrader, *args], cwd=root, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr

    run("generate_assignment", "assignment", "--force")
    released = root / "release" / "assignment" / notebook.name
    assert "BEGIN HIDDEN TESTS" not in released.read_text()
    for student, submitted in (("solution", notebook), ("blank", released)):
        target = root / "submitted" / student / "assignment"
        target.mkdir(parents=True)
        shutil.copy(submitted, target / notebook.name)
        (target / "timestamp.txt").write_text("2026-11-25 12:00:00.000000 UTC")
    run("autograde", "assignment", "--force")
    passed = {}
    for student in ("solution", "blank"):
        graded = nbformat.read(root / "autograded" / student / "assignment" / notebook.name, as_version=4)
        tests = [c for c in graded.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
        passed[student] = sum(1 for c in tests if not any(o.get("output_type") == "error" for o in c.outputs))
    return released, passed, len(tests)


@pytest.mark.slow
def test_real_nbgrader_round_trip(course, tmp_path):
    """On the toy notebook: nbgrader gives the solution full marks and the blank version zero; so do we."""
    released, passed, n_tests = _nbgrader_round_trip(tmp_path, course / "week0_toy.ipynb")
    assert passed == {"solution": n_tests, "blank": 0} and n_tests == 2
    assert grading.grade_notebook(released, source=course)["score"] == 0


@pytest.mark.slow
def test_nbgrader_round_trip_on_a_course_week(tmp_path, monkeypatch):
    """The same round trip on week 1 of the course, in fast mode, and our grader agrees."""
    monkeypatch.setenv("MEDSEG_FAST", "1")
    week = Path(__file__).resolve().parents[1] / "course" / "week1_registration.ipynb"
    released, passed, n_tests = _nbgrader_round_trip(tmp_path, week)
    assert n_tests >= 3 and passed == {"solution": n_tests, "blank": 0}
    ours = grading.grade_notebook(week, source=week, student="solution")
    assert ours["score"] == ours["max_score"] > 0
    blank = grading.grade_notebook(released, source=week, student="blank")
    assert blank["score"] == 0 and len(blank["exercises"]) == n_tests


@pytest.mark.slow
def test_feedback_quotes_a_bare_failing_assert(course, tmp_path):
    nb = toy_notebook()
    _answer(nb, "double", "def double(x):\n    return x + 1")
    path = tmp_path / "carol.ipynb"
    nbformat.write(nb, path)
    report = grading.grade_notebook(path, source=course)
    feedback = {e["grade_id"]: e["feedback"] for e in report["exercises"]}
    assert feedback["test_double"] == "AssertionError: failed at: assert double(2) == 4"
    assert feedback["test_mean_of"] == "passed" and report["score"] == 3
