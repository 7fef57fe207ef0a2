"""sample.py end to end: the no-argument demo (subprocess), options, and bad inputs (in process)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import HEIGHT, WIDTH, camera_poses, project_px

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


def test_no_argument_demo_run(demo_dir, tmp_path):
    env = {**os.environ, "D3DP_KTP_DEMO_DIR": str(demo_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "sample.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "outputs" / "demo"
    for name in ("poses_3d.npz", "poses_3d.json", "preview.png", "animation.gif"):
        assert (out / name).stat().st_size > 0 and f"wrote outputs/demo/{name}" in proc.stdout
    assert "MPJPE vs ground truth in demo_input.npz:" in proc.stdout and " mm" in proc.stdout
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
    gt = camera_poses(np.random.RandomState(5), 13)
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
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["poses_3d.json", "poses_3d.npz", "preview.png"]
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
              for f in project_px(camera_poses(np.random.RandomState(6), 9))]
    (tmp_path / "dets.json").write_text(json.dumps(frames))
    rc = sample(["--input", "dets.json", "--layout", "coco", "--width", str(WIDTH), "--height", str(HEIGHT),
                 "--checkpoint", name, *flag, "-H", "2", "-K", "1", "--agg", "mean", "--no-video", "--out", "res"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert ("in-the-wild model" in captured.out) == (name.startswith("in_the_wild") and not flag)
    assert json.loads((tmp_path / "res" / "poses_3d.json").read_text())["settings"]["keypoint_layout"] == layout


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
    ("layout", "unknown keypoint layout 'body25'"),
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
        path = _write_npz(tmp_path / "in.npz", kp, layout="body25", width=100, height=100)
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
