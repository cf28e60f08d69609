"""Figures: label overlays, a brain case at a glance, a skin montage, target-vs-prediction maps.

Every function returns a matplotlib ``Figure`` (``overlay`` returns the ``Axes`` it drew on) and
creates it with pyplot, so in a notebook it shows under the cell; close it with ``plt.close(fig)``
in loops. Every figure has a static form: nothing here needs widgets (``medseg_edu.widgets``
wraps ``draw_slice``).

Display convention for volumes. A case's arrays keep the voxel order of the file, (x, y, z) in RAS
(x towards the patient's Right, y Anterior, z Superior). A 2D slice indexed ``[i, j]`` is drawn with
``imshow(slice.T, origin="lower")``: the first index runs left to right on the screen, the second
bottom to top. An axial slice (``axis=2``) therefore shows anterior at the top and the patient's
right on the screen's RIGHT: the neurological convention. Radiologists read axial images as seen
from the feet, with the patient's right on the screen's LEFT (radiological convention); call
``ax.invert_xaxis()`` to get that view. The pixel aspect ratio comes from ``spacing_mm``, so an
anisotropic volume is not stretched. Skin photos are ordinary pictures, indexed [row, column] and
drawn as they are (``layout="rc"``).

Taught in week 1.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from medseg_edu.data.io import BRAIN_CHANNELS, BRAIN_LABELS

__all__ = ["LABEL_COLOURS", "max_tumour_slice", "overlay", "show_case", "draw_slice", "show_skin_montage",
           "compare_predictions"]

#: RGB colour of each brain label value: 1 edema (green), 2 non-enhancing tumour (red),
#: 3 enhancing tumour (yellow). A binary (skin) mask uses the colour of 1.
LABEL_COLOURS = {1: (0.1, 0.8, 0.2), 2: (0.9, 0.1, 0.1), 3: (1.0, 0.85, 0.0)}
_ERROR_COLOURS = {"false positive": (0.9, 0.1, 0.1), "false negative": (0.1, 0.4, 1.0),
                  "wrong class": (1.0, 0.6, 0.0)}
_AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}
_LAYOUTS = ("xy", "rc")


# ------------------------------------------------------------------------------------ helpers
def _check_layout(layout: str) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be 'xy' (volume slice [x, y]) or 'rc' (picture [row, column]), "
                         f"got {layout!r}")


def _display(array: np.ndarray, layout: str) -> np.ndarray:
    """(a, b) or colour-last (a, b, k) array as imshow wants it: transposed for the "xy" layout."""
    return np.swapaxes(array, 0, 1) if layout == "xy" else array


def _aspect(spacing_mm: Optional[Sequence[float]], layout: str) -> float:
    """Height / width of one pixel on screen, from the spacing of the two array axes (a, b)."""
    if spacing_mm is None:
        return 1.0
    if len(spacing_mm) != 2 or min(spacing_mm) <= 0:
        raise ValueError(f"spacing_mm must be two positive numbers for a 2D slice, got {tuple(spacing_mm)}")
    along_a, along_b = float(spacing_mm[0]), float(spacing_mm[1])
    return along_b / along_a if layout == "xy" else along_a / along_b


def _window(values: np.ndarray) -> tuple[float, float]:
    """Display range of a grey-level image: its 1st and 99.5th percentiles."""
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _label_rgba(label2d: np.ndarray, alpha: float) -> np.ndarray:
    """RGBA image (a, b, 4): label colours where label > 0, transparent elsewhere."""
    rgba = np.zeros((*label2d.shape, 4))
    for value in np.unique(label2d):
        if value == 0:
            continue
        rgba[label2d == value] = (*LABEL_COLOURS.get(int(value), (0.6, 0.6, 0.6)), alpha)
    return rgba


def _show(ax: Axes, image2d: np.ndarray, *, layout: str, aspect: float,
          window: Optional[tuple[float, float]] = None) -> None:
    """Draw a grey-level (a, b) or RGB (3, a, b) image on ``ax`` without ticks."""
    origin = "lower" if layout == "xy" else "upper"
    if image2d.ndim == 3:
        rgb = np.clip(np.moveaxis(image2d, 0, -1), 0, 1)          # (3, a, b) -> (a, b, 3)
        ax.imshow(_display(rgb, layout), origin=origin, aspect=aspect)
    else:
        vmin, vmax = window if window is not None else _window(image2d)
        ax.imshow(_display(image2d, layout), cmap="gray", vmin=vmin, vmax=vmax, origin=origin,
                  aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _check_volume_case(case: Mapping[str, Any]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    if not isinstance(case, Mapping) or "image" not in case:
        raise TypeError(f"case must be a dict with at least an 'image' entry, got {type(case).__name__}")
    image, label = np.asarray(case["image"]), case.get("label")
    if image.ndim not in (3, 4):
        raise ValueError(f"case['image'] must be (C, X, Y, Z) or (C, H, W), got shape {image.shape}")
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape[1:]:
            raise ValueError(f"case['label'] must have the spatial shape of case['image'], got label shape "
                             f"{label.shape} and image shape {image.shape}")
    return image, label


def _check_axis(axis: int) -> None:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis}")


def max_tumour_slice(label: np.ndarray, *, axis: int = 2) -> int:
    """Index of the slice along ``axis`` with the most tumour (label > 0) voxels.

    The middle slice when there is no tumour; the first one on ties.

    Shape: label (X, Y, Z) -> int in [0, label.shape[axis]).
    Taught in week 1.
    """
    _check_axis(axis)
    if label is None:
        raise ValueError("label is None: pass a label map (X, Y, Z) or choose the slice yourself")
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be a 3D label map (X, Y, Z), got shape {label.shape}")
    if not np.any(label):
        return label.shape[axis] // 2
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax(np.count_nonzero(label, axis=other)))


def _default_slice(label: Optional[np.ndarray], axis: int, n_slices: int) -> int:
    return n_slices // 2 if label is None else max_tumour_slice(label, axis=axis)


def _slice_spacing(case: Mapping[str, Any], axis: int) -> Optional[tuple[float, float]]:
    spacing = case.get("spacing_mm")
    if spacing is None:
        return None
    return tuple(float(s) for a, s in enumerate(spacing) if a != axis)


def _legend(ax: Axes, values: Sequence[int]) -> None:
    handles = [Patch(color=LABEL_COLOURS[v], label=BRAIN_LABELS[v]) for v in values if v in LABEL_COLOURS]
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize="x-small", framealpha=0.6)


# ------------------------------------------------------------------------------ public functions
def overlay(image2d: np.ndarray, label2d: np.ndarray, *, alpha: float = 0.4, ax: Optional[Axes] = None,
            spacing_mm: Optional[Sequence[float]] = None, layout: str = "xy") -> Axes:
    """Draw a grey-level (or RGB) 2D image with the label map on top in ``LABEL_COLOURS``.

    ``layout="xy"``: the arrays are a volume slice [i, j] (drawn transposed, origin lower, see the
    module docstring); ``layout="rc"``: a picture [row, column]. ``spacing_mm`` (2 numbers, for the
    two array axes) sets the pixel aspect ratio.

    Shape: image2d (A, B) or (3, A, B), label2d (A, B) -> the Axes drawn on.
    Taught in week 2.
    """
    _check_layout(layout)
    image2d, label2d = np.asarray(image2d), np.asarray(label2d)
    if image2d.shape[-2:] != label2d.shape or image2d.ndim not in (2, 3) or label2d.ndim != 2:
        raise ValueError(f"image2d must be (A, B) or (3, A, B) and label2d (A, B), got shapes "
                         f"{image2d.shape} and {label2d.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    aspect = _aspect(spacing_mm, layout)
    _show(ax, image2d, layout=layout, aspect=aspect)
    ax.imshow(_display(_label_rgba(label2d, alpha), layout), origin="lower" if layout == "xy" else "upper",
              aspect=aspect, interpolation="nearest")
    return ax


def draw_slice(case: Mapping[str, Any], *, slice_index: Optional[int] = None, channel: "int | str" = 0,
               show_label: bool = True, alpha: float = 0.4, axis: int = 2,
               ax: Optional[Axes] = None) -> Figure:
    """One slice of one channel of a 3D case, optionally with the label overlay.

    This is the static twin of ``medseg_edu.widgets.slice_viewer``: the viewer calls it on every
    change, and a notebook without widgets calls it directly. ``slice_index`` defaults to the slice
    with most tumour; ``channel`` is an index or a name from ``BRAIN_CHANNELS``.

    Shape: case["image"] (C, X, Y, Z), case["label"] (X, Y, Z) or None -> Figure with one image Axes.
    Taught in week 1.
    """
    image, label = _check_volume_case(case)
    if image.ndim != 4:
        raise ValueError(f"draw_slice needs a 3D case with image (C, X, Y, Z), got shape {image.shape}; "
                         "use show_skin_montage for 2D images")
    _check_axis(axis)
    if isinstance(channel, str):
        if channel not in BRAIN_CHANNELS:
            raise ValueError(f"channel must be an index or one of {BRAIN_CHANNELS}, got {channel!r}")
        channel = BRAIN_CHANNELS.index(channel)
    if not 0 <= channel < image.shape[0]:
        raise ValueError(f"channel must be in [0, {image.shape[0] - 1}], got {channel}")
    n_slices = image.shape[axis + 1]
    if slice_index is None:
        slice_index = _default_slice(label, axis, n_slices)
    if not 0 <= slice_index < n_slices:
        raise ValueError(f"slice_index must be in [0, {n_slices - 1}] along axis {axis}, got {slice_index}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    volume = image[channel]
    plane = np.take(volume, slice_index, axis=axis)
    spacing = _slice_spacing(case, axis)
    _show(ax, plane, layout="xy", aspect=_aspect(spacing, "xy"), window=_window(volume))
    if show_label and label is not None:
        label2d = np.take(label, slice_index, axis=axis)
        ax.imshow(_display(_label_rgba(label2d, alpha), "xy"), origin="lower", aspect=_aspect(spacing, "xy"),
                  interpolation="nearest")
        _legend(ax, [int(v) for v in np.unique(label2d) if v > 0])
    name = BRAIN_CHANNELS[channel] if image.shape[0] == len(BRAIN_CHANNELS) else f"channel {channel}"
    ax.set_title(f"{case.get('case_id', '')} {name}, {_AXIS_NAMES[axis]} slice {slice_index}".strip())
    return ax.figure


def show_case(case: Mapping[str, Any], *, slice_index: Optional[int] = None, axis: int = 2,
              channels: Sequence[str] = BRAIN_CHANNELS) -> Figure:
    """All sequences of a brain case side by side, plus the label overlaid on the first (FLAIR).

    ``slice_index`` defaults to the slice with the most tumour voxels along ``axis``. ``channels``
    names the image channels (panel titles). A 2D (skin) case is shown as a one-image montage.

    Shape: case["image"] (C, X, Y, Z), case["label"] (X, Y, Z) or None -> Figure with C (+1) Axes.
    Taught in week 1.
    """
    image, label = _check_volume_case(case)
    if image.ndim == 3:
        return show_skin_montage([case], ncols=1)
    _check_axis(axis)
    if len(channels) != image.shape[0]:
        raise ValueError(f"channels must name each of the {image.shape[0]} image channels, got {tuple(channels)}")
    n_slices = image.shape[axis + 1]
    if slice_index is None:
        slice_index = _default_slice(label, axis, n_slices)
    n_panels = image.shape[0] + (label is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(3.2 * n_panels, 3.7), squeeze=False, layout="constrained")
    for c, name in enumerate(channels):
        draw_slice(case, slice_index=slice_index, channel=c, show_label=False, axis=axis, ax=axes[0, c])
        axes[0, c].set_title(name)
    if label is not None:
        draw_slice(case, slice_index=slice_index, channel=0, show_label=True, axis=axis, ax=axes[0, -1])
        axes[0, -1].set_title(f"label on {channels[0]}")
    fig.suptitle(f"{case.get('case_id', 'case')}: {_AXIS_NAMES[axis]} slice {slice_index}")
    return fig


def _fitzpatrick_text(value: Any) -> str:
    """'type III' for a Fitzpatrick skin type 1-6; '' when missing (None, NaN) or out of range."""
    try:
        number = int(value)          # int(NaN) and int(None) raise
    except (TypeError, ValueError):
        return ""
    if not 1 <= number <= 6:
        return ""
    return "type " + ("I", "II", "III", "IV", "V", "VI")[number - 1]


def show_skin_montage(cases: Sequence[Mapping[str, Any]], *, ncols: int = 4) -> Figure:
    """Dermoscopy images in a grid with the lesion mask outlined; titles give id and Fitzpatrick type.

    Each case is a dict with ``image`` (3, H, W) in [0, 1], optional ``label`` (H, W) {0, 1}, and
    optional ``case_id`` and ``fitzpatrick`` (1-6).

    Shape: N cases of image (3, H, W), label (H, W) -> Figure with N Axes.
    Taught in week 6.
    """
    if len(cases) == 0:
        raise ValueError("cases must hold at least one case, got an empty sequence")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.2 * nrows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(cases):
            fig.delaxes(ax)
            continue
        case = cases[k]
        image, label = _check_volume_case(case)
        if image.ndim != 3:
            raise ValueError(f"cases[{k}]['image'] must be a 2D image (3, H, W), got shape {image.shape}")
        _show(ax, image if image.shape[0] == 3 else image[0], layout="rc", aspect=1.0)
        if label is not None and 0 < np.count_nonzero(label) < label.size:
            ax.contour(label, levels=[0.5], colors=["yellow"], linewidths=1.2)
        name = str(case.get("case_id", f"#{k}"))
        ax.set_title(f"{name} {_fitzpatrick_text(case.get('fitzpatrick'))}".strip(), fontsize="small")
    fig.tight_layout()
    return fig


def compare_predictions(image2d: np.ndarray, target2d: np.ndarray, pred2d: np.ndarray, *,
                        alpha: float = 0.4, spacing_mm: Optional[Sequence[float]] = None,
                        layout: str = "xy") -> Figure:
    """Target and prediction overlays side by side, and a map of the errors.

    Errors: false positive (pred > 0, target 0) red, false negative (pred 0, target > 0) blue,
    wrong class (both > 0, different values) orange; the title counts them in pixels.

    Shape: image2d (A, B) or (3, A, B), target2d (A, B), pred2d (A, B) -> Figure with 3 Axes.
    Taught in week 3.
    """
    target2d, pred2d = np.asarray(target2d), np.asarray(pred2d)
    if target2d.shape != pred2d.shape:
        raise ValueError(f"target2d and pred2d must have the same shape, got {target2d.shape} and {pred2d.shape}")
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    overlay(image2d, target2d, alpha=alpha, ax=axes[0], spacing_mm=spacing_mm, layout=layout)
    axes[0].set_title("target")
    overlay(image2d, pred2d, alpha=alpha, ax=axes[1], spacing_mm=spacing_mm, layout=layout)
    axes[1].set_title("prediction")
    kinds = {"false positive": (pred2d > 0) & (target2d == 0),
             "false negative": (pred2d == 0) & (target2d > 0),
             "wrong class": (pred2d > 0) & (target2d > 0) & (pred2d != target2d)}
    errors = np.zeros((*target2d.shape, 4))
    for kind, where in kinds.items():
        errors[where] = (*_ERROR_COLOURS[kind], 1.0)
    aspect = _aspect(spacing_mm, layout)
    _show(axes[2], np.asarray(image2d), layout=layout, aspect=aspect)
    axes[2].imshow(_display(errors, layout), origin="lower" if layout == "xy" else "upper", aspect=aspect,
                   interpolation="nearest")
    counts = {kind: int(where.sum()) for kind, where in kinds.items()}
    axes[2].set_title(f"errors: {counts['false positive']} FP, {counts['false negative']} FN, "
                      f"{counts['wrong class']} wrong class", fontsize="small")
    axes[2].legend(handles=[Patch(color=c, label=k) for k, c in _ERROR_COLOURS.items()], loc="lower right",
                   fontsize="x-small", framealpha=0.6)
    fig.tight_layout()
    return fig
