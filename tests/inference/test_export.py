"""BVH and CSV export of d3dp_ktp/inference/export.py, read back with d3dp_ktp/data/bvh.py."""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from d3dp_ktp.data.bvh import forward_kinematics, load_bvh
from d3dp_ktp.inference import body, export
from d3dp_ktp.skeleton import H36M, HUMANEVA15, MPI_INF_3DHP

from .test_body import walking


def _consistent(poses, skeleton):
    return body.apply_bone_lengths(poses, skeleton, body.robust_bone_lengths(poses, skeleton))


def _fk_named(path, names) -> np.ndarray:
    motion = load_bvh(path)
    return forward_kinematics(motion)[:, [motion.joint_names.index(n) for n in names]]


@pytest.mark.parametrize("units, scale", [("cm", 100.0), ("m", 1.0)])
def test_bvh_round_trip_reproduces_the_joint_positions(tmp_path, units, scale):
    rng = np.random.RandomState(0)
    poses = _consistent(walking(60) + rng.normal(0, 0.03, (60, 17, 3)), H36M)  # a moving, twisting body
    path = export.write_bvh(tmp_path / "a.bvh", poses, H36M, 30.0, export.BvhConfig(units=units))
    motion = load_bvh(path)
    assert motion.num_frames == 60 and abs(motion.fps - 30.0) < 1e-4  # Frame Time has 8 decimals
    fk = _fk_named(path, H36M.joint_names) / scale
    assert np.abs(fk - poses).max() < 1e-3  # metres: within 1 mm
    # the rest pose (all channels zero but the root position) has the output's bone lengths
    rest = forward_kinematics(type(motion)(motion.joint_names, motion.parents, motion.offsets, motion.channels,
                                           motion.frame_time, np.zeros((1, motion.motion.shape[1]))))
    idx = [motion.joint_names.index(n) for n in H36M.joint_names]
    np.testing.assert_allclose(body.bone_lengths(rest[0, idx] / scale, H36M), body.bone_lengths(poses[0], H36M),
                               atol=1e-6)


def test_bvh_follows_the_format(tmp_path):
    poses = _consistent(walking(5), H36M)
    text = export.write_bvh(tmp_path / "a.bvh", poses, H36M, 25.0).read_text()
    lines = text.splitlines()
    assert lines[0] == "HIERARCHY" and lines[1].startswith("# units: centimetres")  # Blender needs HIERARCHY first
    assert re.search(r"^ROOT Hip$", text, re.M)
    joints = re.findall(r"^\s*(?:ROOT|JOINT) (\S+)$", text, re.M)
    assert set(H36M.joint_names) <= set(joints)
    assert set(joints) - set(H36M.joint_names) == {"Hip_RHip", "Hip_LHip", "Thorax_LShoulder", "Thorax_RShoulder"}
    channels = re.findall(r"^\s*CHANNELS (\d) (.*)$", text, re.M)
    assert len(channels) == len(joints)  # one channel line per joint
    assert channels[0] == ("6", "Xposition Yposition Zposition Zrotation Xrotation Yrotation")
    assert all(c == ("3", "Zrotation Xrotation Yrotation") for c in channels[1:])
    assert text.count("End Site") == 5  # ankles, head, wrists
    assert "MOTION\nFrames: 5\nFrame Time: 0.04000000\n" in text
    assert text.count("{") == text.count("}") and "-0.000000" not in text
    assert all(len(row.split()) == 6 + 3 * (len(joints) - 1) for row in lines[lines.index("Frames: 5") + 2:])


def test_bvh_of_varying_bones_keeps_the_median_lengths(tmp_path):
    """A BVH cannot stretch bones: raw poses export as the body with their median bone lengths."""
    rng = np.random.RandomState(1)
    raw = walking(30) + rng.normal(0, 0.02, (30, 17, 3))
    fk = _fk_named(export.write_bvh(tmp_path / "a.bvh", raw, H36M, 30.0), H36M.joint_names) / 100
    expected = body.apply_bone_lengths(raw, H36M, body.robust_bone_lengths(raw, H36M, symmetric=False))
    assert np.abs(fk - expected).max() < 1e-3


@pytest.mark.parametrize("skeleton", [HUMANEVA15, MPI_INF_3DHP])
def test_bvh_for_other_skeletons(tmp_path, skeleton):
    rng = np.random.RandomState(2)
    poses = _consistent(rng.normal(0, 0.3, (8, skeleton.num_joints, 3)), skeleton)
    fk = _fk_named(export.write_bvh(tmp_path / "a.bvh", poses, skeleton, 50.0), skeleton.joint_names) / 100
    assert np.abs(fk - poses).max() < 1e-3


def test_bvh_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="positions must have shape"):
        export.write_bvh(tmp_path / "a.bvh", np.zeros((3, 16, 3)), H36M, 30.0)
    with pytest.raises(ValueError, match="finite positions and fps > 0"):
        export.write_bvh(tmp_path / "a.bvh", np.full((3, 17, 3), np.nan), H36M, 30.0)
    with pytest.raises(ValueError, match="units must be one of cm, m"):
        export.write_bvh(tmp_path / "a.bvh", walking(3), H36M, 30.0, export.BvhConfig(units="inch"))
    assert not list(tmp_path.iterdir())


def test_camera_to_bvh_axes_is_a_rotation():
    m = export.camera_to_bvh_axes(np.eye(3))
    assert np.isclose(np.linalg.det(m), 1.0)
    np.testing.assert_allclose(export.camera_to_bvh_axes(np.array([0.0, -1.0, 2.0])), [0.0, 1.0, -2.0])


def test_joints_csv(tmp_path):
    poses = walking(4)
    path = export.write_joints_csv(tmp_path / "p.csv", poses, H36M.joint_names, 20.0)
    rows = list(csv.reader(path.open()))
    assert rows[0][:5] == ["frame", "time_s", "Hip_x", "Hip_y", "Hip_z"] and len(rows[0]) == 2 + 51
    assert len(rows) == 5 and rows[2][:2] == ["1", "0.050000"]
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 2:].reshape(4, 17, 3), poses, atol=1e-6)
