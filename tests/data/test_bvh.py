"""BVH parsing and forward kinematics against hand-computed positions (tiny inline files)."""
import numpy as np
import pytest

from d3dp_ktp.data.bvh import add_sites, axis_rotation, bvh_positions, forward_kinematics, load_bvh, parse_bvh


def chain_bvh(order: str, frames: list[str]) -> str:
    """Root (6 channels) -> J1 (rotation order ``order``) -> J2 -> End Site."""
    chans = " ".join(f"{axis}rotation" for axis in order)
    return f"""HIERARCHY
ROOT Root
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT J1
  {{
    OFFSET 0 1 0
    CHANNELS 3 {chans}
    JOINT J2
    {{
      OFFSET 0 1 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {{
        OFFSET 0 0 2
      }}
    }}
  }}
}}
MOTION
Frames: {len(frames)}
Frame Time: 0.0166667
""" + "\n".join(frames) + "\n"


def test_parse_structure():
    motion = parse_bvh(chain_bvh("ZXY", ["0 0 0 0 0 0 0 0 0 0 0 0"]))
    assert motion.joint_names == ("Root", "J1", "J2", "J2_End")
    assert motion.parents == (-1, 0, 1, 2)
    assert motion.channels[1] == ("Zrotation", "Xrotation", "Yrotation")
    assert motion.channels[3] == ()
    np.testing.assert_allclose(motion.offsets[3], [0, 0, 2])
    assert motion.motion.shape == (1, 12)
    assert motion.fps == pytest.approx(60.0, rel=1e-4)


def test_fk_rest_pose_and_root_translation():
    xyz = forward_kinematics(parse_bvh(chain_bvh("ZXY", ["1 2 3 0 0 0 0 0 0 0 0 0"])))
    np.testing.assert_allclose(xyz[0], [[1, 2, 3], [1, 3, 3], [1, 4, 3], [1, 4, 5]], atol=1e-12)


def test_fk_root_rotation_carries_children():
    # Root Zrotation 90: the child offset (0, 1, 0) turns to (-1, 0, 0).
    xyz = forward_kinematics(parse_bvh(chain_bvh("ZXY", ["0 0 0 90 0 0 0 0 0 0 0 0"])))
    np.testing.assert_allclose(xyz[0], [[0, 0, 0], [-1, 0, 0], [-2, 0, 0], [-2, 0, 2]], atol=1e-12)


@pytest.mark.parametrize("order, values, expected_j2, expected_end", [
    # Z=90, X=90 listed Z first: R = Rz Rx; Rx(0,1,0) = (0,0,1), Rz keeps it -> J2 = J1 + (0,0,1);
    # the End offset (0,0,2): Rx -> (0,-2,0), Rz -> (2,0,0).
    ("ZXY", "90 90 0", [0, 1, 1], [2, 1, 1]),
    # Same angles listed X first: R = Rx Rz; Rz(0,1,0) = (-1,0,0), Rx keeps it -> J2 = J1 + (-1,0,0);
    # the End offset (0,0,2): Rz keeps it, Rx -> (0,-2,0).
    ("XZY", "90 90 0", [-1, 1, 0], [-1, -1, 0]),
])
def test_fk_channel_order_is_honoured(order, values, expected_j2, expected_end):
    xyz = forward_kinematics(parse_bvh(chain_bvh(order, [f"0 0 0 0 0 0 {values} 0 0 0"])))
    np.testing.assert_allclose(xyz[0, 1], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(xyz[0, 2], expected_j2, atol=1e-12)
    np.testing.assert_allclose(xyz[0, 3], expected_end, atol=1e-12)


def test_fk_is_vectorised_over_frames():
    frames = ["0 0 0 0 0 0 0 0 0 0 0 0", "0 0 0 90 0 0 0 0 0 0 0 0", "5 0 0 0 0 0 0 0 0 0 0 0"]
    xyz = forward_kinematics(parse_bvh(chain_bvh("ZXY", frames)))
    assert xyz.shape == (3, 4, 3)
    np.testing.assert_allclose(xyz[1, 3], [-2, 0, 2], atol=1e-12)
    np.testing.assert_allclose(xyz[2, 3], [5, 2, 2], atol=1e-12)


def test_position_channels_add_to_offset():
    text = chain_bvh("ZXY", ["0 0 0 0 0 0  0.5 0 0 0  0 0 0"]).replace(
        "CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 4 Yposition Zrotation Xrotation Yrotation")
    xyz = forward_kinematics(parse_bvh(text))
    np.testing.assert_allclose(xyz[0, 1], [0, 1.5, 0], atol=1e-12)
    np.testing.assert_allclose(xyz[0, 2], [0, 2.5, 0], atol=1e-12)


def test_axis_rotation_is_right_handed():
    np.testing.assert_allclose(axis_rotation("X", np.array([90.0]))[0] @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(axis_rotation("Y", np.array([90.0]))[0] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(axis_rotation("Z", np.array([90.0]))[0] @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_add_sites_moves_rigidly_with_parent():
    motion = add_sites(parse_bvh(chain_bvh("ZXY", ["0 0 0 90 0 0 0 0 0 0 0 0"])), {"Tip": ("J1", (0, 0, 3))})
    xyz = forward_kinematics(motion)
    assert motion.joint_names[-1] == "Tip"
    np.testing.assert_allclose(xyz[0, -1], [-1, 0, 3], atol=1e-12)
    with pytest.raises(ValueError, match="not in the BVH hierarchy"):
        add_sites(motion, {"X": ("Nope", (0, 0, 0))})


def test_load_bvh_from_file(tmp_path):
    path = tmp_path / "chain.bvh"
    path.write_text(chain_bvh("ZXY", ["0 0 0 0 0 0 0 0 0 0 0 0"] * 2))
    names, parents, xyz, frame_time = bvh_positions(path)
    assert names[-1] == "J2_End" and parents[0] == -1 and xyz.shape == (2, 4, 3)
    assert frame_time == pytest.approx(0.0166667)


def test_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_bvh(tmp_path / "missing.bvh")
    with pytest.raises(ValueError, match="no MOTION"):
        parse_bvh("HIERARCHY ROOT a { OFFSET 0 0 0 }")
    with pytest.raises(ValueError, match="frames"):
        parse_bvh(chain_bvh("ZXY", ["0 0 0"]))


def test_exporter_quirks_are_read(tmp_path):
    """A UTF-8 BOM, CRLF line ends, a non-UTF-8 byte in a joint name, and a header that counts one frame
    more than the file holds (a warning, the frames present are used)."""
    text = chain_bvh("ZXY", ["0 0 0 0 0 0 0 0 0 0 0 0", "1 0 0 0 0 0 0 0 0 0 0 0"])
    path = tmp_path / "quirks.bvh"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("J2", "J\xe92").replace("\n", "\r\n").encode("latin-1"))
    motion = load_bvh(path)
    assert motion.num_frames == 2 and motion.joint_names[0] == "Root" and motion.joint_names[2].startswith("J")
    with pytest.warns(UserWarning, match="header says 3 frames but the file holds 2"):
        short = parse_bvh(text.replace("Frames: 2", "Frames: 3"))
    np.testing.assert_array_equal(short.motion, parse_bvh(text).motion)
