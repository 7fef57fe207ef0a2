"""Pose metrics and the terms of the KTPFormer loss (docs/method.md §2.10, §5, §7.5), as pure functions.

The loss itself, L_W + λ_T·L_TC + λ_M·L_V, is composed once, in ``D3DP._objective`` (diffusion.d3dp).

Shape legend: "..." any leading axes (typically B windows and T frames), T frames (axis -3 where
a time axis is needed), J joints. Multi-hypothesis tensors: P (B, K, H, T, J, 3), Y (B, T, J, 3).
Errors are returned in the input units (metres inside the models; the caller multiplies by 1000).
Protocol names follow VideoPose3D: `mpjpe` = Protocol #1, `p_mpjpe` = Protocol #2.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from d3dp_ktp.aggregation import (P_BEST_MODES, check_frame_weights, check_hypotheses, gather_hypotheses,
                                  hypothesis_errors, joint_min_index, pose_min_index, shape_of)

# MixSTE per-joint weights used by KTPFormer's L_W and L_TC (docs/method.md §5.8); never renormalised.
H36M_JOINT_WEIGHTS = (1.0, 1.0, 2.5, 2.5, 1.0, 2.5, 2.5, 1.0, 1.0, 1.0, 1.5, 1.5, 4.0, 4.0, 1.5, 4.0, 4.0)
HUMANEVA15_JOINT_WEIGHTS = (1.0, 1.0, 2.5, 2.5, 1.0, 2.5, 2.5, 1.0, 1.5, 1.5, 4.0, 4.0, 1.5, 4.0, 4.0)

# MPI-INF-3DHP PCK/AUC joint groups (docs/method.md §7.5, MATLAB 1-based indices converted to 0-based).
MPI_INF_3DHP_PCK_GROUPS = (("Head", (0,)), ("Neck", (1,)), ("Shou", (2, 5)), ("Elbow", (3, 6)),
                           ("Wrist", (4, 7)), ("Hip", (8, 11)), ("Knee", (9, 12)), ("Ankle", (10, 13)))
PCK_THRESHOLDS_MM = tuple(float(t) for t in range(0, 151, 5))  # MATLAB 0:5:150, 31 values

MULTI_HYPOTHESIS_METRICS = ("J-Best", "P-Best", "P-Agg", "J-Agg")
REDUCTIONS = ("mean", "window", "frame", "none")


def _check_pair(pred: torch.Tensor, target: torch.Tensor, min_dim: int = 2) -> None:
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor) or x.dim() < min_dim or x.shape[-1] != 3:
            legend = "(..., T, J, 3)" if min_dim >= 3 else "(..., J, 3)"
            raise ValueError(f"{name} must be a tensor of shape {legend}, got {shape_of(x)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {shape_of(pred)} and {shape_of(target)}")


def _joint_weights(w, J: int, like: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(w, dtype=like.dtype, device=like.device)
    if w.shape != (J,):
        raise ValueError(f"w must hold one weight per joint, shape ({J},), got {tuple(w.shape)}")
    return w


def joint_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-joint Euclidean errors. pred, target (..., J, 3) -> (..., J)."""
    _check_pair(pred, target)
    return torch.linalg.vector_norm(pred - target, dim=-1)


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Protocol #1: mean Euclidean joint error over all axes. pred, target (..., J, 3) -> scalar."""
    return joint_errors(pred, target).mean()


def weighted_mpjpe(pred: torch.Tensor, target: torch.Tensor, w) -> torch.Tensor:
    """L_W / WMPJPE (docs/method.md §5.8): mean over (..., j) of w_j·||pred - target||; w (J,) not renormalised."""
    e = joint_errors(pred, target)
    return (_joint_weights(w, e.shape[-1], e) * e).mean()


def temporal_consistency(pred: torch.Tensor, w) -> torch.Tensor:
    """L_TC (docs/method.md §2.10): mean over (..., t=1..T-1, j, c) of w_j·(pred_t - pred_{t-1})².

    pred (..., T, J, 3), w (J,). With T = 1 there is no frame pair; returns 0 (keeping the graph) so a
    single-frame model's KTPFormer loss reduces to L_W instead of NaN.
    """
    _check_pair(pred, pred, min_dim=3)
    w = _joint_weights(w, pred.shape[-2], pred)
    if pred.shape[-3] < 2:
        return pred.sum() * 0
    velocity = pred[..., 1:, :, :] - pred[..., :-1, :, :]
    return (w[:, None] * velocity.square()).mean()


def mpjve(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJVE / L_V (docs/method.md §5.6): mean over consecutive frame pairs and joints of the velocity error.

    pred, target (..., T, J, 3), time on axis -3 (per window; concatenate windows first to get the
    KTPFormer final-evaluation variant of docs/method.md §12 item 8). T = 1 returns 0 (no frame pair).
    """
    _check_pair(pred, target, min_dim=3)
    if pred.shape[-3] < 2:
        return (pred - target).sum() * 0
    return mpjpe(torch.diff(pred, dim=-3), torch.diff(target, dim=-3))


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """N-MPJPE (docs/method.md §5.6): per pose scale s = mean_j Σ_c y·ŷ / mean_j Σ_c ŷ², then MPJPE(s·ŷ, y).

    pred, target (..., J, 3) -> scalar.
    """
    _check_pair(pred, target)
    norm_pred = pred.square().sum(dim=-1, keepdim=True).mean(dim=-2, keepdim=True)
    dot = (target * pred).sum(dim=-1, keepdim=True).mean(dim=-2, keepdim=True)
    return mpjpe(dot / norm_pred * pred, target)


def procrustes_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Similarity-align every pose of pred onto target (docs/method.md §5.5 steps 1-6, reflections excluded).

    pred, target (..., J, 3) -> aligned pred (..., J, 3) in pred's dtype. Computed in float64 so
    the SVD matches the NumPy reference closely. A degenerate pose (all joints equal, norm 0) would
    make the reference fail in the SVD; here its scale a comes out 0, so a degenerate prediction is
    mapped onto the target centroid instead of aborting a whole evaluation.
    """
    _check_pair(pred, target)
    X, Yp = target.double(), pred.double()
    mu_x, mu_y = X.mean(dim=-2, keepdim=True), Yp.mean(dim=-2, keepdim=True)
    x0, y0 = X - mu_x, Yp - mu_y
    n_x = x0.square().sum(dim=(-2, -1), keepdim=True).sqrt()
    n_y = y0.square().sum(dim=(-2, -1), keepdim=True).sqrt()
    n_y_safe = torch.where(n_y > 0, n_y, torch.ones_like(n_y))  # x0 or y0 = 0 gives s = 0, hence a = 0
    U, s, Vt = torch.linalg.svd((x0 / torch.where(n_x > 0, n_x, torch.ones_like(n_x))).mT @ (y0 / n_y_safe))
    V = Vt.mT
    # Step 4: flip the last singular direction when R would be a reflection (sign 0 kept, as np.sign).
    sign = torch.sign(torch.linalg.det(V @ U.mT))
    V = torch.cat([V[..., :2], V[..., 2:] * sign[..., None, None]], dim=-1)
    s = torch.cat([s[..., :2], s[..., 2:] * sign[..., None]], dim=-1)
    R = V @ U.mT
    a = s.sum(dim=-1)[..., None, None] * n_x / n_y_safe
    t = mu_x - a * (mu_y @ R)
    return (a * (Yp @ R) + t).to(pred.dtype)


def p_mpjpe(pred: torch.Tensor, target: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Protocol #2 (docs/method.md §5.5): MPJPE after per-pose Procrustes alignment.

    pred, target (..., J, 3). reduce="mean" -> scalar; reduce="none" -> per-pose errors (...).
    """
    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
    e = joint_errors(procrustes_align(pred, target), target).mean(dim=-1)
    return e.mean() if reduce == "mean" else e


# --- Multi-hypothesis metrics (D3DP, docs/method.md §5.2 and §5.5 last bullet) --------------------------

def multi_hypothesis_joint_errors(P: torch.Tensor, Y: torch.Tensor, protocol: int = 1) -> torch.Tensor:
    """e_{b,k,h,f,j} (docs/method.md §5.2). P (B, K, H, T, J, 3), Y (B, T, J, 3) -> (B, K, H, T, J).

    protocol=2 first Procrustes-aligns every (b, k, h, f) hypothesis pose to its GT pose.
    """
    check_hypotheses(P, Y)
    if protocol == 1:
        return hypothesis_errors(P, Y)
    if protocol == 2:
        target = Y[:, None, None].expand_as(P)
        return joint_errors(procrustes_align(P, target), target)
    raise ValueError(f"protocol must be 1 (MPJPE) or 2 (P-MPJPE), got {protocol!r}")


def _reduce(e: torch.Tensor, reduce: str) -> torch.Tensor:
    """e (B, K, T, J) -> (K,) | (B, K) | (B, K, T) | (B, K, T, J). Every window has T·J terms, so the
    mean of the per-window values equals the mean over (b, f, j)."""
    if reduce == "mean":
        return e.mean(dim=(0, 2, 3))
    if reduce == "window":
        return e.mean(dim=(2, 3))
    if reduce == "frame":
        return e.mean(dim=3)
    assert reduce == "none", reduce  # validated by the caller before the expensive work
    return e


def multi_hypothesis_errors(P: torch.Tensor, Y: torch.Tensor, jpma_index: torch.Tensor | None = None,
                            protocol: int = 1, p_best: str = "batch", reduce: str = "mean",
                            p_best_weights: torch.Tensor | None = None) -> dict:
    """D3DP's four per-step metrics for one evaluation batch (docs/method.md §5.2, §5.5).

    P (B, K, H, T, J, 3) predictions and Y (B, T, J, 3) GT, both root-relative (root zeroed by the
    caller). jpma_index (B, K, T, J) from `aggregation.jpma_index` on the UNALIGNED predictions;
    without it "J-Agg" is omitted. protocol: 1 = MPJPE, 2 = P-MPJPE (each hypothesis pose aligned
    first; P-Agg aligns the mean pose; J-Agg gathers aligned errors with the unaligned index).
    p_best: "batch" (official: hypothesis index shared by the windows of the batch, docs/method.md §12 item 2)
    or "window". p_best_weights (B, T) >= 0: how much each frame counts when the P-Best hypothesis
    is chosen (see `aggregation.pose_min_index`); the protocol-clean runner passes the weights it
    scores with, so padded, overlapping and 3DHP-invalid frames do not sway the choice. None (the
    official rule) chooses from every frame of the batch/window, padding and invalid frames included.

    reduce: "mean" -> (K,) per step, mean over (b, f, j) as the official code prints per batch;
    "window" -> (B, K); "frame" -> (B, K, T) for frame-weighted sums per action group, or for
    masking duplicated/padded/invalid frames; "none" -> (B, K, T, J) per-joint errors (3DHP PCK).
    Returns {"J-Best", "P-Best", "P-Agg"[, "J-Agg"]} (MULTI_HYPOTHESIS_METRICS) -> tensor, in P's units.
    """
    # Fail on a bad option before the Procrustes step, which takes seconds for a full batch.
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if p_best not in P_BEST_MODES:
        raise ValueError(f"p_best must be one of {P_BEST_MODES}, got {p_best!r}")
    if p_best_weights is not None:
        B, _, _, T, _ = check_hypotheses(P, Y)
        check_frame_weights(p_best_weights, B, T)
    e = multi_hypothesis_joint_errors(P, Y, protocol)
    out = {"J-Best": gather_hypotheses(e, joint_min_index(e)),
           "P-Best": gather_hypotheses(e, pose_min_index(e, per=p_best, weights=p_best_weights)),
           "P-Agg": multi_hypothesis_joint_errors(P.mean(dim=2, keepdim=True), Y, protocol)[:, :, 0]}
    if jpma_index is not None:
        out["J-Agg"] = gather_hypotheses(e, jpma_index)
    return {name: _reduce(value, reduce) for name, value in out.items()}


# --- MPI-INF-3DHP PCK / AUC (docs/method.md §7.5, MATLAB test_util) -------------------------------------

def pck_auc(errors, groups: Mapping | Sequence = MPI_INF_3DHP_PCK_GROUPS,
            thresholds: Sequence[float] = PCK_THRESHOLDS_MM) -> dict:
    """PCK and AUC per joint group and "Total" (docs/method.md §7.5, exact MATLAB rules).

    errors (N, J) per-joint errors in mm over N valid frames (numpy array or CPU tensor).
    groups: name -> 0-based joint indices (default: the 14 3DHP joints in 8 groups).
    thresholds: ascending, in mm; PCK is read at the LAST one (150 mm), the comparison is strict
    (error < τ), AUC = 100·mean over all thresholds (so τ = 0 contributes 0 and a perfect AUC is
    100·30/31). "Total" weights each group by its joint count, i.e. the mean over the joints.
    Returns {"PCK": {group..., "Total"}, "AUC": {group..., "Total"}} as floats in percent.
    """
    err = np.asarray(errors, dtype=np.float64)
    groups = dict(groups)
    if err.ndim != 2 or err.shape[0] == 0:
        raise ValueError(f"errors must have shape (N, J) with N >= 1 valid frames, got {err.shape}")
    if not groups or any(len(j) == 0 or max(j) >= err.shape[1] or min(j) < 0 for j in groups.values()):
        raise ValueError(f"groups must map names to non-empty 0-based joint indices < J = {err.shape[1]}")
    tau = np.asarray(thresholds, dtype=np.float64)
    if tau.ndim != 1 or tau.size == 0 or np.any(np.diff(tau) <= 0):
        raise ValueError(f"thresholds must be a non-empty ascending sequence, got {thresholds}")
    curves = {name: (err[:, list(j), None] < tau).mean(axis=(0, 1)) for name, j in groups.items()}
    sizes = np.array([len(j) for j in groups.values()], dtype=np.float64)
    curves["Total"] = (sizes[:, None] * np.stack(list(curves.values()))).sum(axis=0) / sizes.sum()
    return {"PCK": {name: float(100 * c[-1]) for name, c in curves.items()},
            "AUC": {name: float(100 * c.mean()) for name, c in curves.items()}}
