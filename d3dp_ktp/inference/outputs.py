"""Everything written after lifting: post-processing (`body`), the result files, figures, video, BVH/CSV.

    processed = postprocess(result, model.skeleton, BodyConfig(), fps=30)
    written, summary = write_outputs(out_dir, result, inp, settings, model, OutputConfig(), video_path)

Shape legend: F frames, J joints. Every file is documented in docs/outputs.md.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from d3dp_ktp.inference import body, export, pipeline, visualize
from d3dp_ktp.inference.body import BodyConfig
from d3dp_ktp.inference.export import BvhConfig
from d3dp_ktp.inference.video import read_frames
from d3dp_ktp.inference.visualize import FigureConfig
from d3dp_ktp.skeleton import Skeleton

DEFAULT_FPS = 25.0   # frame rate assumed when neither a video nor the input states one


@dataclass(frozen=True)
class OutputConfig:
    body: BodyConfig = field(default_factory=BodyConfig)
    figures: FigureConfig = field(default_factory=FigureConfig)
    bvh: BvhConfig = field(default_factory=BvhConfig)
    write_bvh: bool = False          # animation.bvh
    animation: bool = True           # animation.gif/.mp4 or, with a video, video_3d.mp4
    animation_mp4: bool = True       # without a video: also animation.mp4 (every frame)


@dataclass
class Processed:
    """The post-processed sequence (camera space unless named otherwise)."""
    poses: np.ndarray                  # (F, J, 3) root-relative, metres
    trajectory: np.ndarray | None      # (F, 3) root position, metres
    bone_lengths: np.ndarray | None    # (J,) with the consistent body
    world_from_camera: np.ndarray      # (4, 4), floor at y = 0
    world: np.ndarray                  # (F, J, 3) world frame (with the trajectory when there is one)
    display: np.ndarray                # (F, J, 3) what the pictures show: world, or world in place
    stats: dict                        # the figures of the summary, also stored in the settings

    @property
    def absolute(self) -> np.ndarray:
        """(F, J, 3) camera-space joints: the poses plus the root trajectory (when estimated)."""
        return self.poses if self.trajectory is None else self.poses + self.trajectory[:, None]


def _variation(poses: np.ndarray, skeleton: Skeleton) -> dict:
    v = body.limb_variation(poses, skeleton)
    worst = max(v, key=v.get)
    parent = skeleton.joint_names[skeleton.parents[skeleton.joint_names.index(worst)]]
    return {"max": round(v[worst], 4), "max_limb": f"{parent}-{worst}",
            "mean": round(float(np.mean(list(v.values()))), 4), "per_limb": {k: round(x, 4) for k, x in v.items()}}


def _jitter(poses: np.ndarray, traj: np.ndarray | None, fps: float) -> dict:
    return {"pose_m_s2": round(body.jitter(poses, fps), 3),
            "root_m_s2": None if traj is None else round(body.jitter(traj[:, None], fps), 3)}


def postprocess(result, skeleton: Skeleton, cfg: BodyConfig, fps: float) -> Processed:
    """Smoothing, consistent bone lengths and the floor, in that order (docs/outputs.md)."""
    raw = np.asarray(result.poses_3d, dtype=np.float64)
    traj = None if result.root_trajectory is None else np.asarray(result.root_trajectory, dtype=np.float64)
    stats = {"fps": float(fps), "limb_variation_before": _variation(raw, skeleton),
             "jitter_before": _jitter(raw, traj, fps)}
    poses = raw
    if cfg.smooth:
        poses = body.smooth(poses, fps, cfg.smooth_seconds, cfg.smooth_order)
        traj = None if traj is None else body.smooth(traj, fps, cfg.smooth_seconds, cfg.smooth_order)
        window = body.smoothing_window(fps, cfg.smooth_seconds, cfg.smooth_order, len(raw))
        stats["smoothing"] = {"filter": "savitzky-golay", "order": cfg.smooth_order, "window_frames": window}
    lengths = None
    if cfg.consistent:
        # the final step's hypotheses (H, F, J, 3) when kept: more samples of each bone
        source = poses if result.hypotheses is None or cfg.smooth else result.hypotheses[-1]
        lengths = body.robust_bone_lengths(source, skeleton, cfg.symmetric)
        poses = body.apply_bone_lengths(poses, skeleton, lengths)
    stats["limb_variation_after"] = _variation(poses, skeleton)
    stats["jitter_after"] = _jitter(poses, traj, fps)
    absolute = poses if traj is None else poses + traj[:, None]
    floor = body.estimate_floor(absolute, body.foot_joints(skeleton), cfg.ankle_height)
    matrix = body.world_from_camera(floor, absolute[0, skeleton.root])
    height, pitch = body.camera_in_world(matrix)
    stats["floor"] = {"camera_height_m": round(height, 4) if traj is not None else None,
                      "camera_pitch_deg": round(pitch, 2), "contact_rms_m": round(floor.contact_rms, 4)}
    world = body.transform_points(matrix, absolute)
    return Processed(poses, traj, lengths, matrix, world, _in_place(world, skeleton) if not cfg.world else world, stats)


def _in_place(world: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """The world poses (F, J, 3) with the root's horizontal motion removed (root above the origin):
    what the pictures show without --world, where the estimated root trajectory is too noisy to
    watch (its depth comes from the 2D size of the body)."""
    out = world.copy()
    out[..., [0, 2]] -= world[:, skeleton.root:skeleton.root + 1, [0, 2]]
    return out


def resolve_fps(video_fps: Fraction | None, file_fps, given: float | None) -> tuple[float | Fraction, str]:
    """(frame rate, where it came from): --fps, else the video's, else the input file's, else 25."""
    if given is not None:
        if not given > 0:
            raise ValueError(f"--fps must be positive, got {given}")
        return given, "--fps"
    if video_fps is not None:
        return video_fps, "the video"
    if file_fps is not None and float(file_fps) > 0:
        return float(file_fps), "the input file"
    return DEFAULT_FPS, "assumed; pass --fps or --video to set it"


def _with_video_frames(frames, wanted: set[int], keep: dict[int, np.ndarray]):
    """Pass frames through, keeping a copy of those whose index is in ``wanted`` (for the preview)."""
    for f, frame in enumerate(frames):
        if f in wanted:
            keep[f] = frame
        yield frame


def write_outputs(out_dir: str | Path, result, inp, settings: dict, model, cfg: OutputConfig, fps,
                  video=None) -> tuple[list[Path], list[str], np.ndarray]:
    """Post-process, then write the result files, CSV, BVH, preview and animation or side-by-side video
    into ``out_dir``; returns (paths written, summary lines, the output poses_3d (F, J, 3)).
    ``video``: a `video.VideoInfo` or None."""
    out_dir = Path(out_dir)
    skeleton = model.skeleton
    p = postprocess(result, skeleton, cfg.body, float(fps))
    extra = {}
    if cfg.body.consistent or cfg.body.smooth:
        extra["poses_3d_raw"] = np.asarray(result.poses_3d, np.float32)
    if p.bone_lengths is not None:
        extra["bone_lengths"] = p.bone_lengths.astype(np.float32)
    if cfg.body.world:
        extra["poses_world"] = p.world.astype(np.float32)
        extra["world_from_camera"] = p.world_from_camera.astype(np.float32)
    settings = {**settings, "fps": float(fps), "postprocessing": dataclasses.asdict(cfg.body), "summary": p.stats}
    saved = dataclasses.replace(result, poses_3d=p.poses.astype(np.float32),
                                root_trajectory=None if p.trajectory is None else p.trajectory.astype(np.float32))
    written = pipeline.save_result(out_dir, saved, inp, settings, skeleton.joint_names, extra)
    positions = p.world if cfg.body.world else p.absolute
    written.append(export.write_joints_csv(out_dir / "poses_3d.csv", positions, skeleton.joint_names, float(fps)))
    if cfg.write_bvh:
        # The BVH holds what poses_3d holds: root-relative camera-space poses (the root stays at the
        # origin), or with --world the world-frame poses that carry the root trajectory (docs/outputs.md).
        what = ("poses_world: poses_3d + root_trajectory in the world frame (floor at Y = 0)" if cfg.body.world
                else "poses_3d (root-relative, root at the origin), camera frame turned Y-up (x, -y, -z)")
        bvh_pos = p.world if cfg.body.world else export.camera_to_bvh_axes(p.poses)
        written.append(export.write_bvh(out_dir / "animation.bvh", bvh_pos, skeleton, float(fps), cfg.bvh,
                                        (f"positions: d3dp-ktp {what}",)))
    scene = visualize.Scene(inp.pixels, model.keypoint_skeleton, (int(round(inp.width)), int(round(inp.height))),
                            p.display, skeleton, float(fps), inp.filled)
    pictures, lines = _write_pictures(out_dir, scene, cfg, fps, video)
    return written + pictures, lines + summary_lines(p.stats, result, cfg.body, skeleton.root), saved.poses_3d


def _write_pictures(out_dir: Path, scene: visualize.Scene, cfg: OutputConfig, fps, video
                    ) -> tuple[list[Path], list[str]]:
    """The side-by-side video (or the animation) and the preview, reading the video once."""
    written, lines = [], []
    wanted = {int(f) for f in visualize.preview_frame_indices(scene.num_frames, cfg.figures.preview_frames)}
    kept: dict[int, np.ndarray] = {}
    if video is not None and cfg.animation:
        if video.num_frames != scene.num_frames:
            warnings.warn(f"the video has {video.num_frames} frames but the keypoints {scene.num_frames}; "
                          "frames are paired by index", stacklevel=2)
        path, count = visualize.write_side_by_side(out_dir / "video_3d.mp4", scene,
                                                   _with_video_frames(read_frames(video.path), wanted, kept), fps,
                                                   cfg.figures)
        written.append(path)
        lines.append(f"video_3d.mp4: {count} frames at {float(fps):.3f} fps")
    elif video is not None:
        for _ in _with_video_frames(read_frames(video.path), wanted, kept):
            if len(kept) == len(wanted):
                break
    elif cfg.animation:
        written += visualize.write_animation(out_dir, scene, cfg.figures, mp4=cfg.animation_mp4)
    written.append(visualize.render_preview(out_dir / "preview.png", scene, cfg.figures, kept))
    return written, lines


def summary_lines(stats: dict, result, cfg: BodyConfig, root: int) -> list[str]:
    """The printed summary: limb-length variation, uncertainty, jitter, camera above the floor."""
    before, after = stats["limb_variation_before"], stats["limb_variation_after"]
    unc = np.delete(np.asarray(result.uncertainty), root, axis=1) * 1000  # the root is 0 by construction
    lines = [f"limb length std/mean: raw max {before['max']:.3f} ({before['max_limb']}), mean {before['mean']:.3f}"
             f" -> output max {after['max']:.3f}, mean {after['mean']:.3f}"
             + (" (one length per bone)" if cfg.consistent else " (--raw)"),
             f"uncertainty (spread of the hypotheses): median {np.median(unc):.0f} mm, "
             f"5-95%: {np.percentile(unc, 5):.0f}-{np.percentile(unc, 95):.0f} mm, max {unc.max():.0f} mm",
             _jitter_line(stats["jitter_before"], stats["jitter_after"], cfg.smooth)]
    floor = stats["floor"]
    if floor["camera_height_m"] is not None:
        pitch = floor["camera_pitch_deg"]
        lines.append(f"floor (from the feet): camera {floor['camera_height_m']:.2f} m above it, pitched "
                     f"{abs(pitch):.1f} deg {'down' if pitch >= 0 else 'up'}; contact points within "
                     f"{floor['contact_rms_m'] * 100:.1f} cm"
                     + ("" if cfg.world else " (--world stores world-frame poses)"))
    return lines


def _jitter_line(before: dict, after: dict, smoothed: bool) -> str:
    text = f"jitter (mean joint acceleration): pose {before['pose_m_s2']:.1f} -> {after['pose_m_s2']:.1f} m/s^2"
    if before["root_m_s2"] is not None:
        text += f", root trajectory {before['root_m_s2']:.1f} -> {after['root_m_s2']:.1f} m/s^2"
    return text + (" (raw -> output, --smooth)" if smoothed else " (raw -> output; --smooth lowers it)")
