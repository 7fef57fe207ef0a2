"""Trainer: the smoke test of HOUSE_STYLE §10 and exact resume (§5) at epoch ends and mid-epoch."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from d3dp_ktp.checkpoints import load_checkpoint
from d3dp_ktp.data import load_splits
from d3dp_ktp.evaluation import EvalConfig, evaluate
from d3dp_ktp.sampling import SamplingConfig
from d3dp_ktp.experiment import load_experiment
from d3dp_ktp.training.trainer import Trainer
from tests.training import (assert_same_weights, checkpoint_weights, fit, single_thread, tiny_overrides,  # noqa: F401
                            write_tiny_data)

STEPS_PER_EPOCH = 4


def test_smoke_train_resume_sample_evaluate(tmp_path):
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "run"
    first = fit(data, out, epochs=1)
    assert (first.epoch, first.global_step) == (1, STEPS_PER_EPOCH)

    state = fit(data, out, resume=True, epochs=2)
    assert (state.epoch, state.global_step) == (2, 2 * STEPS_PER_EPOCH)
    assert [h["epoch"] for h in state.history] == [1, 2]  # the resumed run kept epoch 1's record
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["val_P-Agg"]) for h in state.history)
    for name in ("last", "best", "state"):
        assert (out / name / "model.safetensors").is_file(), name
    for name in ("last", "best"):
        assert (out / name / "config.yaml").is_file(), name

    model, sections = load_checkpoint(out / "last")
    assert sections["meta"]["global_step"] == 2 * STEPS_PER_EPOCH
    _, test_set = load_splits(load_experiment(None, tiny_overrides(data, out)).data)
    kp = test_set.videos[0].keypoints_2d                                   # (F, J, 2), F < T = 9
    x2d = torch.from_numpy(np.pad(kp, ((0, 9 - len(kp)), (0, 0), (0, 0)), mode="edge"))[None]
    poses = model.sample(x2d, num_hypotheses=2, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert poses.shape == (1, 2, 2, 9, 17, 3) and torch.isfinite(poses).all()

    summary = evaluate(model, test_set, EvalConfig(SamplingConfig(2, 2), batch_size=2)).summary()
    assert {"J-Best", "P-Best", "P-Agg"} <= set(summary)
    assert all(len(v) == 2 and all(math.isfinite(x) and x > 0 for x in v) for v in summary.values())


def test_resume_at_epoch_end_is_exact(tmp_path):
    data = write_tiny_data(tmp_path / "data")
    whole = fit(data, tmp_path / "A", epochs=3)
    fit(data, tmp_path / "B", epochs=1)
    resumed = fit(data, tmp_path / "B", resume=True, epochs=3)
    assert_same_weights(checkpoint_weights(tmp_path / "A" / "last"), checkpoint_weights(tmp_path / "B" / "last"))
    assert resumed.history == whole.history  # same losses and validation errors, epoch by epoch


@pytest.mark.parametrize("stop_at", [3, 4, 6], ids=["mid-epoch-1", "end-of-epoch-1", "mid-epoch-2"])
def test_resume_from_step_state_is_exact(tmp_path, stop_at):
    """Stop after ``stop_at`` optimizer steps (the state is saved every step), resume, compare."""
    data = write_tiny_data(tmp_path / "data")
    whole = fit(data, tmp_path / "A", epochs=2, val_every=0)
    stopped = fit(data, tmp_path / "B", epochs=2, val_every=0, max_steps=stop_at, state_every_steps=1)
    assert stopped.global_step == stop_at
    saved = json.loads((tmp_path / "B" / "state" / "trainer_state.json").read_text())
    assert (saved["epoch"], saved["step_in_epoch"]) == divmod(stop_at, STEPS_PER_EPOCH)
    resumed = fit(data, tmp_path / "B", resume=True, epochs=2, val_every=0)
    assert resumed.global_step == whole.global_step
    assert_same_weights(checkpoint_weights(tmp_path / "A" / "last"), checkpoint_weights(tmp_path / "B" / "last"))
    assert resumed.history == whole.history  # epoch losses averaged over the batches before and after


def test_resume_without_state_starts_from_scratch(tmp_path):
    data = write_tiny_data(tmp_path / "data")
    state = fit(data, tmp_path / "run", resume=True, epochs=1, val_every=0)
    assert (state.epoch, state.global_step) == (1, STEPS_PER_EPOCH)


def test_interrupted_state_swap_is_recovered_on_resume(tmp_path):
    """A kill between the two renames of the state swap leaves only ``.state.old``; resume uses it."""
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "B"
    fit(data, tmp_path / "A", epochs=2, val_every=0)
    fit(data, out, epochs=2, val_every=0, max_steps=5, state_every_steps=1)
    (out / "state").rename(out / ".state.old")
    (out / ".state.abc12345").mkdir()  # an unfinished temporary state folder
    trainer = Trainer(load_experiment(None, tiny_overrides(data, out, epochs=2, val_every=0)), resume=True)
    assert trainer.state.global_step == 5  # continued, not restarted
    assert trainer.fit().global_step == 2 * STEPS_PER_EPOCH
    assert_same_weights(checkpoint_weights(tmp_path / "A" / "last"), checkpoint_weights(out / "last"))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_bf16_mixed_precision_and_ema_train_on_cpu(tmp_path):
    """train.mixed_precision=bf16 runs the denoiser under autocast (accelerate wraps forward, which is
    the loss), gradient accumulation groups batches, and the EMA copy is what gets checkpointed."""
    data = write_tiny_data(tmp_path / "data")
    state = fit(data, tmp_path / "run", epochs=1, mixed_precision="bf16", ema_decay=0.9, grad_accum=2)
    assert state.global_step == 2  # 4 batches, 2 per optimizer step
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in state.history)
    ema = checkpoint_weights(tmp_path / "run" / "last")
    raw = load_file(str(tmp_path / "run" / "state" / "model.safetensors"))
    key = "pose_estimator.head.1.weight"
    assert not torch.equal(ema[key], raw[key])  # the EMA lags the trained weights
