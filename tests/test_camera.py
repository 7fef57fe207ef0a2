"""Camera maths: normalised intrinsics (docs/method.md §6.2), quaternion extrinsics, projection (docs/method.md §5.3)."""
import math

import numpy as np
import pytest
import torch

from d3dp_ktp.camera import (camera_to_world, image_coordinates, look_at_quaternion, matrix_to_quaternion,
                             normalize_screen_coordinates, normalized_intrinsics, project_camera, project_to_2d,
                             project_to_2d_linear, qinverse, qrot, world_to_camera)

# docs/method.md §6.2: (res w, res h, fx, fy, cx, cy, k, p) per camera index.
CAMERAS = [
    (1000, 1002, 1145.0494384765625, 1143.7811279296875, 512.54150390625, 515.4514770507812,
     (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
     (-0.0009756988729350269, -0.00142447161488235)),
    (1000, 1000, 1149.6756591796875, 1147.5916748046875, 508.8486328125, 508.0649108886719,
     (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
     (-0.0016190266469493508, -0.0027408944442868233)),
    (1000, 1000, 1149.1407470703125, 1148.7989501953125, 519.8158569335938, 501.40264892578125,
     (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
     (0.0014843869721516967, -0.0007599993259645998)),
    (1000, 1002, 1145.5113525390625, 1144.77392578125, 514.9682006835938, 501.88201904296875,
     (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
     (-0.0005872055771760643, -0.0018133620033040643)),
]
NORMALISED = [  # (f_x, f_y, c_x, c_y) from docs/method.md §6.2
    (2.290099, 2.2875624, 0.02508307, 0.02890298),
    (2.2993512, 2.2951834, 0.01769722, 0.01612985),
    (2.2982814, 2.297598, 0.03963172, 0.00280535),
    (2.2910228, 2.289548, 0.02993643, 0.00176403),
]
S1_CAM0_Q = (0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088)
S1_CAM0_T_MM = (1841.1070556640625, 4955.28466796875, 1563.4454345703125)


@pytest.mark.parametrize("idx", range(4))
def test_normalized_intrinsics_match_spec(idx):
    w, h, fx, fy, cx, cy, k, p = CAMERAS[idx]
    cam = normalized_intrinsics(fx, fy, cx, cy, k, p, w, h)
    assert cam.shape == (9,) and cam.dtype == np.float32
    np.testing.assert_allclose(cam[:4], NORMALISED[idx], rtol=3e-7, atol=6e-9)  # digits printed in docs/method.md
    np.testing.assert_array_equal(cam[4:7], np.asarray(k, np.float32))
    np.testing.assert_array_equal(cam[7:], np.asarray(p, np.float32))
    # VideoPose3D computes c in float64 from the float32 pixels and stores float32
    c_ref = (np.float32([cx, cy]) / w * 2 - [1, h / w]).astype(np.float32)
    np.testing.assert_array_equal(cam[2:4], c_ref)


def test_normalize_screen_coordinates_divides_both_axes_by_width():
    x = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]], np.float32)
    out = normalize_screen_coordinates(x, 1000, 1002)
    np.testing.assert_allclose(out, [[-1.0, -1.002], [1.0, 1.002], [0.0, 0.0]], atol=1e-6)
    assert out.dtype == np.float32
    torch.testing.assert_close(normalize_screen_coordinates(torch.from_numpy(x), 1000, 1002), torch.from_numpy(out))
    rng = np.random.default_rng(0)
    pix = (rng.random((4, 17, 2)) * 1000).astype(np.float32)
    np.testing.assert_allclose(image_coordinates(normalize_screen_coordinates(pix, 1000, 1002), 1000, 1002),
                               pix, rtol=0, atol=1e-3)
    with pytest.raises(ValueError):
        normalize_screen_coordinates(np.zeros((3, 3)), 1000, 1000)
    with pytest.raises(ValueError):
        normalize_screen_coordinates(x, 0, 1000)


def _rotation_matrix(q):
    """Camera->world rotation matrix of the unit quaternion (w, x, y, z), written out by hand."""
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_qrot_equals_rotation_matrix_and_inverse():
    rng = np.random.default_rng(1)
    q = np.asarray(S1_CAM0_Q)
    v = rng.standard_normal((5, 17, 3))
    np.testing.assert_allclose(qrot(q, v), v @ _rotation_matrix(q).T, atol=1e-6)
    np.testing.assert_array_equal(qinverse(q), q * [1, -1, -1, -1])
    np.testing.assert_allclose(qrot(qinverse(q), qrot(q, v)), v, atol=1e-6)
    tq, tv = torch.tensor(q), torch.tensor(v)
    torch.testing.assert_close(qrot(tq, tv), torch.tensor(qrot(q, v)))


def test_world_camera_round_trip():
    rng = np.random.default_rng(2)
    q = np.asarray(S1_CAM0_Q, np.float64)
    t = np.asarray(S1_CAM0_T_MM) / 1000  # translation is in mm in the tables, metres after loading
    X = rng.standard_normal((10, 17, 3)) + [0, 0, 1]
    cam = world_to_camera(X, q, t)
    np.testing.assert_allclose(cam, (X - t) @ _rotation_matrix(q), atol=1e-9)  # R^T (X - t)
    # the table quaternions are float32 values, unit only to ~1e-7, so q^-1 = conj(q) up to that
    np.testing.assert_allclose(camera_to_world(cam, q, t), X, atol=1e-6)
    Xt, qt, tt = map(torch.tensor, (X, q, t))
    torch.testing.assert_close(camera_to_world(world_to_camera(Xt, qt, tt), qt, tt), Xt, rtol=0, atol=1e-6)
    torch.testing.assert_close(world_to_camera(Xt, qt, tt), torch.tensor(cam))


def _project_by_hand(point, cam):
    fx, fy, cx, cy, k1, k2, k3, p1, p2 = [float(v) for v in cam]
    X, Y, Z = [float(v) for v in point]
    a = min(max(X / Z, -1.0), 1.0)
    b = min(max(Y / Z, -1.0), 1.0)
    r2 = a * a + b * b
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = p1 * a + p2 * b
    a2 = a * (radial + tan) + p1 * r2
    b2 = b * (radial + tan) + p2 * r2
    return fx * a2 + cx, fy * b2 + cy


def test_project_to_2d_against_hand_computation():
    w, h, fx, fy, cx, cy, k, p = CAMERAS[0]
    cam = torch.tensor(normalized_intrinsics(fx, fy, cx, cy, k, p, w, h), dtype=torch.float64)
    pts = torch.tensor([[[0.3, -0.2, 4.0], [-0.5, 0.4, 3.0], [5.0, -7.0, 2.0], [0.0, 0.0, 5.0]]],
                       dtype=torch.float64)  # the third point exercises the ±1 clamp
    out = project_to_2d(pts, cam[None])
    assert out.shape == (1, 4, 2)
    for j in range(4):
        expected = _project_by_hand(pts[0, j], cam)
        np.testing.assert_allclose(out[0, j].numpy(), expected, rtol=0, atol=1e-12)
    # the VideoPose3D tangential model is not OpenCV's: a p1·r² term only, no 2·p1·a·b
    lin = project_to_2d_linear(pts, cam[None])
    a = torch.clamp(pts[..., :2] / pts[..., 2:], -1, 1)
    torch.testing.assert_close(lin, cam[:2] * a + cam[2:4])


def test_project_to_2d_batches_cameras_and_checks_shapes():
    g = torch.Generator().manual_seed(3)
    cams = torch.stack([torch.tensor(normalized_intrinsics(*c[2:6], c[6], c[7], c[0], c[1])) for c in CAMERAS])
    pts = torch.randn(4, 6, 17, 3, generator=g) * 0.3 + torch.tensor([0, 0, 4.0])
    out = project_to_2d(pts, cams)
    assert out.shape == (4, 6, 17, 2)
    for i in range(4):
        torch.testing.assert_close(out[i], project_to_2d(pts[i], cams[i]))
        expected = _project_by_hand(pts[i, 2, 5], cams[i])
        assert out[i, 2, 5].tolist() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError):
        project_to_2d(pts[..., :2], cams)
    with pytest.raises(ValueError):
        project_to_2d(pts, cams[:, :8])
    assert math.isfinite(out.sum().item())


def test_matrix_to_quaternion_matches_qrot():
    rng = np.random.default_rng(0)
    v = rng.normal(size=3)
    for _ in range(20):
        R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        R *= np.sign(np.linalg.det(R))
        q = matrix_to_quaternion(R)
        assert np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(qrot(q, v), R @ v, atol=1e-10)


def test_look_at_camera_axes():
    centre, target = np.array([4.0, -3.0, 1.5]), np.array([0.0, 0.0, 1.0])
    q = look_at_quaternion(centre, target)
    cam_target = world_to_camera(target, q, centre)
    np.testing.assert_allclose(cam_target, [0, 0, np.linalg.norm(target - centre)], atol=1e-10)
    np.testing.assert_allclose(world_to_camera(centre, q, centre), 0, atol=1e-12)
    above = world_to_camera(target + [0, 0, 1], q, centre)
    assert above[1] < 0  # world up is image up (camera y points down)


def test_camera_placement_checks_its_shapes():
    with pytest.raises(ValueError, match=r"R must be a \(3, 3\) rotation matrix"):
        matrix_to_quaternion(np.eye(4))
    with pytest.raises(ValueError, match=r"centre and target must be 3D points"):
        look_at_quaternion(np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="straight up or down"):
        look_at_quaternion(np.zeros(3), np.array([0.0, 0.0, 2.0]))
    cam = {"id": "c", "res_w": 1000, "res_h": 1000, "focal_length": [1000.0, 1000.0], "center": [500.0, 500.0],
           "radial_distortion": [0.0, 0.0, 0.0], "tangential_distortion": [0.0, 0.0],
           "orientation": look_at_quaternion(np.array([0.0, -5.0, 1.0]), np.array([0.0, 0.0, 1.0])).tolist(),
           "translation": [0.0, -5000.0, 1000.0]}
    with pytest.raises(ValueError, match="positions must have last dimension 3"):
        project_camera(np.zeros((2, 17, 2)), cam)
    with pytest.raises(ValueError, match="behind the camera"):
        project_camera(np.array([[[0.0, -6.0, 1.0]]]), cam)
    np.testing.assert_allclose(project_camera(np.array([[[0.0, 0.0, 1.0]]]), cam)[0, 0], [500.0, 500.0], atol=1e-3)
