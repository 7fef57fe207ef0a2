"""KTPFormer / MixSTE denoisers: sizes, initialisation, official keys, and forward equality with an
independent functional re-implementation of the official code (tests/reference/official_ref.py)."""
import dataclasses
import math

import pytest
import torch

from d3dp_ktp.models import ModelConfig, build_model, count_parameters
from d3dp_ktp.models.graph import LearnableGraphConv
from d3dp_ktp.models.layers import DropPath, SinusoidalEmbedding
from tests.reference import TINY
from tests.models import inputs, tiny
from tests.reference import official_ref as ref


# ------------------------------------------------------------------ sizes (docs/method.md §2.8)
@pytest.mark.parametrize("kw,expected", [
    (dict(diffusion=False, num_frames=243), 35_213_430),
    (dict(diffusion=False, num_frames=81), 34_859_622),
    (dict(diffusion=False, num_frames=27), 34_765_014),
    (dict(arch="mixste", depth=8), 34_835_459),
    (dict(), 36_266_614),
])
def test_parameter_counts(kw, expected):
    torch.manual_seed(0)
    assert count_parameters(build_model(ModelConfig(**kw))) == expected


def test_full_size_keys_are_the_official_ones():
    torch.manual_seed(0)
    lifter = build_model(ModelConfig(diffusion=False))
    sd = lifter.state_dict()
    assert set(sd) == ref.ktpformer_keys(depth=7)
    shapes = {"kpattention.attn.kpa.gconv.W": (2, 2, 512), "kpattention.attn.kpa.gconv.M": (17, 512),
              "kpattention.attn.kpa.gconv.adj2": (17, 17), "kpattention.attn.Spatial_pos_embed": (1, 17, 512),
              "tpattention.attn.tpa.gconv1.gconv.W": (2, 512, 512), "tpattention.attn.tpa.gconv2.gconv.M": (243, 512),
              "tpattention.attn.tpa.gconv2.gconv.adj2": (243, 243),
              "tpattention.attn.Temporal_pos_embed": (1, 243, 512), "kpattention.attn.qkv.weight": (1536, 512),
              "STEblocks.6.mlp.fc1.weight": (1024, 512), "head.1.weight": (3, 512), "head.0.weight": (512,)}
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    den = build_model(ModelConfig())
    assert set(den.state_dict()) == ref.ktpformer_keys(depth=7, diffusion=True)
    assert tuple(den.state_dict()["kpattention.attn.kpa.gconv.W"].shape) == (2, 5, 512)
    assert tuple(den.state_dict()["time_mlp.1.weight"].shape) == (1024, 512)
    assert tuple(den.state_dict()["time_mlp.3.weight"].shape) == (512, 1024)
    mix = build_model(ModelConfig(arch="mixste", depth=8))
    assert set(mix.state_dict()) == ref.mixste2_keys(depth=8)
    assert tuple(mix.state_dict()["Spatial_patch_to_embedding.weight"].shape) == (512, 5)


# ------------------------------------------------------------------ initialisation (docs/method.md §2.1, §2.7, §3.1)
def test_initial_values():
    torch.manual_seed(0)
    lifter = build_model(ModelConfig(diffusion=False))
    den = build_model(ModelConfig())
    bounds = [(lifter.kpattention.attn.kpa.gconv.W, 0.076535),
              (lifter.tpattention.attn.tpa.gconv1.gconv.W, 0.0067516),
              (lifter.tpattention.attn.tpa.gconv2.gconv.W, 0.0067516),
              (den.kpattention.attn.kpa.gconv.W, 0.057855)]
    for W, bound in bounds:
        fan_in, fan_out = W.shape[1] * W.shape[2], W.shape[0] * W.shape[2]
        assert 1.414 * math.sqrt(6 / (fan_in + fan_out)) == pytest.approx(bound, rel=1e-4)
        m = W.abs().max().item()
        assert m <= bound * (1 + 1e-5) and m > 0.99 * bound
        assert W.mean().abs().item() < 0.05 * bound
    for model in (lifter, den):
        for mod in model.modules():
            if isinstance(mod, LearnableGraphConv):
                assert torch.all(mod.M == 1)
                assert torch.all(mod.adj2 == 1e-6)
                assert mod.bias.abs().max().item() <= 1 / math.sqrt(mod.bias.numel())
                assert mod.bias.abs().max().item() > 0.9 / math.sqrt(mod.bias.numel())
            if isinstance(mod, torch.nn.BatchNorm1d):
                assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
                assert torch.all(mod.running_mean == 0) and torch.all(mod.running_var == 1)
            if isinstance(mod, torch.nn.LayerNorm):
                assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
        assert torch.all(model.kpattention.attn.Spatial_pos_embed == 0)
        assert torch.all(model.tpattention.attn.Temporal_pos_embed == 0)
    mix = build_model(ModelConfig(arch="mixste", depth=8))
    assert torch.all(mix.Spatial_pos_embed == 0) and torch.all(mix.Temporal_pos_embed == 0)
    # Linear: kaiming-uniform(a=sqrt(5)) = U(±1/sqrt(fan_in))
    w = den.STEblocks[0].mlp.fc1.weight
    assert w.abs().max().item() <= 1 / math.sqrt(512) and w.abs().max().item() > 0.99 / math.sqrt(512)


def test_sinusoidal_embedding_values():
    emb = SinusoidalEmbedding(512)(torch.tensor([1, 0, 999]))
    assert emb.shape == (3, 512)
    assert emb[0, 0].item() == pytest.approx(0.841471, abs=1e-6)
    assert emb[0, 256].item() == pytest.approx(0.540302, abs=1e-6)
    torch.testing.assert_close(emb[1], torch.cat([torch.zeros(256), torch.ones(256)]))
    torch.testing.assert_close(emb, ref.sinusoidal_embedding(torch.tensor([1, 0, 999]), 512))
    k = torch.arange(256, dtype=torch.float64)
    freq = torch.exp(-k * math.log(10000) / 255)
    torch.testing.assert_close(emb[2].double(), torch.cat([(999 * freq).sin(), (999 * freq).cos()]),
                               rtol=0, atol=2e-4)


def test_norm_eps_bn_settings_and_drop_path_rates():
    torch.manual_seed(0)
    m = build_model(ModelConfig(**{**TINY, "depth": 7, "drop_path_rate": 0.1}))
    assert m.kpattention.attn.norm1.eps == 1e-5 and m.tpattention.attn.norm1.eps == 1e-5
    assert m.kpattention.norm2.eps == 1e-6 and m.tpattention.norm2.eps == 1e-6
    assert m.Spatial_norm.eps == 1e-6 and m.Temporal_norm.eps == 1e-6 and m.head[0].eps == 1e-5
    for blk in list(m.STEblocks) + list(m.TTEblocks):
        assert blk.norm1.eps == 1e-6 and blk.norm2.eps == 1e-6
    for bn in (m.kpattention.attn.kpa.bn, m.tpattention.attn.tpa.gconv1.bn, m.tpattention.attn.tpa.gconv2.bn):
        assert (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == (1e-5, 0.1, True, True)
    dpr = torch.linspace(0, 0.1, 8)
    for i in range(7):
        assert m.STEblocks[i].drop_path.p == pytest.approx(dpr[i + 1].item())
        assert m.TTEblocks[i].drop_path.p == pytest.approx(dpr[i + 1].item())
    assert m.STEblocks[0].drop_path.p == pytest.approx(0.0142857, abs=1e-7)
    mix = build_model(ModelConfig(**{**TINY, "arch": "mixste", "depth": 8, "drop_path_rate": 0.1}))
    assert [b.drop_path.p for b in mix.STEblocks] == pytest.approx(dpr.tolist())
    assert mix.head[0].eps == 1e-5 and mix.Spatial_norm.eps == 1e-6


def test_drop_path_is_per_first_axis_row():
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    x = torch.ones(200, 4, 3)
    y = dp(x)
    rows = y.reshape(200, -1)
    assert torch.all((rows == 0).all(1) | (rows == 2).all(1))  # kept rows scaled by 1/(1-p)
    assert 50 < (rows[:, 0] == 0).sum().item() < 150
    assert torch.equal(dp.eval()(x), x)


# ------------------------------------------------------------------ graph (docs/method.md §2.1)
def test_graph_adjacency_is_rebuilt_not_saved_and_init_S_values():
    torch.manual_seed(0)
    m = build_model(ModelConfig(**{**TINY, "depth": 1}))
    kpa, tpa = m.kpattention.attn.kpa.gconv, m.tpattention.attn.tpa.gconv1.gconv
    assert not any(k.endswith(".adj") or k.endswith(".eye") for k in m.state_dict())
    torch.testing.assert_close(kpa.adj, ref.spatial_adj_h36m(), rtol=0, atol=0)
    torch.testing.assert_close(tpa.adj, ref.temporal_adj(9), rtol=0, atol=0)
    S = (kpa.adj + kpa.adj2) / 2
    S = S + S.T
    assert S[0, 0].item() == pytest.approx(1 + 1e-6, abs=1e-7)
    assert S[0, 1].item() == pytest.approx(0.416668, abs=1e-6)
    assert S[7, 8].item() == pytest.approx(0.375001, abs=1e-6)
    St = (tpa.adj + tpa.adj2 + (tpa.adj + tpa.adj2).T) / 2
    assert St[0, 1].item() == pytest.approx(0.75, abs=2e-6) and St[4, 5].item() == pytest.approx(0.5, abs=2e-6)


def test_graph_conv_per_node_formula():
    """y_i = S_ii (m_i ∘ x_i W0) + Σ_{j≠i} S_ij (m_j ∘ x_j W1) + b, written as explicit loops."""
    torch.manual_seed(0)
    A = ref.adj_from_parents([-1, 0, 1, 1])
    gc = LearnableGraphConv(3, 5, A)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        gc.M.copy_(torch.randn(4, 5, generator=g))
        gc.adj2.copy_(torch.rand(4, 4, generator=g))
    x = torch.randn(2, 4, 3, generator=g)
    S = A + gc.adj2.detach()
    S = (S + S.T) / 2
    W0, W1, M, b = gc.W[0].detach(), gc.W[1].detach(), gc.M.detach(), gc.bias.detach()
    y = torch.zeros(2, 4, 5)
    for i in range(4):
        y[:, i] = S[i, i] * M[i] * (x[:, i] @ W0) + b
        for j in range(4):
            if j != i:
                y[:, i] += S[i, j] * M[j] * (x[:, j] @ W1)
    torch.testing.assert_close(gc(x), y, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ forward equality with the reference
def test_ktpformer_lifter_matches_reference():
    m = tiny(1, diffusion=False, attention="math")
    x2d, _, _ = inputs(2)
    out = m(x2d)
    assert out.shape == (2, 9, 17, 3)
    torch.testing.assert_close(out, ref.ktpformer_forward(m.state_dict(), x2d, heads=4), rtol=1e-5, atol=1e-5)
    assert out.std() > 0.1


@pytest.mark.parametrize("H", [None, 3])
def test_ktpformer_denoiser_matches_reference(H):
    m = tiny(3)
    x2d, x_t, t = inputs(4, H=H)
    out = m(x2d, x_t, t)
    assert out.shape == x_t.shape
    expected = ref.ktpformer_forward(m.state_dict(), x2d, x_t, t, heads=4)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("H", [None, 3])
def test_mixste_denoiser_matches_reference(H):
    m = tiny(5, arch="mixste", depth=3)
    x2d, x_t, t = inputs(6, H=H)
    out = m(x2d, x_t, t)
    assert out.shape == x_t.shape
    torch.testing.assert_close(out, ref.mixste2_forward(m.state_dict(), x2d, x_t, t, heads=4), rtol=1e-5, atol=1e-5)


def test_denoiser_depends_on_time_and_hypotheses_are_independent():
    m = tiny(7)
    x2d, x_t, t = inputs(8, H=3)
    out = m(x2d, x_t, t)
    assert (out - m(x2d, x_t, t + 1)).abs().max() > 1e-4
    for h in range(3):  # folding H into the batch must not mix hypotheses
        torch.testing.assert_close(out[:, h], m(x2d, x_t[:, h], t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["ktpformer", "mixste"])
def test_math_and_sdpa_attention_agree(arch):
    a = tiny(9, arch=arch, attention="math")
    b = build_model(dataclasses.replace(a.cfg, attention="sdpa")).eval()
    b.load_state_dict(a.state_dict())
    x2d, x_t, t = inputs(10, H=2)
    torch.testing.assert_close(a(x2d, x_t, t), b(x2d, x_t, t), rtol=1e-5, atol=1e-5)


def test_single_frame_model():
    m = tiny(11, num_frames=1)
    x2d, x_t, t = inputs(12, H=2, T=1)
    out = m(x2d, x_t, t)
    assert out.shape == (2, 2, 1, 17, 3)
    torch.testing.assert_close(out, ref.ktpformer_forward(m.state_dict(), x2d, x_t, t, heads=4),
                               rtol=1e-5, atol=1e-5)


def test_training_mode_backward_and_batch_norm_statistics():
    """The official in-place add after ReLU breaks autograd (docs/method.md §12.4); ours must train."""
    m = tiny(13, drop_path_rate=0.1).train()
    x2d, x_t, t = inputs(14)
    out = m(x2d, x_t, t)
    out.square().mean().backward()
    assert m.kpattention.attn.kpa.gconv.W.grad is not None
    assert m.kpattention.attn.kpa.gconv.adj2.grad.abs().sum() > 0
    assert m.kpattention.attn.kpa.bn.num_batches_tracked.item() == 1
    with torch.no_grad():
        assert (m.eval()(x2d, x_t, t) - out).abs().max() > 1e-3  # eval uses running statistics


def test_batch_norm_statistics_run_over_samples_and_nodes():
    """KPA's BN is BatchNorm1d(C) on the (S, C, J) layout: per channel over samples × joints (docs/method.md §2.2)."""
    m = tiny(21, diffusion=False).train()
    bn = m.kpattention.attn.kpa.bn
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        x2d, _, _ = inputs(22)
        h = m.kpattention.attn.kpa.gconv(x2d.reshape(-1, 17, 2))  # (B·T, J, C)
        m(x2d)
    torch.testing.assert_close(bn.running_mean, 0.1 * h.mean(dim=(0, 1)), rtol=1e-5, atol=1e-6)
    # BatchNorm's running variance uses the unbiased estimate
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * h.var(dim=(0, 1)), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ input validation
@pytest.mark.parametrize("which,shape,match", [
    ("x2d", (2, 9, 16, 2), "joints"), ("x2d", (2, 8, 17, 2), "frames"), ("x2d", (2, 9, 17, 3), r"\(B, T, J, 2\)"),
    ("x_t", (2, 9, 15, 3), "joints"), ("x_t", (2, 3, 7, 17, 3), "frames"), ("x_t", (2, 9, 17, 2), r"\(B, T, J, 3\)"),
    ("x2d", (9, 17, 2), r"\(B, T, J, 2\)"),
])
def test_wrong_input_shapes_raise(which, shape, match):
    m = tiny(15)
    x2d, x_t, t = inputs(16)
    args = {"x2d": x2d, "x_t": x_t}
    args[which] = torch.zeros(shape)
    with pytest.raises(ValueError, match=match):
        m(args["x2d"], args["x_t"], t)


def test_missing_or_mismatched_diffusion_inputs_raise():
    m = tiny(17)
    x2d, x_t, t = inputs(18)
    with pytest.raises(ValueError, match="x_t"):
        m(x2d)
    with pytest.raises(ValueError, match=r"t must have shape"):
        m(x2d, x_t, t[:1])
    with pytest.raises(ValueError, match="disagree"):
        m(x2d[:1], x_t, t)
    lifter = tiny(19, diffusion=False)
    with pytest.raises(ValueError, match="joints"):
        lifter(torch.zeros(1, 9, 15, 2))


def test_layout_joint_count_mismatch_raises():
    with pytest.raises(ValueError, match="joints"):
        build_model(ModelConfig(**{**TINY, "num_joints": 15}))
