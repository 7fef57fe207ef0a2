"""HumanEva-I in VideoPose3D format (docs/method.md §8): 15 joints, 3 cameras of 640x480, no intrinsics.

Files (under ``root``), from VideoPose3D's ``data/prepare_data_humaneva.py``:

* ``data_3d_humaneva15.npz``: ``positions_3d`` = {"Train/S1": {"Walking 1 chunk0": (F, 15, 3) world m}}.
* ``data_2d_humaneva15_<gt|detectron_pt_coco>.npz``: ``positions_2d`` = {subject: {action: [3 x (F, 15, 2) px]}}
  and ``metadata`` (layout 'humaneva15', symmetry of docs/method.md §1.4).

Subjects carry a split prefix ("Train/S1", "Validate/S2", "Unlabeled/S3"); cameras depend only on
the person ("S1"). No intrinsic vector exists, so ``Video.camera`` is None (JPMA is skipped, docs/method.md §8).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from d3dp_ktp.data.dataset import (ActionFilter, CameraInfo, PoseDataset, Sources, assemble_videos,
                                   finish_dataset, read_keypoint_metadata)
from d3dp_ktp.data.io import load_npz
from d3dp_ktp.skeleton import HUMANEVA15

FPS = 60.0
RES = (640, 480)
CAMERA_IDS = ("C1", "C2", "C3")
SUBJECTS_TRAIN = ("Train/S1", "Train/S2", "Train/S3")
SUBJECTS_TEST = ("Validate/S1", "Validate/S2", "Validate/S3")

# docs/method.md §8: person -> 3 x (camera->world quaternion (w, x, y, z), camera centre in world mm). S3 shares S1's.
_S1_S3 = (((0.424207, -0.4983646, -0.5802981, 0.4847012), (4062.227, 663.2477, 1528.397)),
          ((0.6503354, -0.7481602, -0.0919284, 0.0941766), (844.8131, -3805.2092, 1504.9929)),
          ((0.0664734, -0.0690535, 0.7416416, -0.6639132), (-797.67377, 3916.3174, 1433.6602)))
EXTRINSICS = {
    "S1": _S1_S3,
    "S2": (((0.4214752, -0.4961493, -0.5838273, 0.4851187), (4112.9121, 626.4929, 1545.2988)),
           ((0.6501393, -0.7476588, -0.0954617, 0.0959808), (923.5740, -3877.9243, 1504.5518)),
           ((0.0699353, -0.0712403, 0.7421637, -0.662742), (-781.4915, 3838.8853, 1444.9929))),
    "S3": _S1_S3,
}


def humaneva_cameras(subject: str) -> tuple[CameraInfo, ...]:
    """Cameras of e.g. "Train/S1" (looked up by the last path component), t in metres."""
    person = subject.split("/")[-1]
    if person not in EXTRINSICS:
        raise ValueError(f"HumanEva subject '{subject}' is not S1, S2 or S3 (optionally with a split prefix)")
    return tuple(CameraInfo(cid, *RES, None, np.array(q, dtype=np.float32), np.array(t, dtype=np.float32) / 1000)
                 for cid, (q, t) in zip(CAMERA_IDS, EXTRINSICS[person]))


def humaneva_files(root: str | Path, keypoints: str) -> tuple[Path, Path]:
    root = Path(root)
    return root / "data_3d_humaneva15.npz", root / f"data_2d_humaneva15_{keypoints}.npz"


def load_humaneva(root: str | Path, keypoints: str, subjects: Sequence[str],
                  actions: ActionFilter = "*") -> PoseDataset:
    """Load HumanEva-I (docs/method.md §8): preprocessing of §6.3 with 15 joints and root 0."""
    path_3d, path_2d = humaneva_files(root, keypoints)
    for path in (path_3d, path_2d):
        if not path.is_file():
            raise FileNotFoundError(f"HumanEva file not found: {path}. Create it with VideoPose3D's "
                                    "data/prepare_data_humaneva.py (and prepare_data_2d_humaneva for detections), "
                                    "or point data.root at the folder holding it.")
    positions_3d = load_npz(path_3d)["positions_3d"]
    npz_2d = load_npz(path_2d)
    layout, symmetry = read_keypoint_metadata(npz_2d, path_2d, default_layout="humaneva15")
    src = Sources({s: a for s, a in positions_3d.items() if s in subjects}, npz_2d["positions_2d"],
                  {s: humaneva_cameras(s) for s in subjects}, HUMANEVA15.num_joints, str(path_3d), str(path_2d))
    videos = assemble_videos(src, subjects, actions, HUMANEVA15.root, FPS)
    return finish_dataset("humaneva", HUMANEVA15, layout, symmetry, videos, FPS, str(path_2d))
