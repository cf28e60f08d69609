"""The grading kernel: one notebook run in its own limited kernel process, cell by cell.

``medseg-edu grade`` runs each submission here. What the kernel gets:

* a fresh process (a new session, so the whole process group can be killed), started through this
  module's ``main`` (``python -m medseg_edu.grading_kernel``), which applies ``resource`` limits
  (address space, CPU seconds for the whole kernel, file size, no core files) and then starts
  ipykernel;
* a throw-away working folder and a short allow-listed environment (``kernel_environment``): no
  instructor variables, ``HOME`` and ``MEDSEG_DATA`` inside the throw-away folder, fast and quiet mode;
* code only over the kernel channel: hidden tests are never a file or a path it could read.

``run_notebook`` executes the code cells with a wall-clock limit per cell. A cell past its limit is
interrupted; if it ignores the interrupt, the kernel's process group is killed. A kernel that died
(``os._exit``, a limit) is restarted and the cells that had succeeded are replayed (outputs dropped),
so later exercises are still graded. A test cell passes only when the kernel replies ``ok`` AND a
fresh random nonce, printed by a line the grader appends to the test, comes back in its output: a
student who replaces ``showtraceback`` or installs ``set_custom_exc`` cannot make a failed test look
passed. Instructor tooling, used by ``medseg_edu.grading``.
"""
from __future__ import annotations

import argparse
import os
import queue
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

__all__ = ["Limits", "CellResult", "GradingKernel", "kernel_environment", "run_notebook", "main"]

_PASS_THROUGH = ("PATH", "LANG", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one graded notebook.

    ``timeout_s``: wall seconds per cell; ``memory_mb``: address space of the kernel process;
    ``cpu_s``: CPU seconds of one kernel process (all its cells); ``file_mb``: largest file it may
    write; ``grace_s``: how long an interrupted cell may take to stop before the kernel is killed;
    ``total_s``: wall seconds for the whole notebook, restarts and replays included (default
    ``10 * timeout_s``, at least 120 s).
    """

    timeout_s: float = 60.0
    memory_mb: int = 4096
    cpu_s: int = 1800
    file_mb: int = 512
    grace_s: float = 3.0
    total_s: Optional[float] = None

    def notebook_budget_s(self) -> float:
        """Wall seconds allowed for the whole notebook."""
        return self.total_s if self.total_s is not None else max(120.0, 10 * self.timeout_s)


@dataclass
class CellResult:
    """What one cell did. ``status``: "ok", "error", "timeout", "died" or "skipped"; ``ename`` /
    ``evalue`` / ``traceback`` as the kernel reported them; ``stdout``: the text printed;
    ``nonce_seen``: whether the grader's nonce came back (test cells only)."""

    status: str
    ename: str = ""
    evalue: str = ""
    traceback: List[str] = field(default_factory=list)
    stdout: str = ""
    nonce_seen: bool = False


def kernel_environment(workdir: Path) -> Dict[str, str]:
    """The whole environment of a grading kernel: a short allow-list, nothing else of the grader's.

    Passed through when set: ``PATH``, ``LANG``, ``LC_*``, ``TZ``, ``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``PYTHONPATH``. Set: ``HOME`` and ``MEDSEG_DATA`` inside ``workdir``,
    ``MEDSEG_FAST=1``, ``MEDSEG_QUIET=1``, ``MPLBACKEND=Agg``, ``OMP_WAIT_POLICY`` (passive unless
    set), ``PYTHONHASHSEED=0``, and ``CUDA_VISIBLE_DEVICES`` empty: graded cells are CPU-sized, and a
    GPU driver does not start under an address-space limit.
    """
    env = {key: value for key, value in os.environ.items()
           if key in _PASS_THROUGH or key.startswith("LC_")}
    env.update({"HOME": str(workdir / "home"), "MEDSEG_DATA": str(workdir / "data"),
                "MEDSEG_FAST": "1", "MEDSEG_QUIET": "1", "MPLBACKEND": "Agg",
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "PYTHONHASHSEED": "0",
                "CUDA_VISIBLE_DEVICES": ""})
    return env


def _kernel_manager_class():
    from jupyter_client import KernelManager
    from traitlets import List as ListTrait

    class LimitedKernelManager(KernelManager):
        """A KernelManager that starts the kernel through ``python -m medseg_edu.grading_kernel``."""

        limit_args = ListTrait()

        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "medseg_edu.grading_kernel", *self.limit_args,
                    "-f", self.connection_file]

    return LimitedKernelManager


class GradingKernel:
    """One limited kernel in ``workdir``; ``run(code, timeout_s)`` executes one cell."""

    def __init__(self, workdir: Path, limits: Limits):
        self.workdir = Path(workdir)
        self.limits = limits
        self.km = None
        self.kc = None

    def start(self) -> None:
        """Start a fresh kernel process (a new session) and wait until it answers."""
        for sub in ("home", "data"):
            (self.workdir / sub).mkdir(exist_ok=True)
        limits = self.limits
        self.km = _kernel_manager_class()(limit_args=[
            "--memory-mb", str(limits.memory_mb), "--cpu-s", str(limits.cpu_s), "--file-mb", str(limits.file_mb)])
        self.km.start_kernel(cwd=str(self.workdir), env=kernel_environment(self.workdir),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def stop(self) -> None:
        """Kill the kernel's whole process group and close the channels."""
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            finally:
                self.km.cleanup_resources()
        self.km = self.kc = None

    def restart(self) -> None:
        """A new kernel process in place of the old one (which is killed if still there)."""
        self.stop()
        self.start()

    def alive(self) -> bool:
        """Whether the kernel process is running."""
        return self.km is not None and self.km.is_alive()

    def _wait_reply(self, msg_id: str, deadline: float) -> Optional[dict]:
        while time.monotonic() < deadline:
            if not self.alive():
                return None
            try:
                msg = self.kc.get_shell_msg(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg["content"]
        return None

    def _drain_stdout(self, msg_id: str, wait_s: float) -> str:
        """The text the cell printed, read from IOPub until the kernel goes idle for it."""
        chunks, deadline = [], time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content, kind = msg["content"], msg["msg_type"]
            if kind == "stream" and content.get("name") == "stdout":
                chunks.append(content.get("text", ""))
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        return "".join(chunks)

    def run(self, code: str, timeout_s: float) -> CellResult:
        """Execute ``code``; interrupt it after ``timeout_s`` and kill the kernel if it keeps going.

        After a "timeout" or "died" result the kernel may be gone: check ``alive()``.
        """
        msg_id = self.kc.execute(code, allow_stdin=False, stop_on_error=False)
        reply = self._wait_reply(msg_id, time.monotonic() + timeout_s)
        if reply is None and self.alive():
            self.km.interrupt_kernel()
            late = self._wait_reply(msg_id, time.monotonic() + self.limits.grace_s)
            if late is None and self.alive():
                self.stop()  # SIGKILL to the whole process group
            self._drain_stdout(msg_id, 0.5 if self.km is not None else 0)
            return CellResult("timeout", "TimeoutError", f"cell ran longer than {timeout_s:g} s")
        if reply is None:
            return CellResult("died", "DeadKernelError", "the kernel died in this cell (os._exit, a crash or "
                              "a resource limit)")
        stdout = self._drain_stdout(msg_id, 5.0)
        if reply.get("status") == "ok":
            return CellResult("ok", stdout=stdout)
        return CellResult("error", str(reply.get("ename", "Error")), str(reply.get("evalue", "")),
                          [str(line) for line in reply.get("traceback", [])], stdout)


def _with_nonce(code: str, nonce: str) -> str:
    return f"{code}\nprint({nonce!r})\n"


def run_notebook(codes: List[str], *, workdir: Path, limits: Limits,
                 is_test: Callable[[int], bool]) -> List[CellResult]:
    """Run code cells in order in one limited kernel and return one ``CellResult`` per cell.

    ``is_test(i)`` says which cells are graded tests: those get the nonce line, and pass only if the
    kernel replied ``ok`` and printed the nonce (removed from ``stdout`` afterwards). After a timeout
    that killed the kernel or a dead kernel, a new kernel replays the cells that had succeeded.
    Cells left when the notebook's wall budget is spent are "skipped".
    """
    kernel = GradingKernel(workdir, limits)
    deadline = time.monotonic() + limits.notebook_budget_s()
    results: List[CellResult] = []
    succeeded: List[str] = []
    kernel.start()
    try:
        for index, code in enumerate(codes):
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(CellResult("skipped", "TimeoutError", "the notebook's total grading time ran out"))
                continue
            nonce = secrets.token_hex(16) if is_test(index) else None
            result = kernel.run(_with_nonce(code, nonce) if nonce else code, min(limits.timeout_s, left))
            if nonce:
                result.nonce_seen = nonce in result.stdout
                result.stdout = result.stdout.replace(nonce, "")
            results.append(result)
            if result.status == "ok":
                succeeded.append(code)
            elif not kernel.alive():
                kernel.restart()
                _replay(kernel, succeeded, deadline, limits)
    finally:
        kernel.stop()
    return results


def _replay(kernel: GradingKernel, codes: List[str], deadline: float, limits: Limits) -> None:
    """Re-run cells that had succeeded in the dead kernel; stop at the first that fails now."""
    for code in codes:
        left = deadline - time.monotonic()
        if left <= 0 or kernel.run(code, min(limits.timeout_s, left)).status != "ok":
            if not kernel.alive():
                kernel.restart()
            return


def _apply_limits(memory_mb: int, cpu_s: int, file_mb: int) -> None:
    import resource

    mib = 1024 * 1024
    for limit, soft, hard in ((resource.RLIMIT_AS, memory_mb * mib, memory_mb * mib),
                              (resource.RLIMIT_CPU, cpu_s, cpu_s + 5),
                              (resource.RLIMIT_FSIZE, file_mb * mib, file_mb * mib),
                              (resource.RLIMIT_CORE, 0, 0)):
        resource.setrlimit(limit, (soft, hard))


def main(argv: Optional[List[str]] = None) -> None:
    """Apply the resource limits to this process, then become an ipykernel (the launcher)."""
    parser = argparse.ArgumentParser(prog="python -m medseg_edu.grading_kernel")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, required=True)
    parser.add_argument("--file-mb", type=int, required=True)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    _apply_limits(args.memory_mb, args.cpu_s, args.file_mb)
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance(argv=rest)


if __name__ == "__main__":
    main()
