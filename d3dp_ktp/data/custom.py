"""The "custom" dataset format (our design): VideoPose3D-like npz pairs with the cameras inside.

This module is the one writer and the one reader of the format; the mocap tool and users' own
converters call :func:`write_custom_dataset`.

``data_3d_<name>.npz``

* ``positions_3d``: {subject: {action: (F, J, 3) float32 world metres}} in the layout named below
  (normally the 17-joint H36M layout).
* ``cameras``: {subject: [camera dict, ...]}; a camera dict holds ``id`` (str), ``res_w``/``res_h``
  (int px), ``focal_length`` [f_x, f_y] px, ``center`` [c_x, c_y] px, ``radial_distortion``
  [k1, k2, k3], ``tangential_distortion`` [p1, p2] (coefficients of the VideoPose3D/H36M model of
  docs/method.md §5.3, not OpenCV's), ``orientation`` [w, x, y, z] camera->world unit quaternion and
  ``translation`` [x, y, z] camera centre in world **millimetres**.
* ``metadata``: {'layout_name': 'h36m', 'num_joints': 17, 'fps': float}.

``data_2d_<name>_<keypoints>.npz``

* ``positions_2d``: {subject: {action: [per camera (F_c, J2, 2) float32 pixels]}}, optionally
  (F_c, J2, 3) with a confidence channel, which the loader drops. F_c >= F (3D frames); extra frames
  at the end are cut off.
* ``metadata``: {'layout_name', 'num_joints', 'keypoints_symmetry': [left, right]}.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from d3dp_ktp.camera import normalized_intrinsics
from d3dp_ktp.data.dataset import (ActionFilter, CameraInfo, PoseDataset, Sources, assemble_videos,
                                   finish_dataset, read_keypoint_metadata)
from d3dp_ktp.data.io import load_npz, save_npz
from d3dp_ktp.skeleton import get_skeleton

# name -> number of values, for the list-valued camera fields.
_CAMERA_VECTORS = {"focal_length": 2, "center": 2, "radial_distortion": 3, "tangential_distortion": 2,
                   "orientation": 4, "translation": 3}


def custom_files(root: str | Path, name: str, keypoints: str) -> tuple[Path, Path]:
    root = Path(root)
    return root / f"data_3d_{name}.npz", root / f"data_2d_{name}_{keypoints}.npz"


def custom_camera(id: str, res_w: int, res_h: int, focal_length, center, orientation, translation_mm,
                  radial_distortion=(0.0, 0.0, 0.0), tangential_distortion=(0.0, 0.0)) -> dict[str, Any]:
    """A camera dict of the custom format (plain Python values), validated."""
    cam = {"id": str(id), "res_w": int(res_w), "res_h": int(res_h),
           "focal_length": focal_length, "center": center, "radial_distortion": radial_distortion,
           "tangential_distortion": tangential_distortion, "orientation": orientation,
           "translation": translation_mm}
    for key in _CAMERA_VECTORS:
        cam[key] = [float(v) for v in np.asarray(cam[key], dtype=np.float64).reshape(-1)]
    camera_info(cam, "custom_camera")
    return cam


def camera_info(cam: Mapping[str, Any], where: str) -> CameraInfo:
    """Camera dict -> CameraInfo with normalised intrinsics and translation in metres."""
    missing = [k for k in ("id", "res_w", "res_h", *_CAMERA_VECTORS) if k not in cam]
    if missing:
        raise ValueError(f"{where}: camera dict lacks {missing}")
    vec = {}
    for key, size in _CAMERA_VECTORS.items():
        vec[key] = np.asarray(cam[key], dtype=np.float32).reshape(-1)
        if vec[key].shape != (size,) or not np.all(np.isfinite(vec[key])):
            raise ValueError(f"{where}: camera '{cam['id']}' {key} must be {size} finite numbers, got {cam[key]!r}")
    w, h = int(cam["res_w"]), int(cam["res_h"])
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: camera '{cam['id']}' has resolution {w}x{h}; both must be positive")
    if abs(float(np.linalg.norm(vec["orientation"])) - 1) > 1e-3:
        raise ValueError(f"{where}: camera '{cam['id']}' orientation {cam['orientation']} is not a unit quaternion")
    (fx, fy), (cx, cy) = vec["focal_length"], vec["center"]
    intr = normalized_intrinsics(fx, fy, cx, cy, vec["radial_distortion"], vec["tangential_distortion"], w, h)
    return CameraInfo(str(cam["id"]), w, h, intr, vec["orientation"], vec["translation"] / np.float32(1000))


def _check_nested(positions: Mapping, where: str, last: tuple[int, ...], num_joints: int, per_camera: bool) -> None:
    """Shapes of {subject: {action: array or [arrays]}}; ``last`` lists allowed channel counts."""
    for subject, acts in positions.items():
        for action, arrays in acts.items():
            for arr in (arrays if per_camera else [arrays]):
                arr = np.asarray(arr)
                if arr.ndim != 3 or arr.shape[1] != num_joints or arr.shape[2] not in last:
                    raise ValueError(f"{where}: {subject}/{action} must be (F, {num_joints}, "
                                     f"{' or '.join(map(str, last))}), got {arr.shape}")


def write_custom_3d(root: str | Path, name: str, positions_3d: Mapping, cameras: Mapping[str, Sequence[Mapping]],
                    fps: float, layout_name: str = "h36m") -> Path:
    """Write ``data_3d_<name>.npz``; every subject with 3D needs its camera list."""
    skeleton = get_skeleton(layout_name)
    _check_nested(positions_3d, "positions_3d", (3,), skeleton.num_joints, per_camera=False)
    for subject in positions_3d:
        if subject not in cameras or not cameras[subject]:
            raise ValueError(f"subject '{subject}' has 3D positions but no cameras")
    cams = {s: [dict(c) for c in cl] for s, cl in cameras.items()}
    for s, cl in cams.items():
        for c in cl:
            camera_info(c, f"cameras[{s}]")
            c.update({k: [float(v) for v in np.asarray(c[k]).reshape(-1)] for k in _CAMERA_VECTORS})
    pos = {s: {a: np.asarray(p, dtype=np.float32) for a, p in acts.items()} for s, acts in positions_3d.items()}
    meta = {"layout_name": layout_name, "num_joints": skeleton.num_joints, "fps": float(fps)}
    return save_npz(Path(root) / f"data_3d_{name}.npz", positions_3d=pos, cameras=cams, metadata=meta)


def write_custom_2d(root: str | Path, name: str, keypoints: str, positions_2d: Mapping, layout_name: str = "h36m",
                    keypoints_symmetry=None) -> Path:
    """Write ``data_2d_<name>_<keypoints>.npz`` (pixels; symmetry defaults to the layout's lists)."""
    skeleton = get_skeleton(layout_name)
    _check_nested(positions_2d, "positions_2d", (2, 3), skeleton.num_joints, per_camera=True)
    if keypoints_symmetry is None:
        keypoints_symmetry = (skeleton.joints_left, skeleton.joints_right)
    meta = {"layout_name": layout_name, "num_joints": skeleton.num_joints,
            "keypoints_symmetry": [[int(j) for j in side] for side in keypoints_symmetry]}
    pos = {s: {a: [np.asarray(p, dtype=np.float32) for p in cams] for a, cams in acts.items()}
           for s, acts in positions_2d.items()}
    _, path = custom_files(root, name, keypoints)
    return save_npz(path, positions_2d=pos, metadata=meta)


def write_custom_dataset(root: str | Path, name: str, positions_3d: Mapping, cameras: Mapping, positions_2d: Mapping,
                         keypoints: str = "gt", fps: float = 50.0, layout_name: str = "h36m",
                         keypoints_symmetry=None) -> tuple[Path, Path]:
    """Write both files of the custom format and return their paths (3D, 2D)."""
    for subject, acts in positions_3d.items():
        for action, pos in acts.items():
            kps = positions_2d.get(subject, {}).get(action)
            if kps is None or len(kps) != len(cameras.get(subject, ())):
                raise ValueError(f"{subject}/{action}: positions_2d needs one array per camera "
                                 f"({len(cameras.get(subject, ()))}), got {0 if kps is None else len(kps)}")
            if any(len(k) < len(pos) for k in kps):
                raise ValueError(f"{subject}/{action}: every 2D array needs at least the {len(pos)} 3D frames")
    return (write_custom_3d(root, name, positions_3d, cameras, fps, layout_name),
            write_custom_2d(root, name, keypoints, positions_2d, layout_name, keypoints_symmetry))


def custom_subjects(root: str | Path, name: str) -> list[str]:
    """The subjects of data_3d_<name>.npz in ``root``, in file order."""
    path, _ = custom_files(root, name, "")
    if not path.is_file():
        raise FileNotFoundError(f"custom dataset file not found: {path}. Produce it with "
                                "python -m d3dp_ktp.data.prepare_mocap --out DIR --name NAME")
    return list(load_npz(path)["positions_3d"])


def load_custom(root: str | Path, name: str, keypoints: str, subjects: Sequence[str],
                actions: ActionFilter = "*") -> PoseDataset:
    """Read the custom format into a PoseDataset (preprocessing of docs/method.md §6.3)."""
    path_3d, path_2d = custom_files(root, name, keypoints)
    for path in (path_3d, path_2d):
        if not path.is_file():
            raise FileNotFoundError(f"custom dataset file not found: {path}. Produce it with the mocap tool "
                                    "(d3dp_ktp.data.mocap) or d3dp_ktp.data.custom.write_custom_dataset, and set "
                                    "data.root/data.name/data.keypoints to match.")
    npz_3d = load_npz(path_3d)
    missing = [k for k in ("positions_3d", "cameras", "metadata") if k not in npz_3d]
    if missing:
        raise ValueError(f"{path_3d} lacks {missing}; see d3dp_ktp/data/custom.py for the format")
    meta = npz_3d["metadata"]
    skeleton = get_skeleton(meta.get("layout_name", "h36m"))
    if int(meta.get("num_joints", skeleton.num_joints)) != skeleton.num_joints:
        raise ValueError(f"{path_3d}: metadata num_joints {meta['num_joints']} does not match layout "
                         f"'{skeleton.name}' ({skeleton.num_joints} joints)")
    fps = float(meta["fps"]) if meta.get("fps") is not None else None
    npz_2d = load_npz(path_2d)
    layout, symmetry = read_keypoint_metadata(npz_2d, path_2d, default_layout=skeleton.name)
    cameras = {s: tuple(camera_info(c, f"{path_3d} cameras[{s}]") for c in npz_3d["cameras"][s])
               for s in subjects if s in npz_3d["cameras"]}
    src = Sources({s: a for s, a in npz_3d["positions_3d"].items() if s in subjects}, npz_2d["positions_2d"],
                  cameras, skeleton.num_joints, str(path_3d), str(path_2d))
    videos = assemble_videos(src, subjects, actions, skeleton.root, fps)
    return finish_dataset(name, skeleton, layout, symmetry, videos, fps, str(path_2d))
