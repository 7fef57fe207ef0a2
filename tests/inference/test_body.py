"""Post-processing of d3dp_ktp/inference/body.py: bone lengths, smoothing and jitter, the floor."""
from __future__ import annotations

import numpy as np
import pytest

from d3dp_ktp.inference import body
from d3dp_ktp.skeleton import H36M, MPI_INF_3DHP

# A standing H36M body (metres, Y up, facing +Z, left = +X), feet 0.08 m above the floor at y = 0.
REST = np.array([[0, 0.95, 0], [-0.13, 0.93, 0], [-0.13, 0.5, 0.02], [-0.13, 0.08, 0], [0.13, 0.93, 0],
                 [0.13, 0.5, 0.02], [0.13, 0.08, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, 0.05], [0, 1.7, 0],
                 [0.18, 1.42, 0], [0.2, 1.15, 0], [0.22, 0.9, 0.05], [-0.18, 1.42, 0], [-0.2, 1.15, 0],
                 [-0.22, 0.9, 0.05]])


def walking(frames: int = 120, fps: float = 30.0) -> np.ndarray:
    """(F, 17, 3) a body walking a circle of 1.5 m radius on the floor y = 0, legs swinging, so the
    feet touch the floor at many places."""
    t = np.arange(frames) / fps
    out = np.repeat(REST[None], frames, axis=0)
    swing = 0.25 * np.sin(2 * np.pi * 1.0 * t)
    for ankle, knee, sign in ((3, 2, 1), (6, 5, -1)):
        lift = np.maximum(0, sign * np.sin(2 * np.pi * 1.0 * t)) * 0.06  # a foot in the air half the time
        out[:, ankle, 2] += sign * swing
        out[:, ankle, 1] += lift
        out[:, knee, 2] += sign * swing / 2
    angle = 2 * np.pi * t / (frames / fps)
    rot = np.stack([np.stack([np.cos(angle), np.zeros_like(angle), np.sin(angle)], -1),
                    np.tile([0.0, 1.0, 0.0], (frames, 1)),
                    np.stack([-np.sin(angle), np.zeros_like(angle), np.cos(angle)], -1)], axis=1)
    centre = np.stack([1.5 * np.cos(angle), np.zeros_like(angle), 1.5 * np.sin(angle)], -1)
    return np.einsum("fab,fjb->fja", rot, out) + centre[:, None]


def to_camera(world: np.ndarray, height: float, pitch_deg: float) -> np.ndarray:
    """World (Y up) -> camera space (y down, z forward) of a camera ``height`` m above the floor,
    looking ``pitch_deg`` down, 4 m behind the circle's centre."""
    p = np.radians(pitch_deg)
    # camera axes in world coordinates: x right, y down, z forward (towards +Z, tilted down)
    x_axis = np.array([-1.0, 0, 0])  # looking along +Z with Y up, the image's right is -X
    z_axis = np.array([0, -np.sin(p), np.cos(p)])
    y_axis = np.cross(z_axis, x_axis)  # right-handed x, y, z
    rot = np.stack([x_axis, y_axis, z_axis])
    return (world - np.array([0, height, -4.0])) @ rot.T


def test_consistent_body_has_constant_bones_and_the_same_directions():
    rng = np.random.RandomState(0)
    poses = walking(40) + rng.normal(0, 0.02, (40, 17, 3))  # JPMA-like: each joint off on its own
    poses -= poses[:, :1]
    assert max(body.limb_variation(poses, H36M).values()) > 0.03
    lengths = body.robust_bone_lengths(poses, H36M)
    out = body.apply_bone_lengths(poses, H36M, lengths)
    got = body.bone_lengths(out, H36M)
    np.testing.assert_allclose(got, np.broadcast_to(lengths, got.shape), atol=1e-12)
    assert max(body.limb_variation(out, H36M).values()) < 1e-9
    for j, p in enumerate(H36M.parents):
        if p >= 0:
            unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
            np.testing.assert_allclose(unit(out[:, j] - out[:, p]), unit(poses[:, j] - poses[:, p]), atol=1e-12)
    np.testing.assert_array_equal(out[:, 0], poses[:, 0])
    # symmetric: the left and right bone of a pair share one length
    np.testing.assert_allclose(lengths[list(H36M.joints_left)], lengths[list(H36M.joints_right)])


def test_robust_lengths_ignore_outliers_and_trees_in_any_order():
    poses = np.repeat(walking(1), 50, axis=0)
    poses[7, 13] += 0.5  # one wild wrist
    lengths = body.robust_bone_lengths(poses, H36M, symmetric=False)
    np.testing.assert_allclose(lengths, body.bone_lengths(poses[0], H36M), atol=1e-12)
    # MPI-INF-3DHP lists children before parents: rebuilding must follow the tree, not the index order
    rng = np.random.RandomState(1)
    p3 = rng.normal(0, 0.3, (5, 17, 3))
    out = body.apply_bone_lengths(p3, MPI_INF_3DHP, np.full(17, 0.2))
    got = body.bone_lengths(out, MPI_INF_3DHP)
    assert np.allclose(np.delete(got, MPI_INF_3DHP.root, axis=1), 0.2)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"poses must have shape \(\.\.\., 17, 3\)"):
        body.bone_lengths(np.zeros((4, 16, 3)), H36M)
    with pytest.raises(ValueError, match="lengths must have shape"):
        body.apply_bone_lengths(np.zeros((4, 17, 3)), H36M, np.ones(16))


def test_smoothing_lowers_jitter_and_keeps_smooth_motion():
    fps = 50.0
    t = np.arange(200) / fps
    phase = np.random.RandomState(5).uniform(0, 2 * np.pi, (1, 17, 3))
    smooth_motion = REST + 0.1 * np.sin(2 * np.pi * 1.0 * t[:, None, None] + phase)  # 1 Hz, 10 cm
    rng = np.random.RandomState(2)
    noisy = smooth_motion + rng.normal(0, 0.01, smooth_motion.shape)
    before, after = body.jitter(noisy, fps), body.jitter(body.smooth(noisy, fps), fps)
    assert after < 0.25 * before
    assert body.jitter(smooth_motion, fps) < 0.2 * before
    # a smooth motion passes (nearly) unchanged: quadratics exactly, a 1 Hz swing within 2 mm
    quadratic = (0.3 + 0.5 * t + 0.2 * t ** 2)[:, None, None] * np.ones((1, 17, 3))
    np.testing.assert_allclose(body.smooth(quadratic, fps), quadratic, atol=1e-9)
    assert np.abs(body.smooth(smooth_motion, fps) - smooth_motion).max() < 0.002


def test_smoothing_short_sequences_and_bad_arguments():
    x = np.random.RandomState(3).normal(size=(2, 17, 3))
    np.testing.assert_array_equal(body.smooth(x, 30), x)  # too short for any window
    assert body.smoothing_window(30, 0.2, 2, 100) == 7 and body.smoothing_window(30, 0.2, 2, 5) == 5
    assert body.jitter(x, 30) == 0.0
    with pytest.raises(ValueError, match="fps > 0"):
        body.smooth(x, 0)


@pytest.mark.parametrize("height, pitch", [(1.6, 15.0), (0.9, -5.0), (2.5, 35.0)])
def test_floor_estimate_recovers_a_known_ground_plane(height, pitch):
    world = walking()
    cam = to_camera(world, height, pitch)
    floor = body.estimate_floor(cam, body.foot_joints(H36M))
    matrix = body.world_from_camera(floor, cam[0, 0])
    got_height, got_pitch = body.camera_in_world(matrix)
    assert abs(got_height - height) < 0.01 and abs(got_pitch - pitch) < 0.5, (got_height, got_pitch)
    back = body.transform_points(matrix, cam)
    # the world frame's heights are the generated ones (the floor at y = 0), up to the yaw and origin
    np.testing.assert_allclose(back[..., 1], world[..., 1], atol=0.01)
    np.testing.assert_allclose(back[0, 0, [0, 2]], 0, atol=1e-9)


def test_floor_without_spread_falls_back_to_the_camera_up():
    """Feet that stay in one place fix no plane: the normal is then the camera's up (a level camera)."""
    still = np.repeat(walking(1), 30, axis=0) + np.random.RandomState(4).normal(0, 0.002, (30, 17, 3))
    cam = to_camera(still, 1.5, 0.0)
    floor = body.estimate_floor(cam, body.foot_joints(H36M))
    np.testing.assert_allclose(floor.normal, body.CAMERA_UP, atol=0.02)
    assert abs(body.camera_in_world(body.world_from_camera(floor, cam[0, 0]))[0] - 1.5) < 0.01


def test_foot_joints_are_the_ankles():
    assert [H36M.joint_names[j] for j in body.foot_joints(H36M)] == ["RAnkle", "LAnkle"]
