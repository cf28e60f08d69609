"""fit() under torchrun: two CPU processes with gloo train in lock-step (tests/ddp_fit_script.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from medseg_edu.distributed import all_reduce_sum, distributed_env, is_main_process

SCRIPT = Path(__file__).with_name("ddp_fit_script.py")


def test_single_process_helpers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed_env() is None
    assert is_main_process()
    torch.testing.assert_close(all_reduce_sum(torch.ones(3)), torch.ones(3))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed_env() == (2, 4, 0)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_fit_under_torchrun_two_cpu_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MEDSEG_QUIET="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SCRIPT), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # DDP broadcast the initial weights and averaged every gradient: identical final weights
    for name, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][name], value, rtol=0, atol=0, msg=name)
    # losses and validation metrics were all-reduced: both ranks report the same history
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]
    assert ranks[0]["val_dice"] == ranks[1]["val_dice"]
    # only rank 0 wrote checkpoints, and they hold the final weights
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.pt", "last.pt"]
    ckpt = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["world_size"] == 2
    for name, value in ranks[0]["state"].items():
        torch.testing.assert_close(ckpt["model"][name], value, rtol=0, atol=0)
    # only rank 0 printed the device line
    assert result.stdout.count("Using CPU") == 1
