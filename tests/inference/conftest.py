"""Shared fixtures for the inference tests: a tiny random D3DP checkpoint and synthetic demo files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from d3dp_ktp.checkpoints import save_checkpoint
from d3dp_ktp.diffusion import DiffusionConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig

TINY_T = 9
WIDTH, HEIGHT = 1000, 800
FOCAL = 1150.0  # = the pipeline's default 1.15 x width


def tiny_model(seed: int = 0, keypoint_layout: str = ""):
    """A random D3DP with a KTPFormer denoiser (T=9, C=16, depth 1); the global RNG is left untouched."""
    cfg = ModelConfig(num_frames=TINY_T, channels=16, depth=1, num_heads=2, drop_path_rate=0.0,
                      keypoint_layout=keypoint_layout)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_diffusion(cfg, DiffusionConfig()).eval()


# A body template in metres (x right, y down, z forward; the person faces the camera), named like
# AlphaPose's Halpe-26 keypoints, from which every detector layout is written (tests/inference/test_io_*).
BODY_TEMPLATE = {
    "nose": (0, -0.58, -0.1), "left_eye": (0.035, -0.62, -0.08), "right_eye": (-0.035, -0.62, -0.08),
    "left_ear": (0.075, -0.6, 0), "right_ear": (-0.075, -0.6, 0), "left_shoulder": (0.17, -0.45, 0),
    "right_shoulder": (-0.17, -0.45, 0), "left_elbow": (0.2, -0.2, 0), "right_elbow": (-0.2, -0.2, 0),
    "left_wrist": (0.22, 0.03, -0.02), "right_wrist": (-0.22, 0.03, -0.02), "left_hip": (0.13, 0, 0),
    "right_hip": (-0.13, 0, 0), "left_knee": (0.13, 0.45, -0.02), "right_knee": (-0.13, 0.45, -0.02),
    "left_ankle": (0.13, 0.88, 0), "right_ankle": (-0.13, 0.88, 0), "head": (0, -0.72, 0), "neck": (0, -0.47, 0),
    "hip": (0, 0, 0), "left_big_toe": (0.13, 0.9, -0.15), "right_big_toe": (-0.13, 0.9, -0.15),
    "left_small_toe": (0.17, 0.9, -0.12), "right_small_toe": (-0.17, 0.9, -0.12), "left_heel": (0.13, 0.92, 0.05),
    "right_heel": (-0.13, 0.92, 0.05),
}
# H36M joints from the named points, the way the Halpe mapping derives them (docs/inputs.md).
H36M_FROM_NAMES = ("hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                   ("neck", "hip"), "neck", "nose", "head", "left_shoulder", "left_elbow", "left_wrist",
                   "right_shoulder", "right_elbow", "right_wrist")


def body_points(rng: np.random.RandomState, frames: int, root=(0.1, 0.2, 4.0), velocity=(0.0, 0.0, 0.0),
                scale: float = 1.0) -> dict[str, np.ndarray]:
    """Named 3D keypoints {name: (F, 3)} of a person walking at ``velocity`` m/frame from ``root``,
    turning slowly, with 5 mm jitter per point."""
    t = np.arange(frames)[:, None]
    centre = np.asarray(root) + t * np.asarray(velocity) + np.cumsum(rng.normal(0, 0.005, (frames, 3)), axis=0)
    yaw = 0.3 * np.sin(t[:, 0] / 7.0 + rng.uniform(0, 6))
    rot = np.stack([np.stack([np.cos(yaw), 0 * yaw, np.sin(yaw)], -1), np.stack([0 * yaw, 1 + 0 * yaw, 0 * yaw], -1),
                    np.stack([-np.sin(yaw), 0 * yaw, np.cos(yaw)], -1)], -2)           # (F, 3, 3) about y
    return {name: centre + scale * np.einsum("fij,j->fi", rot, np.asarray(p, float)) + rng.normal(0, 0.005, (frames, 3))
            for name, p in BODY_TEMPLATE.items()}


def h36m_from_points(points: dict[str, np.ndarray]) -> np.ndarray:
    """(F, 17, D) H36M joints from named points (F, D)."""
    out = [np.mean([points[n] for n in src], 0) if isinstance(src, tuple) else points[src] for src in H36M_FROM_NAMES]
    return np.stack(out, axis=1)


def camera_poses(rng: np.random.RandomState, frames: int) -> np.ndarray:
    """(F, 17, 3) camera-space metres: a walking body ~4 m in front of the camera, H36M order."""
    return h36m_from_points(body_points(rng, frames)).astype(np.float32)


def coco_poses(rng: np.random.RandomState, frames: int) -> np.ndarray:
    """(F, 17, 3) the same kind of body in COCO order."""
    from d3dp_ktp.inference.layouts import COCO_NAMES

    points = body_points(rng, frames)
    return np.stack([points[n] for n in COCO_NAMES], axis=1).astype(np.float32)


def project_px(poses: np.ndarray, focal: float = FOCAL) -> np.ndarray:
    """Pinhole projection with the principal point at the image centre; (F, J, 3) -> (F, J, 2) px."""
    return poses[..., :2] / poses[..., 2:] * focal + np.array([WIDTH / 2, HEIGHT / 2])


def write_demo(folder: Path, frames: int = 20, seed: int = 0) -> Path:
    """A demo folder laid out like assets/demo: checkpoint/ and demo_input.npz (with poses_3d_gt)."""
    save_checkpoint(tiny_model(seed), folder / "checkpoint")
    gt = camera_poses(np.random.RandomState(seed), frames)
    np.savez(folder / "demo_input.npz", keypoints=project_px(gt).astype(np.float32), width=WIDTH, height=HEIGHT,
             layout="h36m", poses_3d_gt=gt)
    return folder


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    return write_demo(tmp_path / "demo")
