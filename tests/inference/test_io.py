"""Keypoint readers, the COCO -> H36M mapping, gap filling and input validation (d3dp_ktp/inference/io.py)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from d3dp_ktp.camera import normalize_screen_coordinates
from d3dp_ktp.data.io import save_npz
from d3dp_ktp.inference.io import (KeypointFile, MissingKeypointsWarning, atomic_path, coco_to_h36m, fill_missing,
                                   prepare_keypoints, read_keypoints, write_json)
from d3dp_ktp.skeleton import COCO, H36M


def keypoints(frames: int = 6, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    kp = rng.uniform(100, 700, (frames, 17, channels))
    if channels == 3:
        kp[..., 2] = rng.uniform(0.5, 1.0, (frames, 17))
    return kp


# ----------------------------------------------------------------------------- readers

def test_our_npz(tmp_path):
    kp, gt = keypoints(), np.random.RandomState(1).normal(size=(6, 17, 3))
    np.savez(tmp_path / "a.npz", keypoints=kp, width=1920, height=1080, layout="coco", poses_3d_gt=gt)
    kf = read_keypoints(tmp_path / "a.npz")
    np.testing.assert_array_equal(kf.keypoints, kp)
    assert (kf.width, kf.height, kf.layout) == (1920, 1080, "coco")
    np.testing.assert_array_equal(kf.extras["poses_3d_gt"], gt)


def test_videopose3d_custom_npz(tmp_path):
    """VideoPose3D's prepare_data_2d_custom.py layout; several videos need --sequence (was --video)."""
    kp_a, kp_b = keypoints(4), keypoints(5, seed=1)
    meta = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [list(COCO.joints_left), list(COCO.joints_right)],
            "video_metadata": {"a.mp4": {"w": 640, "h": 480}, "b.mp4": {"w": 1280, "h": 720}}}
    save_npz(tmp_path / "vp3d.npz", positions_2d={"a.mp4": {"custom": [kp_a]}, "b.mp4": {"custom": [kp_b]}}, metadata=meta)
    with pytest.raises(ValueError, match="--sequence NAME, one of: a.mp4, b.mp4"):
        read_keypoints(tmp_path / "vp3d.npz")
    kf = read_keypoints(tmp_path / "vp3d.npz", sequence="b.mp4")
    np.testing.assert_array_equal(kf.keypoints, kp_b)
    assert (kf.width, kf.height, kf.layout) == (1280, 720, "coco")
    with pytest.raises(ValueError, match="no sequence 'c.mp4'"):
        read_keypoints(tmp_path / "vp3d.npz", sequence="c.mp4")


def test_npy(tmp_path):
    kp = keypoints(channels=2)
    np.save(tmp_path / "a.npy", kp)
    np.testing.assert_array_equal(read_keypoints(tmp_path / "a.npy").keypoints, kp)


@pytest.mark.parametrize("style", ["pairs", "flat", "coco_objects", "object_with_frames"])
def test_json_styles(tmp_path, style):
    kp = keypoints(4)
    frames = {
        "pairs": kp.tolist(),
        "flat": [f.reshape(-1).tolist() for f in kp],
        "coco_objects": [{"keypoints": f.reshape(-1).tolist(), "score": 0.9} for f in kp],
        "object_with_frames": {"frames": kp.tolist(), "width": 640, "height": 480, "layout": "coco"},
    }[style]
    (tmp_path / "a.json").write_text(json.dumps(frames))
    kf = read_keypoints(tmp_path / "a.json")
    np.testing.assert_allclose(kf.keypoints, kp)
    if style == "object_with_frames":
        assert (kf.width, kf.height, kf.layout) == (640, 480, "coco")


def test_json_single_flat_frame(tmp_path):
    kp = keypoints(1)
    (tmp_path / "a.json").write_text(json.dumps({"keypoints": kp.reshape(-1).tolist(), "layout": "coco"}))
    np.testing.assert_allclose(read_keypoints(tmp_path / "a.json").keypoints, kp)


def test_json_two_channel_flat_and_empty_frames(tmp_path):
    kp = keypoints(3, channels=2)
    frames = [kp[0].reshape(-1).tolist(), [], None, {"keypoints": []}, kp[2].reshape(-1).tolist()]
    (tmp_path / "a.json").write_text(json.dumps(frames))
    got = read_keypoints(tmp_path / "a.json").keypoints
    assert got.shape == (5, 17, 2)
    assert np.isnan(got[1:4]).all()
    np.testing.assert_allclose(got[4], kp[2])


def test_csv_with_header_comments_and_empty_cells(tmp_path):
    kp = keypoints(3)
    header = ",".join(f"{n}_{c}" for n in COCO.joint_names for c in "xys")
    rows = [",".join(f"{v:.6f}" for v in f.reshape(-1)) for f in kp]
    rows[1] = ",".join(["nan", "nan", "0"] + rows[1].split(",")[3:])  # joint 0 missing
    text = "# detector output\n" + header + "\n" + "\n".join(rows) + "\n" + "," * 50 + "\n"
    (tmp_path / "a.csv").write_text(text)
    got = read_keypoints(tmp_path / "a.csv").keypoints
    assert got.shape == (4, 17, 3)
    np.testing.assert_allclose(got[0], kp[0], atol=1e-6)
    assert np.isnan(got[1, 0, :2]).all() and np.isnan(got[3]).all()


# ----------------------------------------------------------------------------- COCO mapping

def test_coco_to_h36m_on_constructed_pose():
    coco = np.zeros((17, 2))
    named = {"nose": (50, 10), "left_eye": (54, 6), "right_eye": (46, 6), "left_ear": (58, 8), "right_ear": (42, 8),
             "left_shoulder": (70, 30), "right_shoulder": (30, 30), "left_elbow": (75, 50), "right_elbow": (25, 50),
             "left_wrist": (78, 70), "right_wrist": (22, 70), "left_hip": (60, 80), "right_hip": (40, 80),
             "left_knee": (61, 110), "right_knee": (39, 110), "left_ankle": (62, 140), "right_ankle": (38, 140)}
    for name, xy in named.items():
        coco[COCO.joint_names.index(name)] = xy
    scores = np.linspace(0.5, 1.0, 17)
    h36m, conf = coco_to_h36m(coco, scores)
    expect = {"Hip": (50, 80), "RHip": (40, 80), "RKnee": (39, 110), "RAnkle": (38, 140), "LHip": (60, 80),
              "LKnee": (61, 110), "LAnkle": (62, 140), "Spine": (50, 55), "Thorax": (50, 30), "Neck": (50, 10),
              "Head": (50, 6), "LShoulder": (70, 30), "LElbow": (75, 50), "LWrist": (78, 70), "RShoulder": (30, 30),
              "RElbow": (25, 50), "RWrist": (22, 70)}
    for name, xy in expect.items():
        np.testing.assert_allclose(h36m[H36M.joint_names.index(name)], xy, err_msg=name)
    assert conf[0] == min(scores[11], scores[12]) and conf[7] == min(scores[11], scores[12], scores[5], scores[6])
    # Without both eyes the head falls back to the middle of the ears; a missing source propagates NaN.
    coco[1] = np.nan
    coco[9] = np.nan
    h36m, _ = coco_to_h36m(coco, scores)
    np.testing.assert_allclose(h36m[10], (50, 8))
    assert np.isnan(h36m[H36M.joint_names.index("LWrist")]).all()


def test_prepare_converts_coco_input_for_an_h36m_model():
    kp = keypoints(2)
    kf = KeypointFile(path=Path("x.npz"), keypoints=kp, width=800, height=600, layout="coco")
    prep = prepare_keypoints(kf, "h36m")
    expected, _ = coco_to_h36m(kp[..., :2], kp[..., 2])
    np.testing.assert_allclose(prep.pixels, expected)
    np.testing.assert_allclose(prep.normalized, normalize_screen_coordinates(expected.astype(np.float32), 800, 600))
    with pytest.raises(ValueError, match="cannot be converted to 'coco'"):
        prepare_keypoints(KeypointFile(kf.path, kp, 800, 600, "h36m"), "coco")


# ----------------------------------------------------------------------------- gaps

def test_fill_missing_interpolates_linearly_with_edge_hold():
    xy = np.stack([np.arange(8.0), 10 * np.arange(8.0)], -1)[:, None].repeat(17, 1)  # (8, 17, 2)
    xy[[0, 1, 4, 5], 3] = np.nan
    xy[7, 5] = np.nan
    filled, mask = fill_missing(xy, H36M.joint_names)
    np.testing.assert_allclose(filled[:, 3, 0], [2, 2, 2, 3, 4, 5, 6, 7])  # held at the start, linear inside
    np.testing.assert_allclose(filled[:, 3, 1], [20, 20, 20, 30, 40, 50, 60, 70])
    np.testing.assert_allclose(filled[7, 5], [6, 60])
    assert mask.sum() == 5 and mask[[0, 1, 4, 5], 3].all()


def test_prepare_fills_nan_frames_and_low_scores_with_a_warning():
    kp = keypoints(6)
    kp[2] = np.nan                 # a frame without detection
    kp[4, 9, 2] = 0.0              # zero confidence = missing
    kp[5, 10, 2] = 0.2             # below --min-score
    kf = KeypointFile(Path("x.json"), kp, 800, 600, "h36m")
    expected = r"filled 19 missing keypoints in 3 of 6 frames \(1 without any detection\) by linear.*Neck x2"
    with pytest.warns(MissingKeypointsWarning, match=expected):
        prep = prepare_keypoints(kf, "h36m", min_score=0.3)
    np.testing.assert_allclose(prep.pixels[2], (kp[1, :, :2] + kp[3, :, :2]) / 2)
    assert prep.filled.sum() == 19 and prep.confidence[2].max() == 0 and np.isfinite(prep.normalized).all()
    np.testing.assert_allclose(prep.confidence[0], kp[0, :, 2], rtol=1e-6)


def test_two_channel_input_has_confidence_one():
    kf = KeypointFile(Path("x.npy"), keypoints(3, channels=2), 800, 600, "h36m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prep = prepare_keypoints(kf, "h36m")
    assert (prep.confidence == 1).all() and not prep.filled.any()


# ----------------------------------------------------------------------------- bad inputs

def _npz(tmp_path, kp, **extra):
    np.savez(tmp_path / "k.npz", keypoints=kp, **extra)
    return read_keypoints(tmp_path / "k.npz")


def test_wrong_joint_count(tmp_path):
    kf = _npz(tmp_path, np.ones((4, 18, 2)), width=10, height=10, layout="coco")
    with pytest.raises(ValueError, match="expected 17 keypoints per frame for layout 'coco', got 18"):
        prepare_keypoints(kf, "h36m")


def test_wrong_channel_count(tmp_path):
    with pytest.raises(ValueError, match=r"\(frames, 17, 2\) or \(frames, 17, 3\).*got \(4, 17, 4\)"):
        _npz(tmp_path, np.ones((4, 17, 4)))


def test_all_missing_sequence(tmp_path):
    kp = keypoints(5)
    kp[..., 2] = 0
    with pytest.raises(ValueError, match="no keypoint is detected in any of the 5 frames"):
        prepare_keypoints(_npz(tmp_path, kp, width=10, height=10, layout="h36m"), "h36m")
    (tmp_path / "e.json").write_text("[[], [], null]")
    with pytest.raises(ValueError, match="no frame has any detection"):
        prepare_keypoints(read_keypoints(tmp_path / "e.json"), "h36m", layout="h36m", width=10, height=10)


def test_joint_never_detected(tmp_path):
    kp = keypoints(5)
    kp[:, 13] = np.nan
    with pytest.raises(ValueError, match=r"LWrist \(13\) are never detected in any of the 5 frames"):
        prepare_keypoints(_npz(tmp_path, kp, width=10, height=10, layout="h36m"), "h36m")


def test_zero_frames(tmp_path):
    with pytest.raises(ValueError, match="zero frames"):
        prepare_keypoints(_npz(tmp_path, np.zeros((0, 17, 2)), width=10, height=10, layout="h36m"), "h36m")


@pytest.mark.parametrize("name", ["junk.npz", "junk.json", "junk.csv", "junk.npy"])
def test_random_bytes_are_not_keypoints(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.RandomState(0).bytes(300))
    with pytest.raises(ValueError, match="junk"):
        read_keypoints(tmp_path / name)


def test_npz_without_keypoints_and_unknown_suffix(tmp_path):
    np.savez(tmp_path / "other.npz", poses=np.zeros((3, 17, 3)))
    with pytest.raises(ValueError, match=r"expected a 'keypoints' array.*found keys \['poses'\]"):
        read_keypoints(tmp_path / "other.npz")
    (tmp_path / "a.mp4").write_bytes(b"\0")
    with pytest.raises(ValueError, match="unsupported file type '.mp4'"):
        read_keypoints(tmp_path / "a.mp4")
    with pytest.raises(FileNotFoundError, match="keypoint file not found"):
        read_keypoints(tmp_path / "missing.json")


def test_unknown_layout_and_missing_size(tmp_path):
    kf = _npz(tmp_path, keypoints(3))
    with pytest.raises(ValueError, match="does not state its keypoint layout: pass --layout"):
        prepare_keypoints(kf, "h36m", width=10, height=10)
    with pytest.raises(ValueError, match="unknown keypoint layout 'openpose'; use one of: h36m, coco"):
        prepare_keypoints(kf, "h36m", layout="openpose", width=10, height=10)
    with pytest.raises(ValueError, match="pass --width and --height"):
        prepare_keypoints(kf, "h36m", layout="coco")


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    with pytest.raises(ValueError):  # NaN is not JSON
        write_json(tmp_path / "out.json", {"x": float("nan")})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.npz") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_json(tmp_path / "ok.json", {"x": 1})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"x": 1} and len(list(tmp_path.iterdir())) == 1


def test_our_npz_states_its_frame_rate(tmp_path):
    """'fps' in our npz is the outputs' frame rate (resolve_fps: after --fps and --video); a bad one is refused."""
    from d3dp_ktp.inference.outputs import resolve_fps

    kf = _npz(tmp_path, np.ones((4, 17, 2)), width=10, height=10, layout="h36m", fps=50.0)
    assert kf.extras["fps"] == 50.0
    assert resolve_fps(None, kf.extras.get("fps"), None) == (50.0, "the input file")
    assert resolve_fps(None, kf.extras.get("fps"), 30.0) == (30.0, "--fps")
    with pytest.raises(ValueError, match="fps must be a positive frame rate"):
        _npz(tmp_path, np.ones((4, 17, 2)), width=10, height=10, layout="h36m", fps=0.0)
