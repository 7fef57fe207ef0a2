"""Keypoint files for in-the-wild lifting (docs/method.md §9): reading one person, cleaning, atomic writes.

Shape legend: F frames, J keypoints, C values per keypoint (2 = x, y; 3 = x, y, confidence).
Coordinates are **pixels** (origin top-left, y down); `prepare_keypoints` normalises them once with
the image width w and height h (docs/method.md §6.3: u/w*2-1, v/w*2-h/w).

* Reading: `d3dp_ktp.inference.formats` recognises every detector format by its content (AlphaPose,
  OpenPose, MMPose, Detectron2, VideoPose3D, ours; docs/inputs.md), `d3dp_ktp.inference.tracking`
  turns several people per frame into person tracks, and `read_keypoints` returns one person's
  sequence (the main person unless ``person`` names a track).
* Layouts: `d3dp_ktp.inference.layouts` holds the one table that maps each detector layout (COCO-17,
  Halpe-26/136, COCO-WholeBody, OpenPose BODY_25 / COCO-18) to the 17 Human3.6M joints.
* Missing detections: a keypoint is missing when x or y is not finite or its confidence is <= 0
  or below ``min_score``. Missing keypoints are filled per joint by linear interpolation over time,
  holding the first/last detection at the ends (with a `MissingKeypointsWarning`); a joint that is
  never detected is an error. A derived joint is missing when one of its sources is; its
  confidence is the smallest of theirs.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from d3dp_ktp.atomic import atomic_file as atomic_path  # the package's one atomic write
from d3dp_ktp.inference import layouts
from d3dp_ktp.inference.formats import SUFFIXES, Detections, read_detections  # noqa: F401 (re-exported)
from d3dp_ktp.inference.layout_check import to_pixels
from d3dp_ktp.inference.tracking import Track, TrackingConfig, build_tracks

LAYOUTS = tuple(layouts.LAYOUTS)  # layouts a keypoint file may declare


class MissingKeypointsWarning(UserWarning):
    """Some keypoints were missing and have been filled by interpolation over time."""


@dataclass
class KeypointFile:
    """One person's keypoints from a file, before cleaning (values as stored, pixels)."""
    path: Path
    keypoints: np.ndarray            # (F, J, C) float64, C = 2 or 3 (x, y[, score]); NaN = no value
    width: float | None = None
    height: float | None = None
    layout: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. 'poses_3d_gt' (F, 17, 3) metres, 'sequence'


@dataclass
class PreparedKeypoints:
    """Cleaned 2D input: missing keypoints filled, in the requested layout, pixels and normalised."""
    pixels: np.ndarray               # (F, J, 2) float64, filled
    normalized: np.ndarray           # (F, J, 2) float32, docs/method.md §6.3 normalised screen coordinates
    confidence: np.ndarray           # (F, J) float32 in [0, 1]; 1 where the file has no scores, 0 where filled
    filled: np.ndarray               # (F, J) bool, True where the value was interpolated
    layout: str
    width: float
    height: float

    @property
    def num_frames(self) -> int:
        return self.pixels.shape[0]


# ----------------------------------------------------------------------------- reading

def read_keypoints(path: str | Path, sequence: str | None = None, person: int | None = None,
                   tracking: TrackingConfig = TrackingConfig()) -> KeypointFile:
    """One person's keypoints from any supported file or folder (docs/inputs.md): the main person
    (the longest, largest track) or track ``person``; ``sequence`` picks one sequence of an npz
    holding several."""
    det = read_detections(path, sequence)
    tracks = build_tracks(det, tracking)
    return person_keypoints(det, pick_track(tracks, person, det.path))


def pick_track(tracks: list[Track], person: int | None, path: Path) -> Track | None:
    """The main track (first; tracks come sorted by prominence) or the one with id ``person``."""
    if person is None:
        return tracks[0] if tracks else None
    for t in tracks:
        if t.id == person:
            return t
    ids = ", ".join(str(t.id) for t in tracks) or "none"
    raise ValueError(f"{path}: no person {person}; the person ids are: {ids} (see --list-people)")


def person_keypoints(det: Detections, track: Track | None) -> KeypointFile:
    """A track as a KeypointFile (F, J, C): NaN in the frames where the person is absent."""
    if track is None:
        kp = np.full((det.num_frames,) + det.keypoints.shape[1:], np.nan)
    else:
        kp = track.sequence(det.num_frames)
    extras = dict(det.extras)
    if track is not None:
        extras["person"] = track.id
    if det.first_frame:
        extras["first_frame"] = det.first_frame   # the file's own number of frame 0 (e.g. 1-based image names)
    return KeypointFile(det.path, kp, det.width, det.height, det.layout, extras)


# ----------------------------------------------------------------------------- cleaning

def check_layout(name: str) -> str:
    layouts.get_layout(name)
    return name


def coco_to_h36m(xy: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 -> H36M-17 by the table of `d3dp_ktp.inference.layouts`. xy (..., 17, 2) with NaN for
    missing keypoints, scores (..., 17) -> (xy, scores) in H36M order; NaN propagates."""
    return layouts.convert_layout(xy, scores, "coco", "h36m")


def convert_layout(xy: np.ndarray, scores: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """2D keypoints (..., J, 2) and scores (..., J) from layout ``src`` to ``dst``."""
    return layouts.convert_layout(xy, scores, src, dst)


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
    names = layouts.get_layout(layout).joint_names
    kp = kf.keypoints
    if len(kp) == 0:
        raise ValueError(f"{kf.path} has zero frames; it needs at least one frame of 2D keypoints")
    if kp.shape[1] == 0:
        raise ValueError(f"{kf.path}: no frame has any detection; the file holds no usable 2D pose")
    if kp.shape[1] != len(names):
        fits = layouts.layouts_with(kp.shape[1])
        hint = (f"pass --layout {' or --layout '.join(fits)}" if fits else
                f"use one of the layouts {', '.join(LAYOUTS)} (docs/inputs.md)")
        raise ValueError(f"{kf.path}: expected {len(names)} keypoints per frame for layout '{layout}', got "
                         f"{kp.shape[1]}; {hint}")
    kp, note = to_pixels(kp, width, height, str(kf.path), min_score)
    if note:
        warnings.warn(f"{kf.path}: {note}", stacklevel=2)
    xy, scores = _mark_missing(kp, min_score)
    xy, scores = convert_layout(xy, scores, layout, target_layout)
    target_names = layouts.get_layout(target_layout).joint_names
    pixels, filled = fill_missing(xy, target_names)
    _warn_filled(filled, target_names)
    confidence = np.where(filled, 0.0, np.nan_to_num(scores, nan=0.0)).astype(np.float32)
    from d3dp_ktp.camera import normalize_screen_coordinates  # imports torch: only once the model is needed

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
