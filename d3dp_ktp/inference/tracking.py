"""One person among many: detections -> person tracks -> one (F, J, C) sequence per person.

Shape legend: N detections, F frames, J keypoints, C values per keypoint, n frames of one track.

1. **Detector ids** (AlphaPose ``idx`` with tracking, OpenPose ``person_id`` >= 0, MMPose
   ``track_id``) define the tracks when the file has them for every detection, unique per frame.
2. **Otherwise, association** (our choice, a small SORT-like tracker): frame by frame, each live
   track predicts its box and keypoints at constant velocity from its last two detections; the
   cost of a (track, detection) pair is ``1 - IoU(boxes) + mean keypoint distance / box height``;
   the pairing of least total cost (Hungarian) is kept where the cost is below ``max_cost``; the
   other detections start new tracks. A track unseen for more than ``max_gap`` frames ends, so
   gaps of up to ``max_gap`` frames are bridged. Constant-velocity prediction keeps identities
   through a crossing, where the boxes of two people overlap.
3. **The main person** is the track with the largest (frames present) x (mean box height): the
   longest and largest. A box is the file's, else the keypoints' bounding box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from d3dp_ktp.inference.formats import Detections


@dataclass(frozen=True)
class TrackingConfig:
    max_gap: int = 15            # frames a track may be unseen and still continue (gaps bridged)
    max_cost: float = 1.5        # 1 - IoU + keypoint distance / height above which a pair is no match
    min_frames: int = 10         # --all-people lifts tracks with at least this many frames
    long_gap: int = 10           # gaps of at least this many frames are reported as "person missing"


@dataclass
class Track:
    id: int
    frames: np.ndarray           # (n,) increasing frame indices
    keypoints: np.ndarray        # (n, J, C)
    boxes: np.ndarray            # (n, 4) x1, y1, x2, y2

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def mean_height(self) -> float:
        return float(np.nanmean(self.boxes[:, 3] - self.boxes[:, 1])) if len(self.boxes) else 0.0

    @property
    def prominence(self) -> float:
        return self.num_frames * max(self.mean_height, 1e-6)

    def sequence(self, num_frames: int) -> np.ndarray:
        """(F, J, C) with NaN in the frames where this person is absent."""
        out = np.full((num_frames,) + self.keypoints.shape[1:], np.nan)
        out[self.frames] = self.keypoints
        return out

    def gaps(self, num_frames: int, min_length: int = 1) -> list[tuple[int, int]]:
        """Inclusive (first, last) frame ranges of at least ``min_length`` frames without this person."""
        present = np.zeros(num_frames, bool)
        present[self.frames] = True
        edges = np.flatnonzero(np.diff(np.concatenate([[1], present.astype(int), [1]])))
        return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_length]


def keypoint_boxes(keypoints: np.ndarray) -> np.ndarray:
    """Bounding boxes (N, 4) of the present keypoints (N, J, C) (score > 0 when C = 3); NaN if none."""
    xy = keypoints[..., :2].copy()
    if keypoints.shape[-1] == 3:
        xy[keypoints[..., 2] <= 0] = np.nan
    out = np.full((len(xy), 4), np.nan)
    ok = np.isfinite(xy).all(-1).any(-1)
    if ok.any():
        out[ok] = np.concatenate([np.nanmin(xy[ok], axis=1), np.nanmax(xy[ok], axis=1)], axis=1)
    return out


def build_tracks(det: Detections, cfg: TrackingConfig = TrackingConfig()) -> list[Track]:
    """Tracks of a file's detections, by detector ids when valid, else by association (module docstring),
    sorted by prominence, the main person first."""
    boxes = det.boxes.copy()
    missing = ~np.isfinite(boxes).all(-1)
    boxes[missing] = keypoint_boxes(det.keypoints[missing]) if missing.any() else boxes[missing]
    labels = det.ids if det.ids is not None else associate(det.frame, det.keypoints, boxes, cfg)
    tracks = []
    for label in np.unique(labels):
        sel = np.flatnonzero(labels == label)
        sel = sel[np.argsort(det.frame[sel], kind="stable")]
        tracks.append(Track(int(label), det.frame[sel], det.keypoints[sel], boxes[sel]))
    return sorted(tracks, key=lambda t: (-t.prominence, t.id))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (m, 4) against b (n, 4) -> (m, n)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def _kp_distance(a: np.ndarray, b: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Mean distance of shared keypoints a (m, J, 2) vs b (n, J, 2), in units of the track's box
    height (m,) -> (m, n); 10 where no keypoint is shared."""
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)           # (m, n, J), NaN where missing
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=-1) if d.size else np.zeros(d.shape[:2])
    mean = np.where(np.isfinite(mean), mean, 10 * height[:, None])
    return mean / np.maximum(height[:, None], 1.0)


def _masked_xy(keypoints: np.ndarray) -> np.ndarray:
    xy = keypoints[..., :2].copy()
    if keypoints.shape[-1] == 3:
        xy[keypoints[..., 2] <= 0] = np.nan
    return xy


def associate(frame: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray,
              cfg: TrackingConfig = TrackingConfig()) -> np.ndarray:
    """Track labels (N,) for detections in frames ``frame`` (N,) with keypoints (N, J, C) and boxes (N, 4)."""
    from scipy.optimize import linear_sum_assignment  # scipy.optimize takes seconds to import; only tracking needs it

    xy = _masked_xy(keypoints)
    labels = np.full(len(frame), -1, dtype=np.int64)
    live: list[dict] = []                 # per track: last/prev frame, box, xy; label
    next_label = 0
    for f in np.unique(frame):
        dets = np.flatnonzero(frame == f)
        live = [t for t in live if f - t["f"] <= cfg.max_gap + 1]
        matched: dict[int, int] = {}
        if live:
            pred_box = np.stack([_predict(t, "box", f) for t in live])
            pred_xy = np.stack([_predict(t, "xy", f) for t in live])
            height = np.maximum(pred_box[:, 3] - pred_box[:, 1], 1.0)
            cost = 1 - _iou(pred_box, boxes[dets]) + _kp_distance(pred_xy, xy[dets], height)
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
            matched = {int(c): int(r) for r, c in zip(rows, cols) if cost[r, c] < cfg.max_cost}
        for k, d in enumerate(dets):
            if k in matched:
                t = live[matched[k]]
                t.update(pf=t["f"], pbox=t["box"], pxy=t["xy"])
            else:
                t = {"label": next_label, "pf": None}
                next_label += 1
                live.append(t)
            t.update(f=int(f), box=boxes[d], xy=_fill_from(xy[d], t.get("xy")))
            labels[d] = t["label"]
    return labels


def _fill_from(xy: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Keypoints for prediction: missing ones keep the previous value (so a track keeps its shape)."""
    return xy if previous is None else np.where(np.isfinite(xy), xy, previous)


def _predict(track: dict, key: str, f: int) -> np.ndarray:
    """Constant-velocity extrapolation of a track's box or keypoints to frame f."""
    last = track[key]
    if track.get("pf") is None:
        return last
    prev = track["p" + key]
    velocity = (last - prev) / max(track["f"] - track["pf"], 1)
    out = last + velocity * (f - track["f"])
    return np.where(np.isfinite(out), out, last)
