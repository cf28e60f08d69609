"""Tests for medseg_edu.interactive.viewer: the clickable viewer reacts to clicks; its static twin draws them."""
import importlib.util

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from medseg_edu.interactive import Click, box_map  # noqa: E402
from medseg_edu.interactive import viewer as viewer_module  # noqa: E402
from medseg_edu.interactive.viewer import ClickViewer, draw_prompts  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


class PromptRule(nn.Module):
    """Foreground = (box or positive click channel > 0.5) and not negative click channel > 0.5."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        fg = ((x[:, -3:-2] > 0.5) | (x[:, -2:-1] > 0.5)) & ~(x[:, -1:] > 0.5)
        score = fg.float() * 2 - 1
        return torch.cat([-score, score], dim=1)


def small_image():
    return np.random.default_rng(0).uniform(0, 1, size=(3, 16, 20)).astype(np.float32)


def test_static_twin_has_one_screen_square_per_pixel_times_scale():
    fig = draw_prompts(small_image(), mask=box_map((2, 2, 6, 5), (16, 20)) > 0, clicks=[Click(3, 3, True),
                       Click(10, 8, False)], box=(2, 2, 6, 5), target=box_map((1, 1, 6, 6), (16, 20)) > 0, scale=3)
    width, height = fig.get_size_inches() * fig.dpi
    assert (round(width), round(height)) == (60, 48)
    ax = fig.axes[0]
    assert len(ax.patches) == 1                               # the box
    markers = [line.get_marker() for line in ax.lines]
    assert markers == ["+", "x"]
    assert [tuple(line.get_xydata()[0]) for line in ax.lines] == [(3.0, 3.0), (10.0, 8.0)]


def test_static_twin_checks_its_overlays():
    with pytest.raises(ValueError, match=r"mask must have the image's shape \(H, W\) = \(16, 20\)"):
        draw_prompts(small_image(), mask=np.zeros((4, 4), bool))


def test_slider_mode_is_core_widgets_and_says_so():
    viewer = ClickViewer(PromptRule(), small_image(), mode="sliders")
    assert viewer.mode == "sliders" and "sliders" in viewer.status.value
    assert isinstance(viewer, ipywidgets.VBox) and isinstance(viewer.picture, ipywidgets.Image)
    assert not viewer.mask.any()                              # no prompt: the rule model finds nothing
    before = viewer.picture.value
    viewer.x_slider.value, viewer.y_slider.value = 7, 5
    viewer.buttons["positive click"].click()
    assert viewer.clicks == [Click(7, 5, True)]
    assert viewer.mask[5, 7] and viewer.mask.sum() == 21      # sigma 2: exp(-d^2/8) > 0.5 for d^2 <= 5: 1+4+4+4+8
    assert viewer.picture.value != before
    viewer.buttons["undo"].click()
    assert viewer.clicks == [] and not viewer.mask.any()


def test_slider_mode_box_from_two_corners():
    viewer = ClickViewer(PromptRule(), small_image(), mode="sliders")
    viewer.x_slider.value, viewer.y_slider.value = 9, 2
    viewer.buttons["box corner"].click()
    assert viewer.box is None and "first box corner at (9, 2)" in viewer.status.value
    viewer.x_slider.value, viewer.y_slider.value = 3, 6
    viewer.buttons["box corner"].click()
    assert viewer.box == (3, 2, 9, 6)
    np.testing.assert_array_equal(viewer.mask, box_map((3, 2, 9, 6), (16, 20)) > 0.5)
    viewer.buttons["clear"].click()
    assert viewer.box is None and not viewer.mask.any()


def test_auto_mode_falls_back_to_sliders_without_ipyevents(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(viewer_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipyevents" else real(name, *a))
    assert ClickViewer(PromptRule(), small_image()).mode == "sliders"
    with pytest.raises(ImportError, match=r"medseg-edu\[interactive\]"):
        ClickViewer(PromptRule(), small_image(), mode="mouse")


def test_mouse_mode_updates_when_a_click_event_is_sent():
    pytest.importorskip("ipyevents")
    target = box_map((4, 4, 9, 9), (16, 20)) > 0.5
    viewer = ClickViewer(PromptRule(), small_image(), target=target, scale=4)
    assert viewer.mode == "mouse" and "mouse clicks" in viewer.status.value
    before_png, before_mask = viewer.picture.value, viewer.mask.copy()
    # ipyevents reports an Image widget's click in the PNG's own pixels: (29, 26) // 4 = pixel (x=7, y=6)
    viewer.handle_event({"type": "click", "dataX": 29, "dataY": 26, "shiftKey": False})
    assert viewer.clicks == [Click(7, 6, True)]
    assert viewer.mask[6, 7] and not before_mask.any()
    assert viewer.picture.value != before_png
    assert "Dice" in viewer.status.value
    viewer.handle_event({"type": "click", "dataX": 29, "dataY": 26, "shiftKey": True})   # shift: negative
    assert viewer.clicks[-1] == Click(7, 6, False) and not viewer.mask[6, 7]
    viewer.handle_event({"type": "mousemove", "dataX": 0, "dataY": 0})                     # ignored
    assert len(viewer.clicks) == 2


def test_mouse_mode_box_tool():
    pytest.importorskip("ipyevents")
    viewer = ClickViewer(PromptRule(), small_image(), mode="mouse", scale=2)
    viewer.tool.value = "box corner"
    viewer.handle_event({"type": "click", "dataX": 2, "dataY": 4})
    viewer.handle_event({"type": "click", "dataX": 11, "dataY": 9})
    assert viewer.box == (1, 2, 5, 4)
    np.testing.assert_array_equal(viewer.mask, box_map((1, 2, 5, 4), (16, 20)) > 0.5)
