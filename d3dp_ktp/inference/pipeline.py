"""Lift a 2D keypoint sequence of any length to 3D with a D3DP model (in-the-wild path, docs/method.md §9).

Shape legend: F frames of the sequence, T frames per model window, n windows, B windows per
sampling call, K DDIM steps, H hypotheses, J joints.

1. **Windows** (our choice). F <= T: one window, right-padded by repeating the last frame (docs/method.md
   §6.6). F > T: windows of T frames starting every ``stride`` frames, the last one aligned to the
   end of the sequence. The default stride ceil(T/2) halves the seams' visibility at twice the
   cost of ``stride = T``, which gives exactly the windows of docs/method.md §6.6.
2. **Sampling.** Every window gets H hypotheses after K DDIM steps (`D3DP.sample`, flip TTA on by
   default), with the model's own sampling settings unless the LiftConfig gives others. The initial
   x_T and the per-step noise are drawn window after window from one seeded generator on the CPU,
   so a result depends on the seed only, not on the batch size or device. How many windows go into
   one call, and how many sequences into one denoiser forward, is chosen from a memory budget
   (`auto_batch`) unless ``batch_size`` is given.
3. **Aggregation** at the final step, per window: JPMA (docs/method.md §5.2) with the root translation
   estimated from the 2D (`aggregation.estimate_root`, no ground truth) or P-Agg (the mean). The
   uncertainty of a joint is the RMS distance of the H hypotheses from their mean (metres).
4. **Blending.** Overlapping windows are averaged with linear cross-fade weights: in an overlap of
   r frames, the earlier window's weight falls from 1 to 0 while the later one's rises, so the
   seam is smooth. Padded frames get weight 0.

The camera is unknown in the wild; JPMA and the root trajectory assume a pinhole camera with focal
length ``focal`` px (default 1.15 x image width, close to Human3.6M's ~1145 px at 1000 px) and the
principal point at the image centre. Only the reprojection-based choices depend on it; the
root-relative poses come from the network.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from d3dp_ktp import metrics, perf
from d3dp_ktp.aggregation import estimate_root, gather_hypotheses, jpma_index, p_agg
from d3dp_ktp.camera import normalized_intrinsics
from d3dp_ktp.config import to_dict
from d3dp_ktp.data.windows import window_indices, window_starts
from d3dp_ktp.device import resolve_device  # noqa: F401  (sample.py reads --device through pipeline)
from d3dp_ktp.diffusion import SamplingConfig
from d3dp_ktp.factory import window_length
from d3dp_ktp.inference.io import KeypointFile, PreparedKeypoints, prepare_keypoints, write_json, write_npz

AGGREGATIONS = ("jpma", "mean")
DEFAULT_FOCAL_FACTOR = 1.15   # focal length in px = 1.15 x image width unless given
FILLED_ROOT_WEIGHT = 0.05     # weight of interpolated keypoints when fitting the root translation


# On the CPU glibc's malloc serves blocks above its mmap threshold (which adapts up to 32 MiB on
# 64-bit Linux, DEFAULT_MMAP_THRESHOLD_MAX) with fresh pages and unmaps them when freed, so every op
# of a forward whose intermediates are larger page-faults and zeroes its output again. Smaller
# forwards are not free either: each op pays a fixed cost, and on a busy CPU with two threads a
# synchronisation wait. Measured on the demo model (T=27, C=64, largest intermediate 352 KiB per
# sequence), ms per sequence at 40 / 80 / 100 / 400 sequences per forward: 48 / 36 / 34 / 41 with 2
# threads (3700 page faults per sequence at 400), and 17 at 40 against 38 at 320 with 1 thread (14
# once MALLOC_MMAP_THRESHOLD_ keeps big blocks on the heap). So a CPU forward is made as large as
# keeps its largest intermediate within the threshold; time then grows in proportion to H·K·frames.
CPU_TENSOR_BUDGET = 32 * 2 ** 20   # bytes of the largest intermediate of one denoiser forward (CPU)
GPU_MEMORY_FRACTION = 0.8          # of the free memory, for all of one sampling call (CUDA)


@dataclass(frozen=True)
class LiftConfig:
    sampling: SamplingConfig | None = None  # H, K, eta, flip, dtype, seed; None = the model's own (checkpoint's)
    batch_size: int = 0            # windows per sampling call; 0 = automatic (`auto_batch`). Results do not change
    stride: int | None = None      # window start spacing for F > T; None = ceil(T/2); T = docs/method.md §6.6 windows
    agg: str = "jpma"              # 'jpma' (per joint, by 2D reprojection) or 'mean' (P-Agg)
    focal: float | None = None     # assumed focal length in px; None = 1.15 x image width
    save_hypotheses: bool = False  # keep every hypothesis of every step, (K, H, F, J, 3)

    def effective_stride(self, window: int) -> int:
        """``stride``, or ceil(T/2): overlaps of at most T/2 frames, so no frame lies in three windows."""
        return self.stride or (window + 1) // 2

    def for_model(self, model) -> "LiftConfig":
        """This config with ``sampling`` filled in from ``model.sampling`` (SamplingConfig() without one)."""
        if self.sampling is not None:
            return self
        return dataclasses.replace(self, sampling=getattr(model, "sampling", None) or SamplingConfig())

    def validate(self, num_frames: int) -> None:
        if self.agg not in AGGREGATIONS:
            raise ValueError(f"agg must be one of {', '.join(AGGREGATIONS)}, got '{self.agg}'")
        if self.batch_size < 0:
            raise ValueError(f"batch size must be >= 1 window, or 0 for automatic, got {self.batch_size}")
        if self.stride is not None and not 1 <= self.stride <= num_frames:
            raise ValueError(f"stride must be between 1 and the model's window T={num_frames}, got {self.stride}")
        if self.focal is not None and not self.focal > 0:
            raise ValueError(f"focal length must be positive pixels, got {self.focal}")


@dataclass
class LiftResult:
    poses_3d: np.ndarray                 # (F, J, 3) metres, root-relative camera space (root joint = 0)
    uncertainty: np.ndarray              # (F, J) metres, RMS spread of the final-step hypotheses
    root_trajectory: np.ndarray | None   # (F, 3) camera-space root in metres under the assumed camera
    hypotheses: np.ndarray | None        # (K, H, F, J, 3) when requested
    num_windows: int
    window: int                          # T
    sampling: SamplingConfig | None = None  # the H, K, eta, flip, dtype and seed it was sampled with


# ----------------------------------------------------------------------------- windows

def window_weights(starts: np.ndarray, window: int, num_frames: int) -> np.ndarray:
    """Linear cross-fade weights (n, T): ramps over each overlap with the previous/next window, 0 on padding.

    In an overlap of r frames shared by two windows only, the two weights sum to exactly 1.
    """
    n, pos = len(starts), np.arange(window) + 0.5
    w = np.ones((n, window))
    for i, s in enumerate(starts):
        if i > 0 and (left := starts[i - 1] + window - s) > 0:
            w[i] = np.minimum(w[i], pos / left)
        if i < n - 1 and (right := s + window - starts[i + 1]) > 0:
            w[i] = np.minimum(w[i], (window - pos) / right)
    w[starts[:, None] + np.arange(window) >= num_frames] = 0.0
    return w


def blend_windows(values: np.ndarray, starts: np.ndarray, num_frames: int) -> np.ndarray:
    """Weighted average of per-window values (n, T, ...) into a sequence (F, ...) with `window_weights`."""
    n, window = values.shape[:2]
    idx = window_indices(starts, window, num_frames).reshape(-1)
    w = window_weights(starts, window, num_frames).reshape(-1)
    flat = values.reshape(n * window, -1).astype(np.float64)
    num, den = np.zeros((num_frames, flat.shape[1])), np.zeros(num_frames)
    np.add.at(num, idx, flat * w[:, None])
    np.add.at(den, idx, w)
    assert (den > 0).all(), "every frame lies in some window"
    return (num / den[:, None]).reshape((num_frames,) + values.shape[2:])


# ----------------------------------------------------------------------------- sampling

def _noise(generator: torch.Generator, count: int, shape: tuple, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_T and the K-1 step noises for ``count`` windows, drawn window after window; shape = (H, T, J, 3)."""
    lat, steps_z = [], []
    for _ in range(count):
        lat.append(torch.randn((1, *shape), generator=generator))
        steps_z.append(torch.randn((steps - 1, 1, *shape), generator=generator))
    return torch.cat(lat), torch.cat(steps_z, dim=1)


def sequence_bytes(cfg) -> int:
    """Bytes of the largest intermediate one sequence (window x hypothesis) makes in a denoiser forward
    (fp32): the qkv projection or the MLP's hidden layer, 4·T·J·C·max(3, mlp_ratio), or with
    attention='math' the attention scores, 4·heads·max(J·T², T·J²). Checked with a dispatch mode
    in tests/inference/test_batching.py."""
    T, J, C = cfg.num_frames, cfg.num_joints, cfg.channels
    largest = T * J * C * max(3.0, cfg.mlp_ratio)
    if cfg.attention == "math":
        largest = max(largest, cfg.num_heads * max(J * T * T, T * J * J))
    return int(4 * largest)


def auto_batch(model, sampling: SamplingConfig, device: torch.device | str = "cpu",
               cpu_budget: int | None = None) -> tuple[int, int | None]:
    """(windows per sampling call, sequences per denoiser forward or None = all) for ``batch_size=0``.

    CPU: as many sequences per forward as keep its largest intermediate within ``cpu_budget`` bytes
    (default `CPU_TENSOR_BUDGET`, which says why), at least one; as many windows per call as fill
    one forward (a window is H sequences, 2H with flip; a window larger than the budget is split by
    hypotheses inside the call, `D3DP.denoise`). CUDA: the windows whose whole sampling call fits in 80% of the free memory
    (`perf.max_windows_for_budget`), in one forward.
    """
    device = torch.device(device)
    per_window = sampling.num_hypotheses * (2 if sampling.flip else 1)
    if device.type == "cuda":
        budget = int(GPU_MEMORY_FRACTION * torch.cuda.mem_get_info(device)[0])
        return perf.max_windows_for_budget(model, window_length(model), sampling.num_hypotheses, sampling.flip,
                                           budget, K=sampling.num_steps, dtype=sampling.dtype), None
    sequences = max(1, (cpu_budget or CPU_TENSOR_BUDGET) // sequence_bytes(model.pose_estimator.cfg))
    return max(1, sequences // per_window), sequences


def sample_windows(model, x2d: torch.Tensor, cfg: LiftConfig, device: torch.device | str = "cpu"
                   ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (window slice, P (B, K, H, T, J, 3) on the CPU, root joint set to 0) batch after batch.

    x2d: (n, T, J2, 2) normalised windows.
    """
    s = cfg.for_model(model).sampling
    generator = torch.Generator().manual_seed(s.seed)
    n, T = x2d.shape[:2]
    J = model.skeleton.num_joints
    root = model.skeleton.root
    windows, max_batch = (cfg.batch_size, None) if cfg.batch_size else auto_batch(model, s, device)
    for b in range(0, n, windows):
        part = slice(b, min(b + windows, n))
        latents, step_noise = _noise(generator, part.stop - b, (s.num_hypotheses, T, J, 3), s.num_steps)
        P = model.sample(x2d[part].to(device), num_hypotheses=s.num_hypotheses, num_steps=s.num_steps,
                         eta=s.eta, flip=s.flip, latents=latents, step_noise=step_noise, dtype=s.dtype,
                         max_batch=max_batch).float().cpu().contiguous()
        P[..., root, :] = 0  # root-relative output (docs/method.md §5.1)
        yield part, P


def aggregate(P: torch.Tensor, agg: str, ref2d: torch.Tensor | None, camera: torch.Tensor | None,
              weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Final-step aggregation of P (B, K, H, T, J, 3) -> pose (B, T, J, 3), uncertainty (B, T, J),
    root (B, T, 3) or None. ref2d (B, T, J, 2) is the 2D in the 3D skeleton's layout (needed for
    JPMA and the root), camera the (4,) normalised pinhole intrinsics, weights (B, T, J) >= 0."""
    last = P[:, -1:]                                         # (B, 1, H, T, J, 3)
    mean = p_agg(last)                                       # (B, 1, T, J, 3)
    spread = (last - mean[:, :, None]).square().sum(-1).mean(2).sqrt()[:, 0]
    if ref2d is None:
        if agg == "jpma":
            raise ValueError("JPMA needs the 2D keypoints in the 3D skeleton's layout; use --agg mean")
        return mean[:, 0], spread, None
    root = estimate_root(last, ref2d, camera, weights)       # (B, 1, T, 3), from the hypothesis mean
    if agg == "jpma":
        pose = gather_hypotheses(last, jpma_index(last, ref2d, camera, root=root, linear=True))[:, 0]
    else:
        pose = mean[:, 0]
    return pose, spread, root[:, 0]


def default_camera(width: float, height: float, focal: float | None = None) -> torch.Tensor:
    """Pinhole intrinsics (4,) [fx, fy, cx, cy] in normalised units (docs/method.md §5.3): focal px (default
    1.15 x width), principal point at the image centre."""
    f = DEFAULT_FOCAL_FACTOR * width if focal is None else focal
    k = normalized_intrinsics(f, f, width / 2, height / 2, (0, 0, 0), (0, 0), width, height)
    return torch.from_numpy(k[:4].copy())


# ----------------------------------------------------------------------------- the whole sequence

def lift(model, x2d: np.ndarray, cfg: LiftConfig, ref2d: np.ndarray | None = None, weights: np.ndarray | None = None,
         camera: torch.Tensor | None = None, device: torch.device | str = "cpu",
         progress: Callable[[int], object] | None = None) -> LiftResult:
    """Lift normalised 2D x2d (F, J2, 2) of any length F >= 1 (steps 1-4 of the module docstring).

    ref2d (F, J, 2): the same 2D in the 3D skeleton's layout, for JPMA and the root (None: P-Agg only);
    weights (F, J): per-keypoint confidences for the root fit; camera (4,): see `default_camera`;
    progress(n) is called after every batch with its number of windows (a progress bar).
    """
    T = window_length(model)
    cfg = cfg.for_model(model)
    cfg.validate(T)
    F = len(x2d)
    if F < 1:
        raise ValueError("the 2D sequence has zero frames")
    if ref2d is not None and camera is None:
        raise ValueError("JPMA and the root need the camera intrinsics: pass camera=default_camera(width, height)")
    starts = window_starts(F, T, cfg.effective_stride(T))
    idx = torch.from_numpy(window_indices(starts, T, F))
    x_win, ref_win = _windowed(x2d, idx), _windowed(ref2d, idx)
    w_win = _windowed(np.ones(np.shape(ref2d)[:-1]) if weights is None and ref2d is not None else weights, idx)
    out: dict[str, list] = {"pose": [], "spread": [], "root": [], "hyps": []}
    for part, P in sample_windows(model, x_win, cfg, device):
        sel = (lambda a: None) if ref_win is None else (lambda a: a[part])
        pose, spread, root = aggregate(P, cfg.agg, sel(ref_win), camera, sel(w_win))
        out["pose"].append(pose)
        out["spread"].append(spread)
        out["root"].append(root)
        if cfg.save_hypotheses:
            out["hyps"].append(P.permute(0, 3, 1, 2, 4, 5))  # (B, T, K, H, J, 3): time second, for blending
        if progress is not None:
            progress(part.stop - part.start)

    def blend(key: str) -> np.ndarray | None:
        if not out[key] or out[key][0] is None:
            return None
        return blend_windows(torch.cat(out[key]).numpy(), starts, F).astype(np.float32)

    hyps = blend("hyps")
    return LiftResult(poses_3d=blend("pose"), uncertainty=blend("spread"), root_trajectory=blend("root"),
                      hypotheses=None if hyps is None else hyps.transpose(1, 2, 0, 3, 4),
                      num_windows=len(starts), window=T, sampling=cfg.sampling)


def _windowed(a: np.ndarray | None, idx: torch.Tensor) -> torch.Tensor | None:
    """(F, ...) -> (n, T, ...) float32 windows, or None."""
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.float32)[idx]


def prepare_inputs(model, kf: KeypointFile, layout: str | None = None, width: float | None = None,
                   height: float | None = None, min_score: float = 0.0
                   ) -> tuple[PreparedKeypoints, PreparedKeypoints | None]:
    """The model input (its keypoint layout) and the JPMA reference (the 3D skeleton's layout, or
    None when the file's layout cannot be converted to it)."""
    key_layout, skel_layout = model.keypoint_skeleton.name, model.skeleton.name
    inp = prepare_keypoints(kf, key_layout, layout, width, height, min_score)
    if skel_layout == key_layout:
        return inp, inp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same gaps were reported for the model input
        try:
            return inp, prepare_keypoints(kf, skel_layout, layout, width, height, min_score)
        except ValueError:
            return inp, None


def lift_keypoints(model, kf: KeypointFile, cfg: LiftConfig = LiftConfig(), layout: str | None = None,
                   width: float | None = None, height: float | None = None, min_score: float = 0.0,
                   device: torch.device | str = "cpu", progress: Callable[[int], object] | None = None
                   ) -> tuple[LiftResult, PreparedKeypoints]:
    """Clean a keypoint file (`prepare_inputs`) and lift it; returns (result, model input); ``progress``: see `lift`."""
    inp, ref = prepare_inputs(model, kf, layout, width, height, min_score)
    cfg = cfg.for_model(model)
    cfg.validate(window_length(model))
    if ref is None and cfg.agg == "jpma":
        raise ValueError(f"JPMA compares reprojections with 2D keypoints in the '{model.skeleton.name}' layout, "
                         f"which '{layout or kf.layout}' keypoints cannot be converted to; use --agg mean")
    camera = default_camera(inp.width, inp.height, cfg.focal)
    weights = None if ref is None else np.maximum(ref.confidence, FILLED_ROOT_WEIGHT)
    result = lift(model, inp.normalized, cfg, None if ref is None else ref.normalized, weights, camera, device, progress)
    return result, inp


def mpjpe_mm(poses_3d: np.ndarray, gt: np.ndarray, root: int = 0) -> float:
    """Protocol #1 MPJPE in mm of root-relative poses (F, J, 3) against ground truth (F, J, 3) metres
    (the ground truth's root column is subtracted first)."""
    gt = np.asarray(gt, dtype=np.float32)
    if gt.shape != poses_3d.shape:
        raise ValueError(f"ground truth must have shape {poses_3d.shape} to match the poses, got {gt.shape}")
    gt = gt - gt[:, root:root + 1]
    return float(metrics.mpjpe(torch.from_numpy(poses_3d), torch.from_numpy(gt))) * 1000


# ----------------------------------------------------------------------------- saving

def result_settings(cfg: LiftConfig, inp: PreparedKeypoints, result: LiftResult, **extra) -> dict:
    """The settings stored beside the poses: the LiftConfig with effective values (its sampling
    settings flat: num_hypotheses, num_steps, eta, flip, dtype, seed), plus ``extra``."""
    values = to_dict(cfg)
    values.pop("sampling")
    sampling = to_dict(cfg.sampling or result.sampling or SamplingConfig())
    return {**sampling, **values, "stride": cfg.effective_stride(result.window),
            "focal": cfg.focal or DEFAULT_FOCAL_FACTOR * inp.width, "window": result.window,
            "num_windows": result.num_windows, "num_frames": inp.num_frames, "width": inp.width,
            "height": inp.height, "keypoint_layout": inp.layout, **extra}


def save_result(out_dir: str | Path, result: LiftResult, inp: PreparedKeypoints, settings: dict,
                joint_names, extra: dict[str, np.ndarray] | None = None) -> list[Path]:
    """Write ``poses_3d.npz`` and ``poses_3d.json`` into ``out_dir`` (atomic); returns their paths.
    ``extra``: more arrays to store in both (post-processing results, docs/outputs.md)."""
    out_dir = Path(out_dir)
    arrays = {"poses_3d": result.poses_3d, "uncertainty": result.uncertainty,
              "keypoints_2d": inp.pixels.astype(np.float32), "keypoints_filled": inp.filled}
    if result.root_trajectory is not None:
        arrays["root_trajectory"] = result.root_trajectory
    if result.hypotheses is not None:
        arrays["hypotheses"] = result.hypotheses
    arrays.update(extra or {})
    npz = write_npz(out_dir / "poses_3d.npz", **arrays, joint_names=np.array(joint_names),
                    settings=np.array(json.dumps(settings)))
    doc = {"format": "d3dp-ktp poses_3d v1", "units": "metres, root-relative camera space (x right, y down, "
           "z forward); uncertainty = RMS spread of the hypotheses", "joint_names": list(joint_names),
           "settings": settings}
    doc.update({k: np.round(v.astype(np.float64), 6).tolist() if v.dtype != bool else v.tolist()
                for k, v in arrays.items()})
    return [npz, write_json(out_dir / "poses_3d.json", doc)]
