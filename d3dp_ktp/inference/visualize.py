"""Pictures of a lifting result: a PNG of a few frames and an animation (GIF always, MP4 with ffmpeg).

Each panel pair shows the 2D input in pixels beside the 3D skeleton. The 3D view is camera space
turned upright: X right, Z (depth) into the screen, -Y up, root at the origin. Left limbs are
blue, right limbs red. Figures are small and rendered with the Agg canvas directly (no pyplot
global state), reusing one figure for all animation frames, so a clip renders in a few seconds.

Shape legend: F frames, J2 keypoints of the 2D input, J joints of the 3D pose.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from d3dp_ktp.inference.io import atomic_path
from d3dp_ktp.skeleton import Skeleton

COLORS = {"left": "#1f77b4", "right": "#d62728", "centre": "#444444"}
PREVIEW_FRAMES = 4      # frames in the PNG
MAX_ANIMATION_FRAMES = 40  # the animation shows at most this many frames (evenly subsampled)
DPI = 60


def _bone_colors(skeleton: Skeleton) -> list[str]:
    side = lambda j: "left" if j in skeleton.joints_left else "right" if j in skeleton.joints_right else "centre"  # noqa: E731
    return [COLORS[side(j)] for j, p in enumerate(skeleton.parents) if p >= 0]


def _bones(skeleton: Skeleton) -> list[tuple[int, int]]:
    return [(j, p) for j, p in enumerate(skeleton.parents) if p >= 0]


def _upright(pose: np.ndarray) -> np.ndarray:
    """Camera (x right, y down, z forward) -> plot axes (x, z, -y)."""
    return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], axis=-1)


class _Panel:
    """One 2D axis and one 3D axis whose line artists are updated in place per frame."""

    def __init__(self, fig: Figure, spec2d, spec3d, sk2d: Skeleton, sk3d: Skeleton, width: float, height: float,
                 extent: float):
        self.ax2d, self.ax3d = fig.add_subplot(spec2d), fig.add_subplot(spec3d, projection="3d")
        self.b2d, self.b3d = _bones(sk2d), _bones(sk3d)
        self.l2d = [self.ax2d.plot([], [], color=c, lw=1.5)[0] for c in _bone_colors(sk2d)]
        self.l3d = [self.ax3d.plot([], [], [], color=c, lw=1.5)[0] for c in _bone_colors(sk3d)]
        self.ax2d.set_xlim(0, width)
        self.ax2d.set_ylim(height, 0)
        self.ax2d.set_aspect("equal")
        self.ax2d.set_xticks([])
        self.ax2d.set_yticks([])
        for set_lim in (self.ax3d.set_xlim, self.ax3d.set_ylim, self.ax3d.set_zlim):
            set_lim(-extent, extent)
        self.ax3d.set_box_aspect((1, 1, 1))
        self.ax3d.view_init(elev=15, azim=-70)
        self.ax3d.set_xticklabels([])
        self.ax3d.set_yticklabels([])
        self.ax3d.set_zticklabels([])

    def draw(self, kp2d: np.ndarray, pose: np.ndarray, title: str) -> None:
        for line, (a, b) in zip(self.l2d, self.b2d):
            line.set_data(kp2d[[a, b], 0], kp2d[[a, b], 1])
        up = _upright(pose)
        for line, (a, b) in zip(self.l3d, self.b3d):
            line.set_data_3d(up[[a, b], 0], up[[a, b], 1], up[[a, b], 2])
        self.ax2d.set_title(title, fontsize=8)


def _extent(poses: np.ndarray) -> float:
    return float(max(np.abs(poses).max(), 0.1)) * 1.05


def _frame_choice(num_frames: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int))


def render_preview(path: str | Path, keypoints_2d: np.ndarray, sk2d: Skeleton, poses_3d: np.ndarray,
                   sk3d: Skeleton, width: float, height: float, count: int = PREVIEW_FRAMES) -> Path:
    """PNG of ``count`` evenly spaced frames: 2D input (F, J2, 2) px above the 3D pose (F, J, 3)."""
    frames = _frame_choice(len(poses_3d), count)
    fig = Figure(figsize=(2.2 * len(frames), 4.4), dpi=DPI * 1.5)
    canvas = FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(frames))
    for col, f in enumerate(frames):
        panel = _Panel(fig, grid[0, col], grid[1, col], sk2d, sk3d, width, height, _extent(poses_3d))
        panel.draw(keypoints_2d[f], poses_3d[f], f"frame {f}")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.print_png(str(tmp))
    return path


def animation_frames(keypoints_2d: np.ndarray, sk2d: Skeleton, poses_3d: np.ndarray, sk3d: Skeleton,
                     width: float, height: float, max_frames: int = MAX_ANIMATION_FRAMES
                     ) -> tuple[list[np.ndarray], int]:
    """RGB images (H, W, 3) uint8 of at most ``max_frames`` frames, and the frame step used."""
    step = max(1, math.ceil(len(poses_3d) / max_frames))
    fig = Figure(figsize=(5, 2.6), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2)
    panel = _Panel(fig, grid[0, 0], grid[0, 1], sk2d, sk3d, width, height, _extent(poses_3d))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.05)
    images = []
    for f in range(0, len(poses_3d), step):
        panel.draw(keypoints_2d[f], poses_3d[f], f"frame {f}")
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return images, step


def write_gif(path: str | Path, images: list[np.ndarray], fps: float) -> Path:
    """Animated GIF (looping) of RGB images shown at ``fps`` frames per second."""
    path = Path(path)
    first, *rest = [Image.fromarray(im) for im in images]
    with atomic_path(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=int(1000 / fps), loop=0)
    return path


def write_mp4(path: str | Path, images: list[np.ndarray], fps: float) -> Path | None:
    """H.264 MP4 through the ``ffmpeg`` program; None (with a warning) when ffmpeg is missing or fails."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    path = Path(path)
    h, w = images[0].shape[:2]
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", f"{fps:g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p"]
    try:
        with atomic_path(path) as tmp:
            subprocess.run(cmd + [str(tmp)], input=b"".join(im.tobytes() for im in images), check=True,
                           capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as err:
        warnings.warn(f"ffmpeg could not write {path}: {err}; the GIF has the same animation", stacklevel=2)
        return None
    return path


def render_animation(out_dir: str | Path, keypoints_2d: np.ndarray, sk2d: Skeleton, poses_3d: np.ndarray,
                     sk3d: Skeleton, width: float, height: float, fps: float = 25.0) -> list[Path]:
    """``animation.gif`` (and ``animation.mp4`` when ffmpeg is on PATH) in ``out_dir``; input at ``fps``."""
    images, step = animation_frames(keypoints_2d, sk2d, poses_3d, sk3d, width, height)
    out_dir = Path(out_dir)
    written = [write_gif(out_dir / "animation.gif", images, fps / step)]
    mp4 = write_mp4(out_dir / "animation.mp4", images, fps / step)
    return written + ([mp4] if mp4 else [])
