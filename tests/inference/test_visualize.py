"""Preview PNG and animations of d3dp_ktp/inference/visualize.py."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from d3dp_ktp.inference import visualize
from d3dp_ktp.skeleton import COCO, H36M


def _sequence(frames: int):
    rng = np.random.RandomState(0)
    return rng.uniform(0, 640, (frames, 17, 2)), rng.uniform(-0.8, 0.8, (frames, 17, 3))


def test_preview_and_gif(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no ffmpeg: GIF only
    kp, poses = _sequence(100)
    png = visualize.render_preview(tmp_path / "p.png", kp, COCO, poses, H36M, 640, 480)
    assert Image.open(png).size[0] > Image.open(png).size[1] > 100
    written = visualize.render_animation(tmp_path, kp, COCO, poses, H36M, 640, 480, fps=30)
    assert [p.name for p in written] == ["animation.gif"]
    gif = Image.open(written[0])
    assert gif.n_frames == 34 and gif.info["duration"] == 100  # every 3rd frame of 100, 30 fps / 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["animation.gif", "p.png"]


def test_single_frame_animation(tmp_path):
    kp, poses = _sequence(1)
    gif = visualize.write_gif(tmp_path / "a.gif", visualize.animation_frames(kp, H36M, poses, H36M, 640, 480)[0], 25)
    assert Image.open(gif).n_frames == 1


def test_failing_ffmpeg_leaves_no_mp4(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake))
    images = [np.zeros((31, 41, 3), np.uint8)] * 3
    with pytest.warns(UserWarning, match="ffmpeg could not write"):
        assert visualize.write_mp4(tmp_path / "out" / "a.mp4", images, 25) is None
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_mp4_with_ffmpeg(tmp_path):
    images = [np.full((31, 41, 3), i * 20, np.uint8) for i in range(5)]
    assert visualize.write_mp4(tmp_path / "a.mp4", images, 25).stat().st_size > 0
