"""Training chunks (docs/method.md §6.5) and evaluation windows (docs/method.md §6.6)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from d3dp_ktp.camera import project_to_2d
from d3dp_ktp.data.dataset import CameraInfo, Video
from d3dp_ktp.data.h36m import h36m_cameras
from d3dp_ktp.data.windows import (ChunkBatchSampler, ChunkDataset, chunk_bounds, eval_windows, stitch,
                                   window_frame_indices, window_keep_mask)
from d3dp_ktp.skeleton import H36M

LEFT, RIGHT = H36M.joints_left, H36M.joints_right


def frame_video(frames: int, subject="S1", camera=None) -> Video:
    """A video whose every value equals its frame number, so chunk contents reveal their frames."""
    f = np.arange(frames, dtype=np.float32)[:, None, None]
    cam = CameraInfo("c", 1000, 1000, camera)
    return Video(subject, "A", 0, np.broadcast_to(f, (frames, 17, 2)).copy(),
                 np.broadcast_to(f, (frames, 17, 3)).copy(), cam)


def chunks(frames: int, T: int, flip_mode="none") -> ChunkDataset:
    return ChunkDataset([frame_video(frames)], T, LEFT, RIGHT, LEFT, RIGHT, flip_mode)


@pytest.mark.parametrize("frames, T, bounds, first, last", [
    (5, 8, [-1, 7], [0, 0, 1, 2, 3, 4, 4, 4], [0, 0, 1, 2, 3, 4, 4, 4]),   # F < T: edge padding both sides
    (4, 4, [0, 4], [0, 1, 2, 3], [0, 1, 2, 3]),                            # F = T
    (9, 4, [-1, 3, 7, 11], [0, 0, 1, 2], [7, 8, 8, 8]),                    # F = 2T + 1: centred chunks
])
def test_chunk_bounds_and_replication(frames, T, bounds, first, last):
    assert chunk_bounds(frames, T).tolist() == bounds
    ds = chunks(frames, T)
    assert len(ds) == len(bounds) - 1
    x0, y0, cam = ds[0]
    xn, yn, _ = ds[len(ds) - 1]
    assert x0.shape == (T, 17, 2) and y0.shape == (T, 17, 3) and cam.shape == (9,)
    assert x0[:, 3, 0].tolist() == first and y0[:, 16, 2].tolist() == first
    assert xn[:, 0, 1].tolist() == last and yn[:, 5, 0].tolist() == last
    assert torch.all(cam == 0)  # no intrinsics -> zeros


def test_paired_flip_doubles_epoch_and_partners_match():
    ds = chunks(9, 4, "paired")
    assert len(ds) == 6 and ds.pairs[:, 3].tolist() == [0, 0, 0, 1, 1, 1]  # official order per video
    sampler = ChunkBatchSampler(ds, batch_size=4)
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 2] and sorted(sum(batches, [])) == list(range(6))
    x, y, _ = ds[0]
    xf, yf, _ = ds[3]
    assert torch.equal(xf[:, 4, 0], -x[:, 1, 0]) and torch.equal(yf[:, 1, 2], y[:, 4, 2])


def test_flipped_2d_is_projection_of_flipped_3d():
    rng = np.random.RandomState(5)
    cam = h36m_cameras("S1")[0].intrinsics
    cam = cam + np.array([0, 0, 0.05, 0, 0, 0, 0, 0.01, 0], np.float32)  # make c_x and p1 clearly non-zero
    pos = np.concatenate([rng.uniform(-0.3, 0.3, (6, 1, 3)) + [0, 0, 4], rng.uniform(-0.6, 0.6, (6, 16, 3))], 1)
    absolute = pos.copy()
    absolute[:, 1:] += absolute[:, :1]
    kp = project_to_2d(torch.from_numpy(absolute).float(), torch.from_numpy(cam)).numpy()
    video = Video("S1", "A", 0, kp, pos.astype(np.float32), CameraInfo("c", 1000, 1000, cam))
    ds = ChunkDataset([video], 6, LEFT, RIGHT, LEFT, RIGHT, "paired")
    xf, yf, cf = ds[1]
    assert cf[2] == -cam[2] and cf[7] == -cam[7] and cf[0] == cam[0]
    y_abs = yf.clone()
    y_abs[:, 1:] += y_abs[:, :1]
    torch.testing.assert_close(project_to_2d(y_abs, cf), xf, atol=1e-5, rtol=0)
    assert not torch.allclose(xf, ds[0][0])


def test_sampler_first_epoch_is_official_permutation_and_resume_is_exact():
    ds = ChunkDataset([frame_video(f) for f in (30, 17, 8)], 5, LEFT, RIGHT, LEFT, RIGHT, "paired")
    sampler = ChunkBatchSampler(ds, batch_size=4, seed=1234)
    first = sum(list(sampler), [])
    assert first == np.random.RandomState(1234).permutation(len(ds)).tolist()
    state = sampler.state_dict()
    expected = [sum(list(sampler), []) for _ in range(2)]
    resumed = ChunkBatchSampler(ds, batch_size=4, seed=0)
    resumed.load_state_dict(state)
    assert [sum(list(resumed), []) for _ in range(2)] == expected
    assert resumed.epochs_drawn == 3 and expected[0] != expected[1]
    # The official checkpoint stores the RandomState object itself.
    official = np.random.RandomState(1234)
    official.permutation(len(ds))
    legacy = ChunkBatchSampler(ds, batch_size=4)
    legacy.load_state_dict({"random_state": official})
    assert sum(list(legacy), []) == expected[0]


def test_random_flip_mode_draws_each_chunk_once():
    ds = ChunkDataset([frame_video(f) for f in (50, 23)], 4, LEFT, RIGHT, LEFT, RIGHT, "random")
    sampler = ChunkBatchSampler(ds, batch_size=3, seed=7)
    n = len(ds.unflipped_rows)
    assert len(ds) == 2 * n and len(sampler) == -(-n // 3)
    rows = np.array(sum(list(sampler), []))
    base = [(v, s) for v, s, _, _ in ds.pairs[rows]]
    assert len(rows) == n and len(set(base)) == n
    assert 0 < ds.pairs[rows, 3].sum() < n


def test_dataloader_with_workers_matches_main_process():
    ds = ChunkDataset([frame_video(f) for f in (13, 9)], 4, LEFT, RIGHT, LEFT, RIGHT, "paired")
    out = []
    for workers in (0, 2):
        loader = DataLoader(ds, batch_sampler=ChunkBatchSampler(ds, batch_size=3), num_workers=workers)
        out.append([b[0] for b in loader])
    assert len(out[0]) == len(out[1]) == 5  # (4 + 3 chunks) x 2 flips = 14 -> 5 batches
    assert all(torch.equal(a, b) for a, b in zip(*out))
    assert out[0][0].shape == (3, 4, 17, 2)


@pytest.mark.parametrize("frames, T, starts", [(10, 4, [0, 4, 6]), (8, 4, [0, 4]), (3, 5, [0]), (5, 5, [0])])
def test_eval_windows_count_overlap_padding_and_stitch(frames, T, starts):
    idx = window_frame_indices(frames, T)
    assert idx[:, 0].tolist() == starts and idx.shape == (len(starts), T)
    x = np.arange(frames * 2, dtype=np.float32).reshape(frames, 2)
    w = eval_windows(x, T)
    assert w.shape == (len(starts), T, 2)
    assert w[-1, -1].tolist() == x[-1].tolist()
    if frames < T:
        assert w[0, frames:].tolist() == [x[-1].tolist()] * (T - frames)  # right-padded with the last frame
    np.testing.assert_array_equal(stitch(w, frames), x)
    keep = window_keep_mask(frames, T)
    assert sorted(idx[keep].tolist()) == list(range(frames))  # every frame counted exactly once
    valid = np.arange(frames) % 3 == 0
    np.testing.assert_array_equal(eval_windows(valid, T)[keep], valid[idx[keep]])


def test_stitch_last_window_wins_and_time_axis():
    preds = torch.zeros(3, 2, 5, 4, 17, 3)  # (n, K, H, T, J, 3) for F = 10, T = 4
    for i in range(3):
        preds[i] = i
    out = stitch(preds, 10, time_axis=3)
    assert out.shape == (2, 5, 10, 17, 3)
    assert out[0, 0, :, 0, 0].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert window_keep_mask(10, 4).tolist() == [[True] * 4, [True, True, False, False], [True] * 4]
    with pytest.raises(ValueError, match="give 3 windows"):
        stitch(preds[:2], 10, time_axis=3)
