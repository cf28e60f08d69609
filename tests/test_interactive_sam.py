"""Tests for medseg_edu.interactive.sam: the coordinate maths by hand, the model with random ViT-B weights.

The random-weights test needs the extra [sam] (segment-anything, which imports torchvision) and is
skipped cleanly without it.
"""
import sys

import numpy as np
import pytest
import torch

from medseg_edu.interactive.sam import (SAM_PIXEL_MEAN, SAM_PIXEL_STD, load_sam, sam_postprocess, sam_preprocess,
                                        sam_resize_shape, sam_scale_box, sam_segment)

TOL = 1e-6  # box scaling is a product of two float64 numbers; hand values are exact to ~1e-13


@pytest.mark.parametrize("shape, expected", [((300, 200), (1024, 683)),     # 200 * 1024/300 = 682.67 -> 683
                                             ((200, 300), (683, 1024)),
                                             ((512, 256), (1024, 512)),
                                             ((1024, 1024), (1024, 1024)),
                                             ((100, 3), (1024, 31))])      # 3 * 10.24 = 30.72 -> 31
def test_resize_shape_longest_side_1024(shape, expected):
    assert sam_resize_shape(*shape) == expected


def test_box_scaling_hand_worked_300_by_200():
    # image H=300, W=200 -> resized 1024 x 683: x scales by 683/200 = 3.415, y by 1024/300 = 3.41333...
    np.testing.assert_allclose(sam_scale_box((10, 20, 110, 120), (300, 200)),
                               [34.15, 68.2666666667, 375.65, 409.6], atol=TOL)
    # MedSAM resizes to 1024 x 1024: x by 1024/200 = 5.12, y by 1024/300
    np.testing.assert_allclose(sam_scale_box((10, 20, 110, 120), (300, 200), style="medsam"),
                               [51.2, 68.2666666667, 563.2, 409.6], atol=TOL)
    with pytest.raises(ValueError, match="style must be one of"):
        sam_scale_box((10, 20, 110, 120), (300, 200), style="SAM")
    with pytest.raises(ValueError, match="box must be four finite numbers"):
        sam_scale_box((10, 20, 110), (300, 200))


def test_preprocess_normalises_with_sams_pixel_statistics_and_pads_bottom_right():
    image = np.zeros((1, 300, 200), np.float32)
    image[0, :, 100:] = 5.0                                  # left half black, right half white
    x = sam_preprocess(image)
    assert x.shape == (1, 3, 1024, 1024) and x.dtype == torch.float32
    # deep inside the white half: 255 normalised per channel, (255 - mean) / std, by hand
    white = [(255 - 123.675) / 58.395, (255 - 116.28) / 57.12, (255 - 103.53) / 57.375]
    black = [(0 - 123.675) / 58.395, (0 - 116.28) / 57.12, (0 - 103.53) / 57.375]
    np.testing.assert_allclose(x[0, :, 500, 600].numpy(), white, atol=1e-4)   # float32 arithmetic
    np.testing.assert_allclose(x[0, :, 500, 100].numpy(), black, atol=1e-4)
    assert float(x[0, :, :, 683:].abs().max()) < 1e-12       # padding columns (683..1023) are zeros
    assert SAM_PIXEL_MEAN == (123.675, 116.28, 103.53) and SAM_PIXEL_STD == (58.395, 57.12, 57.375)


def test_preprocess_medsam_style_fills_the_square_in_unit_range():
    image = np.zeros((3, 300, 200), np.float32)
    image[:, :, 100:] = 1.0
    x = sam_preprocess(image, style="medsam")
    assert x.shape == (1, 3, 1024, 1024)
    assert abs(float(x[0, 0, 500, 1000]) - 1) < 1e-4 and abs(float(x[0, 0, 500, 10])) < 1e-4
    with pytest.raises(ValueError, match=r"1 \(grey\) or 3 \(RGB\) channels"):
        sam_preprocess(np.zeros((4, 8, 8), np.float32))


def test_postprocess_crops_the_padding_and_returns_to_the_original_size():
    # positive logits only inside the padding (low-res columns >= 176 = 1024-frame columns >= 704 > 683):
    # nothing of it may reach the image
    low = -torch.ones(1, 1, 256, 256)
    low[..., 176:] = 1
    out = sam_postprocess(low, (300, 200))
    assert out.shape == (1, 1, 300, 200) and float(out.max()) < 0
    # positive in low-res columns < 160: the edge is at 1024-frame column 639.5, i.e. original column
    # 640 * 200 / 683 - 0.5 = 186.9
    low = -torch.ones(1, 1, 256, 256)
    low[..., :160] = 1
    mask = (sam_postprocess(low, (300, 200))[0, 0] > 0).numpy()
    assert mask[:, :185].all() and not mask[:, 189:].any()


def test_postprocess_medsam_goes_straight_to_the_original_size():
    low = -torch.ones(1, 1, 256, 256)
    low[..., :128] = 1                                       # left half of the square frame = left half of the image
    mask = (sam_postprocess(low, (300, 200), style="medsam")[0, 0] > 0).numpy()
    assert mask[:, :98].all() and not mask[:, 102:].any()


def test_load_sam_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "segment_anything", None)      # makes the import fail
    with pytest.raises(ImportError, match=r"medseg-edu\[sam\]"):
        load_sam(None)


def test_sam_segment_refuses_other_models():
    with pytest.raises(TypeError, match="SAM-architecture model"):
        sam_segment(torch.nn.Linear(2, 2), np.zeros((1, 8, 8), np.float32), (0, 0, 4, 4))


@pytest.mark.slow
def test_adapter_agrees_with_segment_anything_on_random_vit_b():
    try:                                                     # extra [sam]; it imports torchvision, which
        import segment_anything  # noqa: F401                # must match the installed torch
    except (ImportError, RuntimeError, OSError) as error:
        pytest.skip(f"segment-anything (extra [sam]) does not import here: {error}")
    torch.manual_seed(0)
    model = load_sam(None, model_type="vit_b")
    image = np.random.default_rng(0).uniform(0, 1, (3, 300, 200)).astype(np.float32)
    # our preprocessing = SAM's own Sam.preprocess (normalise + pad) of the same resized image
    resized = torch.nn.functional.interpolate(torch.from_numpy(image * 255 / image.max())[None], size=(1024, 683),
                                              mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_allclose(sam_preprocess(image).numpy(), model.preprocess(resized).numpy(), atol=1e-3)
    low = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(sam_postprocess(low, (300, 200)).numpy(),
                               model.postprocess_masks(low, (1024, 683), (300, 200)).numpy(), atol=1e-5)
    mask = sam_segment(model, image, (10, 20, 110, 120))
    assert mask.shape == (300, 200) and mask.dtype == bool
