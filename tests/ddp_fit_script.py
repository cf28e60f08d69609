"""Run by tests/test_distributed.py under `python -m torch.distributed.run --nproc_per_node=2`.

Trains a tiny U-Net for a few steps with fit() on random data (gloo on CPU), then each rank saves
its final weights to <out>/rank<R>.pt so the test can check that both copies are identical.
Not collected by pytest (the name does not start with test_).
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from medseg_edu.distributed import cleanup_distributed
from medseg_edu.models import UNet
from medseg_edu.training import fit, seed_everything


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank = int(__import__("os").environ["RANK"])
    seed_everything(rank)           # different init per rank: DDP must broadcast rank 0's weights
    net = UNet(2, 1, 2, features=(4, 8))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 16, 16, generator=g)
    data = TensorDataset(x, (x > 0.5).long())
    train = DataLoader(data, batch_size=2, shuffle=True)
    val = DataLoader(data, batch_size=4)
    history = fit(net, train, val, loss_fn=lambda p, t: F.cross_entropy(p, t[:, 0]), epochs=2,
                  max_steps=2, device="cpu", checkpoint_dir=out / "ckpt", seed=0, progress=rank == 0)
    torch.save({"state": net.state_dict(), "train_loss": history.train_loss,
                "val_dice": history.val_dice, "rank": rank}, out / f"rank{rank}.pt")
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
