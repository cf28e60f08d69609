"""Training engine: one ``fit()`` loop that students can read in one sitting, and its History.

``fit()`` trains any segmentation model on batches ``{"image": (N, C, *sp), "label": (N, 1, *sp)}``
(or ``(image, label)`` tuples) and handles what every real training run needs: the device (CUDA,
then Apple MPS, then CPU), mixed precision on CUDA, a progress bar, validation with mean foreground
Dice every epoch, best/last checkpoints (:mod:`medseg_edu.checkpoint`), resuming, per-sample loss
weights, callbacks such as :class:`EarlyStopping`, reproducible seeds (:mod:`medseg_edu.runtime`),
and multi-process data parallelism when started with ``torchrun`` (see :mod:`medseg_edu.distributed`). Each epoch is two
named steps, :func:`train_one_epoch` and :func:`validate`; it is the course's only training loop.

Taught in week 3.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from . import distributed as ddp
from .checkpoint import _restore_training_state, _rng_state, save_checkpoint
from .metrics import dice_from_counts
from .models.unet import deep_supervision_loss
from .runtime import pick_device, seed_everything
from .utils import progress as progress_bar

__all__ = ["History", "foreground_dice_score", "EarlyStopping", "train_one_epoch", "validate", "fit", "plot_history"]


# ----------------------------------------------------------------------------- history
@dataclass
class History:
    """What happened in each epoch of :func:`fit` (one entry per epoch in every list).

    ``val_loss``/``val_dice`` hold NaN when there was no validation loader. ``val_dice`` holds
    the value of ``fit(val_metric=...)``, mean foreground Dice by default. ``best_epoch`` is
    1-based; ``best_score`` is the monitored value there (val_dice, or minus train_loss without
    validation).

    Shape: lists of floats of length = number of epochs trained.

    Used in week 3 through `fit`.
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_dice: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    best_epoch: Optional[int] = None
    best_score: Optional[float] = None

    def __len__(self) -> int:
        return len(self.train_loss)

    def to_frame(self):
        """A pandas DataFrame with one row per epoch (column ``epoch`` counts from 1)."""
        import pandas as pd

        frame = pd.DataFrame({"epoch": range(1, len(self) + 1), "train_loss": self.train_loss,
                              "val_loss": self.val_loss, "val_dice": self.val_dice,
                              "lr": self.lr, "seconds": self.seconds})
        return frame.set_index("epoch")


def plot_history(history: History):
    """Loss curves (train and validation) and validation Dice per epoch, side by side.

    Shape: a History -> a matplotlib Figure with two axes.

    Taught in week 3.
    """
    import matplotlib.pyplot as plt

    if not isinstance(history, History):
        raise TypeError(f"history must be a History (returned by fit), got {type(history).__name__}")
    epochs = list(range(1, len(history) + 1))
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(epochs, history.train_loss, "o-", label="train")
    if not all(math.isnan(v) for v in history.val_loss):
        ax_loss.plot(epochs, history.val_loss, "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    ax_dice.plot(epochs, history.val_dice, "o-", color="tab:green")
    if history.best_epoch is not None and not math.isnan(history.val_dice[history.best_epoch - 1]):
        ax_dice.axvline(history.best_epoch, color="grey", linestyle=":", label="best")
        ax_dice.legend()
    ax_dice.set(xlabel="epoch", ylabel="mean foreground Dice", title="Validation Dice", ylim=(0, 1))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- validation metric
def foreground_dice_score(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-case mean Dice over the foreground classes, the default validation metric of fit().

    Logits with K >= 2 channels are turned into labels by argmax (classes 1..K-1 scored); one
    channel means a binary problem (logit > 0 is foreground). A class absent from both
    prediction and label is skipped; a case where all are absent gives NaN (ignored by fit's mean).

    Shape: ``logits (N, K, *spatial)``, ``label (N, 1, *spatial)`` integers -> ``(N,)`` floats.

    Used in week 3 through `fit`.
    """
    if label.ndim != logits.ndim or label.shape[1] != 1 or label.shape[2:] != logits.shape[2:]:
        raise ValueError(f"label must have shape (N, 1, *spatial) matching logits {tuple(logits.shape)}, "
                         f"got {tuple(label.shape)}")
    if logits.shape[1] == 1:
        pred, classes = (logits[:, 0] > 0).long(), [1]
    else:
        pred, classes = logits.argmax(dim=1), range(1, logits.shape[1])
    target = label[:, 0].long()
    scores = []
    for k in classes:
        p = (pred == k).flatten(1)
        t = (target == k).flatten(1)
        tp = (p & t).sum(1)
        dice = dice_from_counts(tp, p.sum(1) - tp, t.sum(1) - tp)       # the package's one Dice formula
        scores.append(torch.from_numpy(dice).to(logits.device))
    return torch.stack(scores, dim=1).nanmean(dim=1)


# ----------------------------------------------------------------------------- callbacks
class EarlyStopping:
    """A :func:`fit` callback: stop after ``patience`` epochs without a new best monitored value.

    ``fit`` calls each callback after every epoch as ``callback(model, epoch, history)`` (``epoch``
    counts from 1); one that returns True ends training. This one reads only ``history``, so it
    behaves the same after a resume and on every process under torchrun.

    Shape: ``(model, epoch, History)`` -> bool.

    Example:
        >>> fit(net, train, val, loss_fn=dice_ce_loss, epochs=50, callbacks=[EarlyStopping(5)])  # doctest: +SKIP
    """

    def __init__(self, patience: int) -> None:
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be a positive int, got {patience!r}")
        self.patience = patience

    def __call__(self, model: nn.Module, epoch: int, history: History) -> bool:
        return history.best_epoch is not None and epoch - history.best_epoch >= self.patience


# ----------------------------------------------------------------------------- small pieces of fit
def _unpack(batch) -> tuple:
    """(image, label, weight or None) from a dict batch or an (image, label, ...) tuple."""
    if isinstance(batch, dict):
        if "image" not in batch or "label" not in batch:
            raise ValueError(f"a dict batch needs keys 'image' and 'label', got {sorted(batch)}")
        return batch["image"], batch["label"], batch.get("weight")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1], None
    raise TypeError(f"batches must be dicts with 'image' and 'label' or (image, label) tuples, "
                    f"got {type(batch).__name__}")


def _reduce_loss(loss: torch.Tensor, weight: Optional[torch.Tensor], n: int) -> torch.Tensor:
    """A scalar from loss_fn's result: as is, the mean of per-sample losses, or their weighted mean."""
    if loss.ndim == 0 and weight is None:
        return loss
    if loss.shape != (n,):
        hint = " (the batch has a 'weight' per sample: wrap the loss as per_sample_loss(loss_fn))" \
            if weight is not None else ""
        raise ValueError(f"loss_fn must return a scalar or one loss per sample, shape ({n},), got shape "
                         f"{tuple(loss.shape)}{hint}")
    if weight is None:
        return loss.mean()
    weight = torch.as_tensor(weight).to(loss).flatten()
    if weight.shape != (n,) or not torch.isfinite(weight).all() or (weight < 0).any() or weight.sum() <= 0:
        raise ValueError(f"batch 'weight' must hold {n} finite, non-negative numbers with a positive sum, "
                         f"got {weight.tolist()}")
    return (weight * loss).sum() / weight.sum()


def _amp_settings(amp: Union[str, bool], device: torch.device) -> tuple:
    """(autocast dtype or None for float32, needs a GradScaler)."""
    if amp not in ("auto", True, False):
        raise ValueError(f"amp must be 'auto', True or False, got {amp!r}")
    if amp is True and device.type != "cuda":
        raise ValueError(f"amp=True needs a CUDA device, got {device.type}; use amp='auto'")
    if device.type != "cuda" or amp is False:
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False      # bf16 has float32's range: no loss scaling needed
    return torch.float16, True


# ----------------------------------------------------------------------------- the steps of fit
def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, *, loss_fn: Callable,
                    device: Union[str, torch.device] = "cpu", amp_dtype: Optional[torch.dtype] = None,
                    scaler=None, max_steps: Optional[int] = None, desc: Optional[str] = None) -> float:
    """One pass over ``loader``: forward, loss, backward, optimizer step; the mean training loss.

    For each batch: move it to ``device``, run the model (under autocast to ``amp_dtype`` if given),
    compute the loss in float32, ``backward``, ``optimizer.step()``. ``loss_fn(logits, label)``
    returns a scalar (the batch mean), or one loss per sample, shape ``(N,)``. A batch dict with a
    ``"weight"`` entry ``(N,)`` needs the per-sample form: the step then minimises the weighted mean
    ``sum(weight * loss) / sum(weight)`` (equal weights give the plain mean; see
    :func:`medseg_edu.reweighting.per_sample_loss`). ``desc`` shows a progress bar.

    Shape: batches ``image (N, C, *spatial)``, ``label (N, 1, *spatial)``, optional ``weight (N,)``
    -> a float (mean loss per sample, over all processes under torchrun).

    Used in week 3 through `fit`.
    """
    device = torch.device(device)
    model.train()
    sums = torch.zeros(2, dtype=torch.float64, device=device)   # loss * batch size, samples
    batches = progress_bar(loader, desc=desc, leave=False) if desc else loader
    for step, batch in enumerate(batches):
        if max_steps is not None and step >= max_steps:
            break
        image, label, weight = _unpack(batch)
        image = image.to(device, non_blocking=True)
        label = label.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(image)
        # the loss runs in float32 (outside autocast) for a stable sum
        outputs = outputs.float() if isinstance(outputs, torch.Tensor) else [o.float() for o in outputs]
        loss = _reduce_loss(deep_supervision_loss(outputs, label, loss_fn), weight, len(image))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at step {step + 1} ({desc or 'training'}); "
                                     f"lower lr (now {optimizer.param_groups[0]['lr']}) or check the data")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        sums += torch.stack([loss.detach().double() * len(image),
                             torch.tensor(float(len(image)), dtype=torch.float64, device=device)])
    sums = ddp.all_reduce_sum(sums)
    return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")


def validate(model: nn.Module, loader, *, loss_fn: Callable, metric: Callable = foreground_dice_score,
             device: Union[str, torch.device] = "cpu", amp_dtype: Optional[torch.dtype] = None) -> tuple:
    """The mean loss and the mean of ``metric`` over the cases of ``loader``, without training.

    ``metric(logits, label)`` gives one score per case, NaN to skip a case. Sample weights are
    ignored: validation measures the plain mean.

    Shape: batches as in :func:`train_one_epoch` -> ``(val_loss, val_score)`` floats (NaN if empty),
    summed over all processes under torchrun.

    Used in week 3 through `fit`.
    """
    device = torch.device(device)
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss*n, n, metric sum, metric count
    with torch.no_grad():
        for batch in loader:
            image, label, _ = _unpack(batch)
            image, label = image.to(device), label.to(device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(image)
            logits = logits.float()
            scores = metric(logits, label).double().flatten()
            valid = ~torch.isnan(scores)
            loss = _reduce_loss(loss_fn(logits, label), None, len(image))
            sums += torch.stack([loss.double() * len(image),
                                 torch.tensor(float(len(image)), dtype=torch.float64, device=device),
                                 scores[valid].sum(), valid.sum().double()])
    sums = ddp.all_reduce_sum(sums)
    val_loss = float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")
    val_score = float(sums[2] / sums[3]) if sums[3] > 0 else float("nan")
    return val_loss, val_score


# ----------------------------------------------------------------------------- fit
def fit(model: nn.Module, train_loader, val_loader=None, *, loss_fn: Callable, epochs: int,
        optimizer: Optional[torch.optim.Optimizer] = None, lr: float = 1e-3, scheduler=None,
        device: Union[str, torch.device] = "auto", amp: Union[str, bool] = "auto",
        val_metric: Callable = foreground_dice_score, callbacks: Sequence[Callable] = (),
        checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
        resume: Optional[Union[str, os.PathLike]] = None, max_steps: Optional[int] = None,
        seed: Optional[int] = None, progress: bool = True) -> History:
    """Train ``model`` for ``epochs`` epochs and return the :class:`History`.

    Each epoch is :func:`train_one_epoch`, then :func:`validate`, then the checkpoints, then the
    callbacks. Args:
        model: any network mapping ``(N, C, *sp)`` to logits ``(N, K, *sp)``; a list of logits
            (deep supervision) is handled by :func:`medseg_edu.models.deep_supervision_loss`.
        train_loader, val_loader: iterables of batches, dicts ``{"image", "label"}`` (optionally
            ``"weight"``, one per sample) or ``(image, label)`` tuples; labels ``(N, 1, *sp)`` int64.
        loss_fn: ``loss_fn(logits, label)`` -> a scalar, or one loss per sample ``(N,)``; batches
            with ``"weight"`` need the per-sample form and minimise ``sum(w * loss) / sum(w)``.
        epochs: total number of epochs (counting those of a resumed run).
        optimizer: default ``torch.optim.Adam(model.parameters(), lr=lr)``.
        scheduler: a learning-rate scheduler stepped once after every epoch (optional).
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "mps".
        amp: "auto" = mixed precision on CUDA only (bf16 where supported, else fp16 with a
            GradScaler); False = always float32; True = require CUDA.
        val_metric: ``val_metric(logits, label) -> (N,)`` per-case scores (NaN = skip), higher is
            better; its mean is stored as ``history.val_dice`` and picks the best checkpoint.
        callbacks: functions called after every epoch as ``callback(model, epoch, history)``;
            one returning True stops training (e.g. :class:`EarlyStopping`).
        checkpoint_dir: write ``last.pt`` every epoch and ``best.pt`` when the monitored value
            improves, in the format of :mod:`medseg_edu.checkpoint` (``load_checkpoint`` rebuilds
            the model; the optimizer, scheduler, scaler, history and random states serve ``resume``).
        resume: a checkpoint file or a checkpoint_dir: continue its history from its epoch (with
            the same optimizer and scheduler classes).
        max_steps: at most this many training batches per epoch (short runs in fast mode).
        seed: if given, :func:`seed_everything` (seed the model's initialisation yourself, before
            building it).
        progress: show a progress bar and one summary line per epoch.

    Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel: each
    process sees 1/N of every epoch (DataLoaders get a DistributedSampler), gradients and
    validation metrics are averaged over processes, only rank 0 prints and writes checkpoints.

    Shape: batches ``image (N, C, *spatial)``, ``label (N, 1, *spatial)`` -> History.

    Example:
        >>> history = fit(net, train_loader, val_loader, loss_fn=dice_ce_loss, epochs=10)  # doctest: +SKIP
        >>> history.to_frame().tail()                                                      # doctest: +SKIP

    Taught in week 3.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (logits, label) -> scalar, got {type(loss_fn).__name__}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or a positive int, got {max_steps!r}")
    callbacks = list(callbacks)
    if not all(callable(c) for c in callbacks):
        raise TypeError(f"callbacks must be callables (model, epoch, history) -> bool, got {callbacks!r}")

    # --- processes, device, precision
    dist_env = ddp.distributed_env()
    rank, world_size, local_rank = dist_env if dist_env else (0, 1, 0)
    main = rank == 0
    device = pick_device(device, verbose=progress and main)
    if dist_env:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        ddp.init_distributed(device.type)
    amp_dtype, use_scaler = _amp_settings(amp, device)
    if seed is not None:
        seed_everything(seed)

    # --- optimizer, and the state of an earlier run
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    history, start_epoch = History(), 0
    if resume is not None:
        saved, start_epoch = _restore_training_state(resume, model, optimizer, scheduler, scaler, train_loader)
        history = History(**saved)

    train_model = model
    if dist_env:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)
        train_loader = ddp.distributed_loader(train_loader, seed=seed or 0)
        if val_loader is not None:
            val_loader = ddp.distributed_loader(val_loader, shuffle=False)

    config = {"epochs": epochs, "lr": lr, "seed": seed, "max_steps": max_steps, "world_size": world_size,
              "amp": str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "off",
              "loss_fn": getattr(loss_fn, "__name__", type(loss_fn).__name__)}
    if checkpoint_dir is not None and main:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)

    for epoch in range(start_epoch, epochs):
        start = time.perf_counter()
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)       # a new shuffle every epoch under DistributedSampler
        dataset = getattr(train_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)       # new augmentation every epoch (the protocol of medseg_edu.transforms)
        history.lr.append(float(optimizer.param_groups[0]["lr"]))
        history.train_loss.append(train_one_epoch(
            train_model, train_loader, optimizer, loss_fn=loss_fn, device=device, amp_dtype=amp_dtype,
            scaler=scaler, max_steps=max_steps, desc=f"epoch {epoch + 1}/{epochs}" if progress and main else None))
        if scheduler is not None:
            scheduler.step()
        val_loss, val_score = float("nan"), float("nan")
        if val_loader is not None:
            val_loss, val_score = validate(model, val_loader, loss_fn=loss_fn, metric=val_metric, device=device,
                                           amp_dtype=amp_dtype)
        history.val_loss.append(val_loss)
        history.val_dice.append(val_score)
        history.seconds.append(time.perf_counter() - start)

        monitored = val_score if val_loader is not None else -history.train_loss[-1]
        improved = not math.isnan(monitored) and (history.best_score is None or monitored > history.best_score)
        if improved:
            history.best_epoch, history.best_score = epoch + 1, monitored
        if checkpoint_dir is not None and main:
            state = dict(optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch + 1,
                         history=asdict(history), config=config, rng=_rng_state(train_loader))
            save_checkpoint(model, Path(checkpoint_dir) / "last.pt", **state)
            if improved:
                save_checkpoint(model, Path(checkpoint_dir) / "best.pt", **state)
        if progress and main:
            print(f"epoch {epoch + 1}/{epochs}  train_loss {history.train_loss[-1]:.4f}  "
                  f"val_loss {val_loss:.4f}  val_dice {val_score:.4f}  {history.seconds[-1]:.1f} s"
                  + ("  *best*" if improved else ""))
        ddp.barrier()
        if any([bool(callback(model, epoch + 1, history)) for callback in callbacks]):   # call every one
            break
    return history
