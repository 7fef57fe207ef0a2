"""The D3DP wrapper: training noising and loss (docs/method.md §4.3), the DDIM sampler with flip TTA (docs/method.md §4.4-4.5)
checked step by step against an independent transcription of the official ddim_sample."""
import dataclasses
import functools

import pytest
import torch

from d3dp_ktp.diffusion import D3DP, DiffusionConfig, SamplingConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig
from d3dp_ktp.skeleton import COCO, H36M
from tests.reference import TINY, randomize_
from tests.reference import official_ref as ref


def tiny_d3dp(arch="ktpformer", seed=0, out_scale=0.3, diffusion=None, sampling=None, **model_kw) -> D3DP:
    torch.manual_seed(seed)
    depth = 3 if arch == "mixste" else 2
    cfg = ModelConfig(**{**TINY, "arch": arch, "depth": depth, **model_kw})
    d = build_diffusion(cfg, diffusion or DiffusionConfig(), sampling)
    randomize_(d.pose_estimator, seed + 100, out_scale)
    return d.eval()


def reference_fn(d: D3DP):
    forward = ref.ktpformer_forward if d.pose_estimator.cfg.arch == "ktpformer" else ref.mixste2_forward
    return functools.partial(forward, d.pose_estimator.state_dict(), heads=d.pose_estimator.cfg.num_heads)


def batch(seed, B=2, T=9, J=17):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, J, 2, generator=g), 0.3 * torch.randn(B, T, J, 3, generator=g), g


# ------------------------------------------------------------------ sampler vs the official loop
@pytest.mark.parametrize("arch", ["mixste", "ktpformer"])
@pytest.mark.parametrize("K,eta,flip", [(3, 0.0, True), (3, 0.0, False), (5, 0.0, True), (5, 0.0, False),
                                        (3, 1.0, True), (5, 1.0, True), (5, 1.0, False), (1, 1.0, True),
                                        (3, 0.5, True)])
def test_sampler_matches_official_ddim_sample(arch, K, eta, flip):
    d = tiny_d3dp(arch, seed=K)
    x2d, _, g = batch(K + 10)
    B, H = 2, 3
    latents = torch.randn(B, H, 9, 17, 3, generator=g)
    step_noise = torch.randn(K - 1, B, H, 9, 17, 3, generator=g)
    out = d.sample(x2d, H, K, eta=eta, flip=flip, latents=latents, step_noise=step_noise if eta else None)
    assert out.shape == (B, K, H, 9, 17, 3)
    expected = ref.ddim_sample(reference_fn(d), x2d, latents, step_noise, K, eta=eta, flip=flip)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    if K > 1:  # the steps really differ from each other
        assert (out[:, 0] - out[:, -1]).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["mixste", "ktpformer"])
def test_sampler_with_scale_and_clamped_predictions(arch):
    """scale != 1 (docs/method.md §4.2) and an output head large enough that x̂0 hits the ±1.1·scale clamp."""
    d = tiny_d3dp(arch, seed=21, out_scale=4.0, diffusion=DiffusionConfig(scale=1.7))
    x2d, _, g = batch(22)
    latents = 1.7 * torch.randn(2, 2, 9, 17, 3, generator=g)
    step_noise = torch.randn(3, 2, 2, 9, 17, 3, generator=g)
    out = d.sample(x2d, 2, 4, latents=latents, step_noise=step_noise)
    expected = ref.ddim_sample(reference_fn(d), x2d, latents, step_noise, 4, eta=1.0, flip=True, scale=1.7)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert (out.abs() > 1.87 - 1e-5).any() and out.abs().max() <= 1.1 * 1.7 + 1e-6


def test_flip_uses_keypoint_layout_for_2d():
    d = tiny_d3dp("mixste", seed=23, keypoint_layout="coco")
    x2d, _, g = batch(24)
    latents = torch.randn(2, 2, 9, 17, 3, generator=g)
    out = d.sample(x2d, 2, 2, eta=0.0, latents=latents)
    expected = ref.ddim_sample(reference_fn(d), x2d, latents, None, 2, eta=0.0, flip=True,
                               kps_left=COCO.joints_left, kps_right=COCO.joints_right)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    wrong = ref.ddim_sample(reference_fn(d), x2d, latents, None, 2, eta=0.0, flip=True)
    assert (out - wrong).abs().max() > 1e-4


def test_generator_stream_matches_official_draw_order():
    """latents first, then one z per non-final step and none at the last step (docs/method.md §4.6 item 3)."""
    d = tiny_d3dp(seed=25)
    x2d, _, _ = batch(26)
    out = d.sample(x2d, 2, 3, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    latents = torch.randn(2, 2, 9, 17, 3, generator=g)
    step_noise = torch.stack([torch.randn(2, 2, 9, 17, 3, generator=g) for _ in range(2)])
    torch.testing.assert_close(out, d.sample(x2d, 2, 3, latents=latents, step_noise=step_noise), rtol=0, atol=0)


# ------------------------------------------------------------------ sampler behaviour
def test_sample_is_seeded_and_deterministic():
    d = tiny_d3dp(seed=27)
    x2d, _, _ = batch(28)
    a = d.sample(x2d, 3, 2, generator=torch.Generator().manual_seed(1))
    b = d.sample(x2d, 3, 2, generator=torch.Generator().manual_seed(1))
    c = d.sample(x2d, 3, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(3)
    e = d.sample(x2d, 3, 2)
    torch.manual_seed(3)
    assert torch.equal(e, d.sample(x2d, 3, 2))


@pytest.mark.parametrize("flip", [True, False])
def test_sampling_loop_never_reads_back_from_the_device(flip):
    """The K-step DDIM loop has no host-device sync (no item/bool/tolist on a device tensor): it runs
    with the model and all inputs on the meta device, where any such read raises. (The input check of
    ``sample``, before the loop, reads one bool.)"""
    d = tiny_d3dp(seed=43).to("meta")
    shape, K = (2, 2, 9, 17, 3), 5
    x2d = torch.empty(2, 9, 17, 2, device="meta")
    latents, step_noise = torch.empty(shape, device="meta"), torch.empty(K - 1, *shape, device="meta")
    out = d._ddim_loop(x2d, K, 1.0, flip, None, latents, step_noise, shape, None)
    assert out.shape == (2, K, *shape[1:]) and out.device.type == "meta"


def test_sample_uses_config_defaults_and_restores_training_mode():
    d = tiny_d3dp(seed=29, sampling=SamplingConfig(num_hypotheses=2, num_steps=3))
    x2d, _, _ = batch(30)
    ref_out = d.sample(x2d, generator=torch.Generator().manual_seed(0))
    assert ref_out.shape == (2, 3, 2, 9, 17, 3)
    d.train()
    out = d.sample(x2d, generator=torch.Generator().manual_seed(0))
    assert d.training and d.pose_estimator.training  # previous mode restored
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)  # BN running statistics were used


def test_sample_shapes_single_hypothesis_single_step():
    d = tiny_d3dp(seed=31)
    x2d, _, _ = batch(32, B=3)
    out = d.sample(x2d, 1, 1, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 1, 9, 17, 3)


def test_sample_single_frame_model():
    d = tiny_d3dp(seed=33, num_frames=1)
    x2d, _, g = batch(34, T=1)
    latents = torch.randn(2, 4, 1, 17, 3, generator=g)
    out = d.sample(x2d, 4, 2, eta=0.0, latents=latents)
    assert out.shape == (2, 2, 4, 1, 17, 3)
    expected = ref.ddim_sample(reference_fn(d), x2d, latents, None, 2, eta=0.0)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_hypotheses=0), "num_hypotheses"), (dict(num_steps=0), "num_steps"),
    (dict(num_steps=1001), "num_steps"), (dict(eta=-0.5), "eta"), (dict(eta=float("nan")), "eta"),
    (dict(latents=torch.zeros(2, 3, 9, 17, 3)), "latents"),
    (dict(step_noise=torch.zeros(2, 2, 2, 9, 17, 3)), "step_noise"),
])
def test_sample_argument_errors(kwargs, match):
    d = tiny_d3dp(seed=35)
    x2d, _, _ = batch(36)
    args = {"num_hypotheses": 2, "num_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        d.sample(x2d, **args)


def test_sample_input_errors():
    d = tiny_d3dp(seed=37)
    x2d, _, _ = batch(38)
    bad = x2d.clone()
    bad[0, 3, 5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        d.sample(bad, 1, 1)
    with pytest.raises(ValueError, match=r"\(B, T, J, 2\)"):
        d.sample(x2d[0], 1, 1)
    with pytest.raises(ValueError, match=r"\(B, T, J, 2\)"):
        d.sample(x2d[..., :1], 1, 1)
    with pytest.raises(ValueError, match="frames"):
        d.sample(x2d[:, :5], 1, 1)


def test_wrapper_needs_a_diffusion_denoiser():
    with pytest.raises(ValueError, match="diffusion"):
        build_diffusion(ModelConfig(**{**TINY, "diffusion": False}), DiffusionConfig())


# ------------------------------------------------------------------ training (docs/method.md §4.3)
def test_noisy_input_is_clamped_q_sample():
    d = tiny_d3dp(seed=39, diffusion=DiffusionConfig(scale=2.0))
    g = torch.Generator().manual_seed(40)
    y = 3 * torch.randn(4, 9, 17, 3, generator=g)
    noise = torch.randn(4, 9, 17, 3, generator=g)
    t = torch.tensor([0, 5, 500, 999])
    x = d.noisy_input(y, t, noise)
    assert x.dtype == torch.float32 and x.shape == y.shape
    assert x.abs().max().item() <= 1.1 + 1e-6  # ±clamp·scale / scale
    assert (x.abs() > 1.1 - 1e-6).float().mean() > 0.05
    torch.testing.assert_close(x, ref.q_sample_train(y, t, noise, scale=2.0), rtol=1e-6, atol=1e-6)
    ab = ref.d3dp_buffers()["alphas_cumprod"]
    raw = d.q_sample(y, t, noise)
    torch.testing.assert_close(raw[2], (ab[500].sqrt() * y[2] + (1 - ab[500]).sqrt() * noise[2]).float())


def test_loss_zeroes_target_root_and_is_mpjpe_of_x0():
    d = tiny_d3dp(seed=41)
    x2d, y, g = batch(42, B=3)
    y[:, :, 0] = torch.randn(3, 9, 3, generator=g)  # a trajectory in the root column
    t = torch.tensor([3, 400, 998])
    noise = torch.randn(y.shape, generator=g)
    before = y.clone()
    out = d.loss(x2d, y, t=t, noise=noise)
    assert torch.equal(y, before)  # the caller's tensor is not modified
    y0 = y.clone()
    y0[:, :, 0] = 0
    pred = reference_fn(d)(x2d, ref.q_sample_train(y0, t, noise), t)
    expected = (pred - y0).norm(dim=-1).mean()
    assert out.value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.mpjpe.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(expected.item() ** 2, rel=1e-5)  # L·sg(L)
    other = y.clone()
    other[:, :, 0] += 5.0  # the root column never matters
    assert d.loss(x2d, other, t=t, noise=noise).value.item() == pytest.approx(out.value.item(), rel=1e-6)


def test_loss_scaled_gradient_is_L_times_grad_L():
    d = tiny_d3dp(seed=43).train()
    plain = D3DP(d.pose_estimator, dataclasses.replace(d.cfg, loss_scaled_gradient=False), H36M)
    x2d, y, g = batch(44)
    t, noise = torch.tensor([10, 700]), torch.randn(y.shape, generator=g)
    params = [p for p in d.pose_estimator.parameters()]

    def grads(model):
        model.zero_grad()
        out = model.loss(x2d, y, t=t, noise=noise)
        out.loss.backward()
        return out.value, [p.grad.clone() for p in params]

    value, g_scaled = grads(d)
    value2, g_plain = grads(plain)
    assert value.item() == pytest.approx(value2.item(), rel=1e-6)
    for a, b in zip(g_scaled, g_plain):
        torch.testing.assert_close(a, value * b, rtol=1e-4, atol=1e-8)
    assert sum(b.abs().sum() for b in g_plain) > 0


def test_loss_is_seeded_and_draws_t_and_noise():
    d = tiny_d3dp(seed=45)
    x2d, y, _ = batch(46)
    a = d.loss(x2d, y, generator=torch.Generator().manual_seed(9)).value
    b = d.loss(x2d, y, generator=torch.Generator().manual_seed(9)).value
    c = d.loss(x2d, y, generator=torch.Generator().manual_seed(10)).value
    assert a.item() == b.item() and a.item() != c.item()


def test_loss_input_errors():
    d = tiny_d3dp(seed=47)
    x2d, y, _ = batch(48)
    with pytest.raises(ValueError, match="y3d"):
        d.loss(x2d, y[..., :2])
    with pytest.raises(ValueError, match="y3d"):
        d.loss(x2d, y[:1])
