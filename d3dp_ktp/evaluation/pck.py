"""MPI-INF-3DHP specifics (SPEC §7.4-7.5): pixel-space JPMA and the MATLAB PCK/AUC/MPJPE tables.

The PCK/AUC rules themselves live in ``d3dp_ktp.metrics.pck_auc`` (14 joints, strict ``<``,
thresholds 0:5:150 mm). Here the per-joint errors of the scored frames (valid frames of the
stitched sequence) are pooled per test sequence, per activity and overall, for every aggregation
(Protocol #1) and every DDIM step k.

Shape legend: B windows, K steps, H hypotheses, T frames, J joints, N scored frames.
"""
from __future__ import annotations

import numpy as np
import torch

from ..aggregation import estimate_root
from ..camera import image_coordinates, project_to_2d_linear
from ..metrics import pck_auc
from .runner import MM, METRIC_NAMES, BatchErrors

# activity_annotation values of annot_data.mat (SPEC §7.3).
ACTIVITIES = {1: "Standing/Walking", 2: "Exercising", 3: "Sitting", 4: "Reaching/Crouching", 5: "On The Floor",
              6: "Sports", 7: "Miscellaneous"}
COLUMNS = ("PCK", "AUC", "MPJPE")


def jpma_index_pixels(P: torch.Tensor, x2d: torch.Tensor, camera: torch.Tensor, root: torch.Tensor | None,
                      res_w: int, res_h: int) -> torch.Tensor:
    """D3DP's 3DHP JPMA (SPEC §7.4): per (b, k, f, j) the hypothesis whose pixel reprojection is
    closest to the input 2D converted back to pixels. Returns index (B, K, T, J).

    P (B, K, H, T, J, 3), x2d (B, T, J, 2) normalised, camera (9,) normalised with zero distortion
    (D3DP's TS5-6 'distorted' projection has all coefficients 0, i.e. linear), root (B, T, 3) GT
    pelvis trajectory or None to estimate it from 2D. Normalisation is an isotropic scale plus shift,
    so this picks the same hypotheses as normalised coordinates up to float rounding; it is kept in
    pixels to follow the official code literally.
    """
    if root is None:
        root = estimate_root(P, x2d, camera)  # (B, K, T, 3)
        offset = root[:, :, None, :, None, :]
    else:
        offset = root[:, None, None, :, None, :]
    reproj = image_coordinates(project_to_2d_linear(P + offset, camera), res_w, res_h)
    target = image_coordinates(x2d, res_w, res_h)[:, None, None]
    return torch.linalg.vector_norm(reproj - target, dim=-1).argmin(dim=2)


def _row(errors_mm: np.ndarray) -> dict:
    """errors (N, K, J) mm -> {'PCK': [K], 'AUC': [K], 'MPJPE': [K], 'frames': N} (SPEC §7.5 'Total')."""
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

    def add(self, batch: BatchErrors) -> None:
        mask = (batch.weight > 0).numpy()
        if not mask.any():
            return
        seq = batch.video.subject
        for name in METRIC_NAMES:
            if name in batch.errors:
                e = batch.errors[name].permute(0, 2, 1, 3).cpu().numpy()[mask]  # (N, K, J)
                self.errors[name].setdefault(seq, []).append(e.astype(np.float64) * MM)
        act = batch.video.activity
        self.activity.setdefault(seq, []).append(
            np.asarray(act)[batch.frame_index][mask] if act is not None else np.zeros(int(mask.sum()), np.int64))

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
