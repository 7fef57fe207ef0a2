"""sample.py's input half: fail fast before torch, Ctrl-C, people flags, progress, detector folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import detector_files as dfiles
from .conftest import HEIGHT, WIDTH
from .test_sample_cli import REPO, load_sample_module

# Runs sample.main in a fresh interpreter and reports whether torch was ever imported.
_PROBE = ("import sys, runpy; sys.argv = ['sample.py'] + sys.argv[1:]; m = runpy.run_path(sys.argv[0].replace("
          "'sample.py', {sample!r})); rc = m['main'](sys.argv[1:]); print('TORCH_IMPORTED', 'torch' in sys.modules); "
          "sys.exit(rc)")


def run_probe(args, cwd, demo_dir):
    code = _PROBE.format(sample=str(REPO / "sample.py"))
    env = {**os.environ, "D3DP_KTP_DEMO_DIR": str(demo_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def sample(monkeypatch, demo_dir, tmp_path):
    monkeypatch.setenv("D3DP_KTP_DEMO_DIR", str(demo_dir))
    monkeypatch.chdir(tmp_path)
    return load_sample_module().main


@pytest.mark.parametrize("case", ["out_is_a_file", "mislabelled", "list_people", "bad_number"])
def test_input_mistakes_are_reported_before_torch_is_imported(tmp_path, demo_dir, case):
    scene = dfiles.crossing_scene(20)
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, "h36m" if case == "mislabelled" else "coco")
    (tmp_path / "taken").write_text("a file the user wrote")
    args = ["--input", str(path), "--width", str(WIDTH), "--height", str(HEIGHT), "--out",
            str(tmp_path / ("taken" if case == "out_is_a_file" else "res"))]
    args += {"list_people": ["--list-people"], "bad_number": ["-K", "0"]}.get(case, [])
    proc = run_probe(args, tmp_path, demo_dir)
    assert "TORCH_IMPORTED False" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    if case == "list_people":
        assert proc.returncode == 0 and "2 people (main person first)" in proc.stdout
    else:
        expected = {"out_is_a_file": "exists and is a file; pass --out with a folder",
                    "mislabelled": "look like 'h36m'", "bad_number": "num_steps (K) must be an integer in [1, 1000]"}
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and expected[case] in proc.stderr
    assert (tmp_path / "taken").read_text() == "a file the user wrote" and not (tmp_path / "res").exists()


def test_unwritable_output_folder_is_refused(demo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("D3DP_KTP_DEMO_DIR", str(demo_dir))
    module = load_sample_module()
    locked = tmp_path / "locked"
    locked.mkdir()
    # Root may write anywhere, so the permission answer is simulated: 'locked' refuses writes.
    monkeypatch.setattr(module.os, "access", lambda path, mode: Path(path) != locked)
    assert module.main(["--out", str(locked / "res")]) == 2
    err = capsys.readouterr().err
    assert "the output folder" in err and "is not writable (" in err and not (locked / "res").exists()


def test_ctrl_c_prints_one_line_exits_130_and_leaves_no_partial_file(sample, tmp_path, capsys, monkeypatch):
    from d3dp_ktp.inference import io, pipeline

    real_write = io.write_json

    def interrupted(path, data):           # Ctrl-C while the JSON is being written, after the npz
        with io.atomic_path(path) as tmp:
            tmp.write_text("{\"partial")
            raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "write_json", interrupted)
    assert sample(["--out", "res", "--no-video"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("interrupted (Ctrl-C)") and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["poses_3d.npz"]   # complete; no temp file
    monkeypatch.setattr(pipeline, "write_json", real_write)


def test_all_people_get_their_own_folder(sample, tmp_path, capsys):
    scene = dfiles.crossing_scene(24)
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, "halpe26")
    rc = sample(["--input", str(path), "--width", str(WIDTH), "--height", str(HEIGHT), "--all-people", "--out", "res",
                 "-H", "2", "-K", "1", "--no-video", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for pid, name in ((7, "person_7"), (3, "person_3")):
        with np.load(tmp_path / "res" / name / "poses_3d.npz") as npz:
            assert npz["poses_3d"].shape == (24, 17, 3)
            assert json.loads(str(npz["settings"]))["person"] == pid
    assert "window" not in captured.err and "note:" not in captured.out        # --quiet


def test_openpose_folder_through_the_cli_with_progress(sample, tmp_path, capsys):
    scene = dfiles.crossing_scene(30)
    scene[0]["present"][8:20] = False                                          # long absence
    scene[1]["present"][10:] = False                                           # the other one leaves
    folder = dfiles.write_openpose(tmp_path / "op", scene, "body25")
    rc = sample(["--input", str(folder), "--width", str(WIDTH), "--height", str(HEIGHT), "-H", "2", "-K", "1",
                 "--no-video", "--stride", "9"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "2 people in op; lifting person" in captured.out and "is missing in frames 8-19" in captured.out
    assert "window" in captured.err                                            # the progress bar
    with np.load(tmp_path / "outputs" / "op" / "poses_3d.npz") as npz:
        assert npz["poses_3d"].shape == (30, 17, 3) and npz["keypoints_filled"][8:20].all()
        assert json.loads(str(npz["settings"]))["person_missing_frames"] == [[8, 19]]


def test_sequence_flag_selects_from_a_videopose3d_npz(sample, tmp_path, capsys):
    scene = dfiles.crossing_scene(12)
    kp = {v: dfiles.layout_points(p["points"], "coco") for v, p in zip(("a.mp4", "b.mp4"), scene)}
    path = dfiles.write_videopose3d(tmp_path / "vp3d.npz", kp)
    assert sample(["--input", str(path), "--no-video", "--out", "res"]) == 2
    assert "choose one with --sequence NAME, one of: a.mp4, b.mp4" in capsys.readouterr().err
    assert sample(["--input", str(path), "--sequence", "b.mp4", "-H", "2", "-K", "1", "--no-video", "--out", "res"]) == 0
    with np.load(tmp_path / "res" / "poses_3d.npz") as npz:
        assert json.loads(str(npz["settings"]))["sequence"] == "b.mp4"


def test_help_names_every_format_and_the_people_flags():
    text = load_sample_module().build_parser().format_help()
    for needle in ("AlphaPose", "alphapose-results.json", "OpenPose", "--write_json", "MMPose", "--pred-out-dir",
                   "rtmlib", "Detectron2", "infer_video_d2.py", "VideoPose3D", "data_2d_<name>_<kp>.npz", "--sequence NAME",
                   "--person ID", "--list-people", "--all-people", "--force", "--quiet", "halpe26", "body25", "coco18"):
        assert needle in text, needle
