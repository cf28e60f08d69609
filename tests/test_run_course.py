"""scripts/run_course.py: runs notebooks in a chosen mode and seed, merges a Markdown table, --check.

The planted notebooks are tiny (they only read the environment), so these tests take seconds; the
week-1 run in fast mode is marked slow. ``test_course_default`` is the measured run the course
promises (every notebook, default mode, seeds 0-2) and only runs with ``pytest -m course_default``.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_course.py"


def load_script():
    spec = importlib.util.spec_from_file_location("run_course", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def planted_notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(part) for part in source]
    nbformat.write(nb, path)
    return path


def run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSEG_SEED")}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_environment_reaches_the_kernel_and_check_fails_on_an_error(tmp_path):
    notebook = planted_notebook(tmp_path / "planted.ipynb", [
        "import os\nfrom medseg_edu.utils import course_seed, run_mode",
        "assert (course_seed(), run_mode(), os.environ['OMP_NUM_THREADS']) == (0, 'fast', '1')",
    ])
    out = tmp_path / "RUNTIMES.md"
    done = run(notebook, "--mode", "fast", "--seeds", "0", "1", "--threads", "1", "--jobs", "2",
               "--out", out, "--check", "--keep", tmp_path / "runs")
    assert done.returncode == 1, done.stdout + done.stderr          # seed 1 fails the planted assert
    rows = load_script().read_table(out)
    assert sorted((r["seed"], r["result"]) for r in rows.values()) == [("0", "pass"), ("1", "FAIL")]
    failed = next(r for r in rows.values() if r["seed"] == "1")
    assert failed["first error"].startswith("cell 1: AssertionError")
    assert failed["mode"] == "fast" and failed["threads"] == "1" and failed["machine"]
    # both executed notebooks are kept, the failed one with its error output
    kept = nbformat.read(tmp_path / "runs" / "planted_fast_seed1_threads1.ipynb", as_version=4)
    assert kept.cells[1].outputs[0]["ename"] == "AssertionError"
    assert (tmp_path / "runs" / "planted_fast_seed0_threads1.ipynb").exists()
    # without --check the same failure is recorded but the exit status is 0
    assert run(notebook, "--mode", "fast", "--seeds", "1", "--threads", "1", "--out", out,
               "--keep", tmp_path / "runs").returncode == 0


def test_rows_merge_by_key(tmp_path):
    script = load_script()
    out = tmp_path / "RUNTIMES.md"
    base = {"notebook": "week4_losses_metrics", "mode": "default", "seed": "0", "threads": "2", "wall s": "150",
            "CPU s": "160", "result": "pass", "first error": "", "measured (UTC)": "2026-01-01 00:00",
            "machine": "laptop (2 cores)", "load at start": "0.10"}
    week1 = dict(base, notebook="week1_registration", **{"wall s": "84"})
    script.write_table(out, {script.key(base): base, script.key(week1): week1})
    rows = script.read_table(out)
    again = dict(base, **{"wall s": "170", "result": "FAIL", "first error": "cell 3: a | b"})
    rows[script.key(again)] = again                                  # same key: replaces the row
    script.write_table(out, rows)
    final = script.read_table(out)
    assert [r["notebook"] for r in final.values()] == ["week1_registration", "week4_losses_metrics"]
    assert final[script.key(base)]["wall s"] == "170"
    assert final[script.key(base)]["first error"] == "cell 3: a / b"  # a '|' would break the table
    # under the table: 84 s + 170 s = 4.2 min for the course, week 4 the slowest at 170 s = 2.8 min
    assert ("the slowest run of each of 2 notebooks adds up to 4.2 min for the course; the slowest notebook is "
            "week4_losses_metrics at 2.8 min") in out.read_text()


def test_bad_arguments_are_refused(tmp_path):
    done = run("week1", "--jobs", "0", "--out", tmp_path / "x.md")
    assert done.returncode == 2 and "--jobs and --threads must be >= 1" in done.stderr
    done = run("week99", "--out", tmp_path / "x.md")
    assert done.returncode != 0 and "notebook 'week99'" in done.stderr


@pytest.mark.slow
def test_week1_passes_in_fast_mode(tmp_path):
    out = tmp_path / "RUNTIMES.md"
    done = run("week1", "--mode", "fast", "--seeds", "1", "--threads", "1", "--out", out, "--check",
               "--keep", tmp_path / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = load_script().read_table(out).values()
    assert (row["notebook"], row["mode"], row["seed"], row["result"]) == ("week1_registration", "fast", "1", "pass")


@pytest.mark.course_default
def test_course_default(request):
    """Every notebook in default mode for seeds 0-2 on 2 threads; merges course/RUNTIMES.md."""
    # pyproject's addopts deselect this test, but any -m on the command line (e.g. -m "not slow") replaces
    # that expression: run only when the marker is asked for by name
    if "course_default" not in request.config.option.markexpr.replace("not course_default", ""):
        pytest.skip("an hour or more of default-mode runs: select it with pytest -m course_default")
    jobs = max(1, (os.cpu_count() or 2) // 2)
    done = subprocess.run([sys.executable, str(SCRIPT), "--mode", "default", "--seeds", "0", "1", "2",
                           "--threads", "2", "--jobs", str(jobs), "--check"], timeout=6 * 3600)
    assert done.returncode == 0, "a notebook failed in default mode: see course/RUNTIMES.md"


def test_runtime_paragraph_states_the_measured_range():
    script = load_script()
    row = {"notebook": "week4_losses_metrics", "mode": "default", "seed": "0", "threads": "2", "wall s": "150",
           "CPU s": "160", "result": "pass", "first error": "", "measured (UTC)": "2026-01-01 00:00",
           "machine": "laptop (2 cores)", "load at start": "0.10"}
    rows = [row, dict(row, seed="1", threads="1", **{"wall s": "402"}),
            dict(row, seed="2", **{"wall s": "200", "result": "FAIL"}),
            dict(row, mode="fast", **{"wall s": "31"})]
    text = script.runtime_paragraph({script.key(r): r for r in rows}, "week4_losses_metrics")
    lines = text.splitlines()
    assert lines[2].startswith("- fast mode") and lines[2].endswith(
        ", on laptop (2 cores): 2 CPU threads 31 s (seed 0); 1 of 1 runs passed.")
    assert lines[3].endswith(", on laptop (2 cores): 2 CPU threads 2.5 min to 3.3 min (seeds 0 and 2), "
                             "1 CPU thread 6.7 min (seed 1); 2 of 3 runs passed.")
    assert lines[4].startswith("- GPU mode") and "not measured yet" in lines[4]
    assert "not measured yet" in script.runtime_paragraph({}, "week4_losses_metrics").splitlines()[3]


def test_every_notebook_header_states_the_committed_runtimes():
    """The cell tagged run-time is what `run_course.py --headers` writes from course/RUNTIMES.md."""
    script = load_script()
    rows, estimates = script.read_table(script.DEFAULT_OUT), script.markdown_rows(script.GPU_ESTIMATE)
    stale = []
    for path in script.find_notebooks([]):
        nb = nbformat.read(path, as_version=4)
        cells = [i for i, c in enumerate(nb.cells) if "run-time" in c.metadata.get("tags", [])]
        assert len(cells) == 1 and cells[0] <= 4, f"{path.name}: one run-time cell near the top, got {cells}"
        if nb.cells[cells[0]].source != script.runtime_paragraph(rows, path.stem, estimates):
            stale.append(path.name)
    assert not stale, f"run `python scripts/run_course.py --headers` after a measurement: {stale}"
