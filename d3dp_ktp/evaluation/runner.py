"""The evaluation loop (docs/method.md §5.1-5.5, §6.6, §7.4-7.5): windows, batched sampling, per-step errors.

Shape legend: n windows of one video, B windows of a batch, K DDIM steps, H hypotheses, T frames
per window, J joints, J2 keypoints.

For every video: cut (2D, 3D, valid) into the windows of docs/method.md §6.6, keep the GT root track r from
the 3D root column and zero it, then sample batches of ``cfg.batch_size`` windows (never across
videos, as D3DP feeds one video at a time) with one ``model.sample`` call each; all hypotheses, steps
and the flip pass run in that call. The predicted root is zeroed and the four multi-hypothesis
errors (J-Best, P-Best, P-Agg, J-Agg) are computed per step k for Protocol #1 and #2, accumulated
frame-weighted per action group and averaged over groups (docs/method.md §5.4). ``cfg.max_windows`` keeps an
evenly spread subset of the windows (`select_windows`), e.g. for a quick validation.

How frames count, where P-Best chooses and which root JPMA reprojects with are the fields of the
protocol ``cfg.mode`` names (`protocol.OFFICIAL` or `protocol.CLEAN`, side by side in protocol.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import aggregation, metrics
from ..config import to_dict
from ..data.dataset import PoseDataset, Video
from ..data.windows import eval_windows, num_windows, window_frame_indices, window_keep_mask
from ..device import resolve_device
from ..factory import window_length
from ..perf import max_windows_for_budget
from ..skeleton import MPI_INF_3DHP
from .config import EvalConfig
from .pck import PCKCollector
from .protocol import MM, P2_PREFIX, EvalProtocol, get_protocol

METRIC_NAMES = metrics.MULTI_HYPOTHESIS_METRICS  # ('J-Best', 'P-Best', 'P-Agg', 'J-Agg')
# Paper column order of the 15 Human3.6M action groups (docs/method.md §6.4).
H36M_ACTION_GROUPS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
                      "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")


# --- windows of one video ----------------------------------------------------------------------

@dataclass
class VideoWindows:
    """One video cut into evaluation windows (docs/method.md §6.6), tensors on the CPU."""
    video: Video
    x2d: torch.Tensor             # (n, T, J2, 2) un-flipped input 2D, normalised screen coordinates
    y: torch.Tensor               # (n, T, J, 3) root-relative GT, root zeroed
    root: torch.Tensor            # (n, T, 3) GT root trajectory r (camera space), kept before zeroing
    weight: torch.Tensor          # (n, T) how often each window frame counts (see `frame_weights`)
    frame_index: np.ndarray       # (n, T) source frame of every window position
    camera: torch.Tensor | None   # (9,) normalised intrinsics, None when the dataset has none

    def __len__(self) -> int:
        return self.x2d.shape[0]


def frame_weights(video: Video, window: int, protocol: EvalProtocol) -> np.ndarray:
    """(n, T) float weights of the window frames, by ``protocol.frame_counting``.

    'every_window_frame' (official): the overlapping part of the last window and the replicate
    padding are counted again (docs/method.md §5.4, §12 item 3). 'each_frame_once' (clean): the frame `stitch`
    keeps. Videos with a valid mask (MPI-INF-3DHP) are scored as the official MATLAB code does, on
    the stitched sequence and on valid frames only (docs/method.md §7.5), under both protocols.
    """
    keep = window_keep_mask(video.num_frames, window)
    if video.valid is not None:
        return (keep & eval_windows(np.asarray(video.valid, dtype=bool), window)).astype(np.float64)
    if protocol.counts_repeated_frames:
        return np.ones(keep.shape, dtype=np.float64)
    return keep.astype(np.float64)


def video_windows(video: Video, window: int, root: int, protocol: EvalProtocol) -> VideoWindows:
    if video.positions_3d is None:
        raise ValueError(f"video {video.key} has no 3D ground truth; evaluation needs subjects with 3D")
    y = torch.from_numpy(np.ascontiguousarray(eval_windows(video.positions_3d, window), dtype=np.float32))
    r = y[:, :, root].clone()  # GT root trajectory r, kept before zeroing (docs/method.md §5.1)
    y[:, :, root] = 0
    x2d = torch.from_numpy(np.ascontiguousarray(eval_windows(video.keypoints_2d, window), dtype=np.float32))
    camera = None if video.camera is None else torch.as_tensor(np.asarray(video.camera, dtype=np.float32))
    return VideoWindows(video, x2d, y, r, torch.from_numpy(frame_weights(video, window, protocol)),
                        window_frame_indices(video.num_frames, window), camera)


# --- model / dataset checks ----------------------------------------------------------------------

def check_compatible(model, dataset: PoseDataset) -> list[str]:
    """ValueError when the checkpoint cannot evaluate this data; returns notes for lesser mismatches."""
    if not callable(getattr(model, "sample", None)) or not hasattr(model, "skeleton"):
        raise ValueError("evaluate() needs a D3DP model (with .sample and .skeleton), e.g. from load_checkpoint")
    sk, data_sk = model.skeleton, dataset.skeleton
    if sk.num_joints != data_sk.num_joints or sk.root != data_sk.root:
        raise ValueError(f"checkpoint mismatch: the model predicts {sk.num_joints} joints of layout '{sk.name}' "
                         f"(root {sk.root}) but {dataset.name} has {data_sk.num_joints} joints of layout "
                         f"'{data_sk.name}' (root {data_sk.root}); evaluate a checkpoint trained on this dataset")
    kp = getattr(model, "keypoint_skeleton", sk)
    if dataset.num_keypoints != kp.num_joints:
        raise ValueError(f"checkpoint mismatch: the model takes {kp.num_joints} 2D keypoints ('{kp.name}') but the "
                         f"{dataset.name} 2D files have {dataset.num_keypoints}; choose matching --keypoints")
    notes = []
    if sk.name != data_sk.name:
        notes.append(f"model layout '{sk.name}' differs from the dataset's '{data_sk.name}' (same joint count)")
    if (tuple(kp.joints_left), tuple(kp.joints_right)) != (tuple(dataset.kps_left), tuple(dataset.kps_right)):
        notes.append(f"the model flips 2D with its '{kp.name}' symmetry lists, which differ from the 2D file's")
    return notes


def jpma_status(model, dataset: PoseDataset) -> str | None:
    """None when J-Agg can be computed, else the reason it is skipped."""
    if any(v.camera is None for v in dataset.videos):
        return (f"J-Agg (JPMA) skipped: {dataset.name} has no camera intrinsics, so nothing can be reprojected "
                "(docs/method.md §8)")
    if dataset.num_keypoints != model.skeleton.num_joints:
        return "J-Agg (JPMA) skipped: the 2D keypoints are not the 3D joints, so per-joint reprojection is undefined"
    return None


def uses_pixel_jpma(dataset: PoseDataset) -> bool:
    """MPI-INF-3DHP's official JPMA compares reprojections in pixels (docs/method.md §7.4)."""
    return dataset.skeleton.name == MPI_INF_3DHP.name


# --- one batch -----------------------------------------------------------------------------------

@dataclass
class BatchErrors:
    """Per-joint errors of one batch: metric -> (B, K, T, J) metres, plus how the frames count."""
    video: Video
    errors: dict[str, torch.Tensor]
    weight: torch.Tensor          # (B, T)
    frame_index: np.ndarray       # (B, T)


def jpma_selection(P: torch.Tensor, x2d: torch.Tensor, camera: torch.Tensor, root: torch.Tensor | None,
                   video: Video, pixels: bool) -> torch.Tensor:
    """JPMA hypothesis index (B, K, T, J). root = GT trajectory (official) or None (estimated from 2D).
    pixels: MPI-INF-3DHP's JPMA, linear projection compared in pixels (docs/method.md §7.4)."""
    if pixels:
        return aggregation.jpma_index(P, x2d, camera, root=root, linear=True, image_size=(video.res_w, video.res_h))
    return aggregation.jpma_index(P, x2d, camera, root=root)


def batch_errors(P: torch.Tensor, Y: torch.Tensor, jpma_index: torch.Tensor | None, cfg: EvalConfig,
                 weight: torch.Tensor) -> dict:
    """docs/method.md §5.2 / §5.5 errors for every metric and Protocol #1/#2; values (B, K, T, J) metres.

    weight (B, T): how the batch's frames are scored (`frame_weights`). P-Best follows
    ``protocol.p_best`` of ``cfg.mode``: official chooses per batch from every frame, padding and
    3DHP-invalid frames included (docs/method.md §5.2, §7.4, §12 item 2); clean chooses per window from exactly
    the frames it scores (docs/method.md §10).
    """
    protocol = get_protocol(cfg.mode)
    out = {}
    for number in ((1, 2) if cfg.protocol2 else (1,)):
        errors = metrics.multi_hypothesis_errors(P, Y, jpma_index, protocol=number, p_best=protocol.p_best,
                                                 reduce="none", p_best_weights=protocol.p_best_weights(weight))
        prefix = "" if number == 1 else P2_PREFIX
        out.update({prefix + name: errors[name] for name in METRIC_NAMES if name in errors})
    return out


def _sample(model, x2d: torch.Tensor, cfg: EvalConfig, generator: torch.Generator, root: int) -> torch.Tensor:
    B, T, _, _ = x2d.shape
    s = cfg.sampling
    own_dtype = getattr(getattr(model, "sampling", None), "dtype", "fp32")  # what sample() uses when not told
    P = model.sample(x2d, num_hypotheses=s.num_hypotheses, num_steps=s.num_steps, eta=s.eta,
                     flip=s.flip, generator=generator, **({"dtype": s.dtype} if s.dtype != own_dtype else {}))
    expected = (B, s.num_steps, s.num_hypotheses, T, model.skeleton.num_joints, 3)
    if not isinstance(P, torch.Tensor) or tuple(P.shape) != expected:
        raise ValueError(f"model.sample returned {tuple(getattr(P, 'shape', ()))}, expected (B, K, H, T, J, 3) = "
                         f"{expected}")
    P = P.float().clone()
    P[..., root, :] = 0  # D3DP zeroes the predicted root before every metric (docs/method.md §5.1)
    return P


def window_counts(dataset: PoseDataset, T: int) -> list[int]:
    """Evaluation windows of every video of ``dataset`` (docs/method.md §6.6), in dataset order."""
    return [num_windows(v.num_frames, T) for v in dataset.videos]


def select_windows(counts: Sequence[int], max_windows: int) -> list[np.ndarray]:
    """The windows to evaluate: per video, the ascending local indices (int64) of its chosen windows.

    counts[v] = number of windows of video v. max_windows = 0, or >= N = sum(counts), keeps all. Else
    the windows are numbered 0..N-1 across the whole test set in dataset order and the m = max_windows
    at round(linspace(0, N-1, m)) are kept (halves rounded up, in exact integer arithmetic; m = 1 keeps
    window 0). The subset is deterministic and evenly spread, and for m >= 2 holds the first and the
    last window, so a short validation sees every subject and action rather than the first videos.
    """
    if max_windows < 0:
        raise ValueError(f"max_windows must be >= 0 (0 = all windows), got {max_windows}")
    total, m = sum(counts), max_windows
    if m == 0 or m >= total:
        return [np.arange(n, dtype=np.int64) for n in counts]
    i = np.arange(m, dtype=np.int64)
    chosen = (2 * i * (total - 1) + (m - 1)) // (2 * (m - 1)) if m > 1 else i  # round(i (N-1)/(m-1))
    bounds = np.cumsum([0, *counts])
    return [chosen[(chosen >= lo) & (chosen < hi)] - lo for lo, hi in zip(bounds[:-1], bounds[1:])]


def iterate_batches(model, dataset: PoseDataset, cfg: EvalConfig, progress: bool = False) -> Iterator[BatchErrors]:
    """Yield the errors of every evaluation batch in dataset order.

    With ``cfg.max_windows`` only the windows of `select_windows` are sampled; a video's chosen
    windows are cut into batches in order (never across videos), so official P-Best is then shared by
    windows that are not neighbours.
    """
    cfg = cfg.for_model(model)
    T, device, root = window_length(model), resolve_device(cfg.device, "eval.device"), model.skeleton.root
    protocol = get_protocol(cfg.mode)
    skip_jpma = jpma_status(model, dataset) is not None
    pixels = uses_pixel_jpma(dataset)
    if hasattr(model, "to"):
        model.to(device)
    generator = torch.Generator().manual_seed(cfg.sampling.seed)  # CPU generator: the same noise on every device
    batch_size = cfg.batch_size or auto_batch_size(model, cfg, T, device)
    selection = select_windows(window_counts(dataset, T), cfg.max_windows)
    total = sum(len(chosen) for chosen in selection)
    with tqdm(total=total, disable=not progress, unit="window", desc=f"eval {cfg.mode}") as bar:
        for video, chosen in zip(dataset.videos, selection):
            if len(chosen) == 0:
                continue
            w = video_windows(video, T, dataset.skeleton.root, protocol)
            for start in range(0, len(chosen), batch_size):
                idx = chosen[start:start + batch_size]
                sel = torch.from_numpy(idx)
                x2d, Y, weight = w.x2d[sel].to(device), w.y[sel].to(device), w.weight[sel]
                P = _sample(model, x2d, cfg, generator, root)
                index = None
                if not skip_jpma:
                    root_given = protocol.jpma_gt_root(w.root[sel].to(device))
                    index = jpma_selection(P, x2d, w.camera.to(device), root_given, video, pixels)
                yield BatchErrors(video, batch_errors(P, Y, index, cfg, weight), weight, w.frame_index[idx])
                bar.update(len(idx))


def auto_batch_size(model, cfg: EvalConfig, T: int, device: torch.device) -> int:
    """Windows per sample call that fit the memory budget (eval.batch_size = 0, clean mode only):
    80% of the free GPU memory, or 2 GiB on CPU, by perf.max_windows_for_budget's estimate."""
    if device.type == "cuda":
        budget = int(0.8 * torch.cuda.mem_get_info(device)[0])
    else:
        budget = 2 * 2 ** 30
    s = cfg.sampling
    return max_windows_for_budget(model, T, s.num_hypotheses, s.flip, budget, K=s.num_steps, dtype=s.dtype)


# --- accumulation and the result ---------------------------------------------------------------

@dataclass
class GroupStats:
    """Frame-weighted error sums of one (subject, action group): metric -> (K,) metres·frames."""
    frames: float = 0.0
    sums: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, errors: dict[str, torch.Tensor], weight: torch.Tensor) -> None:
        w = weight.to(torch.float64)
        for name, e in errors.items():
            frame_error = e.mean(dim=-1).to(torch.float64).cpu()  # (B, K, T): mean over joints
            s = (frame_error * w[:, None, :]).sum(dim=(0, 2)).numpy()
            self.sums[name] = self.sums.get(name, 0.0) + s
        self.frames += float(w.sum())


def _group_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [g for g in H36M_ACTION_GROUPS if g in names]
    return known + [g for g in names if g not in known]


@dataclass
class EvalResult:
    """Errors of one evaluation run. Values come out in mm, one per DDIM step k = 1..K."""
    settings: dict
    metrics: tuple[str, ...]
    stats: dict[tuple[str, str], GroupStats]     # (subject, action group) -> sums
    notes: list[str] = field(default_factory=list)
    pck: dict | None = None                      # MPI-INF-3DHP PCK/AUC/MPJPE tables (see evaluation.pck)

    @property
    def mode(self) -> str:
        return self.settings["mode"]

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.stats))

    def groups(self, subject: str | None = None) -> list[str]:
        return _group_order(g for s, g in self.stats if subject in (None, s))

    def _pooled(self, subject: str | None) -> dict[str, GroupStats]:
        if subject is not None and subject not in self.subjects:
            raise ValueError(f"subject '{subject}' was not evaluated; subjects: {', '.join(self.subjects)}")
        pooled: dict[str, GroupStats] = {}
        for (s, g), st in self.stats.items():
            if subject in (None, s):
                acc = pooled.setdefault(g, GroupStats())
                acc.frames += st.frames
                for name, v in st.sums.items():
                    acc.sums[name] = acc.sums.get(name, 0.0) + v
        return pooled

    def frames(self, subject: str | None = None) -> dict[str, float]:
        """Counted frames per action group (official mode counts overlap and padding again)."""
        pooled = self._pooled(subject)
        return {g: pooled[g].frames for g in self.groups(subject)}

    def table(self, subject: str | None = None) -> dict[str, dict[str, list[float]]]:
        """Per-action table: metric -> action group -> [mm per step k]; groups pool all subjects
        unless ``subject`` is given. Groups without counted frames are left out."""
        pooled = self._pooled(subject)
        groups = [g for g in self.groups(subject) if pooled[g].frames > 0]
        return {m: {g: (pooled[g].sums[m] / pooled[g].frames * MM).tolist() for g in groups} for m in self.metrics}

    def summary(self, subject: str | None = None) -> dict[str, list[float]]:
        """metric -> [mm per step k]: the unweighted mean over action groups (docs/method.md §5.4).

        Keys 'J-Best', 'P-Best', 'P-Agg', 'J-Agg' (Protocol #1) and 'P2/...' (Protocol #2).
        """
        out = {}
        for m, per_group in self.table(subject).items():
            values = np.array(list(per_group.values()))
            out[m] = values.mean(axis=0).tolist() if len(values) else [math.nan] * self.settings["num_steps"]
        return out

    def to_dict(self) -> dict:
        """Everything as plain JSON-able values."""
        out = {"settings": self.settings, "notes": self.notes, "metrics": list(self.metrics),
               "summary_mm": self.summary(), "per_action_mm": self.table(), "frames_per_action": self.frames()}
        if self.settings.get("by_subject"):
            out["by_subject"] = {s: {"summary_mm": self.summary(s), "per_action_mm": self.table(s),
                                     "frames_per_action": self.frames(s)} for s in self.subjects}
        if self.pck is not None:
            out["mpi_inf_3dhp"] = self.pck
        return out


def _settings(model, dataset: PoseDataset, cfg: EvalConfig, jpma_note: str | None) -> dict:
    T = window_length(model)
    total = sum(window_counts(dataset, T))
    has_valid = all(v.valid is not None for v in dataset.videos)
    described = get_protocol(cfg.mode).describe(cfg.batch_size, has_valid, jpma_skipped=jpma_note is not None)
    flat = {**to_dict(cfg.sampling), **{k: v for k, v in to_dict(cfg).items() if k != "sampling"}}
    return {**flat, "dataset": dataset.name, "keypoints_layout": dataset.keypoints_layout,
            "layout": dataset.skeleton.name, "window": T, "total_windows": total,
            "window_selection": ("every window" if not 0 < cfg.max_windows < total else
                                 f"{cfg.max_windows} of {total} windows evenly spread over the test set in dataset "
                                 "order (eval.max_windows: indices round(linspace(0, N-1, max_windows)))"),
            "p_best": described["p_best"], "jpma_root": described["jpma_root"],
            "jpma_space": "pixels" if uses_pixel_jpma(dataset) else "normalised screen coordinates",
            "frame_counting": described["frame_counting"]}


def evaluate(model, dataset: PoseDataset, cfg: EvalConfig, progress: bool = False) -> EvalResult:
    """Evaluate a D3DP model (or anything with ``.sample``/``.skeleton``) on ``dataset``.

    model.sample(x2d (B, T, J2, 2), num_hypotheses, num_steps, eta, flip, generator) must return
    (B, K, H, T, J, 3) metres. Every batch draws its noise from one torch.Generator seeded with
    ``cfg.sampling.seed``; ``cfg.sampling`` None samples with ``model.sampling`` (the checkpoint's).
    MPI-INF-3DHP data also gets PCK/AUC tables in ``result.pck``. The training loop calls this for
    validation with small H, K and ``max_windows``.
    """
    cfg = cfg.for_model(model)
    notes = check_compatible(model, dataset)
    jpma_note = jpma_status(model, dataset)
    names = tuple(p + m for p in ("", P2_PREFIX)[:1 + cfg.protocol2] for m in METRIC_NAMES
                  if m != "J-Agg" or jpma_note is None)
    collector = PCKCollector(cfg.sampling.num_steps) if uses_pixel_jpma(dataset) else None
    stats: dict[tuple[str, str], GroupStats] = {}
    windows = 0
    for batch in iterate_batches(model, dataset, cfg, progress):
        v = batch.video
        stats.setdefault((v.subject, v.action_group), GroupStats()).add(batch.errors, batch.weight)
        if collector is not None:
            collector.add(v, batch.errors, batch.weight, batch.frame_index)
        windows += batch.weight.shape[0]
    settings = {**_settings(model, dataset, cfg, jpma_note), "num_windows": windows,
                "num_frames": sum(st.frames for st in stats.values())}
    notes += ([jpma_note] if jpma_note else []) + _subset_notes(dataset, settings, stats)
    return EvalResult(settings, names, stats, notes, collector.result() if collector is not None else None)


def _subset_notes(dataset: PoseDataset, settings: dict, stats: dict) -> list[str]:
    """Say when only part of the test set was evaluated, and which action groups it missed."""
    if settings["num_windows"] >= settings["total_windows"]:
        return []
    notes = [f"only {settings['num_windows']} of {settings['total_windows']} windows were evaluated "
             "(eval.max_windows, evenly spread); not comparable with a full evaluation"]
    seen = {g for _, g in stats}
    missed = [g for g in _group_order(v.action_group for v in dataset.videos) if g not in seen]
    if missed:
        notes.append(f"{len(missed)} action group(s) got no window and are left out of the averages: "
                     + ", ".join(missed))
    return notes
