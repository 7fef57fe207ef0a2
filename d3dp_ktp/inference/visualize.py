"""Pictures of a lifting result: a PNG preview, an animation (GIF + MP4) and the side-by-side video.

Each picture shows the 2D keypoints (on the video frame when there is one) beside the 3D skeleton.
The 3D is drawn in a Y-up frame in metres with the floor at y = 0 (`outputs.display_frame`: the
gravity-aligned frame estimated from the feet), seen from a fixed viewpoint (front-left, 20 degrees
above, orthographic so that lengths are comparable), scaled once so that every frame's body stays
in view. A 0.5 m grid marks the floor, the body's shadow on it shows its height, left limbs are
blue and right limbs red.

* ``preview.png``: a few evenly spaced frames, 1280 px wide, the 3D in Matplotlib axes with
  equal aspect and ticks in metres.
* The animation and the video draw the same scene with PIL (one pre-rendered background, a few
  lines per frame), which keeps a 1000-frame clip at a few ms per frame. The MP4 holds every
  frame at the input's frame rate; the GIF (for places that cannot play MP4) holds at most
  ``gif_max_frames`` frames (every n-th frame of longer inputs, at fps / n), 640 px wide.

Shape legend: F frames, J2 keypoints of the 2D input, J joints of the 3D pose.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from d3dp_ktp.atomic import atomic_file
from d3dp_ktp.inference.video import video_writer
from d3dp_ktp.skeleton import Skeleton

COLORS = {"left": (31, 119, 180), "right": (214, 39, 40), "centre": (60, 60, 60)}
BACKGROUND = (250, 250, 250)
NO_VIDEO = (235, 235, 235)      # the 2D panel's canvas without a video
GRID = (200, 200, 200)
FLOOR = (238, 238, 232)
SHADOW = (205, 205, 205)


@dataclass(frozen=True)
class FigureConfig:
    width: int = 1280             # px: preview, animation (a video may widen the side-by-side to 1920)
    max_video_height: int = 720   # px: the side-by-side video's height at most
    preview_frames: int = 4       # frames in the PNG
    gif_max_frames: int = 250     # longer inputs show every n-th frame in the GIF (the MP4 has all)
    gif_width: int = 640          # px
    elevation: float = 20.0       # degrees above the floor of the 3D viewpoint
    azimuth: float = 35.0         # degrees from the front (+Z) towards the body's left (+X)
    grid_step: float = 0.5        # m between floor grid lines


@dataclass
class Scene:
    """What the pictures show: 2D keypoints in pixels and the 3D poses in the display frame."""
    keypoints_2d: np.ndarray      # (F, J2, 2) pixels of the source image
    skeleton_2d: Skeleton
    image_size: tuple[int, int]   # (width, height) of the source image in pixels
    poses: np.ndarray             # (F, J, 3) metres, Y up, floor at y = 0
    skeleton_3d: Skeleton
    fps: float
    filled: np.ndarray | None = None  # (F, J2) True where a keypoint was interpolated (drawn hollow)

    @property
    def num_frames(self) -> int:
        return len(self.poses)

    def box(self, video: bool) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) pixels the 2D panel shows: the whole image with a video, else the region
        the keypoints cover over the whole sequence (plus a margin), so a small figure is readable."""
        if video:
            return 0.0, 0.0, float(self.image_size[0]), float(self.image_size[1])
        lo, hi = self.keypoints_2d.reshape(-1, 2).min(0), self.keypoints_2d.reshape(-1, 2).max(0)
        half = 0.5 * 1.3 * max(float((hi - lo).max()), 1.0)  # a square with a 15% margin
        cx, cy = (lo + hi) / 2
        return float(cx - half), float(cy - half), float(cx + half), float(cy + half)


def _side(skeleton: Skeleton, j: int) -> str:
    return "left" if j in skeleton.joints_left else "right" if j in skeleton.joints_right else "centre"


def _bones(skeleton: Skeleton) -> list[tuple[int, int, tuple[int, int, int]]]:
    """(child, parent, colour) of every bone; a bone is coloured by its child's side."""
    return [(j, p, COLORS[_side(skeleton, j)]) for j, p in enumerate(skeleton.parents) if p >= 0]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:  # Matplotlib ships DejaVu Sans, so this font exists wherever the project runs
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default()


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


# ----------------------------------------------------------------------------- the 3D panel (PIL)

class SkeletonView:
    """A fixed orthographic view of a pose sequence drawn into (width, height) pixels."""

    def __init__(self, poses: np.ndarray, skeleton: Skeleton, width: int, height: int, cfg: FigureConfig):
        az, el = math.radians(cfg.azimuth), math.radians(cfg.elevation)
        toward = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        right = np.cross(-toward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        self.basis = np.stack([right, np.cross(right, -toward), toward])  # rows: screen right, up, depth
        self.skeleton, self.size, self.cfg = skeleton, (width, height), cfg
        self.bones = _bones(skeleton)
        pts = poses.reshape(-1, 3)
        step = cfg.grid_step
        lo = np.floor((pts[:, [0, 2]].min(0) - step / 4) / step) * step  # whole grid cells around the body
        hi = np.ceil((pts[:, [0, 2]].max(0) + step / 4) / step) * step
        self.grid = (lo, hi)
        corners = np.array([[x, 0.0, z] for x in (lo[0], hi[0]) for z in (lo[1], hi[1])])
        uv = np.concatenate([pts, corners]) @ self.basis[:2].T
        top = int(height * 0.09)  # room for the title and legend
        margin = 0.04 * min(width, height)
        span = np.maximum(uv.max(0) - uv.min(0), 1e-3)
        self.scale = min((width - 2 * margin) / span[0], (height - top - 2 * margin) / span[1])
        centre = (uv.max(0) + uv.min(0)) / 2
        middle = np.array([width / 2, top + margin + (height - top - 2 * margin) / 2])
        self.offset = middle - centre * [1, -1] * self.scale
        self.line = max(2, round(min(width, height) / 170))
        self.background = self._background()

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) display metres -> (..., 2) pixels (x right, y down)."""
        uv = np.asarray(points) @ self.basis[:2].T
        return uv * [self.scale, -self.scale] + self.offset

    def _background(self) -> Image.Image:
        w, h = self.size
        image = Image.new("RGB", (w, h), BACKGROUND)
        draw = ImageDraw.Draw(image)
        (x0, z0), (x1, z1) = self.grid
        quad = self.project(np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]]))
        draw.polygon([tuple(p) for p in quad], fill=FLOOR)
        step = self.cfg.grid_step
        for x in np.arange(x0, x1 + step / 2, step):
            draw.line([tuple(p) for p in self.project(np.array([[x, 0, z0], [x, 0, z1]]))], fill=GRID, width=1)
        for z in np.arange(z0, z1 + step / 2, step):
            draw.line([tuple(p) for p in self.project(np.array([[x0, 0, z], [x1, 0, z]]))], fill=GRID, width=1)
        self._legend(draw, w, h)
        return image

    def _legend(self, draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
        size = max(11, round(h / 38))
        font = _font(size)
        draw.text((size // 2, size // 3), "3D (metres, Y up)", fill=(20, 20, 20), font=font)
        x = size // 2
        y = size // 3 + round(size * 1.4)
        for label, side in (("left", "left"), ("right", "right")):
            draw.line([(x, y + size // 2), (x + size * 1.5, y + size // 2)], fill=COLORS[side], width=self.line)
            draw.text((x + size * 1.8, y), label, fill=(20, 20, 20), font=font)
            x += size * 1.8 + draw.textlength(label, font=font) + size
        draw.text((x, y), f"grid {self.cfg.grid_step:g} m", fill=(90, 90, 90), font=font)
        self._axes(draw, size, font, h)

    def _axes(self, draw: ImageDraw.ImageDraw, size: int, font, h: int) -> None:
        """A small X/Y/Z triad in the lower left corner, in the view's orientation."""
        origin = np.array([size * 3.0, h - size * 3.0])
        for axis, name in zip(np.eye(3), ("X", "Y", "Z")):
            tip = origin + (axis @ self.basis[:2].T) * [1, -1] * size * 2.4
            draw.line([tuple(origin), tuple(tip)], fill=(90, 90, 90), width=2)
            draw.text(tuple(tip + [-size * 0.3, -size * 0.6]), name, fill=(60, 60, 60), font=_font(max(9, size - 3)))

    def draw(self, pose: np.ndarray | None, caption: str = "") -> Image.Image:
        """The background with one pose (J, 3) (None: a note that this frame has no pose)."""
        image = self.background.copy()
        draw = ImageDraw.Draw(image)
        w, h = self.size
        if pose is None:
            draw.text((w * 0.3, h * 0.5), "no 3D pose for this frame", fill=(120, 120, 120),
                      font=_font(max(11, h // 38)))
            return image
        shadow = self.project(pose * [1, 0, 1])
        for j, p, _ in self.bones:
            draw.line([tuple(shadow[j]), tuple(shadow[p])], fill=SHADOW, width=self.line)
        px, depth = self.project(pose), pose @ self.basis[2]
        for j, p, colour in sorted(self.bones, key=lambda b: depth[b[0]] + depth[b[1]]):  # far bones first
            draw.line([tuple(px[j]), tuple(px[p])], fill=colour, width=self.line)
        r = self.line * 0.9
        for (x, y) in px:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(30, 30, 30))
        if caption:
            size = max(11, round(h / 38))
            draw.text((w - size * 0.5, h - size * 0.4), caption, fill=(60, 60, 60), font=_font(size), anchor="rs")
        return image


# ----------------------------------------------------------------------------- the 2D panel

def draw_keypoints(image: Image.Image, keypoints: np.ndarray, skeleton: Skeleton, scale: float,
                   filled: np.ndarray | None = None, origin: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    """Draw keypoints (J2, 2) source pixels, (xy - origin) * scale, onto ``image`` (changed in place)."""
    draw = ImageDraw.Draw(image)
    width = max(2, round(min(image.size) / 200))
    xy = (np.asarray(keypoints) - origin) * scale
    for j, p, colour in _bones(skeleton):
        draw.line([tuple(xy[j]), tuple(xy[p])], fill=colour, width=width)
    r = width * 1.2
    for j, (x, y) in enumerate(xy):
        hollow = filled is not None and bool(filled[j])
        draw.ellipse([x - r, y - r, x + r, y + r], fill=None if hollow else (255, 255, 255),
                     outline=(30, 30, 30), width=max(1, width // 2))
    return image


def draw_caption(image: Image.Image, text: str) -> Image.Image:
    """Write ``text`` on a white box in the upper left corner of ``image`` (changed in place)."""
    draw = ImageDraw.Draw(image)
    size = max(11, round(image.size[1] / 38))
    font = _font(size)
    box = draw.textbbox((size // 2, size // 3), text, font=font)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=(255, 255, 255))
    draw.text((size // 2, size // 3), text, fill=(20, 20, 20), font=font)
    return image


def panel_sizes(image_size: tuple[float, float], width: int | None = None, max_height: int | None = None
                ) -> tuple[int, int, int]:
    """(height, 2D panel width, 3D panel width), all even, of a frame whose 2D panel keeps the image's
    aspect and whose 3D panel is square: ``width`` px in all, or the image's height up to ``max_height``
    (and at most 1920 px wide) when ``width`` is None."""
    aspect = image_size[0] / image_size[1]
    if width is not None:
        height = _even(width / (aspect + 1))
    else:
        height = int(min(image_size[1], max_height or image_size[1], 1918 / (aspect + 1))) // 2 * 2
    left = _even(height * aspect)
    return height, left, height if width is None else max(2, width - left)


class FrameRenderer:
    """Side-by-side frames of a scene: 2D panel (video frame or blank canvas) | 3D panel."""

    def __init__(self, scene: Scene, cfg: FigureConfig = FigureConfig(), width: int | None = None,
                 video: bool = False):
        self.scene, self.cfg = scene, cfg
        self.box = scene.box(video)
        box_size = (self.box[2] - self.box[0], self.box[3] - self.box[1])
        self.height, self.left, self.right = panel_sizes(box_size, width, cfg.max_video_height)
        self.view = SkeletonView(scene.poses, scene.skeleton_3d, self.right, self.height, cfg)
        self.scale = self.height / box_size[1]

    @property
    def size(self) -> tuple[int, int]:
        return self.left + self.right, self.height

    def render(self, f: int, video_frame: np.ndarray | None = None) -> np.ndarray:
        """RGB (height, width, 3) uint8 of frame f (video_frame: the source image (H, W, 3))."""
        s = self.scene
        if video_frame is None:
            panel = Image.new("RGB", (self.left, self.height), NO_VIDEO)
        else:
            panel = Image.fromarray(video_frame).resize((self.left, self.height), Image.BILINEAR)
        has_pose = f < s.num_frames
        if has_pose:
            filled = None if s.filled is None else s.filled[f]
            draw_keypoints(panel, s.keypoints_2d[f], s.skeleton_2d, self.scale, filled, self.box[:2])
        draw_caption(panel, f"frame {f}  {f / s.fps:.2f} s")
        out = Image.new("RGB", self.size)
        out.paste(panel, (0, 0))
        out.paste(self.view.draw(s.poses[f] if has_pose else None), (self.left, 0))
        return np.asarray(out)


# ----------------------------------------------------------------------------- files

def write_animation(out_dir: str | Path, scene: Scene, cfg: FigureConfig = FigureConfig(), mp4: bool = True
                    ) -> list[Path]:
    """``animation.gif`` (at most cfg.gif_max_frames frames, cfg.gif_width px wide) and, with ``mp4``,
    ``animation.mp4`` (every frame at scene.fps) in ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    renderer = FrameRenderer(scene, cfg, width=cfg.width)
    step = max(1, math.ceil(scene.num_frames / cfg.gif_max_frames))
    gif_size = (cfg.gif_width, _even(cfg.gif_width * renderer.size[1] / renderer.size[0]))
    gif: list[Image.Image] = []
    mp4_path = out_dir / "animation.mp4"
    with video_writer(mp4_path, scene.fps, *renderer.size) if mp4 else contextlib.nullcontext() as write:
        for f in range(scene.num_frames):
            if write is None and f % step:
                continue
            image = renderer.render(f)
            if write is not None:
                write(image)
            if f % step == 0:  # palette images take a third of the RGB memory
                small = Image.fromarray(image).resize(gif_size, Image.BILINEAR)
                # one palette for all frames (the drawing has few colours): no flicker, 3x faster
                gif.append(small.quantize(colors=64, method=Image.Quantize.FASTOCTREE) if not gif
                           else small.quantize(palette=gif[0], dither=Image.Dither.NONE))
    return [write_gif(out_dir / "animation.gif", gif, scene.fps / step)] + ([mp4_path] if mp4 else [])


def write_gif(path: str | Path, images: list[Image.Image], fps: float) -> Path:
    """Looping GIF of PIL images shown at ``fps``. GIF delays are whole 10 ms steps, so delays alternate
    (30, 40, 30 ms for 29.97 fps) to keep the average rate; browsers slow delays under 20 ms down."""
    path = Path(path)
    first, *rest = images
    ticks = np.round(np.arange(len(images) + 1) * 100.0 / fps)  # frame start times in 10 ms steps
    durations = [int(d) * 10 for d in np.maximum(np.diff(ticks), 2)]
    with atomic_file(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=durations if rest else durations[0],
                   loop=0, optimize=False)
    return path


def write_side_by_side(path: str | Path, scene: Scene, video_frames: Iterable[np.ndarray],
                       fps, cfg: FigureConfig = FigureConfig()) -> tuple[Path, int]:
    """MP4 of every video frame with its keypoints beside the 3D, at the video's ``fps`` (exact
    rational rates are kept); returns (path, frames written). Video frames beyond the poses show
    the video with a 'no 3D pose' note."""
    renderer = FrameRenderer(scene, cfg, video=True)
    count = 0
    with video_writer(path, fps, *renderer.size) as write:
        for f, frame in enumerate(video_frames):
            write(renderer.render(f, frame))
            count += 1
    return Path(path), count


def render_preview(path: str | Path, scene: Scene, cfg: FigureConfig = FigureConfig(),
                   video_frames: dict[int, np.ndarray] | None = None) -> Path:
    """PNG of cfg.preview_frames evenly spaced frames: 2D above 3D (equal-aspect axes in metres)."""
    frames = preview_frame_indices(scene.num_frames, cfg.preview_frames)
    x0, y0, x1, y1 = scene.box(False)
    w, h = x1 - x0, y1 - y0
    n = len(frames)
    fig = Figure(figsize=(cfg.width / 100, cfg.width / 100 / n * (h / w + 1.15) + 0.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, n, height_ratios=(h / w, 1.15), left=0.04, right=0.97, top=0.9, bottom=0.03,
                            wspace=0.2, hspace=0.08)
    limits = _cube_limits(scene.poses)
    for col, f in enumerate(frames):
        _preview_2d(fig.add_subplot(grid[0, col]), scene, f, (video_frames or {}).get(f))
        _preview_3d(fig.add_subplot(grid[1, col], projection="3d"), scene, f, limits, cfg)
    handles = [Line2D([], [], color=np.array(COLORS[s]) / 255, lw=2.5, label=s) for s in ("left", "right", "centre")]
    fig.legend(handles=handles, loc="upper right", ncol=3, frameon=False, fontsize=10)
    fig.suptitle("2D keypoints (pixels) and 3D poses (metres, floor at height 0)", x=0.02, ha="left", fontsize=11)
    path = Path(path)
    with atomic_file(path) as tmp:
        canvas.print_png(str(tmp))
    return path


def preview_frame_indices(num_frames: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int))


def _cube_limits(poses: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and half size of a cube holding every pose and the floor (equal aspect)."""
    pts = np.concatenate([poses.reshape(-1, 3), [[poses[..., 0].mean(), 0.0, poses[..., 2].mean()]]])
    lo, hi = pts.min(0), pts.max(0)
    return (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.08, 0.3)


def _preview_2d(ax, scene: Scene, f: int, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = scene.box(False)  # the region of the keypoints, also on a video frame
    if frame is not None:
        ax.imshow(frame, extent=(0, scene.image_size[0], scene.image_size[1], 0))
    else:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color=np.array(NO_VIDEO) / 255))
    kp = scene.keypoints_2d[f]
    for j, p, colour in _bones(scene.skeleton_2d):
        ax.plot(kp[[j, p], 0], kp[[j, p], 1], color=np.array(colour) / 255, lw=2)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)
    ax.set_title(f"frame {f} ({f / scene.fps:.2f} s)", fontsize=9)


def _preview_3d(ax, scene: Scene, f: int, limits: tuple[np.ndarray, float], cfg: FigureConfig) -> None:
    """Matplotlib's vertical axis is its z: plot (X, Z, Y)."""
    centre, half = limits
    pose = scene.poses[f]
    xs, zs = np.meshgrid(*[np.array([centre[i] - half, centre[i] + half]) for i in (0, 2)])
    ax.computed_zorder = False  # the floor stays under the body (mplot3d's depth sort would hide the feet)
    ax.plot_surface(xs, zs, np.zeros_like(xs), color=np.array(FLOOR) / 255, alpha=0.6, shade=False, zorder=0)
    for j, p, colour in _bones(scene.skeleton_3d):
        ax.plot(pose[[j, p], 0], pose[[j, p], 2], pose[[j, p], 1], color=np.array(colour) / 255, lw=2.2)
        ax.plot(pose[[j, p], 0], pose[[j, p], 2], [0, 0], color=np.array(SHADOW) / 255, lw=1.5)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[2] + half, centre[2] - half)  # reversed: (X, Z, Y) would be a mirror image
    ax.set_zlim(max(centre[1] - half, -0.05), max(centre[1] - half, -0.05) + 2 * half)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=cfg.elevation, azim=-90 + cfg.azimuth)
    ax.set_xlabel("X (m)", fontsize=8, labelpad=-6)
    ax.set_ylabel("Z (m)", fontsize=8, labelpad=-6)
    ax.set_zlabel("height (m)", fontsize=8, labelpad=-6)
    ax.tick_params(labelsize=7, pad=-2)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
