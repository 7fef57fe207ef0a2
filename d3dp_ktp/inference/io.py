"""Reading 2D keypoint files for in-the-wild lifting (SPEC §9), cleaning them, and atomic writes.

Shape legend: F frames, J keypoints (17), C values per keypoint (2 = x, y; 3 = x, y, confidence).
Coordinates in files are **pixels** (origin top-left, y down); `prepare_keypoints` normalises them
once with the image width w and height h (SPEC §6.3: u/w*2-1, v/w*2-h/w).

Accepted files (`read_keypoints` picks the reader by extension):

* ``.npz`` (ours): ``keypoints`` (F, J, 2|3) and optionally ``width``, ``height``, ``layout``
  ('h36m' or 'coco') and ``poses_3d_gt`` (F, 17, 3) metres, used only to report MPJPE.
* ``.npz`` (VideoPose3D custom, ``prepare_data_2d_custom.py``): ``positions_2d`` =
  {video: {'custom': [(F, 17, 2|3)]}} and ``metadata`` = {'layout_name': 'coco', 'video_metadata':
  {video: {'w': .., 'h': ..}}, ...}. Pickled members are read with the restricted unpickler of
  `d3dp_ktp.data.io.load_npz` (arrays, dicts, lists only; never arbitrary code).
* ``.npy``: a bare (F, J, 2|3) array.
* ``.json``: a list of frames, or {"frames": [...], "width": .., "height": .., "layout": ..}
  ("keypoints" is accepted in place of "frames"). A frame is a list of [x, y] / [x, y, score]
  pairs, a flat [x0, y0, (s0), x1, ...] list, or an object {"keypoints": <either of those>}
  (COCO / OpenPose style). ``null``, ``[]`` or {"keypoints": []} is a frame without detection.
* ``.csv`` / ``.txt``: one row per frame, x0,y0,(s0),x1,y1,(s1),...; an optional header row and
  lines starting with '#' are skipped; empty cells or 'nan' are missing values.

A flat list of 34 values is read as 17 (x, y) pairs, 51 values as 17 (x, y, score) triples.

Missing detections: a keypoint is missing when x or y is not finite or its confidence is <= 0
or below ``min_score``. Missing keypoints are filled per joint by linear interpolation over time,
holding the first/last detection at the ends (with a `MissingKeypointsWarning`); a joint that is
never detected is an error.

COCO-17 -> H36M-17 (used when the model reads H36M-ordered 2D but the file is COCO-ordered, and
for JPMA's 2D reference). The COCO hips sit lower and wider than the H36M hip joints and the eyes
are below the H36M head joint, so derived joints are approximations (a common convention in 2D->3D
lifting); the model was trained on true H36M 2D, so expect somewhat larger errors on COCO input.

| H36M joint        | from COCO                                          |
|-------------------|----------------------------------------------------|
| 0 Hip (root)      | mid(left_hip 11, right_hip 12)                     |
| 1 RHip            | right_hip 12                                       |
| 2 RKnee           | right_knee 14                                      |
| 3 RAnkle          | right_ankle 16                                     |
| 4 LHip            | left_hip 11                                        |
| 5 LKnee           | left_knee 13                                       |
| 6 LAnkle          | left_ankle 15                                      |
| 7 Spine           | mid(Hip, Thorax)                                   |
| 8 Thorax          | mid(left_shoulder 5, right_shoulder 6)             |
| 9 Neck/Nose       | nose 0                                             |
| 10 Head           | mid(left_eye 1, right_eye 2); frames without both eyes: mid(ears 3, 4) |
| 11 LShoulder      | left_shoulder 5                                    |
| 12 LElbow         | left_elbow 7                                       |
| 13 LWrist         | left_wrist 9                                       |
| 14 RShoulder      | right_shoulder 6                                   |
| 15 RElbow         | right_elbow 8                                      |
| 16 RWrist         | right_wrist 10                                     |

A derived joint is missing when one of its sources is; its confidence is the smallest of theirs.
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from d3dp_ktp.atomic import atomic_file as atomic_path  # the package's one atomic write
from d3dp_ktp.camera import normalize_screen_coordinates
from d3dp_ktp.data.io import load_npz
from d3dp_ktp.skeleton import get_skeleton

LAYOUTS = ("h36m", "coco")  # layouts a keypoint file may declare
SUFFIXES = (".npz", ".npy", ".json", ".csv", ".txt")

# H36M joint -> COCO source joints (averaged); Head is special-cased in `coco_to_h36m`.
_COCO_TO_H36M = ((11, 12), (12,), (14,), (16,), (11,), (13,), (15,), None, (5, 6), (0,), (1, 2),
                 (5,), (7,), (9,), (6,), (8,), (10,))
_H36M_SPINE, _H36M_HEAD = 7, 10
_COCO_EARS = (3, 4)


class MissingKeypointsWarning(UserWarning):
    """Some keypoints were missing and have been filled by interpolation over time."""


@dataclass
class KeypointFile:
    """The content of a keypoint file, before cleaning (values exactly as stored, pixels)."""
    path: Path
    keypoints: np.ndarray            # (F, J, C) float64, C = 2 or 3 (x, y[, score]); NaN = no value
    width: float | None = None
    height: float | None = None
    layout: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. 'poses_3d_gt' (F, 17, 3) metres


@dataclass
class PreparedKeypoints:
    """Cleaned 2D input: missing keypoints filled, in the requested layout, pixels and normalised."""
    pixels: np.ndarray               # (F, J, 2) float64, filled
    normalized: np.ndarray           # (F, J, 2) float32, SPEC §6.3 normalised screen coordinates
    confidence: np.ndarray           # (F, J) float32 in [0, 1]; 1 where the file has no scores, 0 where filled
    filled: np.ndarray               # (F, J) bool, True where the value was interpolated
    layout: str
    width: float
    height: float

    @property
    def num_frames(self) -> int:
        return self.pixels.shape[0]


# ----------------------------------------------------------------------------- reading

def read_keypoints(path: str | Path, video: str | None = None) -> KeypointFile:
    """Read any supported keypoint file (see the module docstring). ``video`` picks one video of a
    VideoPose3D custom npz that holds several."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"keypoint file not found: {path}")
    suffix = path.suffix.lower()
    readers = {".npz": _read_npz, ".npy": _read_npy, ".json": _read_json, ".csv": _read_csv, ".txt": _read_csv}
    if suffix not in readers:
        raise ValueError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(SUFFIXES)}")
    kf = readers[suffix](path, video) if suffix == ".npz" else readers[suffix](path)
    _check_channels(kf)
    return kf


def _read_npz(path: Path, video: str | None) -> KeypointFile:
    data = load_npz(path)
    if "keypoints" in data:
        kp, extras = _float_array(data["keypoints"], f"{path}: keypoints"), {}
        if "poses_3d_gt" in data:
            gt = extras["poses_3d_gt"] = _float_array(data["poses_3d_gt"], f"{path}: poses_3d_gt")
            if gt.shape != (len(kp), 17, 3):
                raise ValueError(f"{path}: poses_3d_gt must have shape ({len(kp)}, 17, 3) (metres, one pose per "
                                 f"keypoint frame), got {gt.shape}")
        return KeypointFile(path, kp,
                            _scalar(data.get("width"), path, "width"), _scalar(data.get("height"), path, "height"),
                            _layout_name(data.get("layout"), path), extras)
    if "positions_2d" in data:
        return _read_videopose3d(data, path, video)
    raise ValueError(f"{path} holds no keypoints: expected a 'keypoints' array (F, 17, 2|3) or VideoPose3D's "
                     f"'positions_2d'; found keys {sorted(data)}")


def _read_videopose3d(data: dict, path: Path, video: str | None) -> KeypointFile:
    """VideoPose3D custom 2D npz: positions_2d[video]['custom'][0], metadata.video_metadata[video]."""
    pos, meta = data["positions_2d"], data.get("metadata", {})
    if not isinstance(pos, dict) or not pos:
        raise ValueError(f"{path}: 'positions_2d' must be a non-empty dict video -> {{'custom': [array]}}")
    if video is None:
        if len(pos) > 1:
            raise ValueError(f"{path} holds {len(pos)} videos; choose one with --video, one of: {', '.join(map(str, pos))}")
        video = next(iter(pos))
    if video not in pos:
        raise ValueError(f"{path}: no video '{video}'; videos: {', '.join(map(str, pos))}")
    try:
        entry = pos[video]
        arr = entry["custom"][0] if isinstance(entry, dict) else entry[0]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{path}: positions_2d['{video}'] must be {{'custom': [(F, 17, 2|3) array]}}") from None
    size = {}
    if isinstance(meta, dict):
        size = (meta.get("video_metadata") or {}).get(video) or {}
    layout = meta.get("layout_name") if isinstance(meta, dict) else None
    return KeypointFile(path, _float_array(arr, f"{path}: positions_2d['{video}']"),
                        _scalar(size.get("w"), path, "video_metadata w"), _scalar(size.get("h"), path, "video_metadata h"),
                        _layout_name(layout, path), {"video": str(video)})


def _read_npy(path: Path) -> KeypointFile:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy array of keypoints: {err}") from None
    return KeypointFile(path, _float_array(arr, str(path)))


def _read_json(path: Path) -> KeypointFile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a valid JSON keypoint file: {err}") from None
    width = height = layout = None
    if isinstance(data, dict):
        key = "frames" if "frames" in data else "keypoints" if "keypoints" in data else None
        if key is None:
            raise ValueError(f"{path}: a JSON object must hold the per-frame keypoints under 'frames'; "
                             f"found keys {sorted(data)}")
        width, height = _scalar(data.get("width"), path, "width"), _scalar(data.get("height"), path, "height")
        layout, data = _layout_name(data.get("layout"), path), data[key]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of frames, got {type(data).__name__}")
    if data and all(isinstance(v, (int, float)) for v in data):
        data = [data]  # a single frame given as a flat [x0, y0, (s0), ...] list
    frames = [_json_frame(frame, path, i) for i, frame in enumerate(data)]
    return KeypointFile(path, _stack_frames(frames, path), width, height, layout)


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
    return _flat_keypoints([math.nan if x is None else x for x in frame], f"{path}: frame {index}")


def _read_csv(path: Path) -> KeypointFile:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text CSV file of keypoints (one row per frame: x0,y0,(s0),x1,...)") from None
    rows = [r for r in csv.reader(l for l in lines if l.strip() and not l.lstrip().startswith("#"))]
    if rows and not _numeric_row(rows[0]):
        rows = rows[1:]  # a header row
    frames = []
    for i, row in enumerate(rows):
        if not _numeric_row(row):
            raise ValueError(f"{path}: row {i + 1} is not numbers: {','.join(row)[:80]}")
        values = [_cell(c) for c in row]
        frames.append(None if all(math.isnan(v) for v in values) else _flat_keypoints(values, f"{path}: row {i + 1}"))
    return KeypointFile(path, _stack_frames(frames, path))


def _numeric_row(row: list[str]) -> bool:
    try:
        [_cell(c) for c in row]
    except ValueError:
        return False
    return True


def _cell(text: str) -> float:
    text = text.strip()
    return math.nan if text == "" else float(text)


def _flat_keypoints(values: list, where: str, num_keypoints: int = 17) -> np.ndarray:
    """[x0, y0, (s0), x1, ...] -> (J, C). 34 values are pairs, 51 triples; otherwise triples when
    the count divides by 3, else pairs (the joint-count check then reports the mismatch)."""
    n = len(values)
    c = 2 if n == 2 * num_keypoints else 3 if n == 3 * num_keypoints else 3 if n % 3 == 0 else 2
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
        return np.full((len(frames), 0, 2), np.nan)  # no detection at all; reported by prepare_keypoints
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


def _check_channels(kf: KeypointFile) -> None:
    kp = kf.keypoints
    if kp.ndim != 3 or kp.shape[-1] not in (2, 3):
        raise ValueError(f"{kf.path}: keypoints must have shape (frames, 17, 2) or (frames, 17, 3) "
                         f"(x, y[, confidence]), got {kp.shape}")


# ----------------------------------------------------------------------------- cleaning

def check_layout(name: str) -> str:
    if name not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout '{name}'; use one of: {', '.join(LAYOUTS)} "
                         "(coco = the 17 COCO keypoints of most 2D detectors)")
    return name


def coco_to_h36m(xy: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 -> H36M-17 by the table in the module docstring. xy (..., 17, 2) with NaN for missing
    keypoints, scores (..., 17) -> (xy, scores) in H36M order; NaN propagates through midpoints."""
    out, conf = np.empty_like(xy), np.empty_like(scores)
    for j, src in enumerate(_COCO_TO_H36M):
        if src is not None:
            out[..., j, :] = xy[..., src, :].mean(axis=-2)
            conf[..., j] = scores[..., src].min(axis=-1)
    ears = xy[..., _COCO_EARS, :].mean(axis=-2)
    no_eyes = np.isnan(out[..., _H36M_HEAD, :]).any(axis=-1)
    out[..., _H36M_HEAD, :] = np.where(no_eyes[..., None], ears, out[..., _H36M_HEAD, :])
    conf[..., _H36M_HEAD] = np.where(no_eyes, scores[..., _COCO_EARS].min(axis=-1), conf[..., _H36M_HEAD])
    out[..., _H36M_SPINE, :] = (out[..., 0, :] + out[..., 8, :]) / 2
    conf[..., _H36M_SPINE] = np.minimum(conf[..., 0], conf[..., 8])
    return out, conf


def convert_layout(xy: np.ndarray, scores: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """2D keypoints (..., J, 2) and scores (..., J) from layout ``src`` to ``dst``."""
    if src == dst:
        return xy, scores
    if (src, dst) == ("coco", "h36m"):
        return coco_to_h36m(xy, scores)
    raise ValueError(f"keypoints in layout '{src}' cannot be converted to '{dst}', the layout this model "
                     f"reads; give '{dst}' keypoints or use a checkpoint trained on '{src}' input")


def fill_missing(xy: np.ndarray, joint_names) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over time per joint, edge hold. xy (F, J, 2) with NaN -> (filled, mask (F, J)).

    Raises ValueError when a joint has no finite value in any frame.
    """
    missing = np.isnan(xy).any(axis=-1)
    never = np.flatnonzero(missing.all(axis=0))
    if len(never) == len(joint_names):
        raise ValueError(f"no keypoint is detected in any of the {len(xy)} frames; the file holds no usable 2D pose")
    if len(never):
        names = ", ".join(f"{joint_names[j]} ({j})" for j in never)
        raise ValueError(f"joint(s) {names} are never detected in any of the {len(xy)} frames, so they cannot be "
                         "interpolated; check the detector output or --min-score")
    out = xy.copy()
    frames = np.arange(len(xy))
    for j in np.flatnonzero(missing.any(axis=0)):
        ok = ~missing[:, j]
        for c in range(2):
            out[:, j, c] = np.interp(frames, frames[ok], xy[ok, j, c])  # holds the end values
    return out, missing


def _warn_filled(filled: np.ndarray, joint_names) -> None:
    if not filled.any():
        return
    per_joint = filled.sum(axis=0)
    joints = ", ".join(f"{joint_names[j]} x{per_joint[j]}" for j in np.flatnonzero(per_joint))
    empty = int(filled.all(axis=1).sum())
    warnings.warn(MissingKeypointsWarning(
        f"filled {int(filled.sum())} missing keypoints in {int(filled.any(axis=1).sum())} of {len(filled)} frames "
        f"{f'({empty} without any detection) ' if empty else ''}by linear interpolation over time; "
        f"per joint: {joints}"), stacklevel=3)


def prepare_keypoints(kf: KeypointFile, target_layout: str, layout: str | None = None, width: float | None = None,
                      height: float | None = None, min_score: float = 0.0) -> PreparedKeypoints:
    """Validate, mark missing, convert to ``target_layout``, fill and normalise a keypoint file.

    ``layout``/``width``/``height`` override what the file declares; one of the two must give each.
    """
    layout = layout or kf.layout
    if layout is None:
        raise ValueError(f"{kf.path} does not state its keypoint layout: pass --layout coco (the 17 COCO keypoints "
                         "of most 2D detectors) or --layout h36m (Human3.6M order)")
    check_layout(layout)
    width, height = width or kf.width, height or kf.height
    if not width or not height:
        raise ValueError(f"{kf.path} does not state the image size: pass --width and --height (pixels of the "
                         "video the keypoints come from)")
    if width <= 0 or height <= 0:
        raise ValueError(f"image width and height must be positive pixels, got {width} x {height}")
    names = get_skeleton(layout).joint_names
    kp = kf.keypoints
    if len(kp) == 0:
        raise ValueError(f"{kf.path} has zero frames; it needs at least one frame of 2D keypoints")
    if kp.shape[1] == 0:
        raise ValueError(f"{kf.path}: no frame has any detection; the file holds no usable 2D pose")
    if kp.shape[1] != len(names):
        raise ValueError(f"{kf.path}: expected {len(names)} keypoints per frame for layout '{layout}', got "
                         f"{kp.shape[1]}; convert the detector output to the 17 COCO or H36M keypoints")
    xy, scores = _mark_missing(kp, min_score)
    _warn_if_normalised(xy, width, kf.path)
    xy, scores = convert_layout(xy, scores, layout, target_layout)
    target_names = get_skeleton(target_layout).joint_names
    pixels, filled = fill_missing(xy, target_names)
    _warn_filled(filled, target_names)
    confidence = np.where(filled, 0.0, np.nan_to_num(scores, nan=0.0)).astype(np.float32)
    normalized = normalize_screen_coordinates(pixels.astype(np.float32), width, height)
    return PreparedKeypoints(pixels, normalized, confidence, filled, target_layout, float(width), float(height))


def _mark_missing(kp: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """(F, J, C) -> xy (F, J, 2) with NaN where missing, scores (F, J) in [0, 1] (1 without scores)."""
    xy = kp[..., :2].copy()
    scores = kp[..., 2].copy() if kp.shape[-1] == 3 else np.ones(kp.shape[:2])
    missing = ~np.isfinite(xy).all(axis=-1) | ~np.isfinite(scores) | (scores <= 0) | (scores < min_score)
    xy[missing] = np.nan
    scores = np.where(missing, np.nan, np.clip(scores, 0.0, 1.0))
    return xy, scores


def _warn_if_normalised(xy: np.ndarray, width: float, path: Path) -> None:
    finite = np.abs(xy[np.isfinite(xy)])
    if width > 16 and finite.size and finite.max() <= 1.5:
        warnings.warn(f"{path}: every coordinate is within ±1.5 although the image is {width:g} px wide; "
                      "keypoints must be in pixels, not normalised", stacklevel=3)


# ----------------------------------------------------------------------------- writing

def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Atomic ``np.savez`` of plain arrays (strings as 0-d str arrays; nothing needs pickling)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def write_json(path: str | Path, data: dict) -> Path:
    """Atomic JSON write; NaN/inf are refused (JSON has no such numbers)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
