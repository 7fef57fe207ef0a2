"""Readers of 2D detector output, picked from the file's content (docs/inputs.md lists them all).

Every reader returns `Detections`: all people of all frames, one row per detection, in pixels
(origin top-left, y down), before any tracking or cleaning. No torch here (fail-fast CLI).

Shape legend: N detections, F frames, J keypoints, C values per keypoint (2 = x, y; 3 = x, y, score).

| format (detected by)                                   | layout default      | ids          | size       |
|--------------------------------------------------------|---------------------|--------------|------------|
| AlphaPose ``alphapose-results.json`` (list of {image_id, keypoints, score, box, idx}) | by J: coco / halpe26 / halpe136 | ``idx`` | --width/--height |
| OpenPose folder of ``*_keypoints.json`` / one file ({people: [{pose_keypoints_2d}]}) | by J: body25 / coco18 | ``person_id`` >= 0 | --width/--height |
| MMPose inferencer ``--pred-out-dir`` JSON (list of {frame_id, instances: [{keypoints, keypoint_scores, bbox}]}) | by J: coco, ... | ``track_id`` | --width/--height |
| Detectron2 npz of VideoPose3D's ``infer_video_d2.py`` (boxes, keypoints, metadata) | coco | none | metadata w, h |
| VideoPose3D custom npz / our mocap 2D npz (positions_2d[subject][action] = [per camera (F, J, C)]) | metadata layout_name | one person | metadata / data_3d cameras |
| ours: npz ``keypoints`` (F, J, C) [+ width, height, layout], .npy, JSON, CSV | file's ``layout`` | one person | file's width/height |

Frame order: AlphaPose and OpenPose frames are numbered by the last number in the image/file name
(AlphaPose writes nothing for a frame without detection, so the numbers may skip); the sequence runs
from the smallest number to the largest. A detection whose keypoints are all missing is dropped.

Pickled npz members (VideoPose3D's dicts, Detectron2's per-frame object arrays of arrays) are read
with the restricted unpickler of `d3dp_ktp.data.io.load_npz`: NumPy arrays, dtypes, lists, dicts,
strings, numbers and None only; any other pickled object is refused, nothing is executed.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from d3dp_ktp.data.io import load_npz
from d3dp_ktp.inference.layouts import LAYOUTS, layouts_with

SUFFIXES = (".npz", ".npy", ".json", ".csv", ".txt")


@dataclass
class Detections:
    """All detections of a keypoint file (values as stored, pixels)."""
    path: Path
    format: str                      # human-readable name of the format
    num_frames: int                  # F
    frame: np.ndarray                # (N,) int, frame index 0..F-1 of each detection
    keypoints: np.ndarray            # (N, J, C) float64, NaN = no value
    boxes: np.ndarray                # (N, 4) x1, y1, x2, y2 px; NaN where the file has no box
    ids: np.ndarray | None = None    # (N,) int detector track ids, None when the file has none
    width: float | None = None
    height: float | None = None
    layout: str | None = None        # what the file (or its format) says
    layout_source: str = "the file"  # who says it, for messages
    first_frame: int = 0             # number of frame 0 in the file's own numbering
    sequence: str | None = None      # which sequence of a multi-sequence npz
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]


def read_detections(path: str | Path, sequence: str | None = None) -> Detections:
    """Read any supported file or OpenPose/MMPose folder (module docstring); ``sequence`` picks one
    sequence of an npz holding several."""
    path = Path(path)
    if path.is_dir():
        det = _read_folder(path)
    elif not path.is_file():
        raise FileNotFoundError(f"keypoint file not found: {path}")
    else:
        suffix = path.suffix.lower()
        readers = {".npz": _read_npz, ".npy": _read_npy, ".json": _read_json, ".csv": _read_csv, ".txt": _read_csv}
        if suffix not in readers:
            raise ValueError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(SUFFIXES)} "
                             "or an OpenPose/MMPose folder of per-frame .json files")
        det = readers[suffix](path, sequence) if suffix == ".npz" else readers[suffix](path)
    if sequence is not None and det.sequence is None:
        raise ValueError(f"--sequence applies to npz files holding several sequences; {path} is {det.format}")
    kp = det.keypoints
    if kp.ndim != 3 or kp.shape[-1] not in (2, 3):
        raise ValueError(f"{path}: keypoints must have shape (frames, 17, 2) or (frames, 17, 3) "
                         f"(x, y[, confidence]), got {(det.num_frames,) + kp.shape[1:]}")
    return det


# ----------------------------------------------------------------------------- building Detections

def _present(kp: np.ndarray) -> np.ndarray:
    """(N, J, C) -> (N,) True where some keypoint has finite x, y and a positive score."""
    ok = np.isfinite(kp[..., :2]).all(-1)
    if kp.shape[-1] == 3:
        ok &= kp[..., 2] > 0
    return ok.any(-1)


def _from_people(path: Path, fmt: str, frames: list[list[dict]], first_frame: int = 0, **kw) -> Detections:
    """Per-frame lists of {'kp': (J, C), 'box': (4,) or None, 'id': int or None} -> Detections."""
    rows = [(f, p) for f, people in enumerate(frames) for p in people]
    shapes = {p["kp"].shape for _, p in rows}
    if len(shapes) > 1:
        raise ValueError(f"{path}: detections have different keypoint shapes {sorted(shapes)}; every person "
                         "needs the same keypoints")
    shape = shapes.pop() if shapes else (0, 3)
    kp = np.stack([p["kp"] for _, p in rows]) if rows else np.zeros((0,) + shape)
    boxes = np.array([np.full(4, np.nan) if p.get("box") is None else p["box"] for _, p in rows],
                     dtype=np.float64).reshape(-1, 4)
    ids = [p.get("id") for _, p in rows]
    keep = _present(kp) if len(kp) else np.zeros(0, bool)
    id_arr = None if not rows or any(i is None for i in ids) else np.asarray(ids, dtype=np.int64)[keep]
    return Detections(path, fmt, len(frames), np.array([f for f, _ in rows], dtype=np.int64)[keep], kp[keep],
                      boxes[keep], id_arr, first_frame=first_frame, **kw)


def single_person(path: Path, fmt: str, kp: np.ndarray, **kw) -> Detections:
    """A one-person sequence (F, J, C) (NaN or score 0 = missing) -> Detections with track id 0."""
    kp = _float_array(kp, str(path))
    if kp.ndim != 3:
        raise ValueError(f"{path}: keypoints must have shape (frames, 17, 2) or (frames, 17, 3) "
                         f"(x, y[, confidence]), got {kp.shape}")
    keep = _present(kp) if kp.shape[-1] in (2, 3) else np.ones(len(kp), bool)
    n = int(keep.sum())
    return Detections(path, fmt, len(kp), np.flatnonzero(keep), kp[keep], np.full((n, 4), np.nan),
                      np.zeros(n, np.int64), **kw)


def _frame_numbers(names: list) -> list[int]:
    """The last number in each image/file name (ints are taken as they are); names without any
    number keep their order of appearance."""
    out = []
    for name in names:
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            out.append(int(name))
            continue
        found = re.findall(r"\d+", Path(str(name)).stem.replace("_keypoints", ""))
        if not found:
            order = list(dict.fromkeys(names))
            return [order.index(n) for n in names]
        out.append(int(found[-1]))
    return out


def _group_by_number(path: Path, fmt: str, names: list, people: list[dict], **kw) -> Detections:
    """Detections tagged with their image name -> frames from the smallest to the largest number."""
    numbers = _frame_numbers(names)
    first = min(numbers) if numbers else 0
    frames: list[list[dict]] = [[] for _ in range((max(numbers) - first + 1) if numbers else 0)]
    for n, person in zip(numbers, people):
        frames[n - first].append(person)
    return _from_people(path, fmt, frames, first_frame=first, **kw)


def _layout_for(num_keypoints: int, preferred: tuple[str, ...]) -> str | None:
    """The format's layout for this many keypoints: a preferred one, else the only one with that count."""
    for name in preferred:
        if LAYOUTS[name].num_keypoints == num_keypoints:
            return name
    found = layouts_with(num_keypoints)
    return found[0] if len(found) == 1 else None


def _xywh_to_xyxy(box: Any) -> np.ndarray | None:
    b = np.asarray(box, dtype=np.float64).reshape(-1) if box is not None else None
    return None if b is None or b.size < 4 else np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]])


def _xyxy(box: Any) -> np.ndarray | None:
    b = np.asarray(box, dtype=np.float64).reshape(-1) if box is not None else None
    return None if b is None or b.size < 4 else b[:4].copy()


def _track_id(value: Any) -> int | None:
    """A detector track id: an int, a float holding one, or a one-element list (AlphaPose)."""
    while isinstance(value, list) and len(value) == 1:   # AlphaPose may nest it: [[3.0]]
        value = value[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


# ----------------------------------------------------------------------------- JSON formats

def _read_json(path: Path) -> Detections:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a valid JSON keypoint file: {err}") from None
    if isinstance(data, dict) and "people" in data:
        return _openpose([path.name], [data], path, "an OpenPose JSON frame")
    if isinstance(data, dict) and data and all(isinstance(v, dict) and ("people" in v or "bodies" in v)
                                               for v in data.values()):
        # AlphaPose --format open / cmu: {image name: OpenPose frame}, 'bodies'/'joints' for cmu
        frames = [v if "people" in v else {"people": [{"pose_keypoints_2d": b.get("joints", [])} for b in v["bodies"]]}
                  for v in data.values()]
        return _openpose(list(data), frames, path, "AlphaPose results JSON (--format open/cmu)")
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if all("image_id" in d and "keypoints" in d for d in data):
            return _alphapose(data, path)
        if all("instances" in d for d in data):
            return _mmpose_video(data, path)
        if all("keypoint_scores" in d for d in data):
            return _mmpose_frames([data], path, "an MMPose prediction (one image)")
    return _read_our_json(data, path)


def _alphapose(data: list[dict], path: Path) -> Detections:
    people = []
    for i, d in enumerate(data):
        people.append({"kp": _flat_keypoints(d["keypoints"], f"{path}: detection {i}", triples=True),
                       "box": _xywh_to_xyxy(d.get("box")), "id": _track_id(d.get("idx"))})
    num_kp = people[0]["kp"].shape[0]
    layout = _layout_for(num_kp, ("coco", "halpe26", "halpe136"))
    det = _group_by_number(path, "AlphaPose results JSON", [d["image_id"] for d in data], people,
                           layout=layout, layout_source=f"AlphaPose's {num_kp}-keypoint model")
    det.ids = _valid_ids(det)
    return det


def _openpose(names: list[str], frames: list[Any], path: Path, fmt: str) -> Detections:
    people = []
    for name, frame in zip(names, frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("people"), list):
            raise ValueError(f"{path}: {name} is not an OpenPose frame (an object with a 'people' list)")
        for k, person in enumerate(frame["people"]):
            key = "pose_keypoints_2d" if "pose_keypoints_2d" in person else "pose_keypoints"
            if key not in person:
                raise ValueError(f"{path}: {name} person {k} has no 'pose_keypoints_2d'; keys {sorted(person)}")
            values = person[key]
            if not values:
                continue
            pid = _track_id(person.get("person_id"))
            people.append(({"kp": _flat_keypoints(values, f"{path}: {name} person {k}", triples=True),
                            "box": None, "id": pid if pid is not None and pid >= 0 else None}, name))
    numbers = _frame_numbers(names)
    first = min(numbers)
    frames_out: list[list[dict]] = [[] for _ in range(max(numbers) - first + 1)]
    by_name = dict(zip(names, numbers))
    for person, name in people:
        frames_out[by_name[name] - first].append(person)
    num_kp = people[0][0]["kp"].shape[0] if people else 25
    det = _from_people(path, fmt, frames_out, first_frame=first, layout=_layout_for(num_kp, ("body25", "coco18")),
                       layout_source=f"OpenPose's {num_kp}-keypoint model")
    det.ids = _valid_ids(det)
    return det


def _mmpose_instance(inst: dict, where: str) -> dict:
    if "keypoints" not in inst:
        raise ValueError(f"{where}: an MMPose instance needs 'keypoints'; keys {sorted(inst)}")
    xy = _float_array(inst["keypoints"], where)
    if xy.ndim != 2 or xy.shape[-1] not in (2, 3):
        raise ValueError(f"{where}: MMPose 'keypoints' must be a list of [x, y], got shape {xy.shape}")
    scores = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), dtype=np.float64).reshape(-1, 1)
    return {"kp": np.concatenate([xy[:, :2], scores], 1), "box": _xyxy(inst.get("bbox")),
            "id": _track_id(inst.get("track_id"))}


def _mmpose_frames(frames: list[list[dict]], path: Path, fmt: str, first: int = 0) -> Detections:
    per_frame = [[_mmpose_instance(inst, f"{path}: frame {f} instance {k}") for k, inst in enumerate(insts or [])]
                 for f, insts in enumerate(frames)]
    num_kp = next((p["kp"].shape[0] for ps in per_frame for p in ps), 17)
    det = _from_people(path, fmt, per_frame, first_frame=first, layout=_layout_for(num_kp, ("coco",)),
                       layout_source=f"MMPose's {num_kp}-keypoint model")
    det.ids = _valid_ids(det)
    return det


def _mmpose_video(data: list[dict], path: Path) -> Detections:
    numbers = [_track_id(d.get("frame_id", i)) for i, d in enumerate(data)]
    if any(n is None for n in numbers):
        numbers = list(range(len(data)))
    first = min(numbers)
    frames: list[list[dict]] = [[] for _ in range(max(numbers) - first + 1)]
    for n, d in zip(numbers, data):
        frames[n - first] += d["instances"] or []
    return _mmpose_frames(frames, path, "MMPose inferencer predictions", first)


def _valid_ids(det: Detections) -> np.ndarray | None:
    """Detector ids are identities only when every detection has one and no frame repeats one
    (AlphaPose without tracking writes the same idx for everybody), and when they are not merely
    each person's rank within its frame (0, 1, ... in every frame with several people)."""
    if det.ids is None or len(det.ids) == 0:
        return det.ids
    pairs = det.frame * (int(det.ids.max()) - int(det.ids.min()) + 1) + (det.ids - det.ids.min())
    if len(np.unique(pairs)) != len(pairs):
        return None
    counts = np.bincount(det.frame, minlength=det.num_frames)
    ranks = all(sorted(det.ids[det.frame == f].tolist()) == list(range(counts[f])) for f in np.flatnonzero(counts))
    return None if ranks and counts.max() > 1 else det.ids


def _read_folder(path: Path) -> Detections:
    files = sorted(path.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{path} is a folder without .json files; give a keypoint file or an "
                                "OpenPose --write_json / MMPose --pred-out-dir folder")
    contents = []
    for f in files:
        try:
            contents.append(json.loads(f.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{f} is not a valid JSON file: {err}") from None
    numbers = _frame_numbers([f.name for f in files])
    order = np.argsort(numbers, kind="stable")
    files, contents = [files[i] for i in order], [contents[i] for i in order]
    if all(isinstance(c, dict) and "people" in c for c in contents):
        return _openpose([f.name for f in files], contents, path, "an OpenPose JSON folder")
    if all(isinstance(c, list) for c in contents):
        first = min(numbers)
        frames: list[list[dict]] = [[] for _ in range(max(numbers) - first + 1)]
        for n, c in zip(sorted(numbers), contents):
            frames[n - first] += c
        return _mmpose_frames(frames, path, "an MMPose prediction folder", first)
    raise ValueError(f"{path}: the .json files are neither OpenPose frames ({{'people': [...]}}) nor MMPose "
                     "per-image predictions (lists of {'keypoints', 'keypoint_scores'})")


# ----------------------------------------------------------------------------- npz formats

def _read_npz(path: Path, sequence: str | None) -> Detections:
    data = load_npz(path)
    if "boxes" in data and "keypoints" in data:
        return _detectron2(data, path)
    if "keypoints" in data:
        return _read_our_npz(data, path)
    if "positions_2d" in data:
        return _read_positions_2d(data, path, sequence)
    raise ValueError(f"{path} holds no keypoints: expected a 'keypoints' array (F, 17, 2|3), VideoPose3D's "
                     f"'positions_2d' or Detectron2's 'boxes' and 'keypoints'; found keys {sorted(data)}")


def _read_our_npz(data: dict, path: Path) -> Detections:
    kp, extras = _float_array(data["keypoints"], f"{path}: keypoints"), {}
    if "poses_3d_gt" in data:
        gt = extras["poses_3d_gt"] = _float_array(data["poses_3d_gt"], f"{path}: poses_3d_gt")
        if gt.shape != (len(kp), 17, 3):
            raise ValueError(f"{path}: poses_3d_gt must have shape ({len(kp)}, 17, 3) (metres, one pose per "
                             f"keypoint frame), got {gt.shape}")
    if "fps" in data:  # the frame rate of the outputs (animation, BVH, jitter) unless --fps/--video say otherwise
        fps = _scalar(data["fps"], path, "fps")
        if not fps or fps <= 0:
            raise ValueError(f"{path}: fps must be a positive frame rate, got {data['fps']!r}")
        extras["fps"] = fps
    return single_person(path, "our keypoint npz", kp, width=_scalar(data.get("width"), path, "width"),
                         height=_scalar(data.get("height"), path, "height"),
                         layout=_layout_name(data.get("layout"), path), extras=extras)


def _detectron2(data: dict, path: Path) -> Detections:
    """VideoPose3D's infer_video_d2.py: per frame boxes[i] = [[], (N, 5) x1 y1 x2 y2 score] and
    keypoints[i] = [[], (N, 4, 17) rows x, y, logit, probability] ([[], []] without detection)."""
    boxes, kps, meta = data["boxes"], data["keypoints"], data.get("metadata")
    if len(boxes) != len(kps):
        raise ValueError(f"{path}: 'boxes' has {len(boxes)} frames but 'keypoints' {len(kps)}")
    frames = []
    for i in range(len(boxes)):
        try:
            b, k = np.asarray(boxes[i][1], dtype=np.float64), np.asarray(kps[i][1], dtype=np.float64)
        except (IndexError, TypeError, ValueError):
            raise ValueError(f"{path}: frame {i} is not Detectron2's [[], boxes] / [[], keypoints] pair") from None
        if b.size == 0 or k.size == 0:
            frames.append([])
            continue
        if k.ndim != 3 or k.shape[1] != 4 or b.ndim != 2 or len(b) != len(k):
            raise ValueError(f"{path}: frame {i} keypoints must be (N, 4, 17) with N boxes, got {k.shape}, {b.shape}")
        kp = np.stack([k[:, 0], k[:, 1], k[:, 3]], axis=-1)   # (N, 17, 3): x, y, probability
        frames.append([{"kp": kp[n], "box": b[n, :4], "id": None} for n in range(len(k))])
    size = meta if isinstance(meta, dict) else {}
    return _from_people(path, "a Detectron2 npz (VideoPose3D infer_video_d2.py)", frames,
                        width=_scalar(size.get("w"), path, "metadata w"), height=_scalar(size.get("h"), path, "metadata h"),
                        layout="coco", layout_source="Detectron2's COCO keypoint model")


def _sequences(pos: Any, path: Path) -> dict[str, tuple[str, str, int]]:
    """positions_2d -> {name: (subject, action, camera)}; VideoPose3D's custom {video: {'custom': [a]}}
    is named by the video, the rest 'subject/action' (+ '/camera' when there are several)."""
    if not isinstance(pos, dict) or not pos:
        raise ValueError(f"{path}: 'positions_2d' must be a non-empty dict subject -> action -> [per camera array]")
    out = {}
    for s, acts in pos.items():
        if not isinstance(acts, dict):
            raise ValueError(f"{path}: positions_2d['{s}'] must be a dict action -> [per camera (F, J, 2|3) array]")
        for a, cams in acts.items():
            cams = cams if isinstance(cams, (list, tuple)) else [cams]
            for c in range(len(cams)):
                if a == "custom" and len(acts) == 1 and len(cams) == 1:
                    name = str(s)
                else:
                    name = f"{s}/{a}" + (f"/{c}" if len(cams) > 1 else "")
                out[name] = (s, a, c)
    return out


def pick_sequence(names: list[str], wanted: str | None, path: Path) -> str:
    """The one sequence meant: the only one, the exact name, or the only one starting with 'wanted/'."""
    listing = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
    if wanted is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(f"{path} holds {len(names)} sequences; choose one with --sequence NAME, one of: {listing}")
    if wanted in names:
        return wanted
    matches = [n for n in names if n.startswith(wanted + "/")]
    if len(matches) == 1:
        return matches[0]
    what = f"'{wanted}' matches {len(matches)} sequences" if matches else f"no sequence '{wanted}'"
    raise ValueError(f"{path}: {what}; pass --sequence with one of: {listing}")


def _read_positions_2d(data: dict, path: Path, sequence: str | None) -> Detections:
    pos, meta = data["positions_2d"], data.get("metadata") or {}
    seqs = _sequences(pos, path)
    name = pick_sequence(list(seqs), sequence, path)
    s, a, c = seqs[name]
    cams = pos[s][a] if isinstance(pos[s][a], (list, tuple)) else [pos[s][a]]
    meta = meta if isinstance(meta, dict) else {}
    size = (meta.get("video_metadata") or {}).get(s) or {}
    width, height = size.get("w"), size.get("h")
    if width is None:
        width, height = _camera_size(path, s, c)
    custom = a == "custom" and name == str(s)
    det = single_person(path, "a VideoPose3D custom npz" if custom else "a mocap 2D npz (data_2d_<name>_<kp>)",
                        cams[c], width=_scalar(width, path, "video_metadata w"),
                        height=_scalar(height, path, "video_metadata h"),
                        layout=_layout_name(meta.get("layout_name"), path))
    det.sequence, det.extras["sequence"] = name, name
    return det


def _camera_size(path: Path, subject: str, camera: int) -> tuple[Any, Any]:
    """Image size of a mocap 2D file's camera from the sibling data_3d_<name>.npz, if there is one."""
    m = re.fullmatch(r"data_2d_(.+)_[^_]+\.npz", path.name)
    sibling = path.with_name(f"data_3d_{m.group(1)}.npz") if m else None
    if sibling is None or not sibling.is_file():
        return None, None
    try:
        cam = load_npz(sibling)["cameras"][subject][camera]
        return cam["res_w"], cam["res_h"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None, None


# ----------------------------------------------------------------------------- our own formats

def _read_npy(path: Path) -> Detections:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy array of keypoints: {err}") from None
    return single_person(path, "a .npy keypoint array", arr)


def _read_our_json(data: Any, path: Path) -> Detections:
    width = height = layout = None
    if isinstance(data, dict):
        key = "frames" if "frames" in data else "keypoints" if "keypoints" in data else None
        if key is None:
            raise ValueError(f"{path}: a JSON object must hold the per-frame keypoints under 'frames' (or be an "
                             f"OpenPose frame with 'people'); found keys {sorted(data)}")
        width, height = _scalar(data.get("width"), path, "width"), _scalar(data.get("height"), path, "height")
        layout, data = _layout_name(data.get("layout"), path), data[key]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of frames, got {type(data).__name__}")
    if data and all(isinstance(v, (int, float)) for v in data):
        data = [data]  # a single frame given as a flat [x0, y0, (s0), ...] list
    frames = [_json_frame(frame, path, i) for i, frame in enumerate(data)]
    return single_person(path, "our keypoint JSON", _stack_frames(frames, path), width=width, height=height,
                         layout=layout)


def _json_frame(frame: Any, path: Path, index: int) -> np.ndarray | None:
    """One JSON frame -> (J, C) array, or None for a frame without detection."""
    if isinstance(frame, dict):
        if "keypoints" not in frame:
            raise ValueError(f"{path}: frame {index} is an object without 'keypoints'; keys {sorted(frame)}")
        frame = frame["keypoints"]
    if frame is None or (isinstance(frame, list) and not frame):
        return None
    if not isinstance(frame, list):
        raise ValueError(f"{path}: frame {index} must be a list of keypoints, got {type(frame).__name__}")
    if all(isinstance(v, list) for v in frame):
        values = [[math.nan if x is None else x for x in kp] for kp in frame]
        if len({len(kp) for kp in values}) != 1:
            raise ValueError(f"{path}: frame {index} mixes keypoints of different lengths")
        return _float_array(values, f"{path}: frame {index}")
    return _flat_keypoints(frame, f"{path}: frame {index}")


def _read_csv(path: Path) -> Detections:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text CSV file of keypoints (one row per frame: x0,y0,(s0),x1,...)") from None
    rows = [r for r in csv.reader(line for line in lines if line.strip() and not line.lstrip().startswith("#"))]
    if rows and not _numeric_row(rows[0]):
        rows = rows[1:]  # a header row
    frames = []
    for i, row in enumerate(rows):
        if not _numeric_row(row):
            raise ValueError(f"{path}: row {i + 1} is not numbers: {','.join(row)[:80]}")
        values = [_cell(c) for c in row]
        frames.append(None if all(math.isnan(v) for v in values) else _flat_keypoints(values, f"{path}: row {i + 1}"))
    return single_person(path, "a keypoint CSV", _stack_frames(frames, path))


def _numeric_row(row: list[str]) -> bool:
    try:
        [_cell(c) for c in row]
    except ValueError:
        return False
    return True


def _cell(text: str) -> float:
    text = text.strip()
    return math.nan if text == "" else float(text)


def _flat_keypoints(values: list, where: str, num_keypoints: int = 17, triples: bool = False) -> np.ndarray:
    """[x0, y0, (s0), x1, ...] -> (J, C). Detector formats are always triples; ours: 34 values are
    pairs, 51 triples, otherwise triples when the count divides by 3, else pairs."""
    if not isinstance(values, list):
        raise ValueError(f"{where}: keypoints must be a flat list [x0, y0, s0, x1, ...], got {type(values).__name__}")
    values = [math.nan if x is None else x for x in values]
    n = len(values)
    c = 3 if triples else 2 if n == 2 * num_keypoints else 3 if n == 3 * num_keypoints else 3 if n % 3 == 0 else 2
    if n % c:
        raise ValueError(f"{where}: {n} values cannot be (x, y) pairs or (x, y, score) triples")
    return _float_array(values, where).reshape(n // c, c)


def _stack_frames(frames: list[np.ndarray | None], path: Path) -> np.ndarray:
    """Per-frame (J, C) arrays (None = no detection) -> (F, J, C) with NaN for empty frames."""
    shapes = {f.shape for f in frames if f is not None}
    if len(shapes) > 1:
        raise ValueError(f"{path}: frames have different shapes {sorted(shapes)} (keypoints x values); "
                         "every frame needs the same keypoints, each with the same number of values")
    if not shapes:
        return np.full((len(frames), 0, 2), np.nan)  # no detection at all; reported when cleaning
    (shape,) = shapes
    return np.stack([np.full(shape, np.nan) if f is None else f for f in frames])


def _float_array(values: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoint values must be numbers forming a regular (frames, keypoints, "
                         "values) array") from None
    return arr


def _scalar(value: Any, path: Path, name: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: '{name}' must be a single number (pixels), got {value!r}") from None
    return out


def _layout_name(value: Any, path: Path) -> str | None:
    if value is None:
        return None
    value = np.asarray(value).reshape(()).item() if isinstance(value, np.ndarray) else value
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise ValueError(f"{path}: 'layout' must be a string ({' or '.join(LAYOUTS)}), got {value!r}")
    return value
