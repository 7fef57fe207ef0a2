"""Windows, cross-fade blending, aggregation and sampling of d3dp_ktp/inference/pipeline.py."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from d3dp_ktp.camera import normalize_screen_coordinates
from d3dp_ktp.data.windows import window_frame_indices
from d3dp_ktp.inference.io import KeypointFile
from d3dp_ktp.inference.pipeline import (LiftConfig, lift, lift_keypoints, window_indices, window_starts,
                                         window_weights)
from d3dp_ktp.sampling import SamplingConfig
from d3dp_ktp.skeleton import H36M

from .conftest import HEIGHT, TINY_T, WIDTH, camera_poses, project_px, tiny_model


class StubModel:
    """Quacks like D3DP for the pipeline: sample() returns fn(x2d windows) -> (B, H, T, J, 3) at every step."""

    def __init__(self, window: int, fn):
        self.pose_estimator = SimpleNamespace(cfg=SimpleNamespace(num_frames=window, num_joints=17, channels=16,
                                                                  mlp_ratio=2.0, num_heads=2, attention="sdpa"))
        self.skeleton = self.keypoint_skeleton = H36M
        self.fn = fn
        self.batches = []

    def sample(self, x2d, num_hypotheses, num_steps, eta, flip, latents, step_noise, dtype=None, max_batch=None):
        assert latents.shape == (x2d.shape[0], num_hypotheses, *x2d.shape[1:3], 3)
        self.batches.append(x2d.shape[0])
        out = self.fn(x2d, num_hypotheses)
        return out[:, None].expand(-1, num_steps, -1, -1, -1, -1)


def frame_local(x2d, H):
    """A known function of each frame's 2D: (x, y) -> (x, y, x + 2y), the same for every hypothesis."""
    return torch.cat([x2d, x2d[..., :1] + 2 * x2d[..., 1:]], -1)[:, None].expand(-1, H, -1, -1, -1)


def ramp_input(frames: int) -> np.ndarray:
    """(F, 17, 2) whose x coordinate is the frame index, so a window can tell where it starts."""
    x = np.zeros((frames, 17, 2), np.float32)
    x[..., 0] = np.arange(frames)[:, None]
    x[..., 1] = np.arange(17) / 10
    return x


# ----------------------------------------------------------------------------- windows

@pytest.mark.parametrize("frames, stride, starts", [(1, 4, [0]), (5, 4, [0]), (9, 4, [0]), (20, 4, [0, 4, 8, 11]),
                                                    (20, 9, [0, 9, 11]), (10, 3, [0, 1])])
def test_window_starts(frames, stride, starts):
    assert window_starts(frames, 9 if frames != 10 else 9, stride).tolist() == starts


def test_stride_T_gives_the_spec_windows():
    """docs/method.md §6.6: windows [iT, (i+1)T), the last aligned to the end, short inputs padded with the last frame."""
    for frames in range(1, 40):
        ours = window_indices(window_starts(frames, 9, 9), 9, frames)
        np.testing.assert_array_equal(ours, window_frame_indices(frames, 9), err_msg=f"F={frames}")


def test_weights_cross_fade_and_ignore_padding():
    w = window_weights(window_starts(10, 4, 2), 4, 10)
    np.testing.assert_allclose(w, [[1, 1, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25],
                                   [0.25, 0.75, 1, 1]])
    np.testing.assert_allclose(window_weights(np.array([0]), 6, 4), [[1, 1, 1, 1, 0, 0]])
    starts = window_starts(50, 9, 5)  # overlaps of 4 frames: the two weights of an overlapped frame sum to 1
    idx, w = window_indices(starts, 9, 50).ravel(), window_weights(starts, 9, 50).ravel()
    np.testing.assert_allclose(np.bincount(idx, w)[:starts[-2]], 1.0)  # the end-aligned window may overlap more


def test_blending_is_a_linear_cross_fade():
    """Each window returns its start frame everywhere; overlaps must ramp linearly from one to the next."""
    model = StubModel(4, lambda x, H: x[:, :1, :1, :1].expand(-1, 4, 17, 3)[:, None].expand(-1, H, -1, -1, -1))
    res = lift(model, ramp_input(10), LiftConfig(SamplingConfig(2, 1), stride=2, agg="mean"))
    np.testing.assert_allclose(res.poses_3d[:, 1, 0], [0, 0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6, 6], atol=1e-6)
    assert res.num_windows == 4 and (res.poses_3d[:, 0] == 0).all()


@pytest.mark.parametrize("frames", [1, 5, TINY_T, 23, 40])
def test_any_length_maps_every_frame_to_itself(frames):
    """F = 1, F < T, F = T, F > T: a frame-local model must give f(x2d[frame]) exactly at every frame."""
    x2d = ramp_input(frames)
    model = StubModel(TINY_T, frame_local)
    res = lift(model, x2d, LiftConfig(SamplingConfig(3, 2), agg="mean", batch_size=2,
                                      save_hypotheses=True))
    expected = frame_local(torch.from_numpy(x2d)[None], 1)[0, 0].numpy()
    expected[:, 0] = 0  # root-relative output
    np.testing.assert_allclose(res.poses_3d, expected, atol=1e-5)
    assert res.hypotheses.shape == (2, 3, frames, 17, 3) and res.uncertainty.shape == (frames, 17)
    np.testing.assert_allclose(res.uncertainty, 0, atol=1e-5)
    assert sum(model.batches) == res.num_windows and max(model.batches) <= 2


# ----------------------------------------------------------------------------- aggregation

def _truth_and_file(frames: int = 12):
    gt = camera_poses(np.random.RandomState(3), frames)
    kf = KeypointFile(Path("synthetic.npz"), project_px(gt), WIDTH, HEIGHT, "h36m")
    return gt, kf


def _hypothesis_stub(gt: np.ndarray, offsets) -> StubModel:
    """Hypothesis h = the true root-relative pose + offsets[h] (J, 3); frames found by their 2D."""
    rel = torch.from_numpy(gt - gt[:, :1])
    x2d_all = torch.from_numpy(normalize_screen_coordinates(project_px(gt).astype(np.float32), WIDTH, HEIGHT))

    def fn(x2d, H):
        frame = (x2d[:, :, None] - x2d_all[None, None]).abs().sum((-1, -2)).argmin(-1)  # (B, T)
        return rel[frame][:, None] + torch.as_tensor(np.stack(offsets), dtype=torch.float32)[None, :, None]
    return StubModel(5, fn)


def test_jpma_picks_per_joint_the_hypothesis_that_reprojects_onto_the_2d():
    gt, kf = _truth_and_file()
    d = np.zeros((17, 3), np.float32)
    d[[2, 5, 13], 0] = 0.15
    e = np.zeros((17, 3), np.float32)
    e[[3, 9, 16], 1] = 0.2
    model = _hypothesis_stub(gt, [d, e - d, -e])  # no hypothesis is right everywhere; their mean is
    res, inp = lift_keypoints(model, kf, LiftConfig(SamplingConfig(3, 1), agg="jpma"))
    np.testing.assert_allclose(res.poses_3d, gt - gt[:, :1], atol=1e-5)
    np.testing.assert_allclose(res.root_trajectory, gt[:, 0], atol=1e-3)  # root from 2D, default focal
    rms = np.sqrt(((np.stack([d, e - d, -e])) ** 2).sum(-1).mean(0))
    np.testing.assert_allclose(res.uncertainty, np.broadcast_to(rms, res.uncertainty.shape), atol=1e-5)


def test_mean_aggregation_is_p_agg():
    gt, kf = _truth_and_file()
    d = np.full((17, 3), 0.1, np.float32)
    res, _ = lift_keypoints(_hypothesis_stub(gt, [d, 2 * d]), kf, LiftConfig(SamplingConfig(2, 1), agg="mean"))
    expected = gt - gt[:, :1] + 1.5 * d
    expected[:, 0] = 0
    np.testing.assert_allclose(res.poses_3d, expected, atol=1e-5)


# ----------------------------------------------------------------------------- real (tiny) model

def test_result_depends_on_seed_only_not_on_batch_size():
    model = tiny_model()
    x2d = np.random.RandomState(0).uniform(-0.5, 0.5, (25, 17, 2)).astype(np.float32)
    run = lambda seed, **kw: lift(model, x2d, LiftConfig(SamplingConfig(2, 2, seed=seed), agg="mean",  # noqa: E731
                                                         **kw))
    a, b, c = run(7, batch_size=1), run(7, batch_size=8), run(8, batch_size=8)
    np.testing.assert_allclose(a.poses_3d, b.poses_3d, atol=1e-5)
    assert not np.allclose(a.poses_3d, c.poses_3d)
    assert a.num_windows == 5 and np.isfinite(a.poses_3d).all()


def test_single_window_outputs_match_the_hypotheses():
    model = tiny_model()
    x2d = np.random.RandomState(1).uniform(-0.5, 0.5, (6, 17, 2)).astype(np.float32)
    res = lift(model, x2d, LiftConfig(SamplingConfig(3, 2), agg="mean", save_hypotheses=True))
    last = res.hypotheses[-1]  # (H, F, J, 3)
    np.testing.assert_allclose(res.poses_3d, last.mean(0), atol=1e-6)
    np.testing.assert_allclose(res.uncertainty, np.sqrt(((last - last.mean(0)) ** 2).sum(-1).mean(0)), atol=1e-6)
    assert (res.hypotheses[..., 0, :] == 0).all()


def test_coco_model_reads_coco_and_uses_mapped_2d_for_jpma():
    model = tiny_model(keypoint_layout="coco")
    kp = np.random.RandomState(2).uniform(200, 600, (7, 17, 2))
    res, inp = lift_keypoints(model, KeypointFile(Path("x.json"), kp, WIDTH, HEIGHT, "coco"),
                              LiftConfig(SamplingConfig(2, 1)))
    np.testing.assert_allclose(inp.pixels, kp)  # fed unchanged: the model reads COCO order
    assert res.poses_3d.shape == (7, 17, 3) and res.root_trajectory.shape == (7, 3)


def test_config_errors():
    model = StubModel(9, frame_local)
    x2d = ramp_input(3)
    for cfg, msg in [(LiftConfig(stride=10), "stride must be between 1 and the model's window T=9"),
                     (LiftConfig(agg="median"), "agg must be one of jpma, mean"),
                     (LiftConfig(batch_size=-1), "batch size")]:
        with pytest.raises(ValueError, match=msg):
            lift(model, x2d, cfg)
    for kw, msg in [({"num_hypotheses": 0}, "num_hypotheses"),
                    ({"dtype": "fp8"}, "dtype must be 'fp32', 'bf16' or 'fp16'")]:
        with pytest.raises(ValueError, match=msg):  # checked where the SamplingConfig is built
            SamplingConfig(**kw)
    with pytest.raises(ValueError, match="JPMA needs"):
        lift(model, x2d, LiftConfig())
