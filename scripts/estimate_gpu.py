#!/usr/bin/env python
"""Estimate how long each notebook's GPU mode takes on a T4-class GPU, by running it on this CPU.

Until the GPU mode has been measured on a GPU (``scripts/run_course.py --mode gpu`` on a machine with one),
this is the course's figure for it. The notebook runs in gpu mode (``MEDSEG_MODE=gpu``: its larger data and
longer training) on the CPU, with two PyTorch dispatch modes watching every tensor operation:

- ``torch.utils.flop_counter.FlopCounterMode`` adds up the floating-point operations of the convolutions and
  matrix products (forward and backward), which is nearly all of a U-Net's arithmetic;
- a small clock of our own adds up the time spent inside tensor operations and counts them.

The estimate splits the CPU run into the part a GPU takes over and the part it does not:

    host   = wall time - time inside tensor operations   (data generation, NumPy/SciPy metrics, plots, Python)
    device = FLOPs / (T4 FP32 peak x utilisation) + operations x launch cost
    T4     = host + device

with the T4's FP32 peak of 8.1 TFLOP/s, an assumed 25 % utilisation for these small networks and 20 us per
operation for the kernel launch and PyTorch's dispatch. Both assumptions are on the pessimistic side for
convolutions of this size, and the host part carries the watchers' own overhead, so the estimate should be
an upper bound; it is still an estimate, and the table says so. The run also checks that the notebook's
asserts hold in gpu mode (on a CPU: a GPU's arithmetic differs in the last bits).

    python scripts/estimate_gpu.py week3 week5 --seeds 0 --threads 2 --jobs 1

Writes (merging by notebook and seed) ``course/GPU_ESTIMATE.md``; ``scripts/run_course.py --headers`` puts
the figure into each notebook's run-time cell until a measured GPU row replaces it.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as _dt
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("run_course", HERE / "run_course.py")
run_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_course)

OUT = run_course.GPU_ESTIMATE
T4_FP32_FLOPS = 8.1e12        # NVIDIA T4 datasheet, FP32 peak
UTILISATION = 0.25            # assumed share of the peak that these small convolutions reach
LAUNCH_S = 20e-6              # assumed cost of one tensor operation on a GPU however small (launch + dispatch)
COLUMNS = ("notebook", "seed", "threads", "result", "first error", "TFLOP", "tensor ops", "CPU wall s",
           "host s", "T4 estimate min", "measured (UTC)", "machine")
HEADER = f"""# Estimated GPU-mode run times of the course notebooks

Written by `scripts/estimate_gpu.py`, which runs each notebook in gpu mode (its larger data and longer
training) **on a CPU** and counts its arithmetic; rows are merged by notebook and seed. "result" says whether
the notebook's asserts held in that run. The T4 estimate is host s (the run's wall time outside tensor
operations: data, metrics, plots, Python, and the counters' own overhead) + TFLOP / ({T4_FP32_FLOPS / 1e12:.1f}
TFLOP/s FP32 peak x {UTILISATION:.0%} assumed utilisation) + tensor ops x {LAUNCH_S * 1e6:.0f} us. These are estimates
from a CPU run, not GPU measurements: `scripts/run_course.py --mode gpu` on a GPU gives measured rows in
`course/RUNTIMES.md`.

"""

# Cells added (in memory only) before and after the notebook's own cells.
START = r'''
import json as _json, os as _os, time as _time
from torch.utils._python_dispatch import TorchDispatchMode as _DispatchMode
from torch.utils.flop_counter import FlopCounterMode as _FlopCounterMode

class _OpClock(_DispatchMode):
    """Adds up the time spent inside tensor operations and counts them."""
    def __init__(self):
        super().__init__()
        self.seconds, self.ops = 0.0, 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = _time.perf_counter()
        result = func(*args, **(kwargs or {}))
        self.seconds += _time.perf_counter() - start
        self.ops += 1
        return result

_gpu_estimate_flops = _FlopCounterMode(display=False)
_gpu_estimate_clock = _OpClock()
_gpu_estimate_start = _time.perf_counter()
_gpu_estimate_flops.__enter__()
_gpu_estimate_clock.__enter__()
'''
END = r'''
_gpu_estimate_clock.__exit__(None, None, None)
_gpu_estimate_flops.__exit__(None, None, None)
with open(_os.environ["MEDSEG_GPU_ESTIMATE_OUT"], "w") as _f:
    _json.dump({"flops": _gpu_estimate_flops.get_total_flops(), "op_seconds": _gpu_estimate_clock.seconds,
                "ops": _gpu_estimate_clock.ops, "wall": _time.perf_counter() - _gpu_estimate_start}, _f)
'''


def t4_minutes(flops: float, ops: int, host_s: float) -> float:
    return (host_s + flops / (T4_FP32_FLOPS * UTILISATION) + ops * LAUNCH_S) / 60


def instrumented_copy(notebook: Path, folder: Path) -> Path:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    nb.cells = [nbformat.v4.new_code_cell(START), *nb.cells, nbformat.v4.new_code_cell(END)]
    copy = folder / notebook.name
    nbformat.write(nb, copy)
    return copy


def run_one(notebook: Path, *, seed: int, threads: int, cell_timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="estimate_gpu_") as tmp:
        tmp = Path(tmp)
        copy = instrumented_copy(notebook, tmp)
        env = run_course.run_environment("gpu", seed, threads)
        env["MEDSEG_GPU_ESTIMATE_OUT"] = str(tmp / "counts.json")
        env["CUDA_VISIBLE_DEVICES"] = ""       # the gpu mode's sizes, on the CPU
        result_file = tmp / "result.json"
        # the run_course worker executes the copy with the course folder as working directory
        command = [sys.executable, str(HERE / "run_course.py"), "--worker", str(copy), "--result-file",
                   str(result_file), "--cell-timeout", str(cell_timeout), "--keep", str(tmp / "kept")]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=str(notebook.parent), capture_output=True, text=True)
        wall = time.perf_counter() - start
        outcome = json.loads(result_file.read_text()) if result_file.exists() else {
            "ok": False, "error": f"worker exited with {done.returncode}: {run_course.last_line(done.stderr)}"}
        counts = json.loads((tmp / "counts.json").read_text()) if (tmp / "counts.json").exists() else None
    row = {"notebook": notebook.stem, "seed": str(seed), "threads": str(threads),
           "result": "pass" if outcome["ok"] else "FAIL", "first error": outcome.get("error", ""),
           "TFLOP": "", "tensor ops": "", "CPU wall s": f"{wall:.0f}", "host s": "", "T4 estimate min": "",
           "measured (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "machine": run_course.machine()}
    if counts:
        host = max(0.0, counts["wall"] - counts["op_seconds"])
        row.update({"TFLOP": f"{counts['flops'] / 1e12:.4g}", "tensor ops": str(counts["ops"]),
                    "host s": f"{host:.0f}", "T4 estimate min": f"{t4_minutes(counts['flops'], counts['ops'], host):.1f}"})
    return row


def read_table(path: Path = OUT) -> dict:
    return {(row["notebook"], int(row["seed"])): row for row in run_course.markdown_rows(path)}


def write_table(rows: dict, path: Path = OUT) -> None:
    order = sorted(rows, key=lambda k: (run_course.key({"notebook": k[0], "mode": "gpu", "seed": k[1],
                                                         "threads": 0}), k))
    run_course.write_markdown_table(path, HEADER, COLUMNS, [rows[k] for k in order])


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="week1, week1_registration or a path; all weeks if none")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cell-timeout", type=int, default=3600)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1 or min(args.seeds) < 0:
        parser.error("--jobs and --threads must be >= 1 and --seeds >= 0")
    runs = [(nb, seed) for nb in run_course.find_notebooks(args.notebooks) for seed in args.seeds]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, nb, seed=seed, threads=args.threads, cell_timeout=args.cell_timeout)
                   for nb, seed in runs]
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            print(" ".join(f"{c}={row[c]}" for c in ("notebook", "seed", "result", "TFLOP", "tensor ops",
                                                     "CPU wall s", "host s", "T4 estimate min")),
                  row["first error"], flush=True)
            rows = read_table(args.out)
            rows[(row["notebook"], int(row["seed"]))] = row
            write_table(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
