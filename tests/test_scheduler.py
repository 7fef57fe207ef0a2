"""D3DPScheduler: cosine schedule, D3DP time pairs, DDIM step, diffusers compatibility (docs/method.md §4.1, §4.4, §4.6)."""
import math
import warnings

import pytest
import torch

from d3dp_ktp.diffusion import D3DPScheduler, cosine_alphas_cumprod, d3dp_time_pairs
from tests.reference import official_ref as ref

ALPHA_BAR = {0: 0.99995872, 99: 0.972093, 199: 0.898706, 399: 0.647478, 499: 0.493844, 599: 0.340810,
             799: 0.0940456, 899: 0.0240917, 999: 2.4288e-9}
# docs/method.md §4.4, K=5: (t, t_next) -> (sigma, c, sqrt(alpha_bar_next))
K5_VALUES = {(999, 799): (0.951816, 0.000146, 0.306669), (799, 599): (0.725834, 0.363807, 0.583789),
             (599, 399): (0.503280, 0.315010, 0.804660), (399, 199): (0.283416, 0.144809, 0.948001)}
PAIRS = {
    1: [(999, -1)],
    2: [(999, 499), (499, -1)],
    3: [(999, 665), (665, 332), (332, -1)],
    5: [(999, 799), (799, 599), (599, 399), (399, 199), (199, -1)],
    10: [(999, 899), (899, 799), (799, 699), (699, 599), (599, 499), (499, 399), (399, 299), (299, 199),
         (199, 99), (99, -1)],
}


def stock_ddim():
    from diffusers import DDIMScheduler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                             clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="trailing",
                             thresholding=False, rescale_betas_zero_snr=False)


# ------------------------------------------------------------------ schedule (docs/method.md §4.1)
def test_alpha_bar_reference_values():
    ab = cosine_alphas_cumprod()
    assert ab.dtype == torch.float64 and ab.shape == (1000,)
    for t, v in ALPHA_BAR.items():
        assert ab[t].item() == pytest.approx(v, rel=5e-6 if t < 999 else 5e-5), t
    assert D3DPScheduler().alphas_cumprod.dtype == torch.float64


def test_schedule_matches_independent_float64_reference():
    buf = ref.d3dp_buffers()
    torch.testing.assert_close(cosine_alphas_cumprod(), buf["alphas_cumprod"], rtol=1e-13, atol=0)
    betas = buf["betas"]
    assert betas[999].item() == 0.999 and (betas[:999] < 0.999).all()  # only beta_999 is clipped
    assert (betas > 0).all()
    torch.testing.assert_close(D3DPScheduler().alphas_cumprod, buf["alphas_cumprod"], rtol=1e-13, atol=0)


# ------------------------------------------------------------------ time pairs (docs/method.md §4.4)
@pytest.mark.parametrize("K", [1, 2, 3, 5, 10, 20])
def test_time_pairs(K):
    pairs = d3dp_time_pairs(K)
    if K in PAIRS:
        assert pairs == PAIRS[K]
    expected_t = [math.floor(1000 * i / K) - 1 for i in range(K, 0, -1)]
    assert [t for t, _ in pairs] == expected_t
    assert [n for _, n in pairs] == expected_t[1:] + [-1]
    assert pairs == ref.time_pairs(K)
    if K == 20:
        assert pairs[0] == (999, 949) and pairs[-1] == (49, -1)
    s = D3DPScheduler()
    s.set_timesteps(K)
    assert s.timesteps.tolist() == expected_t and s.timesteps.dtype == torch.int64
    assert s.time_pairs() == pairs


def test_time_pairs_every_K_match_reference():
    for K in range(1, 1001, 7):
        assert d3dp_time_pairs(K) == ref.time_pairs(K), K
    assert d3dp_time_pairs(1000)[-2:] == [(1, 0), (0, -1)]


@pytest.mark.parametrize("K", [0, 1001, 2.0, -3])
def test_set_timesteps_rejects_bad_K(K):
    with pytest.raises(ValueError, match="num_inference_steps"):
        D3DPScheduler().set_timesteps(K)


def test_step_requires_listed_timestep():
    s = D3DPScheduler()
    s.set_timesteps(5)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="set_timesteps"):
        s.step(x, 500, x)


# ------------------------------------------------------------------ DDIM step (docs/method.md §4.4)
def test_sigma_c_values_for_K5():
    s = D3DPScheduler()
    s.set_timesteps(5)
    for (t, t_next), (sigma, c, sqrt_next) in K5_VALUES.items():
        got_sigma, got_c = s.sigma_and_c(t, t_next, 1.0)
        assert got_sigma == pytest.approx(sigma, abs=1e-6)
        assert got_c == pytest.approx(c, abs=1e-6)
        assert math.sqrt(s.alpha_bar(t_next)) == pytest.approx(sqrt_next, abs=1e-6)
        a, an = s.alpha_bar(t), s.alpha_bar(t_next)
        # the D3DP float64 formula, written out
        sig = math.sqrt((1 - a / an) * (1 - an) / (1 - a))
        assert got_sigma == pytest.approx(sig, rel=1e-12)
        assert got_c == pytest.approx(math.sqrt(1 - an - sig ** 2), rel=1e-9)
    assert s.alpha_bar(-1) == 1.0
    assert s.sigma_and_c(799, 599, 0.0) == (0.0, pytest.approx(math.sqrt(1 - s.alpha_bar(599))))


def test_step_formula_and_last_step():
    s = D3DPScheduler()
    s.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 17, 3, generator=g)
    x0 = torch.randn(x.shape, generator=g).clamp(-1.1, 1.1)
    z = torch.randn(x.shape, generator=g)
    out = s.step(x0, 599, x, eta=1.0, variance_noise=z)
    a, an = s.alpha_bar(599), s.alpha_bar(399)
    eps = ((x.double() / math.sqrt(a) - x0.double()) / math.sqrt(1 / a - 1)).float()
    torch.testing.assert_close(eps, (x - math.sqrt(a) * x0) / math.sqrt(1 - a), rtol=1e-4, atol=1e-5)
    sig, c = 0.503280, 0.315010
    torch.testing.assert_close(out.prev_sample, math.sqrt(an) * x0 + c * eps + sig * z, rtol=1e-5, atol=1e-5)
    assert out.pred_original_sample is x0
    prev, pred = s.step(x0, 599, x, eta=1.0, variance_noise=z, return_dict=False)
    assert torch.equal(prev, out.prev_sample) and pred is x0
    last = s.step(x0, 199, x, eta=1.0, variance_noise=z)
    assert torch.equal(last.prev_sample, x0)  # D3DP returns x̂0 at t_next < 0, no noise
    # eta = 0 ignores the noise; a generator makes eta > 0 reproducible
    det = s.step(x0, 599, x, eta=0.0, variance_noise=z).prev_sample
    torch.testing.assert_close(det, math.sqrt(an) * x0 + math.sqrt(1 - an) * eps, rtol=1e-5, atol=1e-5)
    r1 = s.step(x0, 599, x, generator=torch.Generator().manual_seed(5)).prev_sample
    r2 = s.step(x0, 599, x, generator=torch.Generator().manual_seed(5)).prev_sample
    assert torch.equal(r1, r2) and not torch.equal(r1, out.prev_sample)


def test_add_noise():
    s = D3DPScheduler()
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 9, 17, 3, generator=g), torch.randn(4, 9, 17, 3, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    out = s.add_noise(x0, noise, t)
    ab = ref.d3dp_buffers()["alphas_cumprod"]
    for i in range(4):
        expected = math.sqrt(ab[t[i]]) * x0[i].double() + math.sqrt(1 - ab[t[i]]) * noise[i].double()
        torch.testing.assert_close(out[i], expected.float())
    assert out.dtype == torch.float32


# ------------------------------------------------------------------ save / load (house style 4)
def test_save_pretrained_round_trip(tmp_path):
    s = D3DPScheduler(cosine_s=0.008)
    s.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    loaded = D3DPScheduler.from_pretrained(tmp_path)
    assert isinstance(loaded, D3DPScheduler)
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(s.config) == {"num_train_timesteps": 1000, "cosine_s": 0.008,
                                                         "prediction_type": "sample"}
    torch.testing.assert_close(loaded.alphas_cumprod, s.alphas_cumprod, rtol=0, atol=0)
    for sch in (s, loaded):
        sch.set_timesteps(3)
    assert loaded.timesteps.tolist() == s.timesteps.tolist() == [999, 665, 332]
    g = torch.Generator().manual_seed(2)
    x, x0, z = (torch.randn(2, 9, 17, 3, generator=g) for _ in range(3))
    assert torch.equal(loaded.step(x0, 665, x, variance_noise=z).prev_sample,
                       s.step(x0, 665, x, variance_noise=z).prev_sample)
    other = D3DPScheduler(num_train_timesteps=500)
    other.save_pretrained(tmp_path / "b")
    assert D3DPScheduler.from_pretrained(tmp_path / "b").alphas_cumprod.shape == (500,)


def test_only_x0_prediction():
    with pytest.raises(ValueError, match="sample"):
        D3DPScheduler(prediction_type="epsilon")


# ------------------------------------------------------------------ stock diffusers DDIM (docs/method.md §4.6)
def test_alpha_bar_close_to_stock_diffusers():
    stock = stock_ddim()
    rel = (stock.alphas_cumprod.double() / D3DPScheduler().alphas_cumprod - 1).abs()
    assert rel[:999].max() < 1e-6  # diffusers stores float32
    assert rel[999] < 1e-4


@pytest.mark.parametrize("K", [5, 10])
def test_agrees_with_stock_diffusers_when_K_divides_1000(K):
    stock, ours = stock_ddim(), D3DPScheduler()
    stock.set_timesteps(K)
    ours.set_timesteps(K)
    assert stock.timesteps.tolist() == ours.timesteps.tolist()
    g = torch.Generator().manual_seed(K)
    x = torch.randn(2, 3, 9, 17, 3, generator=g)
    for t, t_next in ours.time_pairs():
        x0 = 0.3 * torch.randn(x.shape, generator=g).clamp(-1.1, 1.1)
        z = torch.randn(x.shape, generator=g)
        a = stock.step(x0, t, x, eta=1.0, variance_noise=z)
        b = ours.step(x0, t, x, eta=1.0, variance_noise=z)
        torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, rtol=0, atol=0)
        # σ² agrees to float32 precision at every step
        prev = t_next if t_next >= 0 else -1
        var = stock._get_variance(torch.tensor(t), torch.tensor(prev)).item()
        assert var == pytest.approx(ours.sigma_and_c(t, t_next, 1.0)[0] ** 2, rel=1e-4, abs=1e-12)
        if t == 999:
            # c = sqrt(1 - ᾱ_next - σ²) ~ 1e-4 cancels catastrophically in diffusers' float32
            # (NaN at K=5); ours keeps float64 and gives the docs/method.md value.
            assert math.isfinite(ours.sigma_and_c(t, t_next, 1.0)[1])
        else:
            torch.testing.assert_close(a.prev_sample, b.prev_sample, rtol=1e-4, atol=1e-5)
        x = b.prev_sample


def test_stock_diffusers_differs_at_K3():
    stock, ours = stock_ddim(), D3DPScheduler()
    stock.set_timesteps(3)
    ours.set_timesteps(3)
    assert stock.timesteps.tolist() == [999, 666, 332]
    assert ours.timesteps.tolist() == [999, 665, 332]
    # diffusers steps to t - 1000 // K, not to the next listed timestep
    assert 666 - stock.config.num_train_timesteps // stock.num_inference_steps == 333
    assert ours.time_pairs()[1] == (665, 332)
