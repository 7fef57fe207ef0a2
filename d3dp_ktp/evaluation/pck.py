"""MPI-INF-3DHP specifics (docs/method.md §7.4-7.5): the MATLAB PCK/AUC/MPJPE tables.

The PCK/AUC rules themselves live in ``d3dp_ktp.metrics.pck_auc`` (14 joints, strict ``<``,
thresholds 0:5:150 mm). Here the per-joint errors of the scored frames (valid frames of the
stitched sequence) are pooled per test sequence, per activity and overall, for every aggregation
(Protocol #1) and every DDIM step k. MPI-INF-3DHP's pixel-space JPMA is ``aggregation.jpma_index``
with ``image_size``.

Shape legend: B windows, K steps, H hypotheses, T frames, J joints, N scored frames.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.dataset import Video
from ..metrics import MULTI_HYPOTHESIS_METRICS as METRIC_NAMES, pck_auc
from .protocol import MM

# activity_annotation values of annot_data.mat (docs/method.md §7.3).
ACTIVITIES = {1: "Standing/Walking", 2: "Exercising", 3: "Sitting", 4: "Reaching/Crouching", 5: "On The Floor",
              6: "Sports", 7: "Miscellaneous"}
COLUMNS = ("PCK", "AUC", "MPJPE")


def _row(errors_mm: np.ndarray) -> dict:
    """errors (N, K, J) mm -> {'PCK': [K], 'AUC': [K], 'MPJPE': [K], 'frames': N} (docs/method.md §7.5 'Total')."""
    out = {c: [] for c in COLUMNS}
    for k in range(errors_mm.shape[1]):
        pa = pck_auc(errors_mm[:, k])
        out["PCK"].append(pa["PCK"]["Total"])
        out["AUC"].append(pa["AUC"]["Total"])
        out["MPJPE"].append(float(errors_mm[:, k].mean()))  # all 17 joints, pelvis error is 0
    out["frames"] = int(errors_mm.shape[0])
    return out


class PCKCollector:
    """Collects per-joint errors (mm) of the scored frames per sequence and activity."""

    def __init__(self, num_steps: int):
        self.num_steps = num_steps
        self.errors: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in METRIC_NAMES}
        self.activity: dict[str, list[np.ndarray]] = {}

    def add(self, video: Video, errors: dict[str, torch.Tensor], weight: torch.Tensor, frame_index: np.ndarray) -> None:
        """One batch of ``video``: errors metric -> (B, K, T, J) metres, weight (B, T) (> 0 = scored),
        frame_index (B, T) source frame of every window position."""
        mask = (weight > 0).numpy()
        if not mask.any():
            return
        seq = video.subject
        for name in METRIC_NAMES:
            if name in errors:
                e = errors[name].permute(0, 2, 1, 3).cpu().numpy()[mask]  # (N, K, J)
                self.errors[name].setdefault(seq, []).append(e.astype(np.float64) * MM)
        act = video.activity
        self.activity.setdefault(seq, []).append(
            np.asarray(act)[frame_index][mask] if act is not None else np.zeros(int(mask.sum()), np.int64))

    def result(self) -> dict:
        """{metric: {'sequences': {TSn: row}, 'mean': row (unweighted over sequences, D3DP README),
        'all': row (pooled, frame-weighted), 'activities': {name: row}}}; rows hold one value per k."""
        out = {}
        activity = {s: np.concatenate(a) for s, a in self.activity.items()}
        for name, per_seq in self.errors.items():
            if not per_seq:
                continue
            seqs = {s: np.concatenate(e) for s, e in per_seq.items()}
            rows = {s: _row(e) for s, e in seqs.items()}
            pooled = np.concatenate(list(seqs.values()))
            acts = np.concatenate([activity[s] for s in seqs])
            mean = {c: np.mean([r[c] for r in rows.values()], axis=0).tolist() for c in COLUMNS}
            mean["frames"] = int(pooled.shape[0])
            out[name] = {"sequences": rows, "mean": mean, "all": _row(pooled),
                         "activities": {ACTIVITIES[a]: _row(pooled[acts == a]) for a in sorted(ACTIVITIES)
                                        if (acts == a).any()}}
        return out
