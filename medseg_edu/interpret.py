"""Where does a segmentation network look? CAM and Grad-CAM for U-Nets (2D and 3D).

Both methods weight the feature maps ``A_k`` of one layer and keep the positive part:
``map = ReLU(sum_k alpha_k * A_k)``, upsampled to the input size and divided by its maximum.

- :func:`cam` (Zhou et al. 2016): ``alpha_k`` are the weights of the 1x1 output head that reads
  the layer, so it only applies to the layer feeding the head (``"last_decoder"`` in a U-Net).
  There ``sum_k alpha_k A_k`` is exactly the logit map of the class minus its bias.
- :func:`grad_cam` (Selvaraju et al. 2017; for segmentation Vinogradova et al. 2020): ``alpha_k``
  is the spatial average of the gradient of a score with respect to ``A_k``; the score is the
  class's logit summed over the predicted mask of that class (``reduce="mask"``) or averaged over
  the whole image (``reduce="mean"``). Works for any layer, e.g. ``"bottleneck"``.

Layers are given as a module or by name: ``"bottleneck"`` and ``"last_decoder"`` (the attributes
every model in :mod:`medseg_edu.models` has), or any name from ``model.named_modules()``.
Hooks are always removed and the model's train/eval modes restored, even after an error.

Taught in week 3.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medseg_edu.arguments import check_choice, check_image_batch

__all__ = ["resolve_layer", "cam", "grad_cam", "overlay_cam"]

_REDUCES = ("mean", "mask")


def resolve_layer(model: nn.Module, layer: Union[str, nn.Module]) -> nn.Module:
    """Find the layer whose activations are explained: a module of ``model`` or its name.

    Shape: (model, name or module) -> the module.

    Used in week 3 through `grad_cam`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module or a name (str), got {type(layer).__name__}")
    if layer in ("bottleneck", "last_decoder") and isinstance(getattr(model, layer, None), nn.Module):
        return getattr(model, layer)
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n and "." not in n]
        raise ValueError(f"layer {layer!r} not found in {type(model).__name__}; use 'bottleneck', "
                         f"'last_decoder' or a name from model.named_modules(), e.g. {names[:6]}")
    return modules[layer]


def _check_class(target_class: int, num_classes: int) -> None:
    if not isinstance(target_class, int) or isinstance(target_class, bool) \
            or not 0 <= target_class < num_classes:
        raise ValueError(f"target_class must be an int in [0, {num_classes - 1}] for a network with "
                         f"{num_classes} output channels, got {target_class!r}")


def _run_with_hook(model: nn.Module, layer: nn.Module, image: torch.Tensor) -> tuple:
    """Forward ``image`` in eval mode with gradients on; return (logits, the layer's activations).

    The hook swaps the layer's output for a detached copy that requires grad, so gradients with
    respect to the activations are available even when the model's parameters are frozen (and
    the parameters' ``.grad`` are never touched). The hook
    is removed and every module's train/eval flag restored before returning (or raising).
    """
    captured = {}

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the chosen layer must output one tensor, got {type(output).__name__}")
        activations = output.detach().requires_grad_(True)
        captured["activations"] = activations
        return activations.clone()      # a copy, so a later in-place op (ReLU(inplace=True)) is fine

    saved = {module: module.training for module in model.modules()}
    handle = layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(image)
    finally:
        handle.remove()
        for module, flag in saved.items():
            module.training = flag
    if "activations" not in captured:
        raise ValueError(f"layer {type(layer).__name__} was not used in the forward pass; "
                         "choose a layer the network runs in eval mode")
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    return logits, captured["activations"]


def _finish(weighted: torch.Tensor, size) -> torch.Tensor:
    """ReLU, upsample to the input size, divide each map by its maximum (all-zero stays zero)."""
    maps = F.relu(weighted)[:, None]                                  # (N, 1, *spatial_layer)
    if tuple(maps.shape[2:]) != tuple(size):
        mode = "bilinear" if len(size) == 2 else "trilinear"
        maps = F.interpolate(maps, size=tuple(size), mode=mode, align_corners=False)
    maps = maps[:, 0].clamp_min(0)
    peak = maps.flatten(1).amax(dim=1).reshape((-1,) + (1,) * len(size))
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps)).detach()


def grad_cam(model: nn.Module, image: torch.Tensor, *, target_class: int,
             layer: Union[str, nn.Module] = "bottleneck", reduce: str = "mask") -> torch.Tensor:
    """Grad-CAM for a segmentation network.

    1. Run the network (eval mode) and keep the activations ``A`` of ``layer``.
    2. Score = logit of ``target_class`` summed over the voxels predicted as that class
       (``reduce="mask"``; softmax argmax, or logit > 0 for a one-channel sigmoid network) or
       averaged over the whole image (``reduce="mean"``).
    3. ``alpha_k`` = spatial mean of d score / d A_k; map = ReLU(sum_k alpha_k A_k).
    4. Upsample to the input size and divide by the maximum (each image separately).

    An image where nothing is predicted as ``target_class`` has no mask: its map is all zeros
    with ``reduce="mask"``.

    Args:
        model: a segmentation network returning logits ``(N, K, *spatial)``.
        image: a batch ``(N, C, *spatial)``.
        target_class: the output channel to explain.
        layer: "bottleneck", "last_decoder", a module name, or the module itself.
        reduce: "mask" or "mean" (see above).

    Shape: ``(N, C, *spatial)`` -> maps ``(N, *spatial)`` in [0, 1].

    Taught in week 3.
    """
    check_image_batch(image)
    module = resolve_layer(model, layer)
    check_choice(reduce, _REDUCES, "reduce")
    logits, activations = _run_with_hook(model, module, image)
    _check_class(target_class, logits.shape[1])
    class_logits = logits[:, target_class]
    if reduce == "mean":
        score = class_logits.flatten(1).mean(dim=1).sum()
    else:
        if logits.shape[1] == 1:
            mask = class_logits > 0
        else:
            mask = logits.argmax(dim=1) == target_class
        score = (class_logits * mask).sum()
    gradients, = torch.autograd.grad(score, activations, allow_unused=True)
    if gradients is None:
        gradients = torch.zeros_like(activations)
    alpha = gradients.flatten(2).mean(dim=2)                          # (N, channels)
    alpha = alpha.reshape(alpha.shape + (1,) * (activations.ndim - 2))
    weighted = (alpha * activations).sum(dim=1).detach()
    return _finish(weighted, image.shape[2:])


def cam(model: nn.Module, image: torch.Tensor, *, target_class: int,
        layer: Union[str, nn.Module] = "last_decoder",
        head: Union[str, nn.Module] = "head") -> torch.Tensor:
    """Class activation map: the layer's feature maps weighted by the 1x1 output head.

    ``map = ReLU(sum_k w[target_class, k] * A_k)`` with ``w`` the weights of ``head``, the 1x1
    convolution that turns the layer's features into logits; upsampled and divided by its maximum.
    For a U-Net (``layer="last_decoder"``, ``head="head"``) this is the class's logit map minus the
    head's bias, clipped at 0. For a layer deeper inside the network use :func:`grad_cam`.

    Shape: ``(N, C, *spatial)`` -> maps ``(N, *spatial)`` in [0, 1].

    Taught in week 3.
    """
    check_image_batch(image)
    module = resolve_layer(model, layer)
    head_module = resolve_layer(model, head)
    weight = getattr(head_module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != image.ndim \
            or any(s != 1 for s in weight.shape[2:]):
        raise ValueError(f"head must be a 1x1 convolution reading the layer's features, got "
                         f"{type(head_module).__name__} (use grad_cam for other layers)")
    _check_class(target_class, weight.shape[0])
    logits, activations = _run_with_hook(model, module, image)
    if activations.shape[1] != weight.shape[1]:
        raise ValueError(f"layer outputs {activations.shape[1]} channels but head reads "
                         f"{weight.shape[1]}: CAM needs the layer that feeds the head "
                         "(use grad_cam for other layers)")
    w = weight[target_class].detach().reshape(1, -1, *([1] * (activations.ndim - 2)))
    weighted = (w * activations.detach()).sum(dim=1)
    return _finish(weighted, image.shape[2:])


def overlay_cam(image2d, cam2d, *, ax=None, alpha: float = 0.5, cmap: str = "jet"):
    """Draw a CAM over a 2D image (grayscale ``(H, W)`` or RGB ``(3, H, W)``); return the axes.

    Shape: ``image2d (H, W)`` or ``(3, H, W)``, ``cam2d (H, W)`` -> a matplotlib Axes.

    Taught in week 3.
    """
    import matplotlib.pyplot as plt

    image2d = image2d.detach().cpu().numpy() if isinstance(image2d, torch.Tensor) else np.asarray(image2d)
    cam2d = cam2d.detach().cpu().numpy() if isinstance(cam2d, torch.Tensor) else np.asarray(cam2d)
    if image2d.ndim == 3 and image2d.shape[0] in (3, 4):
        image2d = np.moveaxis(image2d, 0, -1)
    elif image2d.ndim != 2:
        raise ValueError(f"image2d must be (H, W) or (3, H, W), got shape {image2d.shape}")
    if cam2d.shape != image2d.shape[:2]:
        raise ValueError(f"cam2d must have the image's shape {image2d.shape[:2]}, got {cam2d.shape}")
    if ax is None:
        _, ax = plt.subplots()
    ax.imshow(image2d, cmap="gray" if image2d.ndim == 2 else None)
    ax.imshow(cam2d, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    return ax
