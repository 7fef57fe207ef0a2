"""Skeleton tables, graph adjacencies and the left/right flip (docs/method.md §1).

All functions are pure. Shape legend: J joints, T frames, C coordinates (2 or 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Skeleton:
    """A joint layout: parents (root = -1), names and mirror-symmetric joint lists."""
    name: str
    parents: tuple[int, ...]
    joint_names: tuple[str, ...]
    joints_left: tuple[int, ...]
    joints_right: tuple[int, ...]
    root: int

    @property
    def num_joints(self) -> int:
        return len(self.parents)


# --- Human3.6M: 32-joint mocap skeleton reduced to 17 joints (docs/method.md §1.1) ---------------
H36M_32_PARENTS = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20,
                   19, 22, 12, 24, 25, 26, 27, 28, 27, 30)
H36M_32_LEFT = (6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23)
H36M_32_RIGHT = (1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31)
H36M_REMOVED = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
H36M_KEPT = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


def remove_joints(parents, left, right, removed):
    """VideoPose3D's joint-removal rule; returns (parents, left, right) re-indexed."""
    parents = list(parents)
    removed = set(removed)
    valid = [j for j in range(len(parents)) if j not in removed]
    for j in range(len(parents)):
        while parents[j] in removed:
            parents[j] = parents[parents[j]]
    shift = [sum(1 for r in removed if r < j) for j in range(len(parents))]
    new_parents = tuple(parents[j] - shift[parents[j]] if parents[j] >= 0 else -1 for j in valid)
    keep = lambda side: tuple(j - shift[j] for j in side if j not in removed)  # noqa: E731
    return new_parents, keep(left), keep(right)


H36M = Skeleton(
    name="h36m",
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    joint_names=("Hip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax",
                 "Neck", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist"),
    joints_left=(4, 5, 6, 11, 12, 13),
    joints_right=(1, 2, 3, 14, 15, 16),
    root=0,
)

HUMANEVA15 = Skeleton(
    name="humaneva15",
    parents=(-1, 0, 1, 2, 3, 1, 5, 6, 0, 8, 9, 0, 11, 12, 1),
    joint_names=("Pelvis", "Thorax", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow",
                 "RWrist", "LHip", "LKnee", "LAnkle", "RHip", "RKnee", "RAnkle", "Head"),
    joints_left=(2, 3, 4, 8, 9, 10),
    joints_right=(5, 6, 7, 11, 12, 13),
    root=0,
)

# MPI-INF-3DHP "relevant" 17-joint order (docs/method.md §7.2); parents are our choice (docs/method.md §1.4).
MPI_INF_3DHP = Skeleton(
    name="mpi_inf_3dhp",
    parents=(1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    joint_names=("head_top", "neck", "right_shoulder", "right_elbow", "right_wrist",
                 "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
                 "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis", "spine", "head"),
    joints_left=(5, 6, 7, 11, 12, 13),
    joints_right=(2, 3, 4, 8, 9, 10),
    root=14,
)

# COCO-17 keypoints (2D detectors). Parents are only used for drawing (our choice).
COCO = Skeleton(
    name="coco",
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    joint_names=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                 "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                 "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
    joints_left=(1, 3, 5, 7, 9, 11, 13, 15),
    joints_right=(2, 4, 6, 8, 10, 12, 14, 16),
    root=0,
)

SKELETONS = {s.name: s for s in (H36M, HUMANEVA15, MPI_INF_3DHP, COCO)}


def get_skeleton(name: str) -> Skeleton:
    """Look a layout up by name; unknown names list the known ones."""
    if name not in SKELETONS:
        raise ValueError(f"unknown skeleton layout '{name}'; known layouts: {', '.join(SKELETONS)}")
    return SKELETONS[name]


def adjacency_from_parents(parents) -> torch.Tensor:
    """Row-normalised bone adjacency with diagonal 1 (docs/method.md §1.2); (J, J) float32, not symmetric."""
    n = len(parents)
    adj = np.zeros((n, n), dtype=np.float32)
    for i, p in enumerate(parents):
        if p >= 0:
            adj[i, p] = 1.0
    mask = (adj.T > adj).astype(np.float32)
    adj = adj + adj.T * mask - adj * mask  # official symmetrisation rule
    rowsum = adj.sum(1)
    inv = np.where(rowsum > 0, 1.0 / np.where(rowsum > 0, rowsum, 1.0), 0.0).astype(np.float32)
    adj = adj * inv[:, None]
    np.fill_diagonal(adj, 1.0)
    return torch.from_numpy(adj)


def spatial_adjacency(skeleton: Skeleton) -> torch.Tensor:
    """A_N of docs/method.md §1.2 for a layout; (J, J)."""
    return adjacency_from_parents(skeleton.parents)


def temporal_adjacency(num_frames: int) -> torch.Tensor:
    """A_T of docs/method.md §1.3: a chain over frames; (T, T)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return adjacency_from_parents([f - 1 for f in range(num_frames)])


def flip_pose(x, joints_left, joints_right):
    """Mirror poses: negate x and swap left/right joints (docs/method.md §1.1).

    x: (..., J, C) numpy array or torch tensor; returns a new array of the same type.
    The flip is an involution: flip_pose(flip_pose(x)) == x.
    """
    left, right = list(joints_left), list(joints_right)
    if x.shape[-2] <= max(left + right):
        raise ValueError(f"flip lists need at least {max(left + right) + 1} joints, got shape {tuple(x.shape)}")
    out = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    out[..., 0] = -out[..., 0]
    out[..., left + right, :] = out[..., right + left, :]
    return out
