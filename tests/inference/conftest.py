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


def camera_poses(rng: np.random.RandomState, frames: int) -> np.ndarray:
    """(F, 17, 3) camera-space metres: a body-sized point cloud ~4 m in front of the camera."""
    root = np.array([0.1, 0.2, 4.0]) + np.cumsum(rng.normal(0, 0.01, (frames, 1, 3)), axis=0)
    return (root + rng.uniform(-0.5, 0.5, (frames, 17, 3))).astype(np.float32)


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
