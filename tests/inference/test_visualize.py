"""Preview PNG, animations and the side-by-side video (d3dp_ktp/inference/visualize.py, video.py)."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from d3dp_ktp.inference import visualize
from d3dp_ktp.inference.video import probe_video, read_frames, video_writer
from d3dp_ktp.skeleton import COCO, H36M

from .test_body import walking

FPS = Fraction(30000, 1001)  # NTSC: a rate that only survives as an exact fraction


def make_video(path, frames: int, width: int = 160, height: int = 96, fps=FPS):
    """A short H.264 clip made with PyAV: a bright square moving over a dark background."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for f in range(frames):
        image = np.full((height, width, 3), 30, np.uint8)
        image[20:40, 5 + 4 * f:25 + 4 * f] = 220
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


def scene(frames: int, width: int = 160, height: int = 96, fps: float = 30.0) -> visualize.Scene:
    rng = np.random.RandomState(0)
    kp = np.stack([rng.uniform(0.3 * width, 0.7 * width, (frames, 17)),
                   rng.uniform(0.2 * height, 0.9 * height, (frames, 17))], -1)
    return visualize.Scene(kp, COCO, (width, height), walking(frames), H36M, fps,
                           filled=np.zeros((frames, 17), bool))


def test_side_by_side_video_has_the_source_frame_count_and_rate(tmp_path):
    src = probe_video(make_video(tmp_path / "clip.mp4", 12))
    assert (src.width, src.height, src.fps, src.num_frames) == (160, 96, FPS, 12)
    path, count = visualize.write_side_by_side(tmp_path / "out" / "video_3d.mp4", scene(12), read_frames(src.path),
                                               src.fps)
    out = probe_video(path)
    assert count == 12 and out.num_frames == 12 and out.fps == src.fps
    assert sum(1 for _ in read_frames(path)) == 12
    assert out.height == 96 and out.width == 96 * 160 // 96 + 96  # the video's size beside a square 3D panel
    frame = next(read_frames(path))
    assert frame[30, 15].mean() > 150 and frame[80, 140].mean() < 80  # the source image is in the left panel


def test_side_by_side_with_fewer_poses_than_video_frames(tmp_path):
    src = probe_video(make_video(tmp_path / "clip.mp4", 9))
    path, count = visualize.write_side_by_side(tmp_path / "v.mp4", scene(6), read_frames(src.path), src.fps)
    assert count == 9 and probe_video(path).num_frames == 9


def test_animation_every_frame_and_gif_cap(tmp_path):
    cfg = visualize.FigureConfig(width=320, gif_width=160, gif_max_frames=10)
    written = visualize.write_animation(tmp_path, scene(30, fps=25.0), cfg)
    assert [p.name for p in written] == ["animation.gif", "animation.mp4"]
    mp4 = probe_video(written[1])
    assert mp4.num_frames == 30 and float(mp4.fps) == 25.0 and mp4.width == 320
    gif = Image.open(written[0])
    assert gif.n_frames == 10 and gif.info["duration"] == 120 and gif.size[0] == 160  # every 3rd frame at 25/3 fps
    assert [p.name for p in visualize.write_animation(tmp_path / "g", scene(1), cfg, mp4=False)] == ["animation.gif"]


def test_whole_body_stays_in_the_3d_view():
    s = scene(40)
    view = visualize.SkeletonView(s.poses, H36M, 300, 300, visualize.FigureConfig())
    px = view.project(s.poses)
    assert (px > 0).all() and (px < 300).all()
    image = np.asarray(view.draw(s.poses[5]))
    assert image.shape == (300, 300, 3) and (np.abs(image.astype(int) - visualize.COLORS["left"]).sum(-1) < 10).any()


def test_preview_png_is_screen_sized(tmp_path):
    s = scene(50)
    png = visualize.render_preview(tmp_path / "p.png", s, video_frames={0: np.zeros((96, 160, 3), np.uint8)})
    width, height = Image.open(png).size
    assert width == 1280 and 400 < height < 1000
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found"):
        probe_video(tmp_path / "none.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot read .* as a video"):
        probe_video(tmp_path / "text.mp4")
    with pytest.raises(ValueError, match="must be even"):
        with video_writer(tmp_path / "odd.mp4", 25, 31, 20):
            pass
    with pytest.raises(RuntimeError, match="stop"):
        with video_writer(tmp_path / "half.mp4", 25, 32, 20) as write:
            write(np.zeros((20, 32, 3), np.uint8))
            raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.mp4"]  # nothing half-written is left
