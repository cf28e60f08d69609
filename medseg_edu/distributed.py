"""Multi-process data-parallel training helpers, used by :func:`medseg_edu.training.fit`.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script and gives each the
environment variables ``WORLD_SIZE`` (N), ``RANK`` (0..N-1) and ``LOCAL_RANK`` (its GPU on this
machine). ``fit()`` reads them: each process trains on its own share of the data
(``DistributedSampler``), ``DistributedDataParallel`` averages the gradients so all copies keep
identical weights, and only rank 0 prints, shows progress and writes checkpoints.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

__all__ = ["distributed_env", "init_distributed", "cleanup_distributed", "is_main_process",
           "all_reduce_sum", "barrier", "distributed_loader"]


def distributed_env() -> Optional[tuple]:
    """``(rank, world_size, local_rank)`` when started by torchrun with more than one process, else None.

    Shape: reads the environment -> a tuple of three ints or None.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    return int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device_type: str) -> bool:
    """Join the process group (NCCL for CUDA, gloo otherwise) unless already joined.

    Returns True when this call created the group.

    Shape: a device type ("cuda" or "cpu") -> bool.
    """
    if dist.is_initialized():
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun script).

    Shape: no input, no output.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 or when not distributed: the process that logs and writes files.

    Shape: no input -> bool.
    """
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all processes (returned unchanged when not distributed).

    Shape: any shape -> same shape.
    """
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    """Wait until every process reaches this line (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def distributed_loader(loader: DataLoader, *, shuffle: Optional[bool] = None, seed: int = 0) -> DataLoader:
    """A copy of ``loader`` whose sampler gives each process its own share of the dataset.

    ``shuffle=None`` keeps the loader's own choice (shuffled when it used a RandomSampler).
    A loader that already has a DistributedSampler is returned unchanged. Note that
    DistributedSampler pads the dataset by repeating a few samples so every process gets the
    same number of batches.

    Shape: a DataLoader -> a DataLoader.
    """
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        raise TypeError("under torchrun, fit() needs torch DataLoaders built with batch_size=..., "
                        f"got {type(loader).__name__}")
    if shuffle is None:
        shuffle = isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(loader.dataset, shuffle=shuffle, seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn)
