"""The reference solutions pass every hidden test and self-check on other CPUs' arithmetic too.

The instructor notebooks (course/week*.ipynb, solutions in place) are run in fast mode in fresh
kernels whose environment changes what the machine's arithmetic looks like, and every graded test cell
(nbgrader ``grade: true``, visible and hidden parts) and every self-check cell (``check_*``) must run
without an error. A hidden test that compares floats exactly, or depends on thread count, fails here
before it takes points from a correct student on some other machine.

Two configurations, each changing ONE thing from what ``pytest course/`` already runs (NumPy's own
SIMD choice, all cores -- 2 on CI):

- ``simd-off-2-threads``: ``NPY_DISABLE_CPU_FEATURES`` lists every SIMD target NumPy can dispatch to on
  this machine (found at test time from ``__cpu_dispatch__``, keeping those this CPU has; a baseline
  feature cannot be disabled), so NumPy falls back to its baseline kernels, which sum and reduce in a
  different order; 2 threads.
- ``default-simd-1-thread``: NumPy's usual kernels; ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
  ``OPENBLAS_NUM_THREADS`` = 1 (torch reads ``OMP_NUM_THREADS`` at import), so torch and BLAS reduce
  in one thread.

With the ordinary notebook run as the third point this is a one-factor-at-a-time design: a failure
in one configuration only points at its cause (SIMD kernels or threads). Running all four
combinations would cost twice as much for little more.

The test cannot silently test nothing: a first cell added to each run reports NumPy's enabled dispatch
targets and torch's thread count from inside the kernel, and the test asserts that the settings took
effect (and skips only where NumPy has no SIMD target to disable).

Cost: cells after a notebook's last graded or self-check cell are not run (they teach, they do not
grade); two kernels run at a time. Measured: 4 min 43 s wall on 2 cores shared with other jobs (load
about 6), 2 min 38 s of CPU in all, so about 2-3 minutes on 2 idle cores. Marked ``slow``.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "course").glob("week*.ipynb"))
CELL_TIMEOUT_S = 300
PARALLEL_KERNELS = 2
PROBE_TAG = "MEDSEG_PROBE "

# Runs first in every kernel: what NumPy and torch really use there.
PROBE = f'''
import json as _json
import numpy as _np
try:
    from numpy._core._multiarray_umath import __cpu_dispatch__ as _dispatch, __cpu_features__ as _features
except ImportError:                                   # NumPy < 2
    from numpy.core._multiarray_umath import __cpu_dispatch__ as _dispatch, __cpu_features__ as _features
import torch as _torch
print({PROBE_TAG!r} + _json.dumps({{"dispatch_enabled": [f for f in _dispatch if _features.get(f)],
                                    "torch_threads": _torch.get_num_threads()}}))
'''


def numpy_cpu_features() -> tuple[list[str], dict[str, bool]]:
    """(dispatch targets, {feature: available}) of the NumPy in this process."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:                               # NumPy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return list(__cpu_dispatch__), dict(__cpu_features__)


def disable_list() -> list[str]:
    """The SIMD targets NumPy would dispatch to on this CPU: those NPY_DISABLE_CPU_FEATURES can turn off.

    ``__cpu_dispatch__`` holds the optional targets this NumPy was built with (never the baseline, which
    cannot be disabled); of those, the ones this CPU has are the ones that change what runs.
    """
    dispatch, features = numpy_cpu_features()
    return [name for name in dispatch if features.get(name)]


CONFIGS = {
    "simd-off-2-threads": {"simd_off": True, "threads": 2},
    "default-simd-1-thread": {"simd_off": False, "threads": 1},
}


def kernel_env(simd_off: bool, threads: int) -> dict:
    env = dict(os.environ)
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    if simd_off:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable_list())
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env.update(MEDSEG_FAST="1", MEDSEG_QUIET="1", MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE")
    return env


def _is_graded(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and (bool(meta.get("grade")) and not meta.get("solution")
                                         or meta.get("grade_id", "").startswith("check_"))


def prepared(path: Path) -> nbformat.NotebookNode:
    """The notebook with the probe cell first and nothing after its last graded or self-check cell."""
    nb = nbformat.read(path, as_version=4)
    last = max(i for i, cell in enumerate(nb.cells) if _is_graded(cell))
    nb.cells = [nbformat.v4.new_code_cell(PROBE)] + nb.cells[:last + 1]
    return nb


async def _run_one(path: Path, config: dict, gate: asyncio.Semaphore) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = prepared(path)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    async with gate:
        await client.async_execute(env=kernel_env(**config))
    return nb


async def _run_all(jobs: list[tuple[str, Path]]) -> list:
    gate = asyncio.Semaphore(PARALLEL_KERNELS)
    return await asyncio.gather(*(_run_one(path, CONFIGS[name], gate) for name, path in jobs),
                                return_exceptions=True)


@pytest.fixture(scope="module")
def runs() -> dict:
    """{(config, notebook stem): executed notebook or the exception that stopped it}."""
    pytest.importorskip("nbclient")
    jobs = [(name, path) for name in CONFIGS for path in NOTEBOOKS]
    results = asyncio.run(_run_all(jobs))
    return {(name, path.stem): result for (name, path), result in zip(jobs, results)}


def _probe(nb) -> dict:
    for output in nb.cells[0].get("outputs", []):
        text = output.get("text", "")
        if PROBE_TAG in text:
            return json.loads(text.split(PROBE_TAG, 1)[1].splitlines()[0])
    raise AssertionError(f"the probe cell printed nothing: {nb.cells[0].get('outputs')}")


def test_disable_list_is_dispatchable_here():
    dispatch, features = numpy_cpu_features()
    names = disable_list()
    assert set(names) <= set(dispatch)
    assert all(features[name] for name in names)
    if not names:
        pytest.skip("this NumPy has no SIMD target to disable on this CPU")


def test_there_are_notebooks_with_graded_cells():
    assert len(NOTEBOOKS) >= 6
    for path in NOTEBOOKS:
        assert sum(_is_graded(c) for c in nbformat.read(path, as_version=4).cells) >= 4, path.name


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem.split("_")[0] for p in NOTEBOOKS])
def test_reference_solution_passes_every_graded_cell(runs, config, path):
    nb = runs[(config, path.stem)]
    if isinstance(nb, BaseException):
        raise AssertionError(f"{path.name} did not run under {config}: {nb!r}") from nb
    settings = CONFIGS[config]
    probe = _probe(nb)
    # the settings took effect inside the kernel
    assert probe["torch_threads"] == settings["threads"], probe
    if settings["simd_off"]:
        if not disable_list():
            pytest.skip("this NumPy has no SIMD target to disable on this CPU")
        assert probe["dispatch_enabled"] == [], f"NPY_DISABLE_CPU_FEATURES did not take effect: {probe}"
    else:
        assert probe["dispatch_enabled"] == disable_list(), probe
    failures = []
    for cell in nb.cells[1:]:
        if not _is_graded(cell):
            continue
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if cell.get("execution_count") is None:
            failures.append(f"{grade_id}: did not run")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                failures.append(f"{grade_id}: {output.get('ename')}: {output.get('evalue')}")
    earlier = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells[1:], 1)
               if not _is_graded(c) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not failures, (f"{path.name} under {config} (NPY_DISABLE_CPU_FEATURES="
                          f"{kernel_env(**settings).get('NPY_DISABLE_CPU_FEATURES', '')!r}):\n"
                          + "\n".join(failures) + ("\nerrors in other cells:\n" + "\n".join(earlier) if earlier else ""))
