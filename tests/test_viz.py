"""Tests for medseg_edu.viz: panel counts, titles, default slice, orientation, aspect, error counts."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from medseg_edu import viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def brain_case(*, with_label=True):
    """A hand-built 4-channel case (20, 16, 12), spacing (1, 1, 2.5); most tumour at z=7, x=9, y=6."""
    rng = np.random.default_rng(0)
    image = rng.uniform(1, 2, size=(4, 20, 16, 12)).astype(np.float32)
    for c in range(4):
        image[c] *= c + 1                                  # channels differ
    label = np.zeros((20, 16, 12), dtype=np.uint8)
    label[6:12, 4:9, 5:9] = 1                              # 6 x 5 x 4 block: each z in 5..8 has 30 voxels
    label[9, 3:12, 7] = 3                                  # extra line at x=9, z=7 (4 new voxels)
    label[8:10, 6, 6:8] = 2
    # counts per z: z=5: 30, z=6: 30, z=7: 30 + 4 = 34, z=8: 30  ->  argmax 7
    # counts per x: x=6..11: 20 each, plus x=9: +4  ->  argmax 9
    return {"image": image, "label": label if with_label else None, "spacing_mm": (1.0, 1.0, 2.5),
            "case_id": "BRATS_001", "affine": np.diag([1.0, 1.0, 2.5, 1.0])}


def skin_case(k, *, fitzpatrick=3, empty=False):
    rng = np.random.default_rng(k)
    image = rng.uniform(0, 1, size=(3, 24, 32)).astype(np.float32)
    label = np.zeros((24, 32), dtype=np.uint8)
    if not empty:
        label[6:18, 8:20] = 1
    return {"image": image, "label": label, "case_id": f"ISIC_{k:07d}", "fitzpatrick": fitzpatrick}


def test_label_colours_cover_brain_labels():
    assert set(viz.LABEL_COLOURS) == {1, 2, 3}
    assert len({tuple(c) for c in viz.LABEL_COLOURS.values()}) == 3


def test_show_case_panels_titles_and_default_slice():
    case = brain_case()
    fig = viz.show_case(case)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes[:4]] == ["FLAIR", "T1w", "T1gd", "T2w"]
    assert fig.axes[4].get_title() == "label on FLAIR"
    assert "axial slice 7" in fig._suptitle.get_text()
    # panel k shows channel k at z = 7, transposed (x left-right, y bottom-top)
    for c in range(4):
        shown = fig.axes[c].images[0].get_array()
        np.testing.assert_array_equal(shown, case["image"][c, :, :, 7].T)
        assert fig.axes[c].images[0].origin == "lower"


def test_show_case_other_axis_default_slice_and_aspect():
    fig = viz.show_case(brain_case(), axis=0)
    assert "sagittal slice 9" in fig._suptitle.get_text()
    # sagittal slice is (y, z): y horizontal (1 mm), z vertical (2.5 mm) -> pixel aspect 2.5
    assert fig.axes[0].get_aspect() == pytest.approx(2.5)
    fig = viz.show_case(brain_case(), axis=2)
    assert fig.axes[0].get_aspect() == pytest.approx(1.0)


def test_show_case_explicit_slice_without_label_and_empty_label():
    fig = viz.show_case(brain_case(with_label=False), slice_index=3)
    assert len(fig.axes) == 4 and "slice 3" in fig._suptitle.get_text()
    case = brain_case()
    case["label"] = np.zeros_like(case["label"])
    fig = viz.show_case(case)
    assert "axial slice 6" in fig._suptitle.get_text()          # no tumour: middle slice 12 // 2


def test_overlay_orientation_colours_and_alpha():
    image = np.zeros((20, 16), dtype=np.float32)
    image[15, 2] = 1.0                                          # x=15 (right half), y=2 (near the bottom)
    label = np.zeros((20, 16), dtype=np.uint8)
    label[15, 2] = 3
    ax = viz.overlay(image, label, alpha=0.5)
    grey, colour = ax.images
    assert grey.origin == "lower" and grey.get_extent() == [-0.5, 19.5, -0.5, 15.5]   # x spans the width
    assert grey.get_array()[2, 15] == 1.0
    np.testing.assert_allclose(colour.get_array()[2, 15], (*viz.LABEL_COLOURS[3], 0.5))
    assert colour.get_array()[0, 0, 3] == 0                     # background transparent


def test_overlay_picture_layout_and_rgb():
    image = np.random.default_rng(0).uniform(size=(3, 10, 12)).astype(np.float32)
    label = np.zeros((10, 12), dtype=np.uint8)
    label[1, 11] = 1
    ax = viz.overlay(image, label, layout="rc")
    picture, colour = ax.images
    assert picture.origin == "upper"
    np.testing.assert_allclose(picture.get_array()[1, 11], image[:, 1, 11])
    assert colour.get_array()[1, 11, 3] > 0


def test_draw_slice_static_twin():
    case = brain_case()
    fig = viz.draw_slice(case, slice_index=4, channel="T1gd", show_label=True, alpha=0.3, axis=2)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "BRATS_001 T1gd, axial slice 4"
    np.testing.assert_array_equal(ax.images[0].get_array(), case["image"][2, :, :, 4].T)
    assert len(ax.images) == 2                                  # image + label overlay
    fig = viz.draw_slice(case, slice_index=4, channel=0, show_label=False, alpha=0.3, axis=1)
    assert len(fig.axes[0].images) == 1 and "coronal slice 4" in fig.axes[0].get_title()
    assert fig.axes[0].get_aspect() == pytest.approx(2.5)
    assert "axial slice 7" in viz.draw_slice(case).axes[0].get_title()


def test_skin_montage_titles_contours_and_unused_axes():
    cases = [skin_case(k, fitzpatrick=f) for k, f in enumerate([1, 3, 6, float("nan"), None])]
    cases.append(skin_case(9, empty=True))
    fig = viz.show_skin_montage(cases, ncols=4)
    assert len(fig.axes) == 6                                   # 2 x 4 grid, 2 unused removed
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["ISIC_0000000 type I", "ISIC_0000001 type III", "ISIC_0000002 type VI"]
    assert titles[3] == "ISIC_0000003" and titles[4] == "ISIC_0000004"
    assert len(fig.axes[0].collections) >= 1                   # contour drawn
    assert len(fig.axes[5].collections) == 0                   # empty mask: no contour, no error


def test_show_case_on_2d_skin_case_does_not_raise():
    case = skin_case(0)
    del case["fitzpatrick"]
    fig = viz.show_case(case)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "ISIC_0000000"


def test_compare_predictions_counts_errors():
    image = np.zeros((6, 5), dtype=np.float32)
    target = np.zeros((6, 5), dtype=np.uint8)
    pred = np.zeros((6, 5), dtype=np.uint8)
    target[1:3, 1:3] = 1          # 4 target pixels
    pred[2:4, 1:3] = 1            # 2 overlap, 2 false positives, 2 false negatives
    pred[1, 1] = 2                # a false negative becomes wrong class
    fig = viz.compare_predictions(image, target, pred)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes[:2]] == ["target", "prediction"]
    assert fig.axes[2].get_title() == "errors: 2 FP, 1 FN, 1 wrong class"
    errors = fig.axes[2].images[1].get_array()
    assert errors[2, 3, 3] == 1.0 and errors[0, 0, 3] == 0.0   # FP at (x=3, y=2) shown at row 2, col 3


def test_errors():
    case = brain_case()
    with pytest.raises(ValueError, match="axis must be 0"):
        viz.show_case(case, axis=3)
    with pytest.raises(ValueError, match="channels must name each of the 4"):
        viz.show_case(case, channels=("FLAIR", "T1w"))
    with pytest.raises(ValueError, match=r"slice_index must be in \[0, 11\]"):
        viz.draw_slice(case, slice_index=12)
    with pytest.raises(ValueError, match="channel must be an index or one of"):
        viz.draw_slice(case, channel="DWI")
    with pytest.raises(ValueError, match="draw_slice needs a 3D case"):
        viz.draw_slice(skin_case(0))
    with pytest.raises(ValueError, match=r"case\['label'\] must have the spatial shape"):
        viz.show_case({**case, "label": np.zeros((3, 3, 3), dtype=np.uint8)})
    with pytest.raises(TypeError, match="case must be a dict"):
        viz.show_case(case["image"])
    with pytest.raises(ValueError, match="image2d must be"):
        viz.overlay(np.zeros((4, 4)), np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="layout must be"):
        viz.overlay(np.zeros((4, 4)), np.zeros((4, 4), dtype=np.uint8), layout="yx")
    with pytest.raises(ValueError, match="target2d and pred2d must have the same shape"):
        viz.compare_predictions(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="cases must hold at least one case"):
        viz.show_skin_montage([])


def test_max_tumour_slice_hand_worked():
    label = brain_case()["label"]
    assert viz.max_tumour_slice(label, axis=2) == 7
    assert viz.max_tumour_slice(label, axis=0) == 9
    # per y: y = 4..8 have 24 block voxels + 1 from the line = 25 each (a tie): the first wins
    assert viz.max_tumour_slice(label, axis=1) == 4
    assert viz.max_tumour_slice(np.zeros((4, 6, 8), dtype=np.uint8), axis=1) == 3
    with pytest.raises(ValueError, match="label must be a 3D label map"):
        viz.max_tumour_slice(np.zeros((4, 6), dtype=np.uint8))
