"""BVH -> H36M conversion, virtual cameras, projection and the npz writer (tiny inline rigs only)."""
import numpy as np
import pytest

from d3dp_ktp.camera import project_camera, world_to_camera
from d3dp_ktp.data import mocap
from d3dp_ktp.data.mocap import (CMU_SALSA, MocapConfig, build_dataset, detect_rig, find_bvh_files, load_trial,
                                 make_cameras, parse_trial_name, resample_linear, sanity_stats, write_dataset,
                                 yup_to_zup)
from d3dp_ktp.data.prepare_mocap import main

# A small DAZ-style (cmu_salsa) figure, metres, Y up, facing +Z, its left on +X:
# (name, parent, offset); End Sites are added under the hands and feet.
FIGURE = [
    ("hip", None, (0, 0, 0)), ("abdomen", "hip", (0, 0.15, 0)), ("chest", "abdomen", (0, 0.1, 0)),
    ("neck", "chest", (0, 0.2, 0)), ("head", "neck", (0, 0.06, 0)),
    ("leftEye", "head", (0.03, 0.06, 0.06)), ("rightEye", "head", (-0.03, 0.06, 0.06)),
    ("lShldr", "chest", (0.1, 0.15, 0)), ("lForeArm", "lShldr", (0.22, 0, 0)), ("lHand", "lForeArm", (0.18, 0, 0)),
    ("rShldr", "chest", (-0.1, 0.15, 0)), ("rForeArm", "rShldr", (-0.22, 0, 0)), ("rHand", "rForeArm", (-0.18, 0, 0)),
    ("lThigh", "hip", (0.07, -0.02, 0)), ("lShin", "lThigh", (0, -0.3, 0)), ("lFoot", "lShin", (0, -0.35, 0)),
    ("rThigh", "hip", (-0.07, -0.02, 0)), ("rShin", "rThigh", (0, -0.3, 0)), ("rFoot", "rShin", (0, -0.35, 0)),
]
LEAVES = {"leftEye", "rightEye", "lHand", "rHand", "lFoot", "rFoot"}


def figure_bvh(num_frames: int, speed: float = 0.6, fps: float = 120.0, names=None) -> str:
    """The FIGURE walking along +X at ``speed`` m/s with the hip 0.7 m above the floor."""
    rename = names or {}
    children = {}
    for name, parent, _ in FIGURE:
        children.setdefault(parent, []).append(name)
    offsets = {name: off for name, _, off in FIGURE}

    def block(name, depth):
        pad = "  " * depth
        kind = "ROOT" if depth == 0 else "JOINT"
        chans = ("6 Xposition Yposition Zposition Zrotation Yrotation Xrotation" if depth == 0
                 else "3 Zrotation Xrotation Yrotation")
        offset = " ".join(map(str, offsets[name]))
        lines = [f"{pad}{kind} {rename.get(name, name)}", f"{pad}{{", f"{pad}  OFFSET {offset}",
                 f"{pad}  CHANNELS {chans}"]
        for child in children.get(name, []):
            lines += block(child, depth + 1)
        if name in LEAVES:
            lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 -0.03 0.05", f"{pad}  }}"]
        return lines + [f"{pad}}}"]

    rows = []
    for f in range(num_frames):
        root = [speed * f / fps, 0.7, 0.0, 0.0, 0.0, 0.0]
        rows.append(" ".join(f"{v:.6f}" for v in root + [0.0] * 3 * (len(FIGURE) - 1)))
    header = "\n".join(["HIERARCHY"] + block("hip", 0) + ["MOTION", f"Frames: {num_frames}",
                                                          f"Frame Time: {1 / fps:.8f}"])
    return header + "\n" + "\n".join(rows) + "\n"


@pytest.fixture
def bvh_dir(tmp_path):
    folder = tmp_path / "bvh"
    folder.mkdir()
    # The salsa rig drops 4 leading frames: 125 -> 121 frames = 1 s at 120 fps -> 51 at 50 fps.
    (folder / "60_01_scaled.bvh").write_text(figure_bvh(125))
    (folder / "61_02_scaled.bvh").write_text(figure_bvh(64, speed=-0.3))
    return folder


def test_load_trial_maps_rig_to_h36m(bvh_dir):
    trial = load_trial(bvh_dir / "60_01_scaled.bvh", MocapConfig())
    assert (trial.subject, trial.action) == ("cmu60", "60_01")
    assert trial.positions.shape == (51, 17, 3) and trial.positions.dtype == np.float32  # 1 s at 50 fps
    scale = CMU_SALSA.figure_scale
    pose = trial.positions[0]
    # Hip = mid of the thighs; the world is Z up, the floor (BVH y = 0) stays at z = 0.
    np.testing.assert_allclose(pose[0, 2], 0.68 * scale, atol=1e-5)
    np.testing.assert_allclose(pose[4] - pose[1], [0.14 * scale, 0, 0], atol=1e-5)  # left hip on +X
    np.testing.assert_allclose(np.linalg.norm(pose[2] - pose[1]), 0.3 * scale, atol=1e-5)
    assert trial.positions[:, 0, 0].mean() == pytest.approx(0.0, abs=1e-5)  # root centred
    stats = sanity_stats(trial.positions)
    assert stats["upright"] == 1.0 and stats["left_is_left"] == 1.0


def test_repair_glitches_only_fixes_out_and_back_jumps():
    fps = 100.0
    t = np.arange(50) / fps
    walk = np.zeros((50, 17, 3))
    walk[..., 0] = (1.5 * t)[:, None]  # 1.5 m/s
    popped = walk.copy()
    popped[20:23, 2, 1] += 0.4  # a knee leaves for 3 frames and comes back: 40 m/s jumps
    fixed, count = mocap.repair_glitches(popped, fps, max_speed=15.0, max_seconds=0.1)
    assert count == 3
    np.testing.assert_allclose(fixed, walk, atol=1e-12)
    kick = walk.copy()
    kick[20:, 3, 1] += 0.4  # a one-way jump (no return) is left alone
    assert mocap.repair_glitches(kick, fps, 15.0, 0.1)[1] == 0
    fast = walk.copy()
    fast[:, 16, 2] = 20.0 * t  # steadily faster than the threshold: not an out-and-back glitch
    assert mocap.repair_glitches(fast, fps, 15.0, 0.1)[1] == 0
    long_pop = walk.copy()
    long_pop[10:30, 2, 1] += 0.4  # 0.2 s away: longer than max_seconds
    assert mocap.repair_glitches(long_pop, fps, 15.0, 0.1)[1] == 0


def test_yup_to_zup_is_a_rotation():
    basis = yup_to_zup(np.eye(3))
    assert np.linalg.det(basis) == pytest.approx(1.0)
    np.testing.assert_allclose(yup_to_zup(np.array([0.0, 1.0, 0.0])), [0, 0, 1])


def test_resample_60_to_50_on_linear_motion():
    t = np.arange(61) / 60.0  # one second at 60 fps
    x = np.stack([2 * t + 1, -t], axis=-1)[:, None, :]  # (61, 1, 2)
    y = resample_linear(x, 60.0, 50.0)
    t_out = np.arange(51) / 50.0
    assert y.shape == (51, 1, 2)
    np.testing.assert_allclose(y[:, 0, 0], 2 * t_out + 1, atol=1e-12)
    np.testing.assert_allclose(y[:, 0, 1], -t_out, atol=1e-12)


def test_cameras_see_the_subject():
    cfg = MocapConfig(num_cameras=4, seed=3)
    target = np.array([0.0, 0.0, 0.9])
    cameras = make_cameras("cmu01", target, reach_m=1.0, cfg=cfg)
    assert len(cameras) == 4
    azimuths = sorted(np.arctan2(c["translation"][1], c["translation"][0]) for c in cameras)
    assert min(np.diff(azimuths)) > np.pi / 4  # spread around the circle
    points = target + np.random.default_rng(0).uniform(-0.5, 0.5, size=(5, 17, 3))
    for cam in cameras:
        centre = np.array(cam["translation"]) / 1000
        distance = np.linalg.norm(centre[:2] - target[:2])
        assert 3.5 <= distance <= 6.0 and 1.2 <= centre[2] <= 1.8
        assert np.all(world_to_camera(points, np.array(cam["orientation"]), centre)[..., 2] > 0)
        uv = project_camera(target[None, None], cam)[0, 0]
        np.testing.assert_allclose(uv, cam["center"], atol=1e-3)  # no distortion on the optical axis
        assert project_camera(points, cam).shape == (5, 17, 2)


def test_write_round_trip(bvh_dir, tmp_path):
    data = build_dataset(find_bvh_files([bvh_dir]), MocapConfig(num_cameras=3, noise_px=2.0))
    paths = write_dataset(data, tmp_path / "out", "tiny")
    assert [p.name for p in paths] == ["data_3d_tiny.npz", "data_2d_tiny_gt.npz", "data_2d_tiny_noisy.npz"]
    with np.load(paths[0], allow_pickle=True) as npz:
        positions_3d, cameras, meta = npz["positions_3d"].item(), npz["cameras"].item(), npz["metadata"].item()
    assert meta == {"layout_name": "h36m", "num_joints": 17, "fps": 50.0}
    assert set(positions_3d) == {"cmu60", "cmu61"} and list(positions_3d["cmu61"]) == ["61_02"]
    assert positions_3d["cmu60"]["60_01"].shape == (51, 17, 3)
    assert positions_3d["cmu60"]["60_01"].dtype == np.float32
    assert len(cameras["cmu60"]) == 3 and set(cameras["cmu60"][0]) == {
        "id", "res_w", "res_h", "focal_length", "center", "radial_distortion", "tangential_distortion",
        "orientation", "translation"}
    with np.load(paths[2], allow_pickle=True) as npz:
        noisy, meta2d = npz["positions_2d"].item(), npz["metadata"].item()
    assert meta2d["keypoints_symmetry"] == [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
    views = noisy["cmu61"]["61_02"]
    assert len(views) == 3 and views[0].shape == (25, 17, 2) and views[0].dtype == np.float32
    gt = data.positions_2d["gt"]["cmu61"]["61_02"][0]
    assert 0.5 < np.std(views[0] - gt) < 5.0


def test_noise_is_seeded(bvh_dir):
    files = find_bvh_files([bvh_dir])
    noisy = lambda seed: build_dataset(files, MocapConfig(seed=seed)).positions_2d["noisy"]  # noqa: E731
    a, b, c = noisy(0), noisy(0), noisy(1)
    np.testing.assert_array_equal(a["cmu60"]["60_01"][2], b["cmu60"]["60_01"][2])
    assert not np.allclose(a["cmu60"]["60_01"][2], c["cmu60"]["60_01"][2])


def test_noise_adds_outliers():
    keypoints = np.zeros((2000, 17, 2), np.float32)
    rng = np.random.default_rng(0)
    noisy = mocap.detector_noise(keypoints, rng, MocapConfig(noise_px=1.0, outlier_prob=0.01, outlier_px=50.0))
    far = np.linalg.norm(noisy, axis=-1) > 15.0
    assert 0.003 < far.mean() < 0.02


def test_cli_writes_files_and_summary(bvh_dir, tmp_path, capsys):
    main(["--bvh-dir", str(bvh_dir), "--out", str(tmp_path / "o"), "--name", "t", "--cameras", "2",
          "--noise-px", "0", "--max-seconds-per-file", "0.5"])
    out = capsys.readouterr().out
    assert "cmu60" in out and "validate" in out and "data_3d_t.npz" in out
    assert not (tmp_path / "o" / "data_2d_t_noisy.npz").exists()
    with np.load(tmp_path / "o" / "data_3d_t.npz", allow_pickle=True) as npz:
        assert npz["positions_3d"].item()["cmu60"]["60_01"].shape == (25, 17, 3)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .bvh files"):
        find_bvh_files([tmp_path])
    with pytest.raises(FileNotFoundError, match="not found"):
        find_bvh_files([tmp_path / "nope"])
    with pytest.raises(ValueError, match="unknown BVH rig"):
        detect_rig(("Hips", "Spine"), "x.bvh")
    with pytest.raises(ValueError, match="cannot read subject"):
        parse_trial_name("walk.bvh")
    # Any rig is now mapped by joint names; one whose hand has an unknown name still fails, clearly.
    (tmp_path / "01_01.bvh").write_text(figure_bvh(3, names={"abdomen": "Spine", "lHand": "lPaw"}))
    with pytest.raises(ValueError, match=r"unknown BVH rig.*cannot place the H36M joints \['LWrist'\]"):
        load_trial(tmp_path / "01_01.bvh")


def test_projection_follows_the_h36m_distortion_model():
    cam = make_cameras("cmu02", np.array([0.0, 0.0, 1.0]), 1.0, MocapConfig(num_cameras=1))[0]
    point = np.array([0.3, -0.2, 1.4])
    X, Y, Z = world_to_camera(point, np.array(cam["orientation"]), np.array(cam["translation"]) / 1000)
    (k1, k2, k3), (p1, p2) = cam["radial_distortion"], cam["tangential_distortion"]
    a, b = X / Z, Y / Z  # docs/method.md §5.3, written out in pixels
    r2 = a * a + b * b
    radial, tan = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3, p1 * a + p2 * b
    expected = [cam["focal_length"][0] * (a * (radial + tan) + p1 * r2) + cam["center"][0],
                cam["focal_length"][1] * (b * (radial + tan) + p2 * r2) + cam["center"][1]]
    uv = project_camera(point[None, None], cam)[0, 0]
    assert uv.dtype == np.float32
    np.testing.assert_allclose(uv, expected, atol=2e-3)  # float32 intrinsics
