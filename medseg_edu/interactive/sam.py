"""An adapter for SAM-architecture checkpoints (SAM, MedSAM) that the user supplies as a file.

The weights cannot be shipped with the course: download a checkpoint yourself (SAM ViT-B
``sam_vit_b_01ec64.pth`` from the segment-anything repository, or MedSAM's ``medsam_vit_b.pth``),
install the extra ``pip install "medseg-edu[sam]"`` (the ``segment-anything`` package, which imports
``torchvision``) and call::

    model = load_sam("medsam_vit_b.pth")                     # doctest: +SKIP
    mask = sam_segment(model, image, box, style="medsam")    # doctest: +SKIP

What the adapter does, as SAM's own ``SamPredictor`` and MedSAM's inference script do it:

- ``style="sam"``: the image (min-max scaled to 0..255, a grey image repeated to 3 channels) is
  resized so that its longer side is 1024 (:func:`sam_resize_shape`), normalised with SAM's pixel
  mean and standard deviation (the model's ``pixel_mean``/``pixel_std``, 123.675, 116.28, 103.53 and
  58.395, 57.12, 57.375) and padded with zeros at the bottom and right to 1024 x 1024; the box is
  scaled to the resized frame (:func:`sam_scale_box`); the 256 x 256 mask logits are upsampled to
  1024 x 1024, the padding is cropped away and the rest is resized to the original image
  (:func:`sam_postprocess`); the mask is logit > 0.
- ``style="medsam"``: the image is resized to 1024 x 1024 without keeping its aspect ratio and min-max
  scaled to [0, 1] (no mean/std, no padding); the box is scaled by 1024 / W and 1024 / H; the
  256 x 256 logits are resized straight to the original size; the mask is sigmoid > 0.5.

Coordinates are SAM's: ``x`` = column, ``y`` = row, box ``(x0, y0, x1, y1)`` (as in
:mod:`medseg_edu.interactive.prompts`).
"""
from __future__ import annotations

import os
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from medseg_edu.arguments import check_choice, check_int
from medseg_edu.interactive.prompts import _as_image

__all__ = ["SAM_PIXEL_MEAN", "SAM_PIXEL_STD", "load_sam", "sam_resize_shape", "sam_scale_box", "sam_preprocess",
           "sam_postprocess", "sam_segment"]

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
_STYLES = ("sam", "medsam")


def load_sam(checkpoint: Union[str, "os.PathLike[str]", None], *, model_type: str = "vit_b") -> torch.nn.Module:
    """A SAM-architecture model from ``segment_anything.sam_model_registry``, weights from ``checkpoint``.

    ``checkpoint=None`` builds the architecture with random weights (for tests). Needs the extra
    ``[sam]``; without it an ImportError says what to install.

    Shape: -> a ``segment_anything.modeling.Sam`` in eval mode.

    Taught in week 8.
    """
    try:
        from segment_anything import sam_model_registry
    except (ImportError, RuntimeError, OSError) as error:  # torchvision built for another torch: RuntimeError
        raise ImportError(f"load_sam needs the segment-anything package and a torchvision that matches the "
                          f"installed torch: pip install 'medseg-edu[sam]' ({type(error).__name__}: {error})"
                          ) from error
    check_choice(model_type, sorted(sam_model_registry), "model_type")
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint must be an existing file, got {os.fspath(checkpoint)!r}")
    return sam_model_registry[model_type](checkpoint=None if checkpoint is None else os.fspath(checkpoint)).eval()


def sam_resize_shape(height: int, width: int, *, long_side: int = 1024) -> tuple[int, int]:
    """The (height, width) after resizing so that the longer side is ``long_side`` (rounded as SAM does).

    Shape: -> (new_height, new_width).

    Example:
        >>> sam_resize_shape(300, 200)
        (1024, 683)
    """
    height, width = check_int(height, "height", minimum=1), check_int(width, "width", minimum=1)
    long_side = check_int(long_side, "long_side", minimum=1)
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _resized_shape(shape: Sequence[int], style: str, long_side: int) -> tuple[int, int]:
    check_choice(style, _STYLES, "style")
    return sam_resize_shape(*shape, long_side=long_side) if style == "sam" else (long_side, long_side)


def sam_scale_box(box: Sequence[float], shape: Sequence[int], *, style: str = "sam",
                  long_side: int = 1024) -> np.ndarray:
    """The box ``(x0, y0, x1, y1)`` of an image of ``shape`` (H, W) in the model's resized frame.

    x is multiplied by new_width / W, y by new_height / H (the frame of :func:`sam_resize_shape` for
    ``style="sam"``, 1024 x 1024 for ``"medsam"``).

    Shape: box (4,), shape (H, W) -> (4,) float64.

    Example:
        >>> sam_scale_box((10, 20, 110, 120), (300, 200)).round(3).tolist()
        [34.15, 68.267, 375.65, 409.6]
    """
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"box must be four finite numbers (x0, y0, x1, y1), got {box.tolist()}")
    height, width = (int(s) for s in shape)
    new_height, new_width = _resized_shape((height, width), style, long_side)
    return box * np.array([new_width / width, new_height / height, new_width / width, new_height / height])


def sam_preprocess(image: Any, *, style: str = "sam", long_side: int = 1024) -> torch.Tensor:
    """The model's input for ``image``: 3 channels, resized, normalised and padded as ``style`` wants.

    The image is first min-max scaled per image to 0..255 (SAM's input range); 1-channel images are
    repeated to 3 channels. Resizing is bilinear with antialiasing.

    Shape: image (C, H, W) with C = 1 or 3 -> (1, 3, long_side, long_side) float32.
    """
    image = _as_image(image)
    if image.shape[0] not in (1, 3):
        raise ValueError(f"image must have 1 (grey) or 3 (RGB) channels, got shape {image.shape}")
    low, high = float(image.min()), float(image.max())
    x = torch.from_numpy((image - low) / (high - low if high > low else 1.0) * 255.0).expand(3, -1, -1)[None]
    new_height, new_width = _resized_shape(image.shape[1:], style, long_side)
    x = F.interpolate(x, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=True)
    if style == "medsam":
        return x / 255.0
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return F.pad(x, (0, long_side - new_width, 0, long_side - new_height))


def sam_postprocess(low_res_logits: torch.Tensor, shape: Sequence[int], *, style: str = "sam",
                    long_side: int = 1024) -> torch.Tensor:
    """Mask logits at the original size ``shape`` (H, W) from the model's low-resolution logits.

    ``style="sam"``: upsample to ``long_side`` x ``long_side`` (bilinear), crop the padding away (keep
    the resized image's ``sam_resize_shape`` rows and columns), resize to (H, W). ``"medsam"``: resize
    straight to (H, W).

    Shape: low_res_logits (N, M, h, w) -> (N, M, H, W).
    """
    if not isinstance(low_res_logits, torch.Tensor) or low_res_logits.ndim != 4:
        raise ValueError(f"low_res_logits must be a tensor (N, M, h, w), got "
                         f"{getattr(low_res_logits, 'shape', type(low_res_logits).__name__)}")
    height, width = (int(s) for s in shape)
    new_height, new_width = _resized_shape((height, width), style, long_side)
    x = low_res_logits.float()
    if style == "sam":
        x = F.interpolate(x, size=(long_side, long_side), mode="bilinear", align_corners=False)
        x = x[..., :new_height, :new_width]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def sam_segment(model: torch.nn.Module, image: Any, box: Sequence[float], *, style: str = "sam") -> np.ndarray:
    """Segment the object in ``box`` with a SAM-architecture model (one mask, no clicks).

    Runs the model's ``image_encoder``, ``prompt_encoder`` (the box only) and ``mask_decoder``
    (``multimask_output=False``) on the input of :func:`sam_preprocess`, and turns the logits into a
    mask at the image's size with :func:`sam_postprocess` (logit > 0; for "medsam" sigmoid > 0.5,
    the same).

    Shape: image (C, H, W) with C = 1 or 3, box (x0, y0, x1, y1) in image pixels -> mask (H, W) bool.

    Taught in week 8.
    """
    check_choice(style, _STYLES, "style")
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        if not hasattr(model, part):
            raise TypeError(f"model must be a SAM-architecture model with image_encoder, prompt_encoder and "
                            f"mask_decoder (load_sam), got {type(model).__name__} without {part}")
    image = _as_image(image)
    long_side = int(model.image_encoder.img_size)
    device = next(model.parameters()).device
    x = sam_preprocess(image, style=style, long_side=long_side).to(device)
    scaled = sam_scale_box(box, image.shape[1:], style=style, long_side=long_side)
    boxes = torch.as_tensor(scaled, dtype=torch.float32, device=device)[None]
    model.eval()
    with torch.no_grad():
        embedding = model.image_encoder(x)
        sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
        low_res, _ = model.mask_decoder(image_embeddings=embedding, image_pe=model.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=False)
    logits = sam_postprocess(low_res, image.shape[1:], style=style, long_side=long_side)
    return (logits[0, 0] > 0).cpu().numpy()
