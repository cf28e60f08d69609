"""scripts/estimate_gpu.py: runs a notebook in gpu mode on the CPU, counts its arithmetic, writes the estimate."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "estimate_gpu.py"


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def planted(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_counts_the_arithmetic_of_a_planted_notebook_and_records_failures(tmp_path):
    good = planted(tmp_path / "good.ipynb",
                   "import os, torch\nfrom medseg_edu.utils import run_mode\n"
                   "assert run_mode() == 'gpu' and os.environ['CUDA_VISIBLE_DEVICES'] == ''",
                   # a (4 x 5) @ (5 x 6) product: 4 * 6 outputs of 5 multiply-adds = 240 FLOPs, hand-counted
                   "z = torch.ones(4, 5) @ torch.ones(5, 6)")
    bad = planted(tmp_path / "bad.ipynb", "import torch", "assert torch.ones(2).sum() > 5, 'planted'")
    out = tmp_path / "GPU.md"
    done = subprocess.run([sys.executable, str(SCRIPT), good, bad, "--seeds", "3", "--threads", "1",
                           "--jobs", "2", "--out", out], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["notebook"]: r for r in load("run_course").markdown_rows(out)}
    assert rows["good"]["result"] == "pass" and rows["good"]["seed"] == "3"
    assert float(rows["good"]["TFLOP"]) * 1e12 == pytest.approx(240, rel=1e-6)
    assert int(rows["good"]["tensor ops"]) >= 3                  # two ones() and the product
    assert float(rows["good"]["T4 estimate min"]) >= 0
    assert rows["bad"]["result"] == "FAIL" and "planted" in rows["bad"]["first error"]
    assert rows["bad"]["T4 estimate min"] == ""                 # no estimate from a run that stopped


def test_estimate_formula_by_hand():
    script = load("estimate_gpu")
    # 60 s on the host, 2.025 TFLOP at 8.1 TFLOP/s x 25 % = 1 s, 1,000,000 operations x 20 us = 20 s: 81 s
    assert script.t4_minutes(2.025e12, 1_000_000, 60.0) == pytest.approx(81 / 60)


def test_header_line_gives_the_estimate_until_a_gpu_row_is_measured():
    rc = load("run_course")
    estimate = {"notebook": "week3_unet", "seed": "0", "threads": "2", "result": "pass", "first error": "",
                "TFLOP": "35.2", "tensor ops": "900000", "CPU wall s": "1200", "host s": "80",
                "T4 estimate min": "2.1", "measured (UTC)": "2026-01-01 00:00", "machine": "vm (2 cores)"}
    line = rc.runtime_paragraph({}, "week3_unet", [estimate]).splitlines()[-1]
    assert line.startswith("- GPU mode") and "estimated 2.1 min on a T4-class GPU" in line
    assert "35.2 TFLOP" in line and "held in 1 of 1 such run (seed 0)" in line
    measured = {"notebook": "week3_unet", "mode": "gpu", "seed": "0", "threads": "2", "wall s": "75",
                "CPU s": "60", "result": "pass", "first error": "", "measured (UTC)": "2026-01-01 00:00",
                "machine": "colab (2 cores)", "load at start": "0.5"}
    line = rc.runtime_paragraph({rc.key(measured): measured}, "week3_unet", [estimate]).splitlines()[-1]
    assert "estimated" not in line and ", on colab (2 cores): 2 CPU threads 75 s (seed 0)" in line
