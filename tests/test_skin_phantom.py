"""Tests for medseg_edu.data.skin_phantom (synthetic dermoscopy images, ISIC layout)."""
import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from medseg_edu.data import skin_phantom
from medseg_edu.data.skin_phantom import (FITZPATRICK_TYPES, SITES, lesion_contrast, make_skin_case,
                                          write_skin_dataset)


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _read_metadata(root):
    with open(root / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# make_skin_case
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("site", sorted(SITES))
def test_case_shapes_dtypes_and_ranges(site):
    case = make_skin_case(seed=3, fitzpatrick=2, size=64, site=site)
    image, label = case["image"], case["label"]
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert label.shape == (64, 64) and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 1}
    assert case["fitzpatrick"] == 2 and case["site"] == site
    assert isinstance(case["case_id"], str) and case["case_id"]


def test_default_size_is_256_and_type_drawn_from_seed():
    case = make_skin_case(seed=11)
    assert case["image"].shape == (3, 256, 256)
    assert case["fitzpatrick"] in FITZPATRICK_TYPES
    types = {make_skin_case(seed=s, size=32)["fitzpatrick"] for s in range(40)}
    assert len(types) >= 4          # the seed picks varied skin types


def test_mask_is_one_lesion_not_touching_all_borders():
    from scipy import ndimage

    for seed in range(15):
        label = make_skin_case(seed=seed, size=96)["label"]
        borders = [label[0].any(), label[-1].any(), label[:, 0].any(), label[:, -1].any()]
        assert sum(borders) < 4
        assert ndimage.label(label)[1] == 1
        assert 0.02 < label.mean() < 0.6


def test_same_seed_same_array_and_other_seed_differs():
    a = make_skin_case(seed=5, fitzpatrick=4, size=64, site="B")
    b = make_skin_case(seed=5, fitzpatrick=4, size=64, site="B")
    c = make_skin_case(seed=6, fitzpatrick=4, size=64, site="B")
    assert a["image"].tobytes() == b["image"].tobytes()
    assert np.array_equal(a["label"], b["label"])
    assert not np.array_equal(a["label"], c["label"])


def test_lesion_shape_does_not_depend_on_skin_type_or_site():
    reference = make_skin_case(seed=8, fitzpatrick=1, size=64, site="A")
    for fitzpatrick, site in [(6, "A"), (3, "B"), (1, "C")]:
        other = make_skin_case(seed=8, fitzpatrick=fitzpatrick, size=64, site=site)
        assert np.array_equal(other["label"], reference["label"])
        assert not np.array_equal(other["image"], reference["image"])


def test_darker_skin_types_are_darker():
    # mean luminance of the skin (outside the lesion), same seeds for every type
    means = []
    for fitzpatrick in FITZPATRICK_TYPES:
        values = []
        for seed in range(4):
            case = make_skin_case(seed=seed, fitzpatrick=fitzpatrick, size=64)
            values.append(case["image"].mean(axis=0)[case["label"] == 0].mean())
        means.append(np.mean(values))
    assert all(np.diff(means) < 0)


def test_lesion_is_darker_than_skin():
    for seed in range(5):
        case = make_skin_case(seed=seed, fitzpatrick=2, size=64)
        grey = case["image"].mean(axis=0)
        assert grey[case["label"] == 1].mean() < grey[case["label"] == 0].mean()


def test_contrast_lower_on_dark_skin():
    """Mean contrast over 20 images: types I-II clearly above types V-VI (as in real data)."""
    def mean_contrast(types):
        values = []
        for seed in range(20):
            case = make_skin_case(seed=seed, fitzpatrick=types[seed % 2], size=128)
            values.append(lesion_contrast(case["image"], case["label"]))
        return np.mean(values)

    light, dark = mean_contrast((1, 2)), mean_contrast((5, 6))
    assert dark > 0
    assert dark < 0.8 * light


def test_bad_arguments_to_make_skin_case():
    with pytest.raises(ValueError, match="size must be an int >= 32, got 31"):
        make_skin_case(seed=0, size=31)
    with pytest.raises(ValueError, match="fitzpatrick must be one of .* got 7"):
        make_skin_case(seed=0, fitzpatrick=7)
    with pytest.raises(TypeError, match="fitzpatrick must be an int"):
        make_skin_case(seed=0, fitzpatrick="V")
    with pytest.raises(ValueError, match="site must be one of .* got 'Z'"):
        make_skin_case(seed=0, site="Z")
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        make_skin_case(seed=-1)
    with pytest.raises(TypeError, match="seed must be an int >= 0, got float"):
        make_skin_case(seed=1.5)


# ---------------------------------------------------------------------------------------------
# lesion_contrast
# ---------------------------------------------------------------------------------------------
def test_lesion_contrast_matches_brute_force_ring():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (3, 40, 40)).astype(np.float32)
    label = np.zeros((40, 40), np.uint8)
    label[15:25, 12:22] = 1
    # brute force: distance of every pixel to the nearest lesion pixel
    lesion = np.argwhere(label == 1)
    grid = np.argwhere(np.ones((40, 40)))
    distance = np.sqrt(((grid[:, None, :] - lesion[None, :, :]) ** 2).sum(-1)).min(1).reshape(40, 40)
    ring = (distance > 3) & (distance <= 7)
    luminance = 0.299 * image[0].astype(float) + 0.587 * image[1] + 0.114 * image[2]
    expected = (luminance[ring].mean() - luminance[label == 1].mean()) / luminance[ring].std()
    got = lesion_contrast(image, label, gap_px=3, ring_px=4)
    assert got == pytest.approx(expected, rel=1e-5)


def test_lesion_contrast_hand_worked_grey_image():
    # grey image (R = G = B, so luminance = value): lesion 0.2, skin columns alternate 0.6 / 0.8
    image = np.empty((3, 32, 32), np.float32)
    image[:] = np.where(np.arange(32) % 2 == 0, 0.6, 0.8)[None, None, :]
    label = np.zeros((32, 32), np.uint8)
    label[10:20, 10:20] = 1
    image[:, 10:20, 10:20] = 0.2
    # the ring (3 < distance <= 7) covers as many even as odd columns of a 10 x 10 square: mean 0.7, std 0.1
    assert lesion_contrast(image, label, gap_px=3, ring_px=4) == pytest.approx((0.7 - 0.2) / 0.1, rel=1e-4)
    brighter = image.copy()
    brighter[:, 10:20, 10:20] = 0.9
    assert lesion_contrast(brighter, label, gap_px=3, ring_px=4) < 0


def test_lesion_contrast_bad_input():
    image = np.zeros((3, 16, 16), np.float32)
    label = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match=r"image must have shape \(3, H, W\), got \(16, 16, 3\)"):
        lesion_contrast(np.zeros((16, 16, 3)), label)
    with pytest.raises(ValueError, match="label must have shape"):
        lesion_contrast(image, np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="label must be binary"):
        lesion_contrast(image, np.full((16, 16), 2))
    with pytest.raises(ValueError, match="both lesion and skin pixels, got 0 lesion pixels"):
        lesion_contrast(image, label)
    label[4:8, 4:8] = 1
    with pytest.raises(ValueError, match="constant luminance"):
        lesion_contrast(image, label)


# ---------------------------------------------------------------------------------------------
# write_skin_dataset
# ---------------------------------------------------------------------------------------------
def test_dataset_layout_masks_and_metadata(tmp_path):
    root = write_skin_dataset(tmp_path / "skin", cases=6, seed=1, size=48, site="B", patients=3)
    assert root == tmp_path / "skin"
    jpgs = sorted(p.name for p in (root / "images").iterdir())
    pngs = sorted(p.name for p in (root / "masks").iterdir())
    assert jpgs == [f"ISIC_{i:07d}.jpg" for i in range(6)]
    assert pngs == [f"ISIC_{i:07d}_segmentation.png" for i in range(6)]
    with Image.open(root / "images" / jpgs[0]) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (48, 48)
    with Image.open(root / "masks" / pngs[0]) as mask:
        assert mask.format == "PNG" and mask.mode == "L" and mask.size == (48, 48)
        assert set(np.unique(np.asarray(mask)).tolist()) == {0, 255}
    rows = _read_metadata(root)
    assert [r["case_id"] for r in rows] == [f"ISIC_{i:07d}" for i in range(6)]
    for column in ("patient_id", "site", "fitzpatrick", "age", "sex", "lesion_area_fraction",
                   "lesion_diameter_mm", "hair"):
        assert column in rows[0]
    assert {r["site"] for r in rows} == {"B"}
    assert len({r["patient_id"] for r in rows}) == 3
    for patient in {r["patient_id"] for r in rows}:        # one skin type, age and sex per patient
        mine = [r for r in rows if r["patient_id"] == patient]
        assert len({(r["fitzpatrick"], r["age"], r["sex"]) for r in mine}) == 1
    # the area fraction in metadata agrees with the mask on disk
    with Image.open(root / "masks" / pngs[2]) as mask:
        assert float(rows[2]["lesion_area_fraction"]) == pytest.approx((np.asarray(mask) > 0).mean(), abs=1e-4)
    assert not list(tmp_path.glob(".*part*"))


def test_dataset_readable_by_io(tmp_path):
    io = pytest.importorskip("medseg_edu.data.io")
    root = write_skin_dataset(tmp_path / "skin", cases=3, seed=2, size=40)
    cases = io.list_skin_cases(root)
    assert len(cases) == 3 and set(cases["fitzpatrick"]) <= set(FITZPATRICK_TYPES)
    case = io.load_skin_case(cases["image_path"][0], cases["mask_path"][0])
    assert case["image"].shape == (3, 40, 40) and set(np.unique(case["label"]).tolist()) == {0, 1}


def test_dataset_same_seed_same_bytes(tmp_path):
    kwargs = dict(cases=4, size=40, patients=2, fitzpatrick_weights=(1, 0, 0, 0, 1, 1))
    first = _digests(write_skin_dataset(tmp_path / "a", seed=7, **kwargs))
    second = _digests(write_skin_dataset(tmp_path / "b", seed=7, **kwargs))
    third = _digests(write_skin_dataset(tmp_path / "c", seed=8, **kwargs))
    assert len(first) == 9 and first == second
    assert first["masks/ISIC_0000000_segmentation.png"] != third["masks/ISIC_0000000_segmentation.png"]


def test_fitzpatrick_weights_are_honoured(tmp_path):
    root = write_skin_dataset(tmp_path / "w", cases=60, seed=0, size=32,
                              fitzpatrick_weights=(3, 2, 1, 0, 0, 0))
    counts = np.bincount([int(r["fitzpatrick"]) for r in _read_metadata(root)], minlength=7)[1:]
    expected = np.array([30, 20, 10, 0, 0, 0])
    assert np.all(np.abs(counts - expected) <= 1)
    root = write_skin_dataset(tmp_path / "m", cases=10, seed=0, size=32, fitzpatrick_weights={1: 1, 6: 1})
    assert {int(r["fitzpatrick"]) for r in _read_metadata(root)} == {1, 6}


def test_existing_empty_folder_is_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    root = write_skin_dataset(tmp_path / "empty", cases=1, seed=0, size=32)
    assert (root / "metadata.csv").is_file()


def test_bad_arguments_to_write_skin_dataset(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ValueError, match="cases must be an int >= 1, got 0"):
        write_skin_dataset(out, cases=0, seed=0)
    with pytest.raises(ValueError, match="size must be an int >= 32, got 16"):
        write_skin_dataset(out, cases=2, seed=0, size=16)
    with pytest.raises(ValueError, match="fitzpatrick_weights must have 6 values"):
        write_skin_dataset(out, cases=2, seed=0, fitzpatrick_weights=(1, 1))
    with pytest.raises(ValueError, match="fitzpatrick_weights must be finite, >= 0 and not all 0"):
        write_skin_dataset(out, cases=2, seed=0, fitzpatrick_weights=(1, -1, 0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"fitzpatrick_weights keys must be skin types .* got \[7\]"):
        write_skin_dataset(out, cases=2, seed=0, fitzpatrick_weights={7: 1.0})
    with pytest.raises(ValueError, match=r"patients must be <= cases \(2\), got 3"):
        write_skin_dataset(out, cases=2, seed=0, patients=3)
    with pytest.raises(ValueError, match="site must be one of"):
        write_skin_dataset(out, cases=2, seed=0, site="Q")
    assert not out.exists()
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="out_dir must not exist or be an empty folder"):
        write_skin_dataset(out, cases=1, seed=0, size=32)
    assert (out / "old.txt").read_text() == "keep me"


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real = skin_phantom.make_skin_case

    def failing(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(**kwargs)

    monkeypatch.setattr(skin_phantom, "make_skin_case", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_skin_dataset(tmp_path / "broken", cases=5, seed=0, size=32)
    assert list(tmp_path.iterdir()) == []
