"""Write synthetic scenes in the public detector formats, exactly as their documentation lays them out.

* AlphaPose ``docs/output.md``: one JSON list, per person per image {image_id, category_id, keypoints
  [x, y, c] * K, score, box [x, y, w, h], idx}.
* OpenPose ``doc/02_output.md``: one ``<name>_<12 digits>_keypoints.json`` per frame, {version, people:
  [{person_id, pose_keypoints_2d, face_keypoints_2d, hand_*_keypoints_2d, *_3d}]}, missing = 0, 0, 0.
* MMPose ``MMPoseInferencer`` ``pred_out_dir`` for a video: [{frame_id, instances: [{keypoints [[x, y]],
  keypoint_scores, bbox [[x1, y1, x2, y2]], bbox_score}]}].
* Detectron2 npz of VideoPose3D ``inference/infer_video_d2.py``: boxes[i] = [[], (N, 5)], keypoints[i] =
  [[], (N, 4, 17) x, y, logit, prob], segments[i] = None, metadata = {w, h} (object arrays).
* VideoPose3D custom npz of ``data/prepare_data_2d_custom.py``: positions_2d[video]['custom'] = [(F, 17, 2)].

A scene is a list of people, each {'points': {name: (F, 2) px}, 'present': (F,) bool, 'id': int}, the
names those of tests/inference/conftest.py BODY_TEMPLATE.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from d3dp_ktp.data.io import save_npz
from d3dp_ktp.inference.layouts import BODY25_NAMES, COCO18_NAMES, COCO_NAMES, HALPE26_NAMES

from .conftest import HEIGHT, WIDTH, body_points, h36m_from_points, project_px

_OPENPOSE_TO_NAME = {"Nose": "nose", "Neck": "neck", "MidHip": "hip", "REye": "right_eye", "LEye": "left_eye",
                     "REar": "right_ear", "LEar": "left_ear", "LBigToe": "left_big_toe", "LSmallToe": "left_small_toe",
                     "LHeel": "left_heel", "RBigToe": "right_big_toe", "RSmallToe": "right_small_toe",
                     "RHeel": "right_heel"}
for _side, _word in (("L", "left"), ("R", "right")):
    for _part in ("Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"):
        _OPENPOSE_TO_NAME[_side + _part] = f"{_word}_{_part.lower()}"


def person(rng, frames: int, pid: int, root=(0.1, 0.2, 4.0), velocity=(0, 0, 0), scale=1.0, present=None) -> dict:
    pts3d = body_points(rng, frames, root, velocity, scale)
    pts = {n: project_px(p[:, None])[:, 0] for n, p in pts3d.items()}
    return {"points": pts, "present": np.ones(frames, bool) if present is None else np.asarray(present), "id": pid}


def crossing_scene(frames: int = 40, seed: int = 0, hide: int = 4) -> list[dict]:
    """Person 7 walks left to right 4 m away, person 3 (a little smaller, 4.2 m) right to left, hidden behind 7
    for ``hide`` frames in the middle, where their paths cross in the image."""
    rng = np.random.RandomState(seed)
    hidden = np.ones(frames, bool)
    hidden[frames // 2 - hide // 2: frames // 2 + (hide + 1) // 2] = False
    a = person(rng, frames, 7, (-1.0, 0.1, 4.0), (2.0 / frames, 0, 0))
    b = person(rng, frames, 3, (1.05, 0.1, 4.2), (-2.1 / frames, 0, 0), scale=0.97, present=hidden)
    return [a, b]


def layout_points(points: dict, layout: str) -> np.ndarray:
    """Named points (F, D) -> (F, J, D) in a detector layout."""
    if layout == "h36m":
        return h36m_from_points(points)
    names = {"coco": COCO_NAMES, "halpe26": HALPE26_NAMES, "halpe136": HALPE26_NAMES, "wholebody133": COCO_NAMES,
             "body25": [_OPENPOSE_TO_NAME[n] for n in BODY25_NAMES],
             "coco18": [_OPENPOSE_TO_NAME[n] for n in COCO18_NAMES]}[layout]
    out = np.stack([points[n] for n in names], axis=1)
    if layout in ("halpe136", "wholebody133"):   # face and hand points: around the nose and the wrists
        extra = 136 - 26 if layout == "halpe136" else 133 - 17
        near = np.stack([points["nose"]] * (extra // 2) + [points["left_wrist"]] * (extra - extra // 2), axis=1)
        out = np.concatenate([out, near + 3.0], axis=1)
    return out


def keypoints_with_scores(p: dict, layout: str, score: float = 0.9) -> np.ndarray:
    xy = layout_points(p["points"], layout)
    return np.concatenate([xy, np.full(xy.shape[:2] + (1,), score)], axis=-1)   # (F, J, 3)


def _box(kp: np.ndarray) -> list[float]:
    lo, hi = kp[:, :2].min(0), kp[:, :2].max(0)
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def write_alphapose(path: Path, scene: list[dict], layout: str = "coco", ids: bool = True,
                    skip_frames=(), image=lambda f: f"{f}.jpg") -> Path:
    results = []
    frames = len(scene[0]["present"])
    kps = [keypoints_with_scores(p, layout) for p in scene]
    for f in range(frames):
        if f in skip_frames:
            continue
        for k in np.random.RandomState(f).permutation(len(scene)):   # no order of people within a frame
            if scene[k]["present"][f]:
                det = {"image_id": image(f), "category_id": 1, "keypoints": kps[k][f].reshape(-1).tolist(),
                       "score": 2.5, "box": _box(kps[k][f])}
                if ids:
                    det["idx"] = scene[k]["id"]
                results.append(det)
    path.write_text(json.dumps(results))
    return path


def write_openpose(folder: Path, scene: list[dict], layout: str = "body25", name: str = "clip") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    kps = [keypoints_with_scores(p, layout) for p in scene]
    for f in range(len(scene[0]["present"])):
        people = []
        for k in np.random.RandomState(f).permutation(len(scene)):
            if scene[k]["present"][f]:
                kp = kps[k][f].copy()
                people.append({"person_id": [-1], "pose_keypoints_2d": kp.reshape(-1).tolist(),
                               "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                               "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
                               "hand_right_keypoints_3d": []})
        (folder / f"{name}_{f:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return folder


def write_mmpose(path: Path, scene: list[dict], layout: str = "coco") -> Path:
    kps = [keypoints_with_scores(p, layout) for p in scene]
    out = []
    for f in range(len(scene[0]["present"])):
        inst = []
        for k in range(len(scene)):
            if scene[k]["present"][f]:
                x, y, w, h = _box(kps[k][f])
                inst.append({"keypoints": kps[k][f, :, :2].tolist(), "keypoint_scores": kps[k][f, :, 2].tolist(),
                             "bbox": [[x, y, x + w, y + h]], "bbox_score": 0.95})
        out.append({"frame_id": f, "instances": inst})
    path.write_text(json.dumps(out, indent=2))
    return path


def write_detectron2(path: Path, scene: list[dict]) -> Path:
    kps = [keypoints_with_scores(p, "coco") for p in scene]
    frames = len(scene[0]["present"])
    boxes, keyps = np.empty((frames, 2), dtype=object), np.empty((frames, 2), dtype=object)
    for f in range(frames):
        here = [k for k in range(len(scene)) if scene[k]["present"][f]]
        boxes[f, 0], keyps[f, 0] = [], []
        if not here:
            boxes[f, 1], keyps[f, 1] = [], []
            continue
        b = np.array([[*(_box(kps[k][f])[:2]), _box(kps[k][f])[0] + _box(kps[k][f])[2],
                       _box(kps[k][f])[1] + _box(kps[k][f])[3], 0.99] for k in here], dtype=np.float32)
        rows = [np.stack([kps[k][f, :, 0], kps[k][f, :, 1], np.zeros(17), kps[k][f, :, 2]]) for k in here]
        boxes[f, 1], keyps[f, 1] = b, np.stack(rows).astype(np.float32)            # (N, 4, 17)
    segments = np.empty(frames, dtype=object)
    np.savez_compressed(path, boxes=boxes, segments=segments, keypoints=keyps,
                        metadata=np.array({"w": WIDTH, "h": HEIGHT}, dtype=object))
    return path


def write_videopose3d(path: Path, videos: dict[str, np.ndarray]) -> Path:
    """positions_2d[video]['custom'] = [(F, 17, 2)], metadata as prepare_data_2d_custom.py writes it."""
    meta = {"layout_name": "coco", "num_joints": 17,
            "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
            "video_metadata": {v: {"w": WIDTH, "h": HEIGHT} for v in videos}}
    save_npz(path, positions_2d={v: {"custom": [kp.astype(np.float32)]} for v, kp in videos.items()}, metadata=meta)
    return path
