"""Segmentation losses: soft Dice (squared and plain), Dice + cross-entropy, Dice + BCE, focal, Tversky.

Every loss is a plain function ``loss(pred, target, *, option=...)`` that returns a tensor you can
call ``.backward()`` on, plus a thin ``nn.Module`` wrapper (``DiceLoss``, ...) that stores the
options, for code that expects a module.

Conventions shared by all losses
--------------------------------
``pred`` is the network output, shape ``(N, K, *spatial)`` (K channels). What the channels mean is
given by one argument, ``activation``: "softmax" (logits of exclusive classes, channel 0 the
background), "sigmoid" (logits of independent channels, all foreground, so ``include_background``
has nothing to drop) or "none" (probabilities: class probabilities when K >= 2, one foreground
probability when K = 1), as defined once for the whole package in
:func:`medseg_edu.arguments.check_activation`.

``target`` is either integer labels, shape ``(N, 1, *spatial)`` or ``(N, *spatial)``, with values in
``[0, K)`` (or {0, 1} when K = 1), which are converted to one-hot; or a float/one-hot tensor with the
same shape as ``pred`` and values in [0, 1].

Mixed precision (AMP): inputs are upcast to float32 before any sum, so float16 network outputs give
the same finite loss as float32 ones (a float16 sum over 512 x 512 pixels would overflow).

Taught in week 4.
"""
from __future__ import annotations

import inspect
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from medseg_edu.arguments import ACTIVATIONS, check_activation, check_choice, check_probabilities

__all__ = [
    "soft_dice_loss",
    "dice_ce_loss",
    "dice_bce_loss",
    "focal_loss",
    "tversky_loss",
    "DiceLoss",
    "DiceCELoss",
    "DiceBCELoss",
    "FocalLoss",
    "TverskyLoss",
]

REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Input checks and preparation (private helpers)
# --------------------------------------------------------------------------------------------

def _shape(t: torch.Tensor) -> tuple:
    return tuple(t.shape)


def _check_pred(pred: torch.Tensor, activation: str) -> bool:
    """Check ``pred`` and ``activation``; True if the channels are exclusive classes."""
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    if not pred.is_floating_point():
        raise TypeError(f"pred must be a floating-point tensor (logits or probabilities), got {pred.dtype}")
    if pred.ndim < 3:
        raise ValueError(
            f"pred must have shape (N, K, *spatial) with at least one spatial axis, got {_shape(pred)}")
    return check_activation(activation, pred.shape[1], choices=ACTIVATIONS)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32 and float64 unchanged (gradcheck uses float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _probabilities(pred: torch.Tensor, activation: str) -> torch.Tensor:
    """Upcast, then apply the activation. Checks that activation='none' really got probabilities."""
    pred = _upcast(pred)
    if activation == "softmax":
        return torch.softmax(pred, dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(pred)
    return check_probabilities(pred, "pred", hint="activation='none' expects probabilities; for logits use "
                                                  "activation='softmax' or 'sigmoid'")


def _one_hot_target(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Return the target as a float tensor with the shape of ``pred`` (one-hot for integer labels)."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    num_classes = pred.shape[1]
    dtype = torch.promote_types(pred.dtype, torch.float32)
    if target.is_floating_point():
        if target.shape != pred.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {_shape(pred)} and {_shape(target)} "
                f"(a float target must be one-hot/probabilities (N, K, *spatial); integer labels must "
                f"have an integer dtype: use target.long())")
        low, high = float(target.min()), float(target.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"a float target must have values in [0, 1], got {low:.4g} to {high:.4g}")
        return target.to(dtype)

    # Integer (or bool) labels.
    if target.shape == pred.shape and num_classes > 1:
        if bool(((target != 0) & (target != 1)).any()):
            raise ValueError(
                f"target has the shape of pred {_shape(pred)} so it is read as one-hot, but it has "
                f"values other than 0 and 1")
        return target.to(dtype)
    if target.ndim == pred.ndim - 1:
        target = target.unsqueeze(1)
    if target.ndim != pred.ndim or target.shape[1] != 1 or target.shape[2:] != pred.shape[2:] \
            or target.shape[0] != pred.shape[0]:
        raise ValueError(
            f"pred and target must have the same shape, got {_shape(pred)} and {_shape(target)} "
            f"(integer labels may be (N, 1, *spatial) or (N, *spatial))")
    labels = target.long()
    if num_classes == 1:
        if bool(((labels != 0) & (labels != 1)).any()):
            raise ValueError(
                f"with one channel the target must be binary {{0, 1}}, got values from "
                f"{int(labels.min())} to {int(labels.max())}")
        return labels.to(dtype)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"target labels must be in [0, {num_classes}) for pred with {num_classes} channels, "
            f"got values from {low} to {high}")
    one_hot = F.one_hot(labels[:, 0], num_classes)          # (N, *spatial, K)
    return one_hot.movedim(-1, 1).to(dtype)                  # (N, K, *spatial)


def _drop_background(probs: torch.Tensor, target: torch.Tensor, exclusive: bool,
                     include_background: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop channel 0 when it is a background channel (exclusive classes: softmax, or 'none' with K >= 2)."""
    if include_background or not exclusive:
        return probs, target
    return probs[:, 1:], target[:, 1:]


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    check_choice(reduction, REDUCTIONS, "reduction")
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _soft_overlap_inputs(pred: torch.Tensor, target: torch.Tensor, *, activation: str, include_background: bool,
                         batch_dice: bool, reduction: str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """What every soft-overlap loss starts from: probabilities, the one-hot target (background dropped
    unless included) and the axes to sum over (spatial, plus the batch axis with ``batch_dice``)."""
    exclusive = _check_pred(pred, activation)
    check_choice(reduction, REDUCTIONS, "reduction")
    probs = _probabilities(pred, activation)
    onehot = _one_hot_target(target, probs)
    probs, onehot = _drop_background(probs, onehot, exclusive, include_background)
    axes = list(range(2, probs.ndim))
    return probs, onehot, [0] + axes if batch_dice else axes


# --------------------------------------------------------------------------------------------
# Loss functions
# --------------------------------------------------------------------------------------------

def soft_dice_loss(pred: torch.Tensor, target: torch.Tensor, *, activation: str = "softmax",
                   squared: bool = True, smooth: float = 1.0, include_background: bool = False,
                   reduction: str = "mean", batch_dice: bool = False) -> torch.Tensor:
    """Soft Dice loss, one minus the soft Dice coefficient per class.

    With ``p`` the probabilities and ``g`` the one-hot target of one class, summed over voxels:

    * ``squared=True`` (V-Net, Milletari et al. 2016; the AI-for-Medicine course form):
      ``1 - (2 * sum(p * g) + smooth) / (sum(p**2) + sum(g**2) + smooth)``
    * ``squared=False`` (plain form): ``1 - (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)``

    The loss is computed per image and class (or per class over the whole batch with
    ``batch_dice=True``) and then averaged (``reduction="mean"``), summed, or returned as is
    (``"none"``: shape ``(N, K')``, or ``(K',)`` with ``batch_dice``).

    ``include_background=False`` (default) drops channel 0 for softmax (and for ``"none"`` with
    K >= 2), so the huge, easy background class cannot dominate: an all-background prediction
    then scores a loss near 1. With ``activation="sigmoid"`` every channel is foreground and
    nothing is dropped.

    Shape:
        pred ``(N, K, *spatial)`` logits (or probabilities with ``activation="none"``);
        target ``(N, 1, *spatial)`` / ``(N, *spatial)`` integer labels or ``(N, K, *spatial)`` one-hot;
        returns a scalar (``reduction="mean"``/``"sum"``).

    Example:
        >>> logits = torch.randn(2, 4, 32, 32, requires_grad=True)
        >>> labels = torch.randint(0, 4, (2, 1, 32, 32))
        >>> soft_dice_loss(logits, labels).backward()

    Taught in week 4.
    """
    probs, onehot, axes = _soft_overlap_inputs(pred, target, activation=activation,
                                               include_background=include_background, batch_dice=batch_dice,
                                               reduction=reduction)
    intersection = (probs * onehot).sum(dim=axes)
    if squared:
        denominator = (probs * probs).sum(dim=axes) + (onehot * onehot).sum(dim=axes)
    else:
        denominator = probs.sum(dim=axes) + onehot.sum(dim=axes)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    return _reduce(1.0 - dice, reduction)


def _cross_entropy(logits: torch.Tensor, onehot: torch.Tensor,
                   class_weights: Optional[Sequence[float]]) -> torch.Tensor:
    """Mean over voxels of -sum_k w_k g_k log p_k, divided by the mean weight of the true classes.

    Without weights this is the usual mean cross-entropy; with weights and hard labels it equals
    ``torch.nn.functional.cross_entropy(logits, labels, weight=w)``.
    """
    log_probs = torch.log_softmax(logits, dim=1)
    if class_weights is None:
        return -(onehot * log_probs).sum(dim=1).mean()
    weights = torch.as_tensor(class_weights, dtype=log_probs.dtype, device=log_probs.device)
    if weights.ndim != 1 or weights.numel() != logits.shape[1]:
        raise ValueError(f"class_weights must have one weight per channel ({logits.shape[1]}), "
                         f"got {tuple(weights.shape)}")
    if bool((weights < 0).any()):
        raise ValueError("class_weights must be non-negative")
    weights = weights.view([1, -1] + [1] * (logits.ndim - 2))
    weighted = weights * onehot
    return -(weighted * log_probs).sum() / weighted.sum()


def dice_ce_loss(pred: torch.Tensor, target: torch.Tensor, *, squared: bool = True,
                 smooth: float = 1.0, include_background: bool = False, batch_dice: bool = False,
                 dice_weight: float = 1.0, ce_weight: float = 1.0,
                 class_weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Soft Dice (softmax) plus cross-entropy: ``dice_weight * Dice + ce_weight * CE``.

    ``pred`` are logits of K >= 2 exclusive classes (softmax is applied inside). The Dice part is
    :func:`soft_dice_loss` with the given options (mean over classes and images); the
    cross-entropy part is the mean over all voxels and always includes the background class.
    ``class_weights`` (one per channel) weight the cross-entropy the way
    ``torch.nn.functional.cross_entropy(weight=...)`` does: a weighted mean over voxels.

    Shape:
        pred ``(N, K, *spatial)`` logits, K >= 2; target ``(N, 1, *spatial)`` / ``(N, *spatial)``
        integer labels or ``(N, K, *spatial)`` one-hot; returns a scalar.

    Taught in week 2.
    """
    _check_pred(pred, "softmax")
    logits = _upcast(pred)
    onehot = _one_hot_target(target, logits)
    dice = soft_dice_loss(logits, onehot, activation="softmax", squared=squared, smooth=smooth,
                          include_background=include_background, batch_dice=batch_dice)
    ce = _cross_entropy(logits, onehot, class_weights)
    return dice_weight * dice + ce_weight * ce


def dice_bce_loss(pred: torch.Tensor, target: torch.Tensor, *, squared: bool = True,
                  smooth: float = 1.0, batch_dice: bool = False, dice_weight: float = 1.0,
                  bce_weight: float = 1.0) -> torch.Tensor:
    """Soft Dice (sigmoid) plus binary cross-entropy: ``dice_weight * Dice + bce_weight * BCE``.

    ``pred`` are logits of K >= 1 independent binary channels (sigmoid is applied inside); every
    channel is foreground. BCE is the mean over all elements, computed from logits in a
    numerically stable way.

    Shape:
        pred ``(N, K, *spatial)`` logits; target ``(N, K, *spatial)`` binary/float, or for K = 1
        also ``(N, 1, *spatial)`` / ``(N, *spatial)`` integer {0, 1}; returns a scalar.

    Taught in week 4.
    """
    _check_pred(pred, "sigmoid")
    logits = _upcast(pred)
    onehot = _one_hot_target(target, logits)
    dice = soft_dice_loss(logits, onehot, activation="sigmoid", squared=squared, smooth=smooth,
                          batch_dice=batch_dice)
    bce = F.binary_cross_entropy_with_logits(logits, onehot)
    return dice_weight * dice + bce_weight * bce


def focal_loss(pred: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0,
               alpha: Union[float, Sequence[float], None] = None, activation: str = "softmax",
               reduction: str = "mean") -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 - p_t) ** gamma``.

    Well-classified voxels (``p_t`` near 1) contribute almost nothing, so training focuses on
    the hard ones. ``gamma=0`` and ``alpha=None`` give plain cross-entropy.

    * softmax (and ``"none"`` with K >= 2): per voxel ``-sum_k a_k g_k (1 - p_k)**gamma log p_k``;
      ``reduction="mean"`` averages over voxels (``"none"`` returns ``(N, *spatial)``). ``alpha``
      is a sequence of K class weights, or a float ``a`` meaning ``[1 - a, a, ..., a]``
      (background gets ``1 - a``). Note: MONAI's ``FocalLoss(use_softmax=True)`` also averages
      over the K channels, so its value is this one divided by K.
    * sigmoid (and ``"none"`` with K = 1): per element binary focal loss
      ``-a g (1 - p)**gamma log p - (1 - a)(1 - g) p**gamma log(1 - p)``, averaged over all
      elements (``"none"`` returns ``(N, K, *spatial)``). ``alpha`` is a float in [0, 1], the
      weight of positives (``None``: 1 for both).

    Shape:
        pred ``(N, K, *spatial)``; target as in :func:`soft_dice_loss`; returns a scalar
        (``reduction="mean"``/``"sum"``).

    Taught in week 4.
    """
    exclusive = _check_pred(pred, activation)
    check_choice(reduction, REDUCTIONS, "reduction")
    logits = _upcast(pred)
    num_classes = pred.shape[1]
    if activation == "none":
        probs = _probabilities(logits, "none")
        eps = torch.finfo(probs.dtype).tiny
        log_p = torch.log(probs.clamp_min(eps))
        log_not_p = torch.log((1.0 - probs).clamp_min(eps))
    elif activation == "softmax":
        log_p = torch.log_softmax(logits, dim=1)
    else:
        log_p = F.logsigmoid(logits)
        log_not_p = F.logsigmoid(-logits)
    target_1h = _one_hot_target(target, logits)

    if exclusive:
        probs = log_p.exp()
        per_class = -target_1h * (1.0 - probs).pow(gamma) * log_p
        if alpha is not None:
            if isinstance(alpha, (int, float)):
                weights = [1.0 - float(alpha)] + [float(alpha)] * (num_classes - 1)
            else:
                weights = [float(a) for a in alpha]
            if len(weights) != num_classes:
                raise ValueError(f"alpha must have one weight per channel ({num_classes}), "
                                 f"got {len(weights)}")
            w = torch.tensor(weights, dtype=per_class.dtype, device=per_class.device)
            per_class = per_class * w.view([1, -1] + [1] * (pred.ndim - 2))
        return _reduce(per_class.sum(dim=1), reduction)

    probs = log_p.exp()
    positive = -target_1h * (1.0 - probs).pow(gamma) * log_p
    negative = -(1.0 - target_1h) * probs.pow(gamma) * log_not_p
    if alpha is not None:
        if not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"with sigmoid, alpha must be a float in [0, 1], got {alpha!r}")
        positive = float(alpha) * positive
        negative = (1.0 - float(alpha)) * negative
    return _reduce(positive + negative, reduction)


def tversky_loss(pred: torch.Tensor, target: torch.Tensor, *, activation: str = "softmax",
                 alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0,
                 include_background: bool = False, reduction: str = "mean",
                 batch_dice: bool = False) -> torch.Tensor:
    """Tversky loss (Salehi et al. 2017): Dice with separate weights on false positives and negatives.

    ``1 - (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)`` with soft counts
    ``TP = sum(p g)``, ``FP = sum(p (1 - g))``, ``FN = sum((1 - p) g)``. ``alpha`` weights false
    positives, ``beta`` false negatives: ``beta > alpha`` (default 0.3/0.7) favours sensitivity,
    useful for small lesions. ``alpha = beta = 0.5`` is the plain soft Dice loss (exactly so
    with ``smooth=0``). Options and reduction as in :func:`soft_dice_loss`.

    Shape:
        pred ``(N, K, *spatial)``; target as in :func:`soft_dice_loss`; returns a scalar
        (``reduction="mean"``/``"sum"``).
    """
    probs, onehot, axes = _soft_overlap_inputs(pred, target, activation=activation,
                                               include_background=include_background, batch_dice=batch_dice,
                                               reduction=reduction)
    tp = (probs * onehot).sum(dim=axes)
    fp = (probs * (1.0 - onehot)).sum(dim=axes)
    fn = ((1.0 - probs) * onehot).sum(dim=axes)
    index = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return _reduce(1.0 - index, reduction)


# --------------------------------------------------------------------------------------------
# nn.Module wrappers: store the options, call the function
# --------------------------------------------------------------------------------------------

class _LossModule(nn.Module):
    """Shared body of the wrappers: check the option names once, call ``self.function``."""

    function = staticmethod(soft_dice_loss)

    def __init__(self, **options) -> None:
        super().__init__()
        signature = inspect.signature(self.function)
        allowed = [name for name, p in signature.parameters.items() if p.kind == p.KEYWORD_ONLY]
        for name in options:
            if name not in allowed:
                raise TypeError(f"{type(self).__name__} got an unknown option {name!r}; "
                                f"allowed options: {allowed}")
        self.options = options

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.function(pred, target, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class DiceLoss(_LossModule):
    """Module form of :func:`soft_dice_loss`: ``DiceLoss(squared=False)(pred, target)``.

    Shape: as :func:`soft_dice_loss`.
    """

    function = staticmethod(soft_dice_loss)


class DiceCELoss(_LossModule):
    """Module form of :func:`dice_ce_loss`. Shape: as :func:`dice_ce_loss`."""

    function = staticmethod(dice_ce_loss)


class DiceBCELoss(_LossModule):
    """Module form of :func:`dice_bce_loss`. Shape: as :func:`dice_bce_loss`."""

    function = staticmethod(dice_bce_loss)


class FocalLoss(_LossModule):
    """Module form of :func:`focal_loss`. Shape: as :func:`focal_loss`."""

    function = staticmethod(focal_loss)


class TverskyLoss(_LossModule):
    """Module form of :func:`tversky_loss`. Shape: as :func:`tversky_loss`."""

    function = staticmethod(tversky_loss)
