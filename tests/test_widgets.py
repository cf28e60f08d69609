"""Tests for medseg_edu.widgets: the viewer builds without a frontend and redraws via its static twin."""
import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from medseg_edu import viz, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_case(with_label=True):
    rng = np.random.default_rng(0)
    image = rng.uniform(1, 2, size=(4, 12, 10, 8)).astype(np.float32)
    label = np.zeros((12, 10, 8), dtype=np.uint8)
    label[3:7, 3:7, 5] = 3                      # most tumour on axial slice 5
    label[4:6, 4:6, 2] = 1
    return {"image": image, "label": label if with_label else None, "spacing_mm": (1.0, 1.0, 2.0),
            "case_id": "case_7"}


@pytest.fixture
def recorded(monkeypatch):
    """Replace the viewer's twin by a wrapper that records each call and the figure it returned."""
    calls = []

    def spy(case, **kwargs):
        fig = viz.draw_slice(case, **kwargs)
        calls.append((kwargs, fig))
        return fig

    monkeypatch.setattr(widgets, "draw_slice", spy)
    return calls


def controls(viewer):
    top, bottom, output = viewer.children
    slider, menu = top.children
    box, alpha = bottom.children
    return slider, menu, box, alpha, output


def test_viewer_builds_without_frontend_with_core_widgets(recorded):
    viewer = widgets.slice_viewer(small_case())
    slider, menu, box, alpha, output = controls(viewer)
    assert isinstance(viewer, ipywidgets.VBox)
    assert isinstance(slider, ipywidgets.IntSlider) and isinstance(menu, ipywidgets.Dropdown)
    assert isinstance(box, ipywidgets.Checkbox) and isinstance(alpha, ipywidgets.FloatSlider)
    assert isinstance(output, ipywidgets.Output)
    assert (slider.min, slider.max, slider.value) == (0, 7, 5)          # opens on the max-tumour slice
    assert [name for name, _ in menu.options] == ["FLAIR", "T1w", "T1gd", "T2w"]
    assert len(recorded) == 1                                            # first draw on construction
    assert recorded[0][0] == {"slice_index": 5, "channel": 0, "show_label": True, "alpha": 0.4, "axis": 2}


def test_changing_controls_calls_the_static_twin(recorded):
    case = small_case()
    viewer = widgets.slice_viewer(case)
    slider, menu, box, alpha, _ = controls(viewer)
    slider.value = 2
    kwargs, fig = recorded[-1]
    assert kwargs["slice_index"] == 2
    assert fig.axes[0].get_title() == "case_7 FLAIR, axial slice 2"
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), case["image"][0, :, :, 2].T)
    menu.value = 2
    assert recorded[-1][1].axes[0].get_title() == "case_7 T1gd, axial slice 2"
    box.value = False
    assert len(recorded[-1][1].axes[0].images) == 1                     # overlay switched off
    alpha.value = 0.8
    assert recorded[-1][0] == {"slice_index": 2, "channel": 2, "show_label": False, "alpha": 0.8, "axis": 2}
    assert len(recorded) == 5


def test_viewer_figure_equals_static_call(recorded):
    # what a notebook calls in static mode draws exactly what the viewer shows
    case = small_case()
    viewer = widgets.slice_viewer(case, axis=1)
    controls(viewer)[0].value = 4
    kwargs, shown = recorded[-1]
    static = viz.draw_slice(case, **kwargs)
    assert static.axes[0].get_title() == shown.axes[0].get_title() == "case_7 FLAIR, coronal slice 4"
    for a, b in zip(static.axes[0].images, shown.axes[0].images):
        np.testing.assert_array_equal(a.get_array(), b.get_array())


def test_viewer_without_label_disables_overlay(recorded):
    viewer = widgets.slice_viewer(small_case(with_label=False))
    slider, _, box, _, _ = controls(viewer)
    assert slider.value == 4 and box.value is False and box.disabled
    assert len(recorded[-1][1].axes[0].images) == 1


def test_viewer_errors():
    with pytest.raises(ValueError, match="axis must be 0"):
        widgets.slice_viewer(small_case(), axis=3)
    with pytest.raises(ValueError, match="slice_viewer needs a 3D case"):
        widgets.slice_viewer({"image": np.zeros((3, 8, 8), dtype=np.float32), "label": None})
    with pytest.raises(TypeError, match="case must be a dict"):
        widgets.slice_viewer(np.zeros((4, 8, 8, 8)))
