"""Tiny generated datasets, stub predictors and VideoPose3D-format files for the evaluation tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from d3dp_ktp.camera import project_to_2d
from d3dp_ktp.data.dataset import PoseDataset, Video
from d3dp_ktp.data.h36m import KEYPOINTS_SYMMETRY, h36m_cameras
from d3dp_ktp.data.io import save_npz
from d3dp_ktp.data.windows import eval_windows
from d3dp_ktp.skeleton import H36M, Skeleton

CAMERA = h36m_cameras("S9")[0]


def random_motion(frames: int, joints: int, seed: int, depth: float = 5.0) -> np.ndarray:
    """(F, J, 3) camera-space metres in VideoPose3D convention: root column = absolute trajectory,
    other joints root-relative."""
    rng = np.random.default_rng(seed)
    rel = rng.uniform(-0.4, 0.4, size=(joints, 3)) + 0.02 * rng.standard_normal((frames, joints, 3))
    root = np.array([0.1, 0.2, depth]) + 0.01 * np.cumsum(rng.standard_normal((frames, 3)), axis=0)
    rel[:, 0] = root
    return rel.astype(np.float32)


def absolute(positions: np.ndarray, root: int = 0) -> np.ndarray:
    out = positions.copy()
    others = [j for j in range(out.shape[1]) if j != root]
    out[:, others] += out[:, root:root + 1]
    return out


def make_video(subject: str, action: str, frames: int, seed: int, camera_index: int = 0) -> Video:
    """An H36M-layout video whose 2D is the exact projection of its 3D (so GT reprojects perfectly)."""
    pos = random_motion(frames, 17, seed)
    x2d = project_to_2d(torch.from_numpy(absolute(pos)), torch.from_numpy(CAMERA.intrinsics)).numpy()
    return Video(subject, action, camera_index, x2d.astype(np.float32), pos, CAMERA)


def make_dataset(videos, name: str = "h36m") -> PoseDataset:
    return PoseDataset(name, H36M, "h36m", KEYPOINTS_SYMMETRY, tuple(videos))


class StubModel:
    """Same interface as D3DP.sample: returns the GT window for every step and hypothesis, plus
    ``perturb(video, window_index) -> (K, H, T, J, 3)``-broadcastable offsets (metres).

    The GT is found by looking the input 2D window up, so the stub never sees what evaluate() holds.
    """

    def __init__(self, dataset: PoseDataset, num_frames: int, perturb=None, skeleton: Skeleton | None = None):
        self.skeleton = skeleton or dataset.skeleton
        self.keypoint_skeleton = self.skeleton
        self.num_frames = num_frames
        self.perturb = perturb
        self.calls: list[int] = []
        self.lookup = {}
        for video in dataset.videos:
            x2d = eval_windows(video.keypoints_2d, num_frames).astype(np.float32)
            y = eval_windows(video.positions_3d, num_frames)
            for i in range(len(x2d)):
                self.lookup[x2d[i].tobytes()] = (video, i, torch.from_numpy(np.array(y[i])))

    def sample(self, x2d, num_hypotheses, num_steps, eta, flip, generator):
        self.calls.append(x2d.shape[0])
        out = []
        for window in x2d.cpu():
            video, i, y = self.lookup[window.numpy().astype(np.float32).tobytes()]
            y = y.clone()
            y[:, self.skeleton.root] = 0
            p = y.expand(num_steps, num_hypotheses, *y.shape).clone()
            if self.perturb is not None:
                p = p + torch.as_tensor(self.perturb(video, i), dtype=p.dtype)
            out.append(p)
        return torch.stack(out)


def x_offset(values_m, joints: int = 17, root: int = 0) -> torch.Tensor:
    """Offsets (..., T) metres along x on every non-root joint -> (..., T, J, 3)."""
    v = torch.as_tensor(values_m, dtype=torch.float32)
    out = torch.zeros(*v.shape, joints, 3)
    mask = torch.ones(joints, dtype=torch.bool)
    mask[root] = False
    out[..., mask, 0] = v[..., None]
    return out


# --- files in the datasets' on-disk formats ----------------------------------------------------

def write_h36m(root: Path, subjects=("S9", "S11"), keypoints: str = "gt", frames: int = 8) -> None:
    """data_3d_h36m.npz (32 world joints, metres) and data_2d_h36m_<kp>.npz (4 cameras, pixels)."""
    rng = np.random.default_rng(0)
    pos3d, pos2d = {}, {}
    for s in subjects:
        pos3d[s], pos2d[s] = {}, {}
        for a, n in (("Walking", frames), ("Eating 1", frames + 3)):
            pos3d[s][a] = (rng.uniform(-0.5, 0.5, (n, 32, 3)) + [0, 0, 1]).astype(np.float32)
            pos2d[s][a] = [rng.uniform(0, 1000, (n + 2, 17, 2)).astype(np.float32) for _ in range(4)]
    save_npz(root / "data_3d_h36m.npz", positions_3d=pos3d)
    save_npz(root / f"data_2d_h36m_{keypoints}.npz", positions_2d=pos2d,
             metadata={"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13],
                                                                                      [1, 2, 3, 14, 15, 16]]})


def write_humaneva(root: Path, keypoints: str = "gt", frames: int = 15) -> None:
    rng = np.random.default_rng(1)
    pos3d, pos2d = {}, {}
    for s in ("Validate/S1", "Validate/S2"):
        pos3d[s], pos2d[s] = {}, {}
        for a in ("Walking 1 chunk0", "Jog 1 chunk0"):
            pos3d[s][a] = (rng.uniform(-0.5, 0.5, (frames, 15, 3)) + [0, 0, 1]).astype(np.float32)
            pos2d[s][a] = [rng.uniform(0, 640, (frames, 15, 2)).astype(np.float32) for _ in range(3)]
    save_npz(root / "data_3d_humaneva15.npz", positions_3d=pos3d)
    save_npz(root / f"data_2d_humaneva15_{keypoints}.npz", positions_2d=pos2d,
             metadata={"layout_name": "humaneva15", "num_joints": 15,
                       "keypoints_symmetry": [[2, 3, 4, 8, 9, 10], [5, 6, 7, 11, 12, 13]]})


def mpi_sequence(seq: str, frames: int, seed: int) -> dict:
    """One 3DHP test sequence in mm/pixels, 2D = projection of 3D with D3DP's intrinsics."""
    from d3dp_ktp.data.mpi_inf_3dhp import TEST_CAMERAS
    w, h, f, cx, cy = TEST_CAMERAS[seq]
    rng = np.random.default_rng(seed)
    pelvis = np.array([50.0, 100.0, 4000.0]) + np.cumsum(5 * rng.standard_normal((frames, 3)), axis=0)
    data_3d = pelvis[:, None] + rng.uniform(-400, 400, (17, 3)) + 10 * rng.standard_normal((frames, 17, 3))
    data_3d[:, 14] = pelvis
    data_2d = np.stack([f * data_3d[..., 0] / data_3d[..., 2] + cx, f * data_3d[..., 1] / data_3d[..., 2] + cy], -1)
    valid = np.ones(frames, dtype=np.float64)
    valid[1::4] = 0
    activity = rng.integers(1, 8, frames)
    return {"data_2d": data_2d.astype(np.float32), "data_3d": data_3d.astype(np.float32), "valid": valid,
            "activity": activity}


def write_mpi_inf_3dhp(root: Path, sequences: dict, annot_dir: Path | None = None) -> None:
    """D3DP's data_test_3dhp_ori.npz and (optionally) the official TS*/annot_data.mat (HDF5, MATLAB axes)."""
    save_npz(root / "data_test_3dhp_ori.npz",
             data={s: {k: v for k, v in d.items() if k != "activity"} for s, d in sequences.items()})
    if annot_dir is None:
        return
    import h5py
    for s, d in sequences.items():
        (annot_dir / s).mkdir(parents=True, exist_ok=True)
        with h5py.File(annot_dir / s / "annot_data.mat", "w") as f:
            # MATLAB 2x17x1xF / 3x17x1xF / Fx1 appear reversed in HDF5: (F, 1, 17, 2) etc.
            f["annot2"] = d["data_2d"][:, None].astype(np.float64)
            f["annot3"] = d["data_3d"][:, None].astype(np.float64)
            f["valid_frame"] = d["valid"][None].astype(np.float64)
            f["activity_annotation"] = d["activity"][None].astype(np.float64)
