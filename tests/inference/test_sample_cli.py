"""sample.py in process: the no-argument demo path, options, and bad inputs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import HEIGHT, WIDTH, camera_poses, coco_poses, project_px

REPO = Path(__file__).resolve().parents[2]


def load_sample_module():
    spec = importlib.util.spec_from_file_location("sample_cli", REPO / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sample(monkeypatch, demo_dir, tmp_path):
    """sample.main with the demo folder pointed at the tmp files and the working directory in tmp."""
    monkeypatch.setenv("D3DP_KTP_DEMO_DIR", str(demo_dir))
    monkeypatch.chdir(tmp_path)
    return load_sample_module().main


def test_no_argument_demo_run(sample, tmp_path, capsys):
    """The no-argument demo path on the tiny demo folder, in process: `python sample.py` itself runs as a
    script once, on the bundled demo (tests/inference/test_bundled_demo.py)."""
    rc = sample([])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = tmp_path / "outputs" / "demo"
    for name in ("poses_3d.npz", "poses_3d.json", "preview.png", "animation.gif"):
        assert (out / name).stat().st_size > 0 and f"wrote outputs/demo/{name}" in captured.out
    assert "MPJPE vs ground truth in demo_input.npz:" in captured.out and " mm" in captured.out
    with np.load(out / "poses_3d.npz") as npz:
        assert npz["poses_3d"].shape == (20, 17, 3) and npz["uncertainty"].shape == (20, 17)
        assert np.isfinite(npz["poses_3d"]).all() and (npz["poses_3d"][:, 0] == 0).all()
        assert "hypotheses" not in npz.files
        settings = json.loads(str(npz["settings"]))
    assert settings["agg"] == "jpma" and settings["num_hypotheses"] == 5 and settings["num_steps"] == 5
    doc = json.loads((out / "poses_3d.json").read_text())
    np.testing.assert_allclose(doc["poses_3d"], np.load(out / "poses_3d.npz")["poses_3d"], atol=1e-6)
    assert doc["joint_names"][0] == "Hip" and len(doc["root_trajectory"]) == 20


def test_json_coco_input_with_options(sample, tmp_path, capsys):
    gt = coco_poses(np.random.RandomState(5), 13)
    frames = [{"keypoints": np.concatenate([f, np.full((17, 1), 0.9)], 1).reshape(-1).tolist()}
              for f in project_px(gt)]
    frames[4] = {"keypoints": []}  # a frame without detection
    (tmp_path / "dets.json").write_text(json.dumps(frames))
    rc = sample(["--input", "dets.json", "--layout", "coco", "--width", str(WIDTH), "--height", str(HEIGHT),
                 "-H", "3", "-K", "2", "--agg", "mean", "--save-hypotheses", "--no-video", "--stride", "9",
                 "--out", "res"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "warning: filled 17 missing keypoints in 1 of 13 frames" in captured.err
    assert "MPJPE" not in captured.out  # no ground truth in this file
    with np.load(tmp_path / "res" / "poses_3d.npz") as npz:
        assert npz["hypotheses"].shape == (2, 3, 13, 17, 3) and npz["keypoints_filled"][4].all()
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["poses_3d.csv", "poses_3d.json", "poses_3d.npz",
                                                                    "preview.png"]
    assert json.loads((tmp_path / "res" / "poses_3d.json").read_text())["settings"]["input_layout"] == "coco"


@pytest.mark.parametrize("name,flag,layout", [("in_the_wild_best_epoch.bin", [], "coco"),
                                               ("in_the_wild_best_epoch.bin", ["--model-layout", "h36m"], "h36m"),
                                               ("best_epoch.bin", [], "h36m"),
                                               ("best_epoch.bin", ["--model-layout", "coco"], "coco")])
def test_official_bin_keypoint_layout(sample, tmp_path, capsys, name, flag, layout):
    """An official .bin cannot say which keypoint order its network reads: D3DP's in-the-wild model is
    taken as COCO by its file name, --model-layout overrides; the input is fed in that order."""
    from tests.test_checkpoints import write_official
    from .conftest import tiny_model

    write_official(tiny_model(3), tmp_path / name)
    frames = [{"keypoints": np.concatenate([f, np.full((17, 1), 0.9)], 1).reshape(-1).tolist()}
              for f in project_px(coco_poses(np.random.RandomState(6), 9))]
    (tmp_path / "dets.json").write_text(json.dumps(frames))
    rc = sample(["--input", "dets.json", "--layout", "coco", "--width", str(WIDTH), "--height", str(HEIGHT),
                 "--checkpoint", name, *flag, "-H", "2", "-K", "1", "--agg", "mean", "--no-video", "--out", "res"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert ("in-the-wild model" in captured.out) == (name.startswith("in_the_wild") and not flag)
    assert json.loads((tmp_path / "res" / "poses_3d.json").read_text())["settings"]["keypoint_layout"] == layout


def test_video_bvh_world_smooth(sample, demo_dir, tmp_path, capsys):
    """--video gives the size and frame rate and a side-by-side MP4 of every video frame; --bvh writes a
    BVH whose forward kinematics are the output poses; --world and --smooth are reported."""
    from d3dp_ktp.data.bvh import forward_kinematics, load_bvh
    from d3dp_ktp.inference.video import probe_video
    from .test_visualize import make_video

    gt = camera_poses(np.random.RandomState(7), 14)
    np.savez(tmp_path / "kp.npz", keypoints=project_px(gt).astype(np.float32), layout="h36m")  # no size stated
    make_video(tmp_path / "clip.mp4", 16, WIDTH, HEIGHT)  # two frames more than keypoints
    rc = sample(["--input", "kp.npz", "--video", "clip.mp4", "--bvh", "--world", "--smooth", "-H", "2", "-K", "1",
                 "--out", "res"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "the video has 16 frames but the keypoints 14" in captured.err
    out = tmp_path / "res"
    video = probe_video(out / "video_3d.mp4")
    assert video.num_frames == 16 and abs(float(video.fps) - 30000 / 1001) < 1e-9
    for needle in ("frame rate: 29.970 fps (the video)", "video_3d.mp4: 16 frames", "limb length std/mean: raw max",
                   "-> output max 0.000", "uncertainty (spread of the hypotheses): median", "(raw -> output, --smooth)",
                   "floor (from the feet): camera", "total time", "wrote res/animation.bvh", "wrote res/poses_3d.csv"):
        assert needle in captured.out, needle
    with np.load(out / "poses_3d.npz") as npz:
        settings = json.loads(str(npz["settings"]))
        assert settings["width"] == WIDTH and settings["fps"] == pytest.approx(30000 / 1001)
        assert settings["summary"]["limb_variation_after"]["max"] < 1e-4 and settings["postprocessing"]["smooth"]
        world, poses = npz["poses_world"], npz["poses_3d"]
        assert npz["bone_lengths"].shape == (17,) and npz["poses_3d_raw"].shape == poses.shape
        np.testing.assert_allclose(world[..., :3] @ np.eye(3), world)  # finite, (F, 17, 3)
        lengths = np.linalg.norm(poses[:, 1:] - poses[:, [0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]], axis=-1)
        assert np.ptp(lengths, axis=0).max() < 1e-5
    motion = load_bvh(out / "animation.bvh")
    names = json.loads((out / "poses_3d.json").read_text())["joint_names"]
    fk = forward_kinematics(motion)[:, [motion.joint_names.index(n) for n in names]] / 100
    assert np.abs(fk - world).max() < 1e-3 and abs(motion.fps - 30000 / 1001) < 1e-4
    assert sorted(p.name for p in out.iterdir()) == ["animation.bvh", "poses_3d.csv", "poses_3d.json", "poses_3d.npz",
                                                     "preview.png", "video_3d.mp4"]


def test_missing_video_fails_before_lifting(sample, tmp_path, capsys):
    assert sample(["--video", "nowhere.mp4", "--out", "res"]) == 2
    assert "error: video file not found: nowhere.mp4" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_bvh_in_camera_axes_without_world(sample, demo_dir, tmp_path, capsys):
    """Without --world the BVH holds poses_3d (root-relative) turned Y-up (x, -y, -z), in cm."""
    from d3dp_ktp.data.bvh import forward_kinematics, load_bvh

    rc = sample(["--bvh", "--no-video", "--raw", "-H", "2", "-K", "1", "--out", "res", "--fps", "50"])
    assert rc == 0, capsys.readouterr().err
    motion = load_bvh(tmp_path / "res" / "animation.bvh")
    with np.load(tmp_path / "res" / "poses_3d.npz") as npz:
        absolute = npz["poses_3d"]
        assert "bone_lengths" not in npz.files and "poses_world" not in npz.files
        names = list(npz["joint_names"])
    fk = forward_kinematics(motion)[:, [motion.joint_names.index(n) for n in names]] / 100
    # --raw bones vary, a BVH's cannot: the BVH holds the raw poses with their median bone lengths
    from d3dp_ktp.inference.body import apply_bone_lengths, robust_bone_lengths
    from d3dp_ktp.skeleton import H36M
    expected = apply_bone_lengths(absolute, H36M, robust_bone_lengths(absolute, H36M, symmetric=False))
    assert np.abs(fk - expected * [1, -1, -1]).max() < 1e-3 and abs(motion.fps - 50) < 1e-3


def test_model_layout_is_refused_for_a_checkpoint_folder(sample, capsys):
    assert sample(["--model-layout", "coco", "--no-video"]) == 2
    assert "--model-layout applies to official .bin files only" in capsys.readouterr().err


def _write_npz(path: Path, kp: np.ndarray, **extra) -> str:
    np.savez(path, keypoints=kp, **extra)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("joints", "expected 17 keypoints per frame for layout 'coco', got 16"),
    ("all_missing", "no keypoint is detected in any of the 4 frames"),
    ("not_keypoints", "is not an .npz archive"),
    ("no_key", "holds no keypoints: expected a 'keypoints' array"),
    ("layout", "unknown keypoint layout 'mpii'"),
    ("size", "pass --width and --height"),
    ("missing_file", "keypoint file not found"),
    ("checkpoint", "checkpoint not found"),
])
def test_bad_inputs_fail_clearly_and_write_nothing(sample, tmp_path, capsys, case, message):
    kp = np.random.RandomState(0).uniform(10, 90, (4, 17, 3))
    args = {"layout": "coco", "width": 100, "height": 100}
    if case == "joints":
        path = _write_npz(tmp_path / "in.npz", kp[:, :16], **args)
    elif case == "all_missing":
        path = _write_npz(tmp_path / "in.npz", np.where(np.arange(3) == 2, 0.0, kp), **args)
    elif case == "not_keypoints":
        (tmp_path / "in.npz").write_bytes(np.random.RandomState(1).bytes(200))
        path = str(tmp_path / "in.npz")
    elif case == "no_key":
        path = str(tmp_path / "in.npz")
        np.savez(path, something=kp)
    elif case == "layout":
        path = _write_npz(tmp_path / "in.npz", kp, layout="mpii", width=100, height=100)
    elif case == "size":
        path = _write_npz(tmp_path / "in.npz", kp, layout="coco")
    else:
        path = _write_npz(tmp_path / "in.npz", kp, **args) if case == "checkpoint" else "nowhere.json"
    argv = ["--input", path, "--out", "res"] + (["--checkpoint", "no_such_checkpoint"] if case == "checkpoint" else [])
    assert sample(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "res").exists() and not (tmp_path / "outputs").exists()


def test_demo_files_missing_names_what_to_pass(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("D3DP_KTP_DEMO_DIR", str(tmp_path / "nothing"))
    monkeypatch.chdir(tmp_path)
    assert load_sample_module().main([]) == 2
    err = capsys.readouterr().err
    assert "built-in demo input" in err and "pass --input FILE" in err


def test_help_explains_the_basics():
    text = load_sample_module().build_parser().format_help()
    for needle in ("With no arguments this runs the built-in demo", "--input FILE", "--layout", "-H H, --hypotheses H",
                   "-K K, --steps K", "--agg {jpma,mean}", "--save-hypotheses", "--no-video", "poses_3d.npz"):
        assert needle in text


def test_sampling_defaults_come_from_the_checkpoint_and_flags_override_them(tmp_path, monkeypatch, capsys):
    """A checkpoint saved with H=3, K=2, seed 5, no flip: sample.py uses exactly that without flags."""
    import torch

    from d3dp_ktp.checkpoints import save_checkpoint
    from d3dp_ktp.sampling import SamplingConfig

    from .conftest import tiny_model
    model = tiny_model(3)
    model.sampling = SamplingConfig(num_hypotheses=3, num_steps=2, flip=False, seed=5)
    ckpt = save_checkpoint(model, tmp_path / "ck")
    kp = project_px(camera_poses(np.random.RandomState(4), 11))
    np.savez(tmp_path / "kp.npz", keypoints=kp.astype(np.float32), width=WIDTH, height=HEIGHT, layout="h36m")
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    main = load_sample_module().main

    def settings(*flags: str) -> dict:
        rc = main(["--input", "kp.npz", "--checkpoint", str(ckpt), "--no-video", "--out", "res", *flags])
        assert rc == 0, capsys.readouterr().err
        return json.loads((tmp_path / "res" / "poses_3d.json").read_text())["settings"]

    own = settings()
    assert (own["num_hypotheses"], own["num_steps"], own["flip"], own["seed"], own["eta"]) == (3, 2, False, 5, 1.0)
    assert "H=3 hypotheses, K=2 steps" in capsys.readouterr().out
    given = settings("-H", "4", "--flip", "--seed", "0")
    assert (given["num_hypotheses"], given["num_steps"], given["flip"], given["seed"]) == (4, 2, True, 0)
    assert main(["--input", "kp.npz", "--checkpoint", str(ckpt), "-K", "0"]) == 2
    assert "num_steps (K) must be an integer in [1, 1000], got 0" in capsys.readouterr().err
    assert main(["--input", "missing.npz", "--checkpoint", str(ckpt), "-H", "0"]) == 2  # before the input is read
    assert "num_hypotheses (H) must be an integer >= 1, got 0" in capsys.readouterr().err


def test_help_says_the_sampling_defaults_are_the_checkpoints():
    text = " ".join(load_sample_module().build_parser().format_help().split())
    for field in ("num_hypotheses", "num_steps", "eta", "flip", "dtype", "seed"):
        assert f"default: the checkpoint's sampling.{field}" in text
    assert "(default 5)" not in text
