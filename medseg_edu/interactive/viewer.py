"""A clickable viewer for a promptable model, and its static twin :func:`draw_prompts`.

The viewer shows an image with the model's mask; the user adds positive and negative clicks and a
box, each change runs :func:`medseg_edu.interactive.refine.refine` and the picture is redrawn. It
works in two modes and says which one it is in:

- ``"mouse"``: click on the picture (needs the ``ipyevents`` package, extra ``[interactive]``, and a
  front end that shows third-party widgets; on Colab run
  ``from google.colab import output; output.enable_custom_widget_manager()`` first). The tool buttons
  choose what a click does (positive, negative, box corner); shift-click is always negative.
- ``"sliders"``: core ipywidgets only (Colab without its custom widget manager, ipywidgets 7.7 or 8):
  two sliders place a cross-hair, buttons add a positive or negative click or a box corner there.

Both modes have "undo" (the last click or box corner) and "clear". The picture is a PNG in an
``ipywidgets.Image``, drawn by :func:`draw_prompts`, which draws the same figure without widgets
(fast mode, exported pages).
"""
from __future__ import annotations

import importlib.util
import io
from typing import Any, Optional, Sequence

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from medseg_edu.arguments import as_binary, check_choice, check_int
from medseg_edu.interactive.prompts import Click, _as_image, _check_box, _check_clicks
from medseg_edu.interactive.refine import refine

__all__ = ["draw_prompts", "ClickViewer"]

_MODES = ("auto", "mouse", "sliders")


def _display_image(image: np.ndarray, channel: Optional[int]) -> tuple[np.ndarray, Optional[str]]:
    """An (H, W) grey or (H, W, 3) RGB array in [0, 1] for imshow, and its colour map."""
    if channel is None and image.shape[0] == 3:
        picture = np.moveaxis(image, 0, -1)
        cmap = None
    else:
        picture = image[0 if channel is None else channel]
        cmap = "gray"
    low, high = float(picture.min()), float(picture.max())
    return (picture - low) / (high - low if high > low else 1.0), cmap


def draw_prompts(image: Any, *, mask: Any = None, clicks: Sequence[Click] = (), box: Optional[Sequence[int]] = None,
                 target: Any = None, channel: Optional[int] = None, scale: int = 4,
                 crosshair: Optional[tuple[int, int]] = None) -> Figure:
    """The viewer's picture: the image, the mask (cyan), the target's outline (yellow, dashed), the
    box (orange), positive clicks (green +) and negative clicks (red x).

    The axes fill the figure and each image pixel is ``scale`` x ``scale`` screen pixels (at the
    figure's 100 dpi), so a point ``(px, py)`` of the saved PNG is image pixel
    ``(x, y) = (px // scale, py // scale)``. ``channel`` picks the channel shown in grey; ``None``
    shows a 3-channel image in colour (any other in grey, channel 0). ``crosshair`` ``(x, y)`` marks
    the sliders' position in the viewer's slider mode.

    The figure is a pyplot figure (shown by ``plt.show()`` or as a cell's last value); close it with
    ``plt.close(fig)`` when drawing many.

    Shape: image (C, H, W), mask and target (H, W) or None -> a matplotlib Figure of H*scale x W*scale pixels.

    Taught in week 8.
    """
    image = _as_image(image)
    height, width = image.shape[1:]
    scale = check_int(scale, "scale", minimum=1)
    clicks = _check_clicks(clicks, (height, width))
    if channel is not None and not 0 <= channel < image.shape[0]:
        raise ValueError(f"channel must be None or in 0..{image.shape[0] - 1}, got {channel}")
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    picture, cmap = _display_image(image, channel)
    ax.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    for name, overlay, style in (("mask", mask, {"colors": "cyan", "linewidths": 1.5}),
                                 ("target", target, {"colors": "yellow", "linewidths": 1.0, "linestyles": "dashed"})):
        if overlay is not None:
            overlay = as_binary(overlay, name)
            if overlay.shape != (height, width):
                raise ValueError(f"{name} must have the image's shape (H, W) = {(height, width)}, got {overlay.shape}")
            if name == "mask":
                ax.imshow(np.ma.masked_where(~overlay, overlay), cmap="cool", alpha=0.35, vmin=0, vmax=1,
                          interpolation="nearest")
            if overlay.any() and not overlay.all():
                ax.contour(overlay.astype(float), levels=[0.5], **style)
    if box is not None:
        x0, y0, x1, y1 = _check_box(box, (height, width))
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor="orange",
                               linewidth=1.5))
    for click in clicks:
        ax.plot(click.x, click.y, marker="+" if click.positive else "x", markersize=2.5 * scale + 4,
                markeredgewidth=2, color="lime" if click.positive else "red")
    if crosshair is not None:
        ax.axvline(crosshair[0], color="white", linewidth=0.6, alpha=0.7)
        ax.axhline(crosshair[1], color="white", linewidth=0.6, alpha=0.7)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


class ClickViewer(ipywidgets.VBox):
    """Click to correct a promptable model's mask: positive/negative clicks and a box, then ``refine``.

    Args:
        model: a promptable model for ``image`` (``UNet(2, C + 3, 2)``; see :func:`refine`).
        image: the image ``(C, H, W)`` without prompt channels.
        target: optional reference mask, outlined in the picture (the title shows its Dice).
        mode: "auto" (mouse clicks when ``ipyevents`` is installed, sliders otherwise), "mouse" or
            "sliders".
        channel, scale: how the picture is drawn (:func:`draw_prompts`).

    State: ``viewer.clicks`` (list of :class:`Click`), ``viewer.box`` (or None), ``viewer.mask`` (H, W)
    bool, ``viewer.mode`` ("mouse" or "sliders"); ``viewer.picture`` is the ``ipywidgets.Image``.
    Each click is refined with ``previous`` = the mask before it, so it corrects its own region;
    undo, clear and a new box recompute the mask from all remaining prompts. ``viewer.handle_event``
    takes ipyevents' event dicts (``{"type": "click", "dataX": ..., "dataY": ..., "shiftKey": ...}``).

    Shape: image (C, H, W), target (H, W) or None -> a widget (an ``ipywidgets.VBox``).

    Taught in week 8.
    """

    def __init__(self, model: nn.Module, image: Any, *, target: Any = None, mode: str = "auto",
                 channel: Optional[int] = None, scale: int = 4) -> None:
        check_choice(mode, _MODES, "mode")
        has_events = importlib.util.find_spec("ipyevents") is not None
        if mode == "mouse" and not has_events:
            raise ImportError("mode='mouse' needs the ipyevents package: pip install 'medseg-edu[interactive]'")
        self.mode = ("mouse" if has_events else "sliders") if mode == "auto" else mode
        self.model, self.image = model, _as_image(image)
        self.target = None if target is None else as_binary(target, "target")
        self.channel, self.scale = channel, check_int(scale, "scale", minimum=1)
        height, width = self.image.shape[1:]
        self.clicks: list[Click] = []
        self.box: Optional[tuple[int, int, int, int]] = None
        self._corner: Optional[tuple[int, int]] = None
        self.mask = refine(model, self.image, [])
        self.picture = ipywidgets.Image(format="png")
        self.status = ipywidgets.HTML()
        buttons = {name: ipywidgets.Button(description=name) for name in ("undo", "clear")}
        buttons["undo"].on_click(lambda _: self.undo())
        buttons["clear"].on_click(lambda _: self.clear())
        if self.mode == "mouse":
            from ipyevents import Event

            self.tool = ipywidgets.ToggleButtons(options=["positive", "negative", "box corner"], value="positive",
                                                 description="click adds")
            self._events = Event(source=self.picture, watched_events=["click"])
            self._events.on_dom_event(self.handle_event)
            controls = [self.tool, ipywidgets.HBox(list(buttons.values()))]
            note = "mode: mouse clicks (ipyevents); shift-click = negative"
        else:
            self.x_slider = ipywidgets.IntSlider(value=width // 2, min=0, max=width - 1, description="x (column)")
            self.y_slider = ipywidgets.IntSlider(value=height // 2, min=0, max=height - 1, description="y (row)")
            for slider in (self.x_slider, self.y_slider):
                slider.observe(lambda change: self.redraw(), names="value")
            for name, positive in (("positive click", True), ("negative click", False)):
                buttons[name] = ipywidgets.Button(description=name)
                buttons[name].on_click(lambda _, p=positive: self.add_click(self.x_slider.value,
                                                                            self.y_slider.value, p))
            buttons["box corner"] = ipywidgets.Button(description="box corner")
            buttons["box corner"].on_click(lambda _: self.add_box_corner(self.x_slider.value, self.y_slider.value))
            controls = [ipywidgets.HBox([self.x_slider, self.y_slider]), ipywidgets.HBox(
                [buttons[n] for n in ("positive click", "negative click", "box corner", "undo", "clear")])]
            note = "mode: sliders and buttons (core ipywidgets; install ipyevents for mouse clicks)"
        self.buttons = buttons
        self._note = note
        super().__init__([self.status, *controls, self.picture])
        self.redraw()

    # ------------------------------------------------------------------ actions
    def handle_event(self, event: dict) -> None:
        """Act on an ipyevents event dict: a click at ``(dataX, dataY)`` (PNG pixels) adds the tool's prompt."""
        if event.get("type") != "click":
            return
        height, width = self.image.shape[1:]
        x = min(max(int(event["dataX"] // self.scale), 0), width - 1)
        y = min(max(int(event["dataY"] // self.scale), 0), height - 1)
        tool = self.tool.value if self.mode == "mouse" else "positive"
        if event.get("shiftKey"):
            tool = "negative"
        if tool == "box corner":
            self.add_box_corner(x, y)
        else:
            self.add_click(x, y, tool == "positive")

    def add_click(self, x: int, y: int, positive: bool) -> None:
        """Add a click at column ``x``, row ``y``, refine the mask around it, redraw."""
        self.clicks.append(_check_clicks([Click(x, y, positive)], self.image.shape[1:])[0])
        self.mask = refine(self.model, self.image, self.clicks, box=self.box, previous=self.mask)
        self.redraw()

    def add_box_corner(self, x: int, y: int) -> None:
        """First call: remember a corner. Second call: the box spanned by both corners; recompute, redraw."""
        if self._corner is None:
            self._corner = (int(x), int(y))
        else:
            (xa, ya), self._corner = self._corner, None
            self.box = (min(xa, x), min(ya, y), max(xa, x), max(ya, y))
            self._recompute()
        self.redraw()

    def undo(self) -> None:
        """Forget the last box corner, else the last click; recompute and redraw."""
        if self._corner is not None:
            self._corner = None
        elif self.clicks:
            self.clicks.pop()
            self._recompute()
        self.redraw()

    def clear(self) -> None:
        """Forget all clicks and the box; recompute (automatic segmentation) and redraw."""
        self.clicks, self.box, self._corner = [], None, None
        self._recompute()
        self.redraw()

    def _recompute(self) -> None:
        self.mask = refine(self.model, self.image, self.clicks, box=self.box)

    def redraw(self) -> None:
        """Draw the picture (:func:`draw_prompts`) into ``viewer.picture`` and update the status line."""
        crosshair = (self.x_slider.value, self.y_slider.value) if self.mode == "sliders" else None
        fig = draw_prompts(self.image, mask=self.mask, clicks=self.clicks, box=self.box, target=self.target,
                           channel=self.channel, scale=self.scale, crosshair=crosshair)
        self.picture.value = _png(fig)
        text = f"{self._note}. {len(self.clicks)} clicks, box {self.box}"
        if self._corner is not None:
            text += f", first box corner at {self._corner}"
        if self.target is not None:
            from medseg_edu.metrics import dice_score

            text += f", Dice {dice_score(self.mask, self.target, empty='one'):.3f}"
        self.status.value = text
