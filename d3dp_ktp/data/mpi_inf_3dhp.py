"""MPI-INF-3DHP as used by D3DP (docs/method.md §7): processed npz files and the official test annotations.

Files (under ``root``):

* ``data_train_3dhp_ori.npz``: ``data`` = {"S1 Seq1": [{cam_id: {data_2d (F,17,2) px,
  data_3d (F,17,3) mm camera space}}, fps], ...} for the 8 chest-height cameras.
* ``data_test_3dhp_ori.npz``: ``data`` = {"TS1": {data_2d, data_3d, valid (F,)}, ...}.
* Alternatively the official ``<dir>/TS{1..6}/annot_data.mat`` (MATLAB v7.3 = HDF5; h5py shows the
  MATLAB axes reversed): annot2 2x17x1xF px, annot3 3x17x1xF mm, valid_frame Fx1,
  activity_annotation Fx1.

Joints stay in the 3DHP "relevant" order with the pelvis (14) as root; D3DP does not remap (docs/method.md §7.2).
Training subjects are "S1".."S8" with actions "Seq1"/"Seq2" and camera index = camera id; a test
sequence "TSn" is one video with subject = action = "TSn".
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from d3dp_ktp.camera import normalized_intrinsics
from d3dp_ktp.data.dataset import (ActionFilter, CameraInfo, PoseDataset, Video, action_matches, check_subjects,
                                   finish_dataset, normalize_2d, parse_action_filter, root_relative)
from d3dp_ktp.data.io import load_npz
from d3dp_ktp.skeleton import MPI_INF_3DHP

SUBJECTS_TRAIN = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
SUBJECTS_TEST = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
TRAIN_RES = (2048, 2048)

# docs/method.md §7.3: D3DP's pixel intrinsics (pixelAspect and distortion ignored), per test sequence group:
# (res_w, res_h, f, c_x, c_y).
_STUDIO = (2048, 2048, 1500.172288, 1017.387336, 1043.031982)  # TS1-TS4, green screen studio
_OUTDOOR = (1920, 1080, 1683.983460, 939.857540, 560.140743)   # TS5-TS6, outdoor
TEST_CAMERAS = {"TS1": _STUDIO, "TS2": _STUDIO, "TS3": _STUDIO, "TS4": _STUDIO, "TS5": _OUTDOOR, "TS6": _OUTDOOR}

KEYPOINTS_SYMMETRY = (MPI_INF_3DHP.joints_left, MPI_INF_3DHP.joints_right)
MM_PER_M = 1000.0


def test_camera(seq: str) -> CameraInfo:
    """Normalised intrinsics of a test sequence, zero distortion (docs/method.md §7.3)."""
    if seq not in TEST_CAMERAS:
        raise ValueError(f"unknown MPI-INF-3DHP test sequence '{seq}'; expected one of {', '.join(TEST_CAMERAS)}")
    w, h, f, cx, cy = TEST_CAMERAS[seq]
    return CameraInfo(seq, w, h, normalized_intrinsics(f, f, cx, cy, (0, 0, 0), (0, 0), w, h))


def _video(subject, action, index, pixels_2d, mm_3d, cam, fps, valid=None, activity=None) -> Video:
    """mm camera space -> metres, pelvis-relative with the absolute pelvis kept (docs/method.md §7.1 loader)."""
    where = f"MPI-INF-3DHP {subject} {action} camera {cam.id}"
    if mm_3d.ndim != 3 or mm_3d.shape[1:] != (MPI_INF_3DHP.num_joints, 3) or pixels_2d.shape[0] != mm_3d.shape[0]:
        raise ValueError(f"{where}: expected data_3d (F, 17, 3) and data_2d (F, 17, 2), got "
                         f"{mm_3d.shape} and {pixels_2d.shape}")
    positions = root_relative(np.asarray(mm_3d, dtype=np.float32) / np.float32(MM_PER_M), MPI_INF_3DHP.root)
    return Video(subject, action, index, normalize_2d(pixels_2d, cam), positions, cam,
                 valid=None if valid is None else np.asarray(valid).reshape(-1).astype(bool),
                 activity=activity, fps=fps)


def _train_videos(path: Path, subjects: Sequence[str], filters) -> list[Video]:
    data = load_npz(path)["data"]
    check_subjects(subjects, sorted({key.split(" ", 1)[0] for key in data}), str(path))
    videos = []
    for subject in subjects:
        for key, (cams, fps) in data.items():
            subj, seq = key.split(" ", 1)
            if subj != subject or not action_matches(seq, filters):
                continue
            for cam_id in sorted(cams, key=int):
                cam = CameraInfo(str(cam_id), *TRAIN_RES)
                item = cams[cam_id]
                videos.append(_video(subject, seq, int(cam_id), item["data_2d"], item["data_3d"], cam, float(fps)))
    return videos


def _test_videos_npz(path: Path, subjects: Sequence[str], filters) -> list[Video]:
    data = load_npz(path)["data"]
    check_subjects(subjects, list(data), str(path))
    return [_video(s, s, 0, data[s]["data_2d"], data[s]["data_3d"], test_camera(s), None, data[s]["valid"])
            for s in subjects if action_matches(s, filters)]


def read_annot_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Official ``annot_data.mat`` (v7.3) -> annot2 (F,17,2) px, annot3 (F,17,3) mm, valid (F,), activity (F,)."""
    import h5py  # only needed for the official test annotations

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MPI-INF-3DHP annotation not found: {path}. It ships with the official test set "
                                "(mpi_inf_3dhp_test_set/TS*/annot_data.mat); set data.annot_mat_dir to its folder.")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("annot2", "annot3", "valid_frame") if k not in f]
        if missing:
            raise ValueError(f"{path} lacks {missing}; is it an MPI-INF-3DHP test annot_data.mat?")
        # h5py reverses MATLAB's axes: .T restores 2x17x1xF / 3x17x1xF / Fx1.
        annot2, annot3 = np.asarray(f["annot2"]).T, np.asarray(f["annot3"]).T
        out = {"annot2": annot2[:, :, 0, :].transpose(2, 1, 0).astype(np.float32),
               "annot3": annot3[:, :, 0, :].transpose(2, 1, 0).astype(np.float32),
               "valid": np.asarray(f["valid_frame"]).T.reshape(-1).astype(bool)}
        if "activity_annotation" in f:
            out["activity"] = np.asarray(f["activity_annotation"]).T.reshape(-1).astype(np.int64)
    return out


def _test_videos_mat(directory: Path, subjects: Sequence[str], filters) -> list[Video]:
    videos = []
    for s in subjects:
        if not action_matches(s, filters):
            continue
        a = read_annot_mat(directory / s / "annot_data.mat")
        videos.append(_video(s, s, 0, a["annot2"], a["annot3"], test_camera(s), None, a["valid"],
                             a.get("activity")))
    return videos


def load_mpi_inf_3dhp(root: str | Path, subjects: Sequence[str], actions: ActionFilter = "*",
                      annot_mat_dir: str | Path = "") -> PoseDataset:
    """Training subjects "S1".."S8" from the train npz, "TS1".."TS6" from the test npz (or annot_mat_dir)."""
    root = Path(root)
    unknown = [s for s in subjects if s not in SUBJECTS_TRAIN + SUBJECTS_TEST]
    if unknown:
        check_subjects(unknown, SUBJECTS_TRAIN + SUBJECTS_TEST, "MPI-INF-3DHP")
    filters = parse_action_filter(actions)
    train = [s for s in subjects if s in SUBJECTS_TRAIN]
    test = [s for s in subjects if s in SUBJECTS_TEST]
    videos: list[Video] = []
    if train:
        videos += _train_videos(_require(root / "data_train_3dhp_ori.npz"), train, filters)
    if test and annot_mat_dir:
        videos += _test_videos_mat(Path(annot_mat_dir), test, filters)
    elif test:
        videos += _test_videos_npz(_require(root / "data_test_3dhp_ori.npz"), test, filters)
    order = {s: i for i, s in enumerate(subjects)}
    videos.sort(key=lambda v: order[v.subject])
    return finish_dataset("mpi_inf_3dhp", MPI_INF_3DHP, "mpi_inf_3dhp", KEYPOINTS_SYMMETRY, videos, None,
                          str(root))


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"MPI-INF-3DHP file not found: {path}. D3DP's README links the processed "
                                f"'{path.name}'; put it in data.root (or, for the test set, set data.annot_mat_dir "
                                "to the official mpi_inf_3dhp_test_set folder).")
    return path
