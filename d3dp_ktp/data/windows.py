"""Training chunks (docs/method.md §6.5) and evaluation windows (docs/method.md §6.6).

Shape legend: F frames of a video, T frames per chunk/window, n chunks/windows, J2 keypoints,
J joints.

Training: :class:`ChunkDataset` lists every (video, start, end, flip) chunk in the official order
and returns one chunk per index; :class:`ChunkBatchSampler` owns the NumPy RandomState (seed 1234)
that permutes the chunks each epoch and cuts the permutation into batches. All randomness lives
in the sampler, in the main process, so DataLoader workers are deterministic and resuming only
needs ``sampler.state_dict()``. With augmentation on (``DataConfig.augment``, d3dp_ktp/data/augment.py)
the sampler hands out ``row + epoch * len(dataset)`` and the chunk's generator is seeded with
(data seed, epoch, row): the draws differ every epoch and a resumed run repeats them exactly.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from d3dp_ktp.camera import qrot
from d3dp_ktp.data.augment import augment_chunk
from d3dp_ktp.data.config import FLIP_MODES, AugmentConfig
from d3dp_ktp.data.dataset import PoseDataset, Video
from d3dp_ktp.skeleton import flip_pose


# --- training chunks (docs/method.md §6.5) --------------------------------------------------------------

def chunk_bounds(num_frames: int, chunk_length: int) -> np.ndarray:
    """Boundaries k*T - offset, k = 0..n, with n = ceil(F/T) and offset = floor((n*T - F)/2); (n+1,)."""
    if num_frames < 1 or chunk_length < 1:
        raise ValueError(f"need F >= 1 and T >= 1, got F={num_frames}, T={chunk_length}")
    n = math.ceil(num_frames / chunk_length)
    offset = (n * chunk_length - num_frames) // 2
    return np.arange(n + 1) * chunk_length - offset


def crop_replicate(seq: np.ndarray, start: int, end: int) -> np.ndarray:
    """seq[start:end] along axis 0, out-of-range frames filled with the first/last frame (edge padding)."""
    return seq[np.clip(np.arange(start, end), 0, len(seq) - 1)]


def chunk_times(start: int, end: int, num_frames: int, rng: np.random.Generator, speed_range) -> np.ndarray:
    """(T,) fractional frame times of a chunk replayed at a speed drawn log-uniformly in ``speed_range``
    around its centre, the centre shifted by up to half a chunk; clipped to the video's [0, F - 1]."""
    length = end - start
    speed = math.exp(rng.uniform(math.log(speed_range[0]), math.log(speed_range[1])))
    centre = (start + end - 1) / 2 + rng.uniform(-length / 2, length / 2)
    return np.clip(centre + speed * (np.arange(length) - (length - 1) / 2), 0, num_frames - 1)


def resample_frames(seq: np.ndarray, times: np.ndarray) -> np.ndarray:
    """seq (F, ...) linearly interpolated at (T,) fractional frame times in [0, F - 1] -> (T, ...)."""
    i0 = np.minimum(np.floor(times).astype(np.int64), max(len(seq) - 2, 0))
    i1 = np.minimum(i0 + 1, len(seq) - 1)
    a = (times - i0).reshape((-1,) + (1,) * (seq.ndim - 1))
    return ((1 - a) * seq[i0] + a * seq[i1]).astype(seq.dtype)


def flip_camera(camera: np.ndarray) -> np.ndarray:
    """Mirror intrinsics to match a flipped image: negate c_x (index 2) and p1 (index 7)."""
    out = np.array(camera, copy=True)
    out[..., [2, 7]] *= -1
    return out


class ChunkDataset(Dataset):
    """Training chunks of T frames; item i -> (x2d (T, J2, 2), y3d (T, J, 3), camera (9,) or zeros).

    ``pairs`` rows are (video, start, end, flip) in the official order: per video its un-flipped
    chunks, then (with flipping on) the same chunks flipped. y3d keeps the absolute root trajectory
    in the root column; the training step zeroes it (docs/method.md §6.5).
    """

    def __init__(self, videos: Sequence[Video], chunk_length: int, kps_left, kps_right, joints_left, joints_right,
                 flip_mode: str = "paired", augment: AugmentConfig | None = None, seed: int = 1234):
        if flip_mode not in FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {', '.join(FLIP_MODES)}, got '{flip_mode}'")
        missing = [v.key for v in videos if v.positions_3d is None]
        if missing:
            raise ValueError(f"training needs 3D targets; these videos have none: {missing[:5]}")
        if not videos:
            raise ValueError("no training videos")
        self.videos = list(videos)
        self.chunk_length = chunk_length
        self.flip_mode = flip_mode
        self.kps = (list(kps_left), list(kps_right))
        self.joints = (list(joints_left), list(joints_right))
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        if self.augment is not None:
            _check_augmentable(self.videos, self.augment)
        rows, unflipped, flipped = [], [], []
        for i, video in enumerate(self.videos):
            bounds = chunk_bounds(video.num_frames, chunk_length)
            chunks = [(i, s, e) for s, e in zip(bounds[:-1], bounds[1:])]
            unflipped += range(len(rows), len(rows) + len(chunks))
            rows += [(*c, 0) for c in chunks]
            if flip_mode != "none":
                flipped += range(len(rows), len(rows) + len(chunks))
                rows += [(*c, 1) for c in chunks]
        self.pairs = np.array(rows, dtype=np.int64)
        self.unflipped_rows = np.array(unflipped, dtype=np.int64)
        self.flipped_rows = np.array(flipped, dtype=np.int64)

    @classmethod
    def from_dataset(cls, dataset: PoseDataset, chunk_length: int, flip_mode: str = "paired",
                     augment: AugmentConfig | None = None, seed: int = 1234) -> "ChunkDataset":
        sk = dataset.skeleton
        return cls(dataset.videos, chunk_length, dataset.kps_left, dataset.kps_right, sk.joints_left,
                   sk.joints_right, flip_mode, augment, seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, row = divmod(int(index), len(self.pairs))  # epoch > 0 only when augmenting (see the sampler)
        v, start, end, flip = (int(x) for x in self.pairs[row])
        video = self.videos[v]
        x2d = crop_replicate(video.keypoints_2d, start, end)
        y3d = crop_replicate(video.positions_3d, start, end)
        cam = video.camera if video.camera is not None else np.zeros(9, dtype=np.float32)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, epoch, row])
            # prob < 1 keeps some chunks as recorded (in-distribution accuracy); prob = 1 draws nothing here
            if self.augment.prob >= 1.0 or rng.random() < self.augment.prob:
                if self.augment.speed:
                    times = chunk_times(start, end, video.num_frames, rng, self.augment.speed_range)
                    x2d, y3d = (resample_frames(a, times) for a in (video.keypoints_2d, video.positions_3d))
                x2d, y3d, cam = augment_chunk(x2d, y3d, cam, *_camera_to_world(video), rng, self.augment)
        if flip:
            x2d, y3d, cam = flip_pose(x2d, *self.kps), flip_pose(y3d, *self.joints), flip_camera(cam)
        return (torch.from_numpy(np.ascontiguousarray(x2d, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(y3d, dtype=np.float32)),
                torch.from_numpy(np.asarray(cam, dtype=np.float32).copy()))


def _camera_to_world(video: Video):
    """(R (3, 3) camera->world, centre (3,)) of the video's camera, or (None, None) without extrinsics."""
    if not video.cam.has_extrinsics:
        return None, None
    q = np.asarray(video.cam.orientation, np.float64)
    R = qrot(np.broadcast_to(q, (3, 4)), np.eye(3)).T  # columns: the camera axes in world coordinates
    return R, np.asarray(video.cam.translation, np.float64)


def _check_augmentable(videos: Sequence[Video], augment: AugmentConfig) -> None:
    """Body/camera augmentation re-projects the 3D joints, so the 2D layout must be the 3D one."""
    if not (augment.body or augment.camera):
        return
    for video in videos:
        if video.keypoints_2d.shape[1] != video.positions_3d.shape[1] or video.positions_3d.shape[1] != 17:
            raise ValueError(f"{video.key}: body/camera augmentation needs 17-joint H36M 2D and 3D, got "
                             f"{video.keypoints_2d.shape[1]} keypoints and {video.positions_3d.shape[1]} joints; "
                             "set data.augment.body/camera to false")
        if not augment.camera and video.camera is None:
            raise ValueError(f"{video.key}: body augmentation without camera augmentation re-projects with the "
                             "video's intrinsics, which this dataset lacks; set data.augment.camera=true")


class ChunkBatchSampler(Sampler):
    """Per-epoch permutation of a ChunkDataset cut into consecutive batches (last one may be smaller).

    * 'paired' / 'none': the official ``RandomState.permutation`` of all rows each epoch.
    * 'random': a permutation of the un-flipped chunks, then one uniform draw per chunk; a chunk is
      replaced by its flipped row when the draw is < 0.5.

    Each ``iter()`` is one epoch and advances the RandomState. ``state_dict()`` taken between
    epochs (as the trainer checkpoints) restores the exact order of every later epoch.
    """

    def __init__(self, dataset: ChunkDataset, batch_size: int, seed: int = 1234, shuffle: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.random = np.random.RandomState(seed)
        self.epochs_drawn = 0

    @property
    def num_chunks(self) -> int:
        """Chunks per epoch: every row, or one of each un-flipped/flipped pair in 'random' mode."""
        ds = self.dataset
        return len(ds.unflipped_rows) if ds.flip_mode == "random" else len(ds)

    def __len__(self) -> int:
        return math.ceil(self.num_chunks / self.batch_size)

    def epoch_order(self) -> np.ndarray:
        """Draw the next epoch's row order; (num_chunks,) int64."""
        ds = self.dataset
        n = self.num_chunks
        order = self.random.permutation(n) if self.shuffle else np.arange(n)
        if ds.flip_mode == "random":
            flip = self.random.random_sample(n) < 0.5
            order = np.where(flip, ds.flipped_rows, ds.unflipped_rows)[order]
        self.epochs_drawn += 1
        return order

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order()
        if getattr(self.dataset, "augment", None) is not None:  # the chunk's generator keys on the epoch
            order = order + self.epochs_drawn * len(self.dataset)
        for b in range(0, len(order), self.batch_size):
            yield order[b:b + self.batch_size].tolist()

    def state_dict(self) -> dict:
        """Plain Python values only (safe for weights_only loading and JSON)."""
        name, keys, pos, has_gauss, cached = self.random.get_state()
        return {"seed": self.seed, "epochs_drawn": self.epochs_drawn,
                "random_state": {"name": name, "keys": [int(k) for k in keys], "pos": int(pos),
                                 "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``; ``random_state`` may also be an official pickled RandomState."""
        rs = state["random_state"]
        if isinstance(rs, np.random.RandomState):
            rs = rs.get_state()
        elif isinstance(rs, dict):
            rs = (rs["name"], np.array(rs["keys"], dtype=np.uint32), rs["pos"], rs["has_gauss"],
                  rs["cached_gaussian"])
        self.random.set_state(rs)
        self.seed = state.get("seed", self.seed)
        self.epochs_drawn = state.get("epochs_drawn", 0)


# --- evaluation windows (docs/method.md §6.6) -------------------------------------------------------------

def num_windows(num_frames: int, window: int) -> int:
    if num_frames < 1 or window < 1:
        raise ValueError(f"need F >= 1 and T >= 1, got F={num_frames}, T={window}")
    return math.ceil(num_frames / window)


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
    """First frame of every window: 0, stride, 2*stride, ... < F-T, then F-T (F <= T: just 0); (n,) int64."""
    if num_frames < 1 or window < 1 or stride < 1:
        raise ValueError(f"need F >= 1, T >= 1 and stride >= 1, got F={num_frames}, T={window}, stride={stride}")
    if num_frames <= window:
        return np.zeros(1, dtype=np.int64)
    return np.append(np.arange(0, num_frames - window, stride), num_frames - window).astype(np.int64)


def window_indices(starts: np.ndarray, window: int, num_frames: int) -> np.ndarray:
    """Source frame of every window position, past-the-end positions repeat the last frame; (n, T)."""
    return np.minimum(starts[:, None] + np.arange(window), num_frames - 1)


def window_frame_indices(num_frames: int, window: int) -> np.ndarray:
    """Source frame of every evaluation window position; (n, T) int64.

    Windows 0..n-2 are [iT, (i+1)T); the last is the last T frames [F-T, F) (stride T in
    `window_starts`). With F < T there is one window whose positions past F-1 replicate the last frame.
    """
    return window_indices(window_starts(num_frames, window, window), window, num_frames)


def window_keep_mask(num_frames: int, window: int) -> np.ndarray:
    """(n, T) bool: True where the window frame is the one :func:`stitch` keeps.

    Every frame of the video is True exactly once (the overlapping last window wins, padding is
    False), so it also weights the protocol-clean metrics that count each frame once.
    """
    idx = window_frame_indices(num_frames, window)
    keep = np.zeros(idx.shape, dtype=bool)
    keep[:-1] = idx[:-1] < num_frames - window          # earlier windows lose what the last overwrites
    keep[-1] = np.arange(window) < min(num_frames, window)  # the last window loses only padding
    return keep


def eval_windows(x, window: int):
    """(F, ...) -> (n, T, ...) windows of docs/method.md §6.6 (numpy or torch; 2D, 3D and valid masks alike)."""
    idx = window_frame_indices(len(x), window)
    return x[torch.from_numpy(idx)] if isinstance(x, torch.Tensor) else x[idx]


def stitch(windows, num_frames: int, time_axis: int = 1):
    """Inverse of :func:`eval_windows`: (n, ..., T, ...) -> (..., F, ...) with time at ``time_axis - 1``.

    Window i fills frames [iT, (i+1)T), then the last window overwrites the final T frames (docs/method.md §6.6).
    E.g. predictions (n, K, H, T, J, 3) with ``time_axis=3`` stitch to (K, H, F, J, 3).
    """
    window = windows.shape[time_axis]
    n = num_windows(num_frames, window)
    if windows.shape[0] != n:
        raise ValueError(f"{num_frames} frames with T={window} give {n} windows, got shape {tuple(windows.shape)}")
    idx, keep = window_frame_indices(num_frames, window), window_keep_mask(num_frames, window)
    if isinstance(windows, torch.Tensor):
        w = torch.movedim(windows, time_axis, 1)
        out = w.new_empty((num_frames,) + tuple(w.shape[2:]))
        out[torch.from_numpy(idx[keep])] = w[torch.from_numpy(keep)]
        return torch.movedim(out, 0, time_axis - 1)
    w = np.moveaxis(windows, time_axis, 1)
    out = np.empty((num_frames,) + w.shape[2:], dtype=w.dtype)
    out[idx[keep]] = w[keep]
    return np.moveaxis(out, 0, time_axis - 1)
