"""The course notebooks: nbgrader format, house rules, and current student versions."""
import re
from pathlib import Path

import nbformat
import pytest

from medseg_edu import grading

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "course").glob("week*.ipynb"))
WEEKS = [f"week{n}" for n in range(1, 10)]


def _read(path):
    return nbformat.read(path, as_version=4)


def test_all_six_weeks_are_there():
    assert [p.name.split("_")[0] for p in SOURCES] == WEEKS


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_nbgrader_metadata_is_valid_with_3_to_5_graded_exercises(path):
    nb = _read(path)
    assert grading.validate_nbgrader_metadata(nb) == []
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert 3 <= len(graded) <= 5, f"{len(graded)} graded cells"
    assert len(solutions) >= len(graded) - 1


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_house_rules(path):
    nb = _read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None, f"cell {index} has stored outputs"
        magics = set(re.findall(r"^\s*%+(\w+)", cell.source, re.MULTILINE))
        assert magics <= {"pip", "matplotlib"}, f"cell {index} uses magics {magics}"
        assert not re.search(r"^\s*!", cell.source, re.MULTILINE), f"cell {index} runs a shell command"
        assert ".cuda()" not in cell.source, f"cell {index} hard-codes .cuda()"
    text = "\n".join(c.source for c in nb.cells)
    # run_mode() gives "fast" under MEDSEG_FAST=1 (and reads MEDSEG_MODE); course_seed() reads MEDSEG_SEED
    assert "run_mode()" in text, "the notebook must pick its sizes with run_mode() (MEDSEG_FAST, MEDSEG_MODE)"
    assert "course_seed()" in text, "the notebook must take its seed from course_seed() (MEDSEG_SEED)"
    assert re.search(r"what to read next", text, re.IGNORECASE)


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_every_figure_is_followed_by_an_assert(path):
    nb = _read(path)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    for index, source in enumerate(code):
        if re.search(r"plt\.(subplots|figure)\(|\bshow_\w+\(|plot_history\(|compare_predictions\(", source):
            following = "\n".join(code[index:index + 2])
            assert "assert" in following, f"figure in code cell {index} has no assert after it:\n{source[:300]}"


def test_student_versions_are_current(tmp_path):
    fresh = grading.release_course(ROOT / "course", out_dir=tmp_path)
    committed = ROOT / "course" / "student"
    for path in fresh:
        target = committed / path.name
        assert target.exists(), f"{target} missing: run `medseg-edu release course`"
        assert target.read_bytes() == path.read_bytes(), f"{target} is stale: run `medseg-edu release course`"
    assert sorted(p.name for p in committed.glob("*.ipynb")) == sorted(p.name for p in fresh)


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_student_versions_hold_no_solution_and_no_hidden_test(path):
    """No marker, and no line of a solution or hidden test as code (a hint comment may quote one)."""
    source = _read(path)
    student = _read(ROOT / "course" / "student" / path.name)
    student_text = (ROOT / "course" / "student" / path.name).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in student_text
    student_cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in student.cells}
    for cell in source.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        pattern = r"### BEGIN (SOLUTION|HIDDEN TESTS)\n.*?### END \1"
        given = {line.strip() for line in re.sub(pattern, "", cell.source, flags=re.DOTALL).splitlines()}
        student_code = {line.strip() for line in student_cells.get(grade_id, "").splitlines()
                        if not line.strip().startswith("#")}
        for region in re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", cell.source, re.DOTALL):
            for line in region.splitlines():
                line = line.strip()
                if len(line) > 25 and not line.startswith("#") and line not in given:
                    assert line not in student_code, f"{grade_id}: leaked line {line!r}"
