"""medseg-edu grade against hostile and broken submissions (issue 12).

One class of small submissions on a toy course is graded in ONE batch (``-j 2``, through the command
line, so the instructor's folder is on the grader's command line as it would be in real use): the
correct one gets full marks, every other one loses the points of the tests it attacks or gets a flag,
the batch finishes, the student after the attacker is unaffected, and no report contains the
grader's secret environment value, the instructor's path or hidden-test source.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from medseg_edu import grading
from medseg_edu.grading_kernel import kernel_environment
from medseg_edu.grading_scan import failure_feedback, scan_cells

SECRET = "tok-3f9a8c1d77e2b4aa"  # an instructor token in the grader's environment
HIDDEN = "HIDDEN_MARKER_8c21"    # text that appears only in the hidden tests


def _meta(grade_id, *, solution=False, grade=False, points=None):
    meta = {"grade": grade, "solution": solution, "locked": not solution, "grade_id": grade_id,
            "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def toy_week0():
    """scale(x) = 2x (2 points, compared with a tolerance) and total(xs) = integer sum (3 points)."""
    nb = new_notebook(cells=[
        new_code_cell("import numpy as np", metadata=_meta("setup")),
        new_code_cell("def scale(x):\n    ### BEGIN SOLUTION\n    return 2.0 * np.asarray(x)\n    ### END SOLUTION",
                      metadata=_meta("scale", solution=True)),
        # tolerance: 2x of these binary fractions is exact, 1e-12 only absorbs a different formula's rounding
        new_code_cell("assert np.allclose(scale([1, 2]), [2, 4], atol=1e-12)\n### BEGIN HIDDEN TESTS\n"
                      f"assert np.isclose(scale(0.25), 0.5, atol=1e-12), 'scale(0.25) is wrong'  # {HIDDEN}\n"
                      "### END HIDDEN TESTS", metadata=_meta("test_scale", grade=True, points=2)),
        new_code_cell("def total(xs):\n    ### BEGIN SOLUTION\n    return int(np.sum(xs))\n    ### END SOLUTION",
                      metadata=_meta("total", solution=True)),
        new_code_cell("assert total([1, 2]) == 3\n### BEGIN HIDDEN TESTS\n"
                      f"assert total([5, 5, 5]) == 15  # {HIDDEN}\n### END HIDDEN TESTS",
                      metadata=_meta("test_total", grade=True, points=3)),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def toy_week9():
    """Another week, for wrong-week submissions: one exercise, other grade_ids."""
    return new_notebook(cells=[
        new_code_cell("def half(x):\n    ### BEGIN SOLUTION\n    return x // 2\n    ### END SOLUTION",
                      metadata=_meta("half", solution=True)),
        new_code_cell("assert half(4) == 2", metadata=_meta("test_half", grade=True, points=1)),
    ])


def _with_answers(nb, **answers):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


GOOD_TOTAL = "def total(xs):\n    return int(sum(xs))"
WRONG_TOTAL = "def total(xs):\n    return 3"  # passes the visible test only
PROC_REWRITE = '''
import os
def _ancestors():
    pid = os.getppid()
    while pid > 1:
        yield pid
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
for pid in _ancestors():
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        args = handle.read().decode().split("\\0")
    folders = [os.readlink(f"/proc/{pid}/cwd")] + [a for a in args if a]
    for arg in folders:
        path = os.path.join(os.readlink(f"/proc/{pid}/cwd"), arg, "week0_toy.ipynb")
        if os.path.isfile(path) and "BEGIN HIDDEN TESTS" in open(path).read():
            text = open(path).read().replace("assert total([5, 5, 5]) == 15", "assert True")
            open(path, "w").write(text)
def scale(x):
    return 2.0 * np.asarray(x)
'''
ENV_DUMP = '''
import os
def scale(x):
    dump = [str(dict(os.environ))]
    pid = os.getppid()
    while pid > 1:
        for name in ("environ", "cmdline"):
            try:
                dump.append(open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace"))
            except OSError:
                pass
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    raise ValueError(" | ".join(dump).replace("\\0", " "))
'''

CASES = {  # student -> answers (None: the released student version untouched)
    "alice": {"scale": "def scale(x):\n    return np.asarray(x) * 2.0", "total": GOOD_TOTAL},
    "blank": None,
    "sigint": {"scale": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
               "total": GOOD_TOTAL},
    "kbloop": {"scale": "import time\ndef scale(x):\n    while True:\n        try:\n            time.sleep(0.05)\n"
                        "        except KeyboardInterrupt:\n            pass", "total": GOOD_TOTAL},
    "exiter": {"scale": "import os\nos._exit(0)", "total": GOOD_TOTAL},
    "hog": {"scale": "big = np.ones(2 * 10**9)\ndef scale(x):\n    return 2.0 * np.asarray(x)", "total": GOOD_TOTAL},
    "traceback": {"scale": "get_ipython().showtraceback = lambda *a, **k: None\ndef scale(x):\n    return x",
                  "total": GOOD_TOTAL},
    "customexc": {"scale": "get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)\n"
                           "def scale(x):\n    return x", "total": GOOD_TOTAL},
    "isclose": {"scale": "np.isclose = lambda *a, **k: True\nnp.allclose = lambda *a, **k: True\n"
                         "def scale(x):\n    return x", "total": GOOD_TOTAL},
    "mallory": {"scale": PROC_REWRITE, "total": WRONG_TOTAL},
    "envdump": {"scale": ENV_DUMP, "total": GOOD_TOTAL},
    "zed": {"scale": "def scale(x):\n    return 2.0 * np.asarray(x)", "total": WRONG_TOTAL},
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The whole class graded once through the command line; returns (reports by name, gradebook
    rows, every output text, course folder, the command's result)."""
    root = tmp_path_factory.mktemp("class")
    course = root / "course"
    course.mkdir()
    nbformat.write(toy_week0(), course / "week0_toy.ipynb")
    nbformat.write(toy_week9(), course / "week9_other.ipynb")
    student = grading.make_student_notebook(toy_week0())
    subs, paths = root / "submissions", []

    def put(folder, notebook, name="week0_toy.ipynb"):
        path = subs / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(notebook, str):
            path.write_text(notebook)
        else:
            nbformat.write(notebook, path)
        paths.append(path)

    for name, answers in CASES.items():
        if name == "zed":
            continue
        put(name, student if answers is None else _with_answers(student, **answers))
    put("ivan", "{not json")
    put("carl1", _with_answers(student, **CASES["alice"]), "carl.ipynb")
    put("carl2", _with_answers(student, **CASES["alice"]), "carl.ipynb")
    twice = _with_answers(student, **CASES["alice"])
    wrong = nbformat.from_dict(json.loads(json.dumps(twice.cells[1])))
    wrong.source = "def scale(x):\n    return x"
    wrong["id"] = "second-scale"
    twice.cells.insert(2, wrong)  # a second cell with grade_id "scale": the first one is graded
    put("dup", twice)
    put("week9", _with_answers(grading.make_student_notebook(toy_week9()), half="def half(x):\n    return x // 2"))
    put("stranger", new_notebook(cells=[new_code_cell("x = 1", metadata=_meta("nothing_known", solution=True))]))
    put("zed", _with_answers(student, **CASES["zed"]))
    out = root / "grades"
    env = {**os.environ, "MEDSEG_TEST_SECRET": SECRET, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "medseg_edu.cli", "grade", *map(str, paths), "--source",
                             str(course), "--out", str(out), "-j", "2", "--timeout", "4", "--memory-mb", "1500"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=600)
    reports = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    with open(out / "gradebook.csv") as handle:
        rows = list(csv.DictReader(handle))
    texts = [p.read_text() for p in out.iterdir()] + [result.stdout]
    return reports, rows, texts, course, result


def _points(report):
    return {e["grade_id"]: e["points"] for e in report["exercises"]}


@pytest.mark.slow
def test_batch_finishes_and_names_reports_by_student(graded):
    reports, rows, _, _, result = graded
    assert result.returncode == 0, result.stderr[-2000:]
    expected = {f"{name}_week0_toy" for name in CASES} | {"ivan_week0_toy", "carl_week0_toy-1", "carl_week0_toy-2",
                                                          "dup_week0_toy", "week9_week9_other", "stranger_week0_toy"}
    assert set(reports) == expected
    assert len(rows) == len(expected)


@pytest.mark.slow
def test_correct_work_gets_full_marks_and_blank_work_nothing(graded):
    reports = graded[0]
    assert (reports["alice_week0_toy"]["score"], reports["alice_week0_toy"]["flags"]) == (5, [])
    blank = reports["blank_week0_toy"]
    assert blank["score"] == 0 and all("NotImplementedError" in e["feedback"] for e in blank["exercises"])


@pytest.mark.slow
def test_loops_crashes_and_memory_hogs_lose_only_their_exercise(graded):
    reports = graded[0]
    for name, flag in (("kbloop", "timeout"), ("exiter", "crash"), ("hog", "memory")):
        report = reports[f"{name}_week0_toy"]
        assert _points(report) == {"test_scale": 0, "test_total": 3}, name  # kernel restarted, total replayed
        assert flag in report["flags"], name
    sigint = reports["sigint_week0_toy"]  # ignores SIGINT: killed; "import signal" is also flagged
    assert {"timeout", "tampering"} <= set(sigint["flags"]) and sigint["score"] == 0
    assert sigint["points_if_cleared"] == 3


@pytest.mark.slow
def test_tampering_fails_the_tests_or_is_flagged(graded):
    reports = graded[0]
    for name in ("traceback", "customexc"):  # the nonce never came back: the broken test fails
        report = reports[f"{name}_week0_toy"]
        assert report["score"] == 0 and "tampering" in report["flags"]
        assert report["points_if_cleared"] == 3  # only the honest exercise would count
    isclose = reports["isclose_week0_toy"]  # fools the test at run time, caught by the scan
    assert isclose["score"] == 0 and isclose["points_if_cleared"] == 5 and "tampering" in isclose["flags"]
    assert any("np" in finding for finding in isclose["tampering_findings"])


@pytest.mark.slow
def test_rewriting_the_instructor_files_changes_nothing_but_is_flagged(graded):
    reports, _, _, course, _ = graded
    assert "assert True" in (course / "week0_toy.ipynb").read_text()  # the attack did rewrite the file
    assert "instructor_files_modified" in reports["mallory_week0_toy"]["flags"]
    assert _points(reports["mallory_week0_toy"])["test_total"] == 0
    zed = reports["zed_week0_toy"]  # graded after the rewrite, still by the original hidden tests
    assert _points(zed) == {"test_scale": 2, "test_total": 0}
    assert "a hidden test failed" in zed["exercises"][1]["feedback"]


@pytest.mark.slow
def test_nothing_of_the_instructor_is_in_any_report(graded):
    _, _, texts, course, _ = graded
    for text in texts:
        for secret in (SECRET, str(course), str(course.resolve()), HIDDEN, "total([5, 5, 5])"):
            assert secret not in text
    assert "ValueError" in json.dumps(graded[0]["envdump_week0_toy"])


@pytest.mark.slow
def test_broken_duplicate_and_wrong_week_submissions_say_why(graded):
    reports = graded[0]
    ivan = reports["ivan_week0_toy"]
    assert (ivan["flags"], ivan["score"], ivan["max_score"]) == (["unreadable"], 0, 5)
    for name in ("carl_week0_toy-1", "carl_week0_toy-2"):
        assert reports[name]["flags"] == ["duplicate_submission"]
        assert (reports[name]["score"], reports[name]["max_score"]) == (0, 5)
        assert "2 submissions map to student 'carl'" in reports[name]["messages"][0]
    dup = reports["dup_week0_toy"]
    assert dup["score"] == 5 and dup["flags"] == ["duplicate_grade_id"] and "'scale'" in dup["messages"][0]
    week9 = reports["week9_week9_other"]
    assert (week9["score"], week9["max_score"], week9["flags"]) == (1, 1, ["wrong_week"])
    assert "graded as week9_other" in week9["messages"][0]
    stranger = reports["stranger_week0_toy"]
    assert stranger["score"] == 0 and stranger["flags"] == ["wrong_week"]
    assert stranger["messages"] == ["not a notebook of this course (no exercise ids match)"]


@pytest.mark.slow
def test_gradebook_has_points_total_and_flags(graded):
    rows = {(r["student"], r["week"]): r for r in graded[1]}
    assert rows[("alice", "week0_toy")] == {"student": "alice", "week": "week0_toy", "test_scale": "2",
                                            "test_total": "3", "test_half": "", "total": "5", "max": "5",
                                            "flags": ""}
    assert "tampering" in rows[("isclose", "week0_toy")]["flags"].split(";")
    assert rows[("kbloop", "week0_toy")]["total"] == "3"


@pytest.mark.slow
def test_cleared_flag_grades_without_penalty_and_twice_gives_the_same_gradebook(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    nbformat.write(toy_week0(), course / "week0_toy.ipynb")
    student = grading.make_student_notebook(toy_week0())
    path = tmp_path / "isclose.ipynb"
    nbformat.write(_with_answers(student, **CASES["isclose"]), path)
    books = []
    for run in range(2):
        report = grading.grade_submissions([path], source=course, out_dir=tmp_path / f"out{run}",
                                           clear_flags=["isclose"], timeout_s=10)[0]
        assert report["score"] == 5 and "tampering" not in report["flags"]
        assert "cleared by the instructor" in report["messages"][0]
        books.append((tmp_path / f"out{run}" / "gradebook.csv").read_bytes())
    assert books[0] == books[1]


ORDINARY = """
import matplotlib.pyplot as plt
import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = 1
        setattr(self, "y", 2)
model = Net()
model.weight = torch.zeros(1)
cfg = type("Cfg", (), {})()
cfg.lr = 0.1
plt.rcParams["figure.dpi"] = 80
results = {}
results["dice"] = 0.5
setattr(model.layer if hasattr(model, "layer") else model, "z", 3)
"""


def test_scan_leaves_ordinary_code_alone():
    assert scan_cells({"ex1": ORDINARY}, ["import numpy as np\nimport torch"]) == []
    # re-importing what the instructor imported, and local names that shadow it, are fine
    same = "import numpy as np\nfrom torch import nn\ndef f(np=1):\n    np = 2\n    return np"
    assert scan_cells({"ex1": same}, ["import numpy as np\nfrom torch import nn"]) == []
    # plain variables of instructor cells may be set again by an exercise
    assert scan_cells({"ex1": "threshold = 0.3\nimage = image * 2"}, ["threshold = 0.5\nimage = 1"]) == []


@pytest.mark.parametrize("code, what", [
    ("np.isclose = lambda *a, **k: True", "module 'np'"),
    ("import numpy\nnumpy.allclose = print", "module 'numpy'"),
    ("np.testing.assert_allclose = print", "module 'np'"),
    ("torch.allclose = print", "module 'torch'"),
    ("math.pi += 1", "module 'math'"),
    ("del math.pi", "module 'math'"),
    ("setattr(np, 'isclose', print)", "setattr on np"),
    ("setattr(__import__('numpy'), 'isclose', print)", "__import__"),
    ("import sys\nsys.modules['numpy'] = None", "sys.modules"),
    ("import builtins\nbuiltins.print = None", "builtins"),
    ("get_ipython().showtraceback = print", "get_ipython"),
    ("ip = get_ipython()\nip.set_custom_exc((Exception,), print)", "set_custom_exc"),
    ("globals()['np'] = None", "globals"),
    ("np = None", "rebinds 'np'"),
    ("if True:\n    for np in [None]:\n        pass", "rebinds 'np'"),
    ("import math as np", "rebinds 'np'"),
    ("def reference(x):\n    return x", "redefines 'reference'"),
    ("with open('f') as np:\n    pass", "rebinds 'np'"),
    ("class A:\n    def __eq__(self, other):\n        return True", "__eq__"),
])
def test_scan_flags_tampering(code, what):
    findings = scan_cells({"ex1": code}, ["import numpy as np\nimport torch\nimport math",
                                          "def reference(x):\n    return 2 * x"])
    assert findings and all(f.startswith("ex1 line") for f in findings)
    assert any(what in f for f in findings), findings


def test_every_course_solution_scans_clean():
    """No false positives: the reference solutions of every week are not flagged."""
    for path in sorted((Path(__file__).resolve().parents[1] / "course").glob("week*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in code
                   if c.metadata.get("nbgrader", {}).get("solution")}
        assert answers, path.name
        context = [c.source for c in code if not c.metadata.get("nbgrader", {}).get("solution")]
        assert scan_cells(answers, context) == [], path.name


def test_kernel_environment_is_an_allow_list(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_TEST_SECRET", SECRET)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("MEDSEG_DATA", "/instructor/cache")
    env = kernel_environment(tmp_path)
    assert SECRET not in env.values() and "MEDSEG_TEST_SECRET" not in env
    assert env["LC_ALL"] == "C.UTF-8" and env["MEDSEG_FAST"] == "1" and env["PYTHONHASHSEED"] == "0"
    assert env["HOME"] == str(tmp_path / "home") and env["MEDSEG_DATA"] == str(tmp_path / "data")
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH", "HOME",
                        "MEDSEG_DATA", "MEDSEG_FAST", "MEDSEG_QUIET", "MPLBACKEND", "OMP_WAIT_POLICY",
                        "PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES"} | {k for k in env if k.startswith("LC_")}


def test_feedback_hides_hidden_lines_and_quotes_visible_ones():
    source = "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(5) == 10, 'f(5) is wrong'\n### END HIDDEN TESTS"
    hidden = failure_feedback(source, "AssertionError", "f(5) is wrong", ["Cell In[7], line 3\n----> 3 assert"])
    assert hidden == "a hidden test failed: AssertionError: f(5) is wrong"
    visible = failure_feedback(source, "AssertionError", "", ["\x1b[0;31mCell In[7], line 1\x1b[0m"])
    assert visible == "AssertionError: failed at: assert f(1) == 2"
    other = failure_feedback(source, "NameError", "name 'f' is not defined", ["Cell In[2], line 1"])
    assert other == "NameError: name 'f' is not defined (at: assert f(1) == 2)"
