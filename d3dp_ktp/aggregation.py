"""Hypothesis selection and aggregation for multi-hypothesis predictions (docs/method.md §5.2-5.3, §12).

Shape legend: B windows, K DDIM steps, H hypotheses, T frames, J joints.
  P     (B, K, H, T, J, 3)  root-relative predictions (metres)
  Y     (B, T, J, 3)        root-relative ground truth
  x2d   (B, T, J, 2)        un-flipped input 2D, normalised screen coordinates
  camera (9,) or (B, 9)     intrinsics [fx, fy, cx, cy, k1, k2, k3, p1, p2], normalised units
  root  (B, T, 3) or (B, K, T, 3)  camera-space root trajectory (metres)
  index (B, K, T, J)        hypothesis chosen for every joint (int64)
  weights (B, T)            how much each window frame counts when P-Best chooses (>= 0)

Every selection rule is expressed as a per-joint index so one `gather_hypotheses` serves poses
and error tensors alike; `d3dp_ktp.metrics` reuses these rules on (aligned) error tensors.
"""
from __future__ import annotations

import torch

from d3dp_ktp.camera import image_coordinates, project_to_2d, project_to_2d_linear

P_BEST_MODES = ("batch", "window")


def shape_of(x) -> object:
    """What an error message shows for a bad argument: its shape, or its type if it has none."""
    return tuple(x.shape) if hasattr(x, "shape") else type(x).__name__


def check_hypotheses(P: torch.Tensor, Y: torch.Tensor | None = None) -> tuple[int, int, int, int, int]:
    """Validate P (B, K, H, T, J, 3) and, if given, Y (B, T, J, 3); return (B, K, H, T, J)."""
    if not isinstance(P, torch.Tensor) or P.dim() != 6 or P.shape[-1] != 3:
        raise ValueError(f"P must be a tensor of shape (B, K, H, T, J, 3), got {shape_of(P)}")
    B, K, H, T, J = P.shape[:5]
    if Y is not None and (not isinstance(Y, torch.Tensor) or tuple(Y.shape) != (B, T, J, 3)):
        raise ValueError(f"Y must have shape (B, T, J, 3) = {(B, T, J, 3)} to match P, got {shape_of(Y)}")
    return B, K, H, T, J


def hypothesis_errors(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """e_{b,k,h,f,j} = ||P - Y||_2 (docs/method.md §5.2). P (B, K, H, T, J, 3), Y (B, T, J, 3) -> (B, K, H, T, J)."""
    check_hypotheses(P, Y)
    return torch.linalg.vector_norm(P - Y[:, None, None], dim=-1)


def _check_errors(e: torch.Tensor) -> None:
    if not isinstance(e, torch.Tensor) or e.dim() != 5:
        raise ValueError(f"errors must be a tensor of shape (B, K, H, T, J), got {shape_of(e)}")


def joint_min_index(e: torch.Tensor) -> torch.Tensor:
    """J-Best rule: per (b, k, f, j) the hypothesis with the smallest error. e (B, K, H, T, J) -> (B, K, T, J)."""
    _check_errors(e)
    return e.argmin(dim=2)  # argmin returns the first index on ties, as the official torch.min does


def check_frame_weights(weights, B: int, T: int) -> torch.Tensor:
    """Validate per-frame weights (B, T): a real or bool tensor, finite and >= 0. Returns them."""
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != (B, T) or weights.is_complex():
        raise ValueError(f"weights must be a real tensor of shape (B, T) = {(B, T)} (how much each window "
                         f"frame counts), got {shape_of(weights)}")
    if weights.dtype != torch.bool and not (torch.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError("weights must be finite and >= 0 (0 = the frame does not count)")
    return weights


def pose_min_index(e: torch.Tensor, per: str = "batch", weights: torch.Tensor | None = None) -> torch.Tensor:
    """P-Best rule: one hypothesis per pose sequence. e (B, K, H, T, J) -> index (B, K, T, J).

    per="batch" is the official rule (docs/method.md §5.2, §12 item 2): E_{k,h} = mean over (b, f, j), then
    argmin over h, so all windows of the batch share h. per="window" takes the argmin per window.

    weights (B, T), optional: E_{k,h} becomes the frame-weighted mean, sum_{b,f} w_{b,f} mean_j e /
    sum_{b,f} w_{b,f}, so frames that are not scored (replicate padding, frames that a video's
    overlapping last window repeats, 3DHP invalid frames) do not sway the choice (protocol-clean,
    docs/method.md §10). None = every frame counts equally, the official rule. A window (per="window") or batch whose weights are all 0 is
    never scored; it falls back to the unweighted mean so its index stays defined.
    """
    _check_errors(e)
    if per not in P_BEST_MODES:
        raise ValueError(f"per must be one of {P_BEST_MODES}, got {per!r}")
    B, K, H, T, J = e.shape
    if weights is None:  # the official arithmetic, kept op for op so its results stay bit-identical
        E = e.mean(dim=(0, 3, 4)).expand(B, K, H) if per == "batch" else e.mean(dim=(3, 4))
    else:
        E = _weighted_pose_error(e, check_frame_weights(weights, B, T), per)
    best = E.argmin(dim=2)  # (B, K); the first index on ties, as the official torch.min does
    return best[:, :, None, None].expand(B, K, T, J)


def _weighted_pose_error(e: torch.Tensor, weights: torch.Tensor, per: str) -> torch.Tensor:
    """Frame-weighted E (B, K, H) of `pose_min_index`; windows/batches of weight 0 use the plain mean."""
    B, K, H, T, J = e.shape
    w = weights.to(device=e.device, dtype=e.dtype)[:, None, None, :]  # (B, 1, 1, T)
    frame_error = e.mean(dim=4)  # (B, K, H, T); every frame has J joints, so this keeps the (f, j) mean
    # torch.where, not a product, so an inf/NaN error on a weight-0 frame cannot leak in as 0·inf.
    weighted = torch.where(w > 0, frame_error * w, torch.zeros_like(frame_error))
    axes = (0, 3) if per == "batch" else (3,)
    total = w.sum(dim=axes)  # (B, 1, 1) per window or (1, 1) per batch
    E = torch.where(total > 0, weighted.sum(dim=axes) / total.clamp_min(torch.finfo(e.dtype).tiny),
                    frame_error.mean(dim=axes))
    return E.expand(B, K, H)


def gather_hypotheses(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick one hypothesis per joint. x (B, K, H, T, J) or (B, K, H, T, J, C), index (B, K, T, J)
    -> (B, K, T, J) or (B, K, T, J, C)."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (5, 6):
        raise ValueError(f"x must have shape (B, K, H, T, J[, C]), got {shape_of(x)}")
    B, K, H, T, J = x.shape[:5]
    if not isinstance(index, torch.Tensor) or tuple(index.shape) != (B, K, T, J):
        raise ValueError(f"index must have shape (B, K, T, J) = {(B, K, T, J)}, got {shape_of(index)}")
    if index.dtype.is_floating_point or (index.numel() and (index.min() < 0 or index.max() >= H)):
        raise ValueError(f"index must hold integer hypothesis indices in [0, {H}), got dtype {index.dtype}")
    idx = index.long().unsqueeze(2)
    if x.dim() == 6:
        idx = idx.unsqueeze(-1).expand(B, K, 1, T, J, x.shape[-1])
    return x.gather(2, idx).squeeze(2)


def p_agg(P: torch.Tensor) -> torch.Tensor:
    """P-Agg: mean pose over hypotheses. P (B, K, H, T, J, 3) -> (B, K, T, J, 3)."""
    check_hypotheses(P)
    return P.mean(dim=2)


def p_best(P: torch.Tensor, Y: torch.Tensor, per: str = "batch", weights: torch.Tensor | None = None) -> torch.Tensor:
    """P-Best oracle pose (see `pose_min_index` for `per` and the (B, T) `weights`). -> (B, K, T, J, 3)."""
    return gather_hypotheses(P, pose_min_index(hypothesis_errors(P, Y), per=per, weights=weights))


def _check_camera(camera: torch.Tensor, B: int, linear: bool) -> torch.Tensor:
    sizes = (4, 9) if linear else (9,)  # the pinhole model needs only [fx, fy, cx, cy]
    ok = isinstance(camera, torch.Tensor) and camera.dim() in (1, 2) and camera.shape[-1] in sizes
    if not ok or (camera.dim() == 2 and camera.shape[0] != B):
        raise ValueError(f"camera must have shape ({sizes[-1]},) or (B={B}, {sizes[-1]}) "
                         f"(intrinsics in normalised units), got {shape_of(camera)}")
    return camera


def _check_x2d(x2d: torch.Tensor, B: int, T: int, J: int) -> None:
    if not isinstance(x2d, torch.Tensor) or tuple(x2d.shape) != (B, T, J, 2):
        raise ValueError(f"x2d must have shape (B, T, J, 2) = {(B, T, J, 2)}, got {shape_of(x2d)}")


def _pose_and_frame_axes(pose: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """Mean over hypotheses for 6-D input; returns (rel (B[, K], T, J, 3), B, T, J)."""
    if isinstance(pose, torch.Tensor) and pose.dim() == 6:
        B, _, _, T, J = check_hypotheses(pose)
        return pose.mean(dim=2), B, T, J
    if isinstance(pose, torch.Tensor) and pose.dim() == 4 and pose.shape[-1] == 3:
        B, T, J, _ = pose.shape
        return pose, B, T, J
    raise ValueError(f"pose must have shape (B, T, J, 3) or (B, K, H, T, J, 3), got {shape_of(pose)}")


def estimate_root(pose: torch.Tensor, x2d: torch.Tensor, camera: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-space root translation t from 2D alone (our choice, docs/method.md §10 "estimated root").

    pose (B, T, J, 3) -> t (B, T, 3); pose (B, K, H, T, J, 3) -> t (B, K, T, 3), using the mean over
    hypotheses so one root serves every hypothesis of a step. x2d (B, T, J, 2); camera (9,), (B, 9),
    (4,) or (B, 4) (only fx, fy, cx, cy: the linear pinhole model); weights (J,) or (B, T, J) >= 0.
    Every joint gives fx(X+tx) - (u-cx)(Z+tz) = 0 and fy(Y+ty) - (v-cy)(Z+tz) = 0, linear in t;
    the weighted (2J x 3) least-squares system is solved per frame via float64 normal equations.
    Noiseless linear projections are recovered exactly; distortion makes the result approximate.
    Every frame needs at least two distinct joints with positive weight.
    """
    rel, B, T, J = _pose_and_frame_axes(pose)
    _check_x2d(x2d, B, T, J)
    cam = _check_camera(camera, B, linear=True).double()
    lead = rel.dim() - 3  # 1 for (B, T, J, 3), 2 for (B, K, T, J, 3)
    cam = cam.reshape(cam.shape[0] if cam.dim() == 2 else 1, *[1] * (lead + 1), cam.shape[-1])
    fx, fy, cx, cy = cam[..., 0], cam[..., 1], cam[..., 2], cam[..., 3]  # broadcast over (..., T, J)
    uv = x2d.double() if lead == 1 else x2d.double()[:, None]
    du, dv = uv[..., 0] - cx, uv[..., 1] - cy
    X, Yc, Z = rel.double().unbind(-1)
    zero = torch.zeros_like(du)
    A = torch.cat([torch.stack([fx.expand_as(du), zero, -du], -1),
                   torch.stack([zero, fy.expand_as(dv), -dv], -1)], dim=-2)  # (..., T, 2J, 3)
    b = torch.cat([du * Z - fx * X, dv * Z - fy * Yc], dim=-1)  # (..., T, 2J)
    w = _root_weights(weights, B, T, J, lead, du).expand_as(du)
    Aw = A * torch.cat([w, w], dim=-1)[..., None]
    t, info = torch.linalg.solve_ex(Aw.mT @ A, Aw.mT @ b[..., None])
    if (info != 0).any():
        raise ValueError("estimate_root: a frame has fewer than two distinct joints with positive weight, "
                         "so its translation is undetermined; check weights and x2d")
    return t[..., 0].to(pose.dtype)


def _root_weights(weights, B: int, T: int, J: int, lead: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return like.new_ones(J)
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) not in ((J,), (B, T, J)):
        raise ValueError(f"weights must have shape (J,) = ({J},) or (B, T, J) = {(B, T, J)}, "
                         f"got {shape_of(weights)}")
    if (weights < 0).any():
        raise ValueError("weights must be non-negative (per-joint 2D confidences)")
    w = weights.to(like)
    return w[:, None] if (w.dim() == 3 and lead == 2) else w


def _root_view(root: torch.Tensor, B: int, K: int, T: int) -> torch.Tensor:
    """root (B, T, 3) or (B, K, T, 3) -> broadcastable against P: (B, K|1, 1, T, 1, 3)."""
    if isinstance(root, torch.Tensor) and tuple(root.shape) == (B, T, 3):
        return root[:, None, None, :, None, :]
    if isinstance(root, torch.Tensor) and tuple(root.shape) == (B, K, T, 3):
        return root[:, :, None, :, None, :]
    raise ValueError(f"root must have shape (B, T, 3) = {(B, T, 3)} or (B, K, T, 3) = {(B, K, T, 3)}, "
                     f"got {shape_of(root)}")


def jpma_index(P: torch.Tensor, x2d: torch.Tensor, camera: torch.Tensor, root: torch.Tensor | None = None,
               linear: bool = False, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """JPMA (J-Agg) selection, docs/method.md §5.2-5.3: per (b, k, f, j) the hypothesis whose reprojection
    Π(P + root) is closest to x2d (first index on ties). Returns index (B, K, T, J).

    The official protocol passes the GROUND-TRUTH root trajectory (docs/method.md §12 item 1). root=None
    uses `estimate_root` instead (hypothesis-mean pose, pinhole model even when the projection is
    distorted), the 2D-only mode for in-the-wild / honest numbers.
    linear=True projects with the undistorted pinhole model (project_to_2d_linear).
    image_size=(width, height) compares in pixels instead of normalised coordinates, as D3DP's
    MPI-INF-3DHP evaluation does (docs/method.md §7; its TS5-6 distortion is all zeros, so it goes with
    linear=True). Normalisation is an isotropic scale plus shift, so pixels pick the same hypotheses up
    to float rounding; they are kept to follow the official code literally.
    """
    B, K, H, T, J = check_hypotheses(P)
    _check_x2d(x2d, B, T, J)
    camera = _check_camera(camera, B, linear)
    if root is None:
        root = estimate_root(P, x2d, camera)
    project = project_to_2d_linear if linear else project_to_2d
    reproj = project(P + _root_view(root, B, K, T), camera)  # camera (B, 9) broadcasts from the left
    target = x2d
    if image_size is not None:
        reproj, target = image_coordinates(reproj, *image_size), image_coordinates(x2d, *image_size)
    return torch.linalg.vector_norm(reproj - target[:, None, None], dim=-1).argmin(dim=2)


def jpma(P: torch.Tensor, x2d: torch.Tensor, camera: torch.Tensor, root: torch.Tensor | None = None,
         linear: bool = False, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """J-Agg pose: gather P with `jpma_index` (same arguments). -> (B, K, T, J, 3)."""
    return gather_hypotheses(P, jpma_index(P, x2d, camera, root=root, linear=linear, image_size=image_size))
