#!/usr/bin/env python
"""Run the course notebooks as students run them and record wall time, CPU time and pass/fail.

Every (notebook, seed, thread count) runs in its own worker process, which executes the notebook in a
fresh kernel (nbclient, this interpreter) with ``MEDSEG_SEED``, ``MEDSEG_MODE`` (and ``MEDSEG_FAST``)
and ``OMP_NUM_THREADS`` set. The CPU time is that of the kernel's process tree, read with psutil after
every cell (without psutil: the worker's own ``os.wait4`` figure, which misses an unreaped kernel).

Results are merged by key (notebook, mode, seed, threads) into a Markdown table, so runs can be done
piecemeal; each row records when, on what machine and under what load (``uptime``'s 1-minute load
average at the start) it was measured. Examples::

    python scripts/run_course.py --mode default --seeds 0 1 2 --threads 2 --jobs 1
    python scripts/run_course.py week1 week4 --mode fast --seeds 0 1 --check
    pytest -m course_default              # the same for all notebooks, default mode, seeds 0-2, --check

``--headers`` runs nothing: it rewrites each notebook's cell tagged ``run-time`` (the measured times
in its header) from the table; a test checks that the committed notebooks match the committed table.

``--check`` exits with status 1 when any run of this invocation failed. Each executed notebook, with
its outputs and figures, is kept as ``<keep>/<notebook>_<mode>_seed<S>_threads<T>.ipynb`` (``--keep``,
by default ``build/course_runs``, which is not committed), so every run's figures and numbers can be read.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medseg_edu.utils import atomic_path

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
DEFAULT_OUT = COURSE / "RUNTIMES.md"
EXECUTED = ROOT / "build" / "course_runs"
GPU_ESTIMATE = COURSE / "GPU_ESTIMATE.md"          # written by scripts/estimate_gpu.py
# links in the notebooks point at the repository: they work on Colab, on the course website and on GitHub
REPOSITORY = "https://github.com/medseg-edu/medseg-edu/blob/main/course"
MODES = ("fast", "default", "gpu")
COLUMNS = ("notebook", "mode", "seed", "threads", "wall s", "CPU s", "result", "first error",
           "measured (UTC)", "machine", "load at start")
HEADER = """# Measured run times of the course notebooks

Written by `scripts/run_course.py` (rows merged by notebook, mode, seed and threads; re-running a key
replaces its row). Wall and CPU seconds are for one notebook executed in its own kernel; CPU is the
kernel's whole process tree. "load at start" is the machine's 1-minute load average when the run began:
on a loaded machine the wall time is longer than a student on an idle laptop would see (a load above the
machine's core count means the notebook shared the cores with other work). A 2-core laptop runs a notebook
with 2 threads: those rows are what a student waits. The 1-thread rows were run two at a time, one core each,
to check that every assert also holds with another thread count; their wall time is an upper bound. The
working tree measured is the one checked out when the row was written. Only measured rows belong here.

"""


def find_notebooks(names: list[str]) -> list[Path]:
    """The notebooks named (``week1``, ``week1_registration`` or a path); all course weeks if none."""
    weeks = sorted(COURSE.glob("week*.ipynb"), key=lambda p: int(re.match(r"week(\d+)", p.name).group(1)))
    if not names:
        return weeks
    found = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            found.append(path.resolve())
            continue
        matches = [p for p in weeks if p.stem == name or p.stem.split("_")[0] == name]
        if len(matches) != 1:
            raise SystemExit(f"notebook {name!r}: expected one of {[p.stem for p in weeks]} or a path, "
                             f"found {len(matches)} matches")
        found.append(matches[0])
    return found


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # not available on this platform
        return "n/a"


def machine() -> str:
    cores = os.cpu_count() or 0
    gpu = ""
    try:
        import torch
        if torch.cuda.is_available():
            gpu = ", " + torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.node() or 'host'} ({cores} cores{gpu})"


def run_environment(mode: str, seed: int, threads: int) -> dict:
    env = dict(os.environ)
    env.update(MEDSEG_MODE=mode, MEDSEG_FAST="1" if mode == "fast" else "0", MEDSEG_SEED=str(seed),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MEDSEG_QUIET="1",
               MPLBACKEND="Agg")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_one(notebook: Path, *, mode: str, seed: int, threads: int, cell_timeout: int,
            keep: Path = EXECUTED) -> dict:
    """Execute one notebook in a worker process; return its row (wall, CPU, result, first error)."""
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="run_course_") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(notebook),
                   "--result-file", str(result_file), "--cell-timeout", str(cell_timeout), "--keep", str(keep)]
        start = time.perf_counter()
        process = subprocess.Popen(command, env=run_environment(mode, seed, threads), cwd=str(notebook.parent),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # wait4 gives the worker's resource use, which includes its waited-for children (the kernel)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        children_cpu = usage.ru_utime + usage.ru_stime      # worker and any child it waited for
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        outcome = json.loads(result_file.read_text()) if result_file.exists() else {
            "ok": False, "error": f"worker exited with {process.returncode}: {last_line(stderr)}"}
    return {"notebook": notebook.stem, "mode": mode, "seed": str(seed), "threads": str(threads),
            "wall s": f"{wall:.0f}", "CPU s": f"{max(outcome.get('kernel_cpu_s', 0.0), children_cpu):.0f}",
            "result": "pass" if outcome["ok"] else "FAIL", "first error": outcome.get("error", ""),
            "measured (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "load at start": load}


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def worker(notebook: Path, result_file: Path, cell_timeout: int, keep: Path = EXECUTED) -> None:
    """Run in the worker process: execute the notebook in a kernel of this interpreter."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    class CurrentInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="current interpreter", language="python")

    nb = nbformat.read(notebook, as_version=4)
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentInterpreter())
    client = NotebookClient(nb, km=manager, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    cpu = {"s": 0.0}

    def measure(**_):
        # the kernel's CPU time with its finished children, after every cell (the kernel is gone afterwards)
        cpu["s"] = max(cpu["s"], kernel_tree_cpu(manager))

    client.on_cell_executed = measure
    client.on_cell_error = measure
    outcome = {"ok": True}
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as error:
        outcome = {"ok": False, "error": first_error(nb, error)}
    except Exception as error:  # kernel died, could not start, ...: still a row in the table
        outcome = {"ok": False, "error": f"{type(error).__name__}: {error}"[:200]}
    outcome["kernel_cpu_s"] = cpu["s"]
    env = os.environ
    name = (f"{notebook.stem}_{env.get('MEDSEG_MODE', 'default')}_seed{env.get('MEDSEG_SEED', '0')}"
            f"_threads{env.get('OMP_NUM_THREADS', '?')}.ipynb")
    with contextlib.suppress(OSError):          # keeping the outputs is a convenience, never a failure
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / name)
    result_file.write_text(json.dumps(outcome))


def kernel_tree_cpu(manager) -> float:
    """User + system seconds of the kernel process and its children (psutil; 0 when unavailable)."""
    try:
        import psutil
        kernel = psutil.Process(manager.provisioner.process.pid)
        total = 0.0
        for process in [kernel, *kernel.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = process.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total
    except Exception:  # no psutil, or the kernel already gone: fall back to the worker's wait4 figure
        return 0.0


def first_error(nb, error) -> str:
    """'cell N: ErrorName: message', short, for the table."""
    index = next((i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and any(
        out.get("output_type") == "error" for out in cell.get("outputs", []))), None)
    name = getattr(error, "ename", None) or type(error).__name__
    value = getattr(error, "evalue", None) or last_line(str(error))
    where = f"cell {index}: " if index is not None else ""
    return clean(f"{where}{name}: {value}")[:200]


def clean(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return text.replace("|", "/").replace("\n", " ").strip()


def read_table(path: Path) -> dict:
    """Rows of an existing table, keyed by (notebook, mode, seed, threads)."""
    return {key(row): row for row in markdown_rows(path) if len(row) == len(COLUMNS)}


def key(row: dict) -> tuple:
    week = re.match(r"week(\d+)", row["notebook"])
    order = int(week.group(1)) if week else 10**6
    return (order, row["notebook"], MODES.index(row["mode"]) if row["mode"] in MODES else 99,
            int(row["seed"]), int(row["threads"]))


def course_total(rows: dict, mode: str = "default", threads: int = 2) -> str:
    """A sentence under the table: the slowest measured run of every notebook, added up for the course."""
    slowest = {}
    for row in rows.values():
        if row["mode"] == mode and int(row["threads"]) == threads:
            slowest[row["notebook"]] = max(slowest.get(row["notebook"], 0.0), float(row["wall s"]))
    if not slowest:
        return ""
    worst = max(slowest, key=slowest.get)
    return (f"{mode.capitalize()} mode with {threads} threads: the slowest run of each of {len(slowest)} notebooks adds "
            f"up to {sum(slowest.values()) / 60:.1f} min for the course; the slowest notebook is {worst} at "
            f"{slowest[worst] / 60:.1f} min (the goal: at most 10 min a notebook and 40 min for the course on 2 cores).")


def write_markdown_table(path: Path, header: str, columns, rows: "list[dict]", footer: str = "") -> None:
    """Write ``header``, a Markdown table of ``rows`` and an optional sentence under it, all or nothing."""
    lines = [header, "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(clean(row[c]) for c in columns) + " |" for row in rows]
    if footer:
        lines += ["", footer]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def write_table(path: Path, rows: dict) -> None:
    write_markdown_table(path, HEADER, COLUMNS, [rows[k] for k in sorted(rows)], course_total(rows))


RUNTIME_TAG = "run-time"          # the notebook cell that states the measured times (see write_headers)
MODE_NAMES = {"fast": "fast mode (`MEDSEG_FAST=1`, what the automatic tests run)",
              "default": "default mode (what you get when you run it yourself without a GPU)",
              "gpu": "GPU mode (chosen automatically when a CUDA GPU is visible; where the notebook trains, "
                     "it trains on more data or for longer)"}


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def spoken_list(values) -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def markdown_rows(path: Path) -> "list[dict]":
    """The rows of the first Markdown table in a file, as dicts keyed by its header row."""
    rows, header = [], None
    for line in (path.read_text().splitlines() if path.exists() else []):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif len(cells) == len(header):
            rows.append(dict(zip(header, cells)))
    return rows


def gpu_estimate_line(estimates: "list[dict]", notebook: str) -> str:
    """The GPU line of a header while the GPU mode has no measured row: the estimate of estimate_gpu.py."""
    runs = [r for r in estimates if r["notebook"] == notebook]
    if not runs:
        return f"- {MODE_NAMES['gpu']}: not measured yet."
    minutes = [float(r["T4 estimate min"]) for r in runs if r["T4 estimate min"]]
    tflop = [float(r["TFLOP"]) for r in runs if r["TFLOP"]]
    seeds = spoken_list(sorted({int(r["seed"]) for r in runs}))
    passed = sum(r["result"] == "pass" for r in runs)
    span = (f"{min(minutes):.1f} min" if max(minutes) - min(minutes) < 0.05
            else f"{min(minutes):.1f} to {max(minutes):.1f} min") if minutes else "no estimate (the run failed)"
    arithmetic = f", from {max(tflop):.3g} TFLOP of tensor arithmetic" if tflop else ""
    return (f"- {MODE_NAMES['gpu']}: not measured on a GPU yet; estimated {span} on a T4-class GPU{arithmetic} "
            f"and the CPU-side work of a run of the gpu mode on a CPU "
            f"([`course/GPU_ESTIMATE.md`]({REPOSITORY}/GPU_ESTIMATE.md), `scripts/estimate_gpu.py`); the notebook's asserts held in {passed} of {len(runs)} such "
            f"run{'s' * (len(runs) > 1)} (seed{'s' * (len(runs) > 1)} {seeds}).")


def runtime_paragraph(rows: dict, notebook: str, estimates: "list[dict] | None" = None) -> str:
    """The Markdown that a notebook's header shows: its measured wall times per mode, from the table rows.

    While the GPU mode has no measured row, its line gives the estimate of ``scripts/estimate_gpu.py``
    (``estimates``: the rows of course/GPU_ESTIMATE.md).
    """
    lines = ["**Measured run time** of the whole notebook (wall clock; each run is a row of "
             f"[`course/RUNTIMES.md`]({REPOSITORY}/RUNTIMES.md), written by `scripts/run_course.py`):", ""]
    for mode in MODES:
        runs = [r for r in rows.values() if r["notebook"] == notebook and r["mode"] == mode]
        if not runs:
            lines.append(gpu_estimate_line(estimates or [], notebook) if mode == "gpu"
                         else f"- {MODE_NAMES[mode]}: not measured yet.")
            continue
        parts = []
        for threads in sorted({int(r["threads"]) for r in runs}, reverse=True):   # the most threads first
            walls = [float(r["wall s"]) for r in runs if int(r["threads"]) == threads]
            seeds = sorted({int(r["seed"]) for r in runs if int(r["threads"]) == threads})
            span = duration(min(walls)) if len(walls) == 1 else f"{duration(min(walls))} to {duration(max(walls))}"
            parts.append(f"{threads} CPU thread{'s' * (threads > 1)} {span} "
                         f"(seed{'s' * (len(seeds) > 1)} {spoken_list(seeds)})")
        machines = sorted({r["machine"] for r in runs})
        passed = sum(r["result"] == "pass" for r in runs)
        lines.append(f"- {MODE_NAMES[mode]}, on {spoken_list(machines)}: {', '.join(parts)}; "
                     f"{passed} of {len(runs)} runs passed.")
    return "\n".join(lines)


def write_headers(table: Path, notebooks: "list[Path]") -> "list[Path]":
    """Rewrite the cell tagged ``run-time`` in each notebook from the table; return the notebooks changed."""
    import nbformat

    rows, changed = read_table(table), []
    estimates = markdown_rows(GPU_ESTIMATE)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if RUNTIME_TAG in c.get("metadata", {}).get("tags", [])]
        if len(cells) != 1:
            raise SystemExit(f"{path.name}: expected one cell tagged {RUNTIME_TAG!r}, found {len(cells)}")
        text = runtime_paragraph(rows, path.stem, estimates)
        if cells[0].source != text:
            cells[0].source = text
            with atomic_path(path) as tmp:
                nbformat.write(nb, tmp)
            changed.append(path)
    return changed


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="week1, week1_registration or a path; all weeks if none")
    parser.add_argument("--mode", choices=MODES, default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at the same time (each uses its thread count; jobs x threads <= cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown table to merge into")
    parser.add_argument("--cell-timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument("--check", action="store_true", help="exit 1 when any run failed")
    parser.add_argument("--headers", action="store_true",
                        help="run nothing: rewrite each notebook's run-time cell from the table")
    parser.add_argument("--keep", type=Path, default=EXECUTED,
                        help="folder for the executed notebooks (default: build/course_runs)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.result_file, args.cell_timeout, args.keep)
        return 0
    if args.jobs < 1 or min(args.threads) < 1 or min(args.seeds) < 0:
        parser.error(f"--jobs and --threads must be >= 1 and --seeds >= 0, got jobs={args.jobs}, "
                     f"threads={args.threads}, seeds={args.seeds}")
    if args.headers:
        for path in write_headers(args.out, find_notebooks(args.notebooks)):
            print(f"updated the run-time cell of {path}")
        return 0
    runs = [(nb, seed, threads) for nb in find_notebooks(args.notebooks)
            for seed in args.seeds for threads in args.threads]
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, nb, mode=args.mode, seed=seed, threads=threads,
                               cell_timeout=args.cell_timeout, keep=args.keep.resolve())
                   for nb, seed, threads in runs]
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            failed += row["result"] != "pass"
            print(f"{row['notebook']} mode={row['mode']} seed={row['seed']} threads={row['threads']}: "
                  f"{row['result']} wall {row['wall s']} s, CPU {row['CPU s']} s {row['first error']}",
                  flush=True)
            rows = read_table(args.out)          # re-read: merge with anything written meanwhile
            rows[key(row)] = row
            write_table(args.out, rows)
    print(f"{len(runs) - failed} of {len(runs)} runs passed; table: {args.out}")
    return 1 if (args.check and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
