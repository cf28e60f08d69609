"""Tests for medseg_edu.registration: hand-worked resampling against numpy/scipy, and recovery of the
phantom's known misalignment (the week-1 'Done when')."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from medseg_edu.registration import register_affine, register_rigid, resample, rigid_matrix, transform_error
from medseg_edu.similarity import mutual_information_score, ncc_score

# small settings that keep each registration test to a few seconds on 2 cores
FAST = dict(levels=(4, 2, 1), iterations=(40, 20, 10), samples=4096)


def smooth_volume(shape=(16, 16, 16), seed=0):
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(rng.random(shape), 1.5).astype(np.float32)


# ------------------------------------------------------------------------------ rigid_matrix
def test_rigid_matrix_2d_quarter_turn_by_hand():
    m = rigid_matrix(90.0, [1.0, 2.0])
    # (1, 0) turns to (0, 1), then the translation (1, 2) is added
    np.testing.assert_allclose(m @ [1.0, 0.0, 1.0], [1.0, 3.0, 1.0], atol=1e-12)
    assert m.shape == (3, 3) and isinstance(m, np.ndarray)


def test_rigid_matrix_3d_matches_scipy_extrinsic_xyz():
    angles = [10.0, -20.0, 30.0]
    m = rigid_matrix(angles, [1.0, 2.0, 3.0])
    reference = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()   # about x, then y, then z
    np.testing.assert_allclose(m[:3, :3], reference, atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(m[3], [0, 0, 0, 1])


def test_rigid_matrix_torch_keeps_gradient():
    angles = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    m = rigid_matrix(angles, torch.zeros(3, dtype=torch.float64))
    m[1, 0].backward()            # d sin(az) / d az at 0 = pi / 180 per degree
    assert isinstance(m, torch.Tensor)
    assert angles.grad[2].item() == pytest.approx(math.pi / 180)


def test_rigid_matrix_bad_input():
    with pytest.raises(ValueError, match="angles_deg must hold 1 angle"):
        rigid_matrix([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="translation_mm must have 3 values"):
        rigid_matrix([0.0, 0.0, 0.0], [0.0, 0.0])


# ------------------------------------------------------------------------------ resample
def test_shift_by_one_voxel_is_np_roll_in_the_interior_anisotropic():
    volume = np.random.default_rng(1).random((6, 7, 8)).astype(np.float32)
    spacing = (2.0, 3.0, 5.0)
    # out(p) = moving(p + t): t = one voxel along z (5 mm) -> out[..., k] = moving[..., k + 1]
    out = resample(volume, rigid_matrix([0, 0, 0], [0.0, 0.0, 5.0]), spacing_mm=spacing)
    np.testing.assert_allclose(out[..., :-1], np.roll(volume, -1, axis=2)[..., :-1], atol=1e-5)
    np.testing.assert_allclose(out[..., -1], 0.0, atol=1e-5)   # outside the moving volume reads 0
    # one voxel along y is 3 mm
    out = resample(volume, rigid_matrix([0, 0, 0], [0.0, -3.0, 0.0]), spacing_mm=spacing)
    np.testing.assert_allclose(out[:, 1:], np.roll(volume, 1, axis=1)[:, 1:], atol=1e-5)
    assert out.dtype == np.float32 and out.shape == volume.shape


def test_quarter_turn_about_z_is_np_rot90_with_anisotropic_slices():
    volume = np.random.default_rng(2).random((8, 8, 5)).astype(np.float32)
    # Hand-worked: angle -90 deg about z gives R @ (x, y) = (y, -x), so out[i, j] = moving[j, n-1-i],
    # which is np.rot90(moving, 1, axes=(0, 1)). Slices 5 mm thick must not matter for a turn about z.
    out = resample(volume, rigid_matrix([0.0, 0.0, -90.0], [0.0, 0.0, 0.0]), spacing_mm=(2.0, 2.0, 5.0))
    np.testing.assert_allclose(out, np.rot90(volume, 1, axes=(0, 1)), atol=1e-5)


def test_resample_2d_channels_and_nearest_labels():
    image = np.random.default_rng(3).random((2, 5, 6)).astype(np.float32)
    out = resample(image, rigid_matrix(0.0, [1.5, 0.0]), spacing_mm=(1.5, 1.0))
    np.testing.assert_allclose(out[:, :-1], image[:, 1:], atol=1e-6)
    label = np.random.default_rng(4).integers(0, 4, (9, 9, 9)).astype(np.uint8)
    turned = resample(label, rigid_matrix([0, 0, 33.0], [1.3, 0, 0]), spacing_mm=(1, 1, 1), order="nearest")
    assert turned.dtype == np.uint8 and set(np.unique(turned)) <= {0, 1, 2, 3}


def test_resample_reference_shape_keeps_the_centre():
    volume = np.zeros((5, 5, 5), np.float32)
    volume[2, 2, 2] = 1.0
    out = resample(volume, np.eye(4), spacing_mm=(1, 1, 1), reference_shape=(9, 9, 9))
    assert out.shape == (9, 9, 9) and out[4, 4, 4] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


def test_resample_gradient_reaches_the_transform():
    volume = torch.from_numpy(smooth_volume())
    shift = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    out = resample(volume, rigid_matrix(torch.zeros(3, dtype=torch.float64), shift), spacing_mm=(1, 1, 1))
    ncc_score(volume + 0.0, out).backward()
    assert torch.isfinite(shift.grad).all()
    # at alignment NCC is maximal, so its gradient is (almost) zero; one voxel off it is not
    shift2 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    out2 = resample(volume, rigid_matrix(torch.zeros(3, dtype=torch.float64), shift2), spacing_mm=(1, 1, 1))
    ncc_score(volume, out2).backward()
    assert abs(shift2.grad[0].item()) > 10 * abs(shift.grad[0].item())


def test_resample_bad_input():
    with pytest.raises(ValueError, match="order must be"):
        resample(np.zeros((4, 4)), np.eye(3), spacing_mm=(1, 1), order="cubic")
    with pytest.raises(ValueError, match="spacing_mm values must be finite and > 0"):
        resample(np.zeros((4, 4)), np.eye(3), spacing_mm=(1, 0))
    with pytest.raises(ValueError, match="matrix must be \\(4, 4\\)"):
        resample(np.zeros((4, 4, 4)), np.eye(3), spacing_mm=(1, 1, 1))
    with pytest.raises(ValueError, match="moving must be"):
        resample(np.zeros((2, 3, 4, 4, 4)), np.eye(4), spacing_mm=(1, 1, 1))
    with pytest.raises(TypeError, match="moving must be a numpy array"):
        resample([[0.0]], np.eye(3), spacing_mm=(1, 1))


# ------------------------------------------------------------------------------ transform_error
def test_transform_error_by_hand():
    assert transform_error(np.eye(4), np.eye(4)) == (0.0, 0.0)
    mm, deg = transform_error(rigid_matrix([0, 0, 0], [3.0, 4.0, 0.0]), np.eye(4))
    assert mm == pytest.approx(5.0) and deg == pytest.approx(0.0, abs=1e-6)
    # 10 degrees about z: each corner of the 100 mm cube is 50*sqrt(2) mm from the axis and moves
    # by the chord 2 r sin(5 deg)
    mm, deg = transform_error(rigid_matrix([0, 0, 10.0], [0, 0, 0]), np.eye(4))
    assert deg == pytest.approx(10.0)
    assert mm == pytest.approx(2 * 50 * math.sqrt(2) * math.sin(math.radians(5)))
    # on a mask: a single voxel at the centre does not move under a rotation
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    assert transform_error(rigid_matrix([0, 0, 10.0], [0, 0, 0]), np.eye(4), points=mask,
                           spacing_mm=(1, 1, 1))[0] == pytest.approx(0.0, abs=1e-9)
    assert transform_error(rigid_matrix(-7.0, [0, 0]), rigid_matrix(5.0, [0, 0]))[1] == pytest.approx(12.0)
    with pytest.raises(ValueError, match="needs spacing_mm"):
        transform_error(np.eye(4), np.eye(4), points=mask)


# ------------------------------------------------------------------------------ registration
def test_register_rigid_2d_recovers_a_known_shift_and_turn_and_is_deterministic(one_thread):
    fixed = np.pad(smooth_volume((32, 32), seed=12), 8)
    true = rigid_matrix(6.0, [3.0, -4.0])
    moving = resample(fixed, np.linalg.inv(true), spacing_mm=(2.0, 2.0))     # moving(M p) = fixed(p)
    kw = dict(spacing_mm=(2.0, 2.0), levels=(2, 1), iterations=(40, 20))
    result = register_rigid(fixed, moving, **kw)
    mm, deg = transform_error(result["matrix"], true)
    assert mm < 1.0 and deg < 1.0
    again = register_rigid(fixed, moving, **kw)
    np.testing.assert_array_equal(result["matrix"], again["matrix"])
    assert set(result["history"]) == {2, 1} and len(result["history"][2]) == 40
    assert result["resampled"].shape == fixed.shape


def test_register_affine_2d_recovers_a_scaling():
    fixed = np.pad(smooth_volume((32, 32), seed=13), 8)
    true = np.diag([1.06, 0.95, 1.0])
    true[:2, 2] = [2.0, -1.0]
    moving = resample(fixed, np.linalg.inv(true), spacing_mm=(2.0, 2.0))
    before = transform_error(np.eye(3), true)[0]
    result = register_affine(fixed, moving, spacing_mm=(2.0, 2.0), levels=(2, 1), iterations=(80, 40))
    assert transform_error(result["matrix"], true)[0] < 0.2 * before


def test_register_bad_input():
    image = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match="metric must be one of"):
        register_rigid(image, image, spacing_mm=(1, 1), metric="ssd")
    with pytest.raises(ValueError, match="levels must be positive"):
        register_rigid(image, image, spacing_mm=(1, 1), levels=(8, 1))
    with pytest.raises(ValueError, match="iterations must be"):
        register_rigid(image, image, spacing_mm=(1, 1), levels=(2, 1), iterations=(5,))
    with pytest.raises(ValueError, match="fixed and moving must have 3 spatial axes"):
        register_rigid(image, image, spacing_mm=(1, 1, 1))


@pytest.fixture
def one_thread():
    """Registration steps work on a few thousand points: one thread is as fast, and on a busy shared
    machine two OpenMP threads waiting for each other make these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def phantom():
    from medseg_edu.data.phantoms import make_brain_case
    return make_brain_case(seed=0, shape=(64, 64, 64), spacing_mm=(3.0, 3.0, 3.0), misalign=(8.0, 8.0))


def test_ncc_recovers_a_known_rigid_motion_of_t1w(phantom, one_thread):
    t1w = phantom["image"][1]
    true = rigid_matrix([5.0, -4.0, 6.0], [4.0, -6.0, 3.0])
    moving = resample(t1w, np.linalg.inv(true), spacing_mm=phantom["spacing_mm"])   # T1w after motion
    assert transform_error(np.eye(4), true)[0] > 5.0
    result = register_rigid(t1w, moving, spacing_mm=phantom["spacing_mm"], metric="ncc", **FAST)
    mm, deg = transform_error(result["matrix"], true, points=t1w > 0, spacing_mm=phantom["spacing_mm"])
    assert mm < 1.0 and deg < 1.0


@pytest.mark.slow          # about 3-5 s each on 2 cores
@pytest.mark.parametrize("sequence", ["T2w", "FLAIR"])
def test_mi_recovers_the_phantom_misalignment_across_sequences(phantom, sequence, one_thread):
    channel = ["FLAIR", "T1w", "T1gd", "T2w"].index(sequence)
    true = phantom["transforms"][sequence]["matrix"]          # p_moving = true @ p_T1w
    assert transform_error(np.eye(4), true)[0] > 3.0
    result = register_rigid(phantom["image"][1], phantom["image"][channel], spacing_mm=phantom["spacing_mm"],
                            metric="mi", **FAST)
    mm, deg = transform_error(result["matrix"], true)
    assert mm < 1.0 and deg < 1.0
    assert mutual_information_score(phantom["image"][1], result["resampled"]) > \
        mutual_information_score(phantom["image"][1], phantom["image"][channel])
