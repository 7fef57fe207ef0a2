"""The automatic sampling batch of the pipeline (`auto_batch`): within its memory budget, same results."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from d3dp_ktp.inference import pipeline
from d3dp_ktp.inference.pipeline import LiftConfig, auto_batch, lift, sequence_bytes
from d3dp_ktp.diffusion import DiffusionConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig, build_model
from d3dp_ktp.sampling import SamplingConfig

from .conftest import tiny_model


class LargestTensor(TorchDispatchMode):
    """Records the size in bytes of the largest tensor any op produces."""
    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def _sequences_per_call(model) -> list[int]:
    calls: list[int] = []
    model.pose_estimator.register_forward_hook(lambda m, args, out: calls.append(args[1].shape[0] * args[1].shape[1]))
    return calls


def _watch_forward(model) -> LargestTensor:
    """A LargestTensor mode active inside every denoiser forward (and only there)."""
    mode, forward = LargestTensor(), model.pose_estimator.forward

    def watched(*args, **kwargs):
        with mode:
            return forward(*args, **kwargs)
    model.pose_estimator.forward = watched
    return mode


@pytest.mark.parametrize("H,flip", [(3, True), (2, False), (7, True)])
def test_auto_batch_keeps_every_forward_within_its_budget_and_changes_no_result(H, flip, monkeypatch):
    model = tiny_model(1)
    x2d = np.random.RandomState(2).uniform(-0.5, 0.5, (30, 17, 2)).astype(np.float32)  # 6 windows of T=9
    sampling = SamplingConfig(num_hypotheses=H, num_steps=2, flip=flip, seed=3)
    fixed = lift(model, x2d, LiftConfig(sampling, batch_size=4, agg="mean", save_hypotheses=True))
    budget = 5 * sequence_bytes(model.pose_estimator.cfg)
    monkeypatch.setattr(pipeline, "CPU_TENSOR_BUDGET", budget)
    windows, sequences = auto_batch(model, sampling, "cpu")
    assert sequences == 5 and windows == max(1, 5 // (H * (2 if flip else 1)))
    calls, mode = _sequences_per_call(model), _watch_forward(model)
    auto = lift(model, x2d, LiftConfig(sampling, agg="mean", save_hypotheses=True))
    assert calls and max(calls) <= sequences
    assert sum(calls) == fixed.num_windows * H * (2 if flip else 1) * 2  # every sequence once per step
    assert mode.largest <= budget, (mode.largest, budget)
    np.testing.assert_allclose(auto.hypotheses, fixed.hypotheses, rtol=0, atol=1e-6)
    np.testing.assert_allclose(auto.poses_3d, fixed.poses_3d, rtol=0, atol=1e-6)


def test_one_forward_of_the_estimated_size_stays_within_the_estimate():
    """sequence_bytes bounds the largest intermediate of a real forward, for both attention kinds."""
    for attention in ("sdpa", "math"):
        cfg = ModelConfig(num_frames=9, channels=16, depth=1, num_heads=2, drop_path_rate=0.0, attention=attention)
        denoiser = build_model(cfg).eval()
        with LargestTensor() as mode, torch.no_grad():
            denoiser(torch.zeros(3, 9, 17, 2), torch.zeros(3, 1, 9, 17, 3), torch.zeros(3, dtype=torch.long))
        assert 0.5 * 3 * sequence_bytes(cfg) <= mode.largest <= 3 * sequence_bytes(cfg), attention


def test_default_cpu_budget_on_the_demo_model_size():
    """The demo model (T=27, C=64): 95 sequences per forward; H=20 with flip is 40 a window, so 2 windows
    per call; H=5 packs 9; a model 8x as wide gets 11 sequences, 5 hypotheses of one window and its flip."""
    cfg = ModelConfig(num_frames=27, channels=64, depth=2, num_heads=4, drop_path_rate=0.0)
    model = build_diffusion(cfg, DiffusionConfig())
    assert auto_batch(model, SamplingConfig(20, 10), "cpu") == (2, 95)
    assert auto_batch(model, SamplingConfig(5, 5), "cpu") == (9, 95)
    assert 95 * sequence_bytes(cfg) <= pipeline.CPU_TENSOR_BUDGET < 96 * sequence_bytes(cfg)
    wide = ModelConfig(num_frames=27, channels=512, depth=1, num_heads=8, drop_path_rate=0.0)
    assert auto_batch(build_diffusion(wide, DiffusionConfig()), SamplingConfig(5, 5), "cpu") == (1, 11)


def test_a_given_batch_size_is_used_as_is():
    model = tiny_model(1)
    calls = _sequences_per_call(model)
    x2d = np.zeros((30, 17, 2), np.float32)
    lift(model, x2d, LiftConfig(SamplingConfig(3, 1), batch_size=4, agg="mean"))
    assert calls == [4 * 6, 2 * 6]  # 6 windows: 4 + 2, each 3 hypotheses x 2 (flip) in one forward
