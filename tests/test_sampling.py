"""SamplingConfig: one place for H, K, eta, flip, dtype and seed; older files' keys; the step noise."""
from __future__ import annotations

import pytest
import torch
import yaml

from d3dp_ktp.checkpoints import load_checkpoint, save_checkpoint
from d3dp_ktp.diffusion import D3DPScheduler, DiffusionConfig
from d3dp_ktp.experiment import load_experiment
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig
from d3dp_ktp.sampling import SamplingConfig, migrate_sampling_keys

TINY = ModelConfig(num_frames=9, channels=16, depth=1, num_heads=2, drop_path_rate=0.0)


def tiny(seed: int = 0, sampling: SamplingConfig | None = None):
    torch.manual_seed(seed)
    return build_diffusion(TINY, DiffusionConfig(), sampling).eval()


def test_override_keeps_absent_values_and_validates():
    s = SamplingConfig(num_hypotheses=3, num_steps=2, seed=4)
    assert s.override(num_hypotheses=None, flip=False) == SamplingConfig(3, 2, flip=False, seed=4)
    assert s.override() is s
    with pytest.raises(ValueError, match=r"num_hypotheses \(H\) must be an integer >= 1, got 0"):
        s.override(num_hypotheses=0)


def test_old_keys_move_to_sampling_and_new_keys_win():
    old = {"diffusion": {"scale": 2.0, "num_hypotheses": 3, "num_steps": 2, "flip": False},
           "eval": {"num_steps": 10, "seed": 7, "batch_size": 2},
           "train": {"val_hypotheses": 2, "val_steps": 1, "epochs": 3}}
    new, notes = migrate_sampling_keys(old)
    assert new["diffusion"] == {"scale": 2.0} and new["eval"] == {"batch_size": 2}
    assert new["sampling"] == {"num_hypotheses": 3, "num_steps": 10, "flip": False, "seed": 7}  # eval.* wins
    assert new["train"] == {"epochs": 3, "val_sampling": {"num_hypotheses": 2, "num_steps": 1}}
    assert "diffusion.num_hypotheses -> sampling.num_hypotheses" in notes and len(notes) == 7
    assert old["diffusion"]["num_hypotheses"] == 3  # the input is left alone
    both, _ = migrate_sampling_keys({"diffusion": {"num_steps": 2}, "sampling": {"num_steps": 4}})
    assert both["sampling"] == {"num_steps": 4}
    assert migrate_sampling_keys({"model": {}}) == ({"model": {}}, [])


def test_an_older_checkpoint_folder_loads_with_its_sampling_settings(tmp_path):
    """config.yaml as written before SamplingConfig (sampling keys under diffusion, a scheduler_config.json)."""
    path = save_checkpoint(tiny(1), tmp_path / "old")
    sections = yaml.safe_load((path / "config.yaml").read_text())
    sections["diffusion"].update(num_hypotheses=3, num_steps=2, eta=0.5, flip=False)
    del sections["sampling"]
    (path / "config.yaml").write_text(yaml.safe_dump(sections))
    (path / "scheduler_config.json").write_text('{"_class_name": "D3DPScheduler", "num_train_timesteps": 1000}')
    model, loaded = load_checkpoint(path)
    assert model.sampling == SamplingConfig(num_hypotheses=3, num_steps=2, eta=0.5, flip=False)
    assert loaded["sampling"] == {"num_hypotheses": 3, "num_steps": 2, "eta": 0.5, "flip": False}
    assert model.sample(torch.zeros(1, 9, 17, 2)).shape == (1, 2, 3, 9, 17, 3)


def test_an_older_experiment_file_is_read_with_a_warning(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("diffusion: {num_hypotheses: 3}\neval: {num_steps: 4, batch_size: 2}\ntrain: {val_steps: 2}\n")
    with pytest.warns(UserWarning, match="sampling settings have moved: diffusion.num_hypotheses -> sampling"):
        cfg = load_experiment(f)
    assert (cfg.sampling.num_hypotheses, cfg.sampling.num_steps, cfg.eval.batch_size) == (3, 4, 2)
    assert (cfg.train.val_sampling.num_hypotheses, cfg.train.val_sampling.num_steps) == (1, 2)


def test_sample_defaults_to_the_models_sampling_settings():
    model = tiny(2, SamplingConfig(num_hypotheses=2, num_steps=3, eta=0.0, flip=False))
    x2d = torch.randn(2, 9, 17, 2, generator=torch.Generator().manual_seed(0))
    latents = torch.randn(2, 2, 9, 17, 3, generator=torch.Generator().manual_seed(1))
    own = model.sample(x2d, latents=latents)
    assert own.shape == (2, 3, 2, 9, 17, 3)
    assert torch.equal(own, model.sample(x2d, 2, 3, eta=0.0, flip=False, latents=latents))
    assert not torch.allclose(own, model.sample(x2d, 2, 3, eta=0.0, flip=True, latents=latents))


@pytest.mark.parametrize("max_batch", [1, 3, 4, 7])
def test_max_batch_splits_the_forward_without_changing_the_result(max_batch):
    model = tiny(3)
    g = torch.Generator().manual_seed(4)
    x2d, latents = torch.randn(3, 9, 17, 2, generator=g), torch.randn(3, 4, 9, 17, 3, generator=g)
    step_noise = torch.randn(1, 3, 4, 9, 17, 3, generator=g)
    calls = []
    model.pose_estimator.register_forward_hook(lambda m, args, out: calls.append(args[1].shape[:2]))
    whole = model.sample(x2d, 4, 2, latents=latents, step_noise=step_noise)
    assert calls == [(6, 4)] * 2  # 3 windows and their 3 flipped copies, 4 hypotheses, in one forward per step
    calls.clear()
    split = model.sample(x2d, 4, 2, latents=latents, step_noise=step_noise, max_batch=max_batch)
    assert max(b * h for b, h in calls) <= max_batch and sum(b * h for b, h in calls) == 2 * 24
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="max_batch must be an integer >= 1"):
        model.sample(x2d, 4, 2, max_batch=0)


def test_step_refuses_both_noise_and_generator_like_diffusers():
    s = D3DPScheduler()
    s.set_timesteps(2)
    x = torch.zeros(1, 9, 17, 3)
    with pytest.raises(ValueError, match="Cannot pass both generator and variance_noise"):
        s.step(x, 999, x, variance_noise=torch.ones_like(x), generator=torch.Generator())


def test_generator_sampling_draws_z_in_the_scheduler_in_the_old_order():
    """No given noise: x_T first, then one z per non-final step, all from the one generator, as replayed noise."""
    model = tiny(5)
    x2d = torch.randn(2, 9, 17, 2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(8)
    latents = torch.randn(2, 3, 9, 17, 3, generator=g)
    step_noise = torch.stack([torch.randn(2, 3, 9, 17, 3, generator=g) for _ in range(3)])
    drawn = model.sample(x2d, 3, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(drawn, model.sample(x2d, 3, 4, latents=latents, step_noise=step_noise))


def test_loss_draws_t_and_noise_from_the_generator_where_it_lives():
    """On the CPU the draws are the ones made before (t, then the noise), so resumed runs stay exact."""
    model = tiny(6)
    g = torch.Generator().manual_seed(9)
    x2d, y = torch.randn(4, 9, 17, 2, generator=g), 0.3 * torch.randn(4, 9, 17, 3, generator=g)
    g = torch.Generator().manual_seed(10)
    t = torch.randint(0, 1000, (4,), generator=g)
    noise = torch.randn(y.shape, generator=g)
    given = model.loss(x2d, y, t=t, noise=noise).value
    assert torch.equal(model.loss(x2d, y, generator=torch.Generator().manual_seed(10)).value, given)


def test_evaluation_runs_the_dtype_it_is_given_not_the_models(monkeypatch):
    from d3dp_ktp.evaluation import runner
    model = tiny(7, SamplingConfig(num_hypotheses=1, num_steps=1, dtype="bf16"))
    seen = []
    sample = model.sample
    monkeypatch.setattr(model, "sample", lambda *a, **kw: seen.append(kw.get("dtype")) or sample(*a, **kw))
    x2d = torch.zeros(1, 9, 17, 2)
    for dtype in ("fp32", "bf16"):
        cfg = runner.EvalConfig(SamplingConfig(1, 1, dtype=dtype), device="cpu")
        runner._sample(model, x2d, cfg, torch.Generator().manual_seed(0), root=0)
    assert seen == ["fp32", None]  # fp32 said explicitly, since the model's own is bf16
