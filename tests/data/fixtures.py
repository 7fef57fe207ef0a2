"""Writers of tiny synthetic files in each public format (no licensed data is used or needed).

Poses are random points around a standing person near the world origin, so every camera of the
real calibration tables sees them in front of it. 2D is the GT-style projection of the 3D with the
camera's own model (docs/method.md §6.1), converted to pixels, so loaders can be checked for consistency.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from d3dp_ktp.camera import image_coordinates, project_to_2d, project_to_2d_linear, world_to_camera
from d3dp_ktp.data import h36m, humaneva, mpi_inf_3dhp
from d3dp_ktp.data.custom import custom_camera, write_custom_dataset
from d3dp_ktp.data.io import save_npz
from d3dp_ktp.skeleton import H36M_KEPT


def random_world_poses(rng: np.random.RandomState, frames: int, joints: int) -> np.ndarray:
    """(F, J, 3) float32 world metres: a drifting root at ~0.9 m height plus joints within 0.6 m."""
    root = np.array([0.0, 0.0, 0.9]) + np.cumsum(rng.normal(0, 0.01, (frames, 1, 3)), axis=0)
    return (root + rng.uniform(-0.6, 0.6, (frames, joints, 3))).astype(np.float32)


def project_pixels(camera_space: np.ndarray, intrinsics: np.ndarray, res_w: int, res_h: int,
                   linear: bool = False) -> np.ndarray:
    """Absolute camera-space points (F, J, 3) -> pixels (F, J, 2) with the docs/method.md §5.3 model."""
    proj = project_to_2d_linear if linear else project_to_2d
    norm = proj(torch.from_numpy(camera_space.astype(np.float32)), torch.from_numpy(intrinsics)).numpy()
    return image_coordinates(norm, res_w, res_h)


def _projected_cams(world: np.ndarray, cams, extra_frames=0) -> list[np.ndarray]:
    out = []
    for cam in cams:
        px = project_pixels(world_to_camera(world, cam.orientation, cam.translation), cam.intrinsics,
                            cam.res_w, cam.res_h)
        out.append(np.concatenate([px, px[-1:].repeat(extra_frames, 0)]) if extra_frames else px)
    return out


def write_h36m(root: Path, rng: np.random.RandomState, actions=None, keypoints="gt", extra_frames=3,
               with_layout_name=False, drop_2d=None, short_2d=None) -> dict:
    """data_3d_h36m.npz (32 joints, world m) + data_2d_h36m_<kp>.npz (4 cams, px, S2 2D-only).

    ``drop_2d`` = (subject, action) removed from the 2D file; ``short_2d`` = (subject, action) whose
    camera 1 has fewer 2D than 3D frames. Returns the raw {subject: {action: world (F, 32, 3)}}.
    """
    actions = actions or {"S1": {"Directions": 12, "Walking 1": 7}, "S9": {"Directions 1": 9, "WalkDog": 6}}
    pos3d, pos2d = {}, {}
    for subject, acts in actions.items():
        pos3d[subject], pos2d[subject] = {}, {}
        for action, frames in acts.items():
            world = random_world_poses(rng, frames, 32)
            pos3d[subject][action] = world
            # GT 2D is the projection of the 17 kept joints; camera 2 gets extra trailing frames.
            cams2d = _projected_cams(world[:, list(H36M_KEPT)], h36m.h36m_cameras(subject))
            cams2d[2] = np.concatenate([cams2d[2], rng.uniform(0, 1000, (extra_frames, 17, 2)).astype(np.float32)])
            pos2d[subject][action] = cams2d
    pos2d["S2"] = {"Eating": [rng.uniform(0, 1000, (5, 17, 2)).astype(np.float32) for _ in range(4)]}
    if drop_2d:
        del pos2d[drop_2d[0]][drop_2d[1]]
    if short_2d:
        pos2d[short_2d[0]][short_2d[1]][1] = pos2d[short_2d[0]][short_2d[1]][1][:-2]
    meta = {"num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    if with_layout_name:
        meta["layout_name"] = "h36m"
    save_npz(root / "data_3d_h36m.npz", positions_3d=pos3d)
    save_npz(root / f"data_2d_h36m_{keypoints}.npz", positions_2d=pos2d, metadata=meta)
    return pos3d


def write_humaneva(root: Path, rng: np.random.RandomState, keypoints="gt") -> dict:
    """data_3d_humaneva15.npz + data_2d_humaneva15_<kp>.npz; 3 cameras, no intrinsics (pixels made linear)."""
    pos3d, pos2d = {}, {}
    focal = np.array([2.0, 2.0, 0.0, 0.0, 0, 0, 0, 0, 0], dtype=np.float32)  # any pinhole; files have none
    for subject, acts in {"Train/S1": {"Walking 1 chunk0": 8, "Jog 1 chunk0": 5},
                          "Validate/S3": {"Walking 1 chunk0": 6, "Box 1 chunk0": 4}}.items():
        pos3d[subject], pos2d[subject] = {}, {}
        for action, frames in acts.items():
            world = random_world_poses(rng, frames, 15)
            pos3d[subject][action] = world
            pos2d[subject][action] = [
                project_pixels(world_to_camera(world, c.orientation, c.translation), focal, 640, 480, linear=True)
                for c in humaneva.humaneva_cameras(subject)]
    meta = {"layout_name": "humaneva15", "num_joints": 15,
            "keypoints_symmetry": [[2, 3, 4, 8, 9, 10], [5, 6, 7, 11, 12, 13]]}
    save_npz(root / "data_3d_humaneva15.npz", positions_3d=pos3d)
    save_npz(root / f"data_2d_humaneva15_{keypoints}.npz", positions_2d=pos2d, metadata=meta)
    return pos3d


def mpi_test_sequence(rng: np.random.RandomState, seq: str, frames: int) -> dict:
    """One TS sequence: data_3d (F,17,3) mm camera space, data_2d (F,17,2) px by linear projection, valid."""
    cam = mpi_inf_3dhp.test_camera(seq)
    mm = (random_world_poses(rng, frames, 17) - np.array([0, 0.9, -4.0], np.float32)) * 1000  # ~4 m in front
    px = project_pixels(mm / 1000, cam.intrinsics, cam.res_w, cam.res_h, linear=True)
    valid = np.ones(frames, dtype=np.float64)
    valid[:2] = 0
    return {"data_3d": mm.astype(np.float32), "data_2d": px.astype(np.float32), "valid": valid,
            "activity": rng.randint(1, 8, frames)}


def write_3dhp_npz(root: Path, rng: np.random.RandomState) -> tuple[dict, dict]:
    """data_train_3dhp_ori.npz (S1/S2, 2 cameras) and data_test_3dhp_ori.npz (TS1, TS5)."""
    train = {}
    for key, fps in (("S1 Seq1", 25), ("S1 Seq2", 50), ("S2 Seq1", 25)):
        cams = {}
        for cam_id in ("0", "4"):
            mm = (random_world_poses(rng, 10, 17) + np.array([0, 0, 4.0], np.float32)) * 1000
            cams[cam_id] = {"data_2d": rng.uniform(0, 2048, (10, 17, 2)).astype(np.float32),
                            "data_3d": mm.astype(np.float32)}
        train[key] = [cams, fps]
    test = {s: {k: v for k, v in mpi_test_sequence(rng, s, f).items() if k != "activity"}
            for s, f in (("TS1", 11), ("TS5", 7))}
    save_npz(root / "data_train_3dhp_ori.npz", data=train)
    save_npz(root / "data_test_3dhp_ori.npz", data=test)
    return train, test


def write_annot_mat(path: Path, annot2: np.ndarray, annot3: np.ndarray, valid: np.ndarray,
                    activity: np.ndarray) -> None:
    """MATLAB v7.3 annot_data.mat: HDF5 with a 512-byte MATLAB header and column-major (reversed) axes.

    MATLAB annot2 is 2x17x1xF, so HDF5 (and h5py) store it as (F, 1, 17, 2); valid_frame Fx1 as (1, F).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("annot2", data=annot2[:, None].astype(np.float64))
        f.create_dataset("annot3", data=annot3[:, None].astype(np.float64))
        f.create_dataset("univ_annot3", data=annot3[:, None].astype(np.float64))
        f.create_dataset("valid_frame", data=valid.reshape(1, -1).astype(np.float64))
        f.create_dataset("activity_annotation", data=activity.reshape(1, -1).astype(np.float64))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fp:
        fp.write(header.ljust(116, b" "))


def custom_cameras() -> list[dict]:
    """Two cameras of the custom format: H36M S1 cams 0 and 1 extrinsics, made-up intrinsics."""
    out = []
    for i, (res_w, res_h) in enumerate(((1920, 1080), (1280, 720))):
        q, t_mm = h36m.EXTRINSICS["S1"][i]
        out.append(custom_camera(f"cam{i}", res_w, res_h, focal_length=(1000.0 + 10 * i, 1001.0),
                                 center=(res_w / 2 + 5, res_h / 2 - 3), orientation=q, translation_mm=t_mm,
                                 radial_distortion=(-0.1, 0.05, 0.0), tangential_distortion=(0.001, -0.002)))
    return out


def write_custom(root: Path, rng: np.random.RandomState, name="mocap", keypoints="gt", confidence=True):
    """A custom dataset of two subjects via write_custom_dataset; returns (world 3D, cameras)."""
    from d3dp_ktp.data.custom import camera_info

    cams = custom_cameras()
    infos = [camera_info(c, "fixture") for c in cams]
    pos3d, pos2d = {}, {}
    for subject, acts in {"A": {"walk 1": 9, "run": 5}, "B": {"walk 2": 6}}.items():
        pos3d[subject], pos2d[subject] = {}, {}
        for action, frames in acts.items():
            world = random_world_poses(rng, frames, 17)
            pos3d[subject][action] = world
            kps = _projected_cams(world, infos)
            if confidence:
                kps = [np.concatenate([k, rng.uniform(0, 1, k.shape[:2] + (1,)).astype(np.float32)], -1)
                       for k in kps]
            pos2d[subject][action] = kps
    write_custom_dataset(root, name, pos3d, {"A": cams, "B": cams}, pos2d, keypoints=keypoints, fps=30.0)
    return pos3d, cams


def rotation_matrix(q) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation matrix, written out by hand (float64)."""
    w, x, y, z = (float(v) for v in q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
