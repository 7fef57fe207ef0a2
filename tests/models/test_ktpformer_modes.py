"""KTPFormer Table 6 modes (UMD, PMD; our wiring, no official code): sizes, keys, wiring, gradients,
config validation and the ablation YAMLs. SMD itself is checked against the official reference in
test_models.py; here UMD/PMD are checked against a functional re-implementation written from the
mode descriptions, on the reference's primitives (tests/reference/official_ref.py).

Shape legend: B batch, H hypotheses, T frames, J joints, C channels, c_in input channels (2 or 5).
"""
from pathlib import Path

import pytest
import torch

from d3dp_ktp.experiment import load_experiment
from d3dp_ktp.models import ModelConfig, build_model, count_parameters
from tests.reference import TINY
from tests.models import inputs, tiny as _tiny
from tests.reference import official_ref as ref

ABLATIONS = Path(__file__).resolve().parents[2] / "configs" / "ablations"
MODES = ["smd", "umd", "pmd"]


def tiny(mode, seed=0, **kw):
    """A tiny eval-mode model of one S/T pair in ``mode``."""
    return _tiny(seed, depth=1, mode=mode, **kw)


# ------------------------------------------------------------------ functional re-implementation
def _prior_mhsa_mlp(h, p, blk, heads):
    """KPA/TPA block on embedded tokens: h + MHSA(LN_1e-5(h)), then + MLP(LN_1e-6(.))."""
    a = blk + "attn."
    h = h + ref.mhsa(ref.layer_norm(h, p, a + "norm1.", 1e-5), p, a, heads)
    return h + ref.mlp(ref.layer_norm(h, p, blk + "norm2.", 1e-6), p, blk + "mlp.")


def _tpa_layers(x, p, A_t, residual_from_input):
    """gconv1 [-> gconv2]; SMD/UMD: x + TPA2(TPA1(x)); PMD: z1 + TPA2(z1), z1 = TPA1(x)."""
    a = "tpattention.attn.tpa."
    z = ref.graph_conv_bn_relu(x, p, a + "gconv1.", A_t)
    if a + "gconv2.gconv.W" in p:
        z2 = ref.graph_conv_bn_relu(z, p, a + "gconv2.", A_t)
        return x + z2 if residual_from_input else z + z2
    return x + z if residual_from_input else z


def _first_pair_umd(x, te, p, f, n, heads):
    """KPA + P_s + e_t -> StackedTPA + P_t -> spatial MHSA+MLP, norm -> temporal MHSA+MLP, norm."""
    h = ref.graph_conv_bn_relu(x, p, "kpattention.attn.kpa.", ref.spatial_adj_h36m())
    h = h + p["kpattention.attn.Spatial_pos_embed"]
    h = h if te is None else h + te
    h = ref._spatial_to_temporal(h, f)
    h = _tpa_layers(h, p, ref.temporal_adj(f), residual_from_input=True) + p["tpattention.attn.Temporal_pos_embed"]
    h = ref._temporal_to_spatial(h, n)
    h = ref.layer_norm(_prior_mhsa_mlp(h, p, "kpattention.", heads), p, "Spatial_norm.", 1e-6)
    h = ref._spatial_to_temporal(h, f)
    h = ref.layer_norm(_prior_mhsa_mlp(h, p, "tpattention.", heads), p, "Temporal_norm.", 1e-6)
    return ref._temporal_to_spatial(h, n)


def _first_pair_pmd(x, te, p, f, n, heads):
    """Spatial branch (SMD's) + TPA over frames of the raw input + P_t -> temporal MHSA+MLP, norm."""
    s = ref.graph_conv_bn_relu(x, p, "kpattention.attn.kpa.", ref.spatial_adj_h36m())
    s = s + p["kpattention.attn.Spatial_pos_embed"]
    s = s if te is None else s + te
    s = ref.layer_norm(_prior_mhsa_mlp(s, p, "kpattention.", heads), p, "Spatial_norm.", 1e-6)
    s = ref._spatial_to_temporal(s, f)                                       # (B·J, T, C)
    z = _tpa_layers(ref._spatial_to_temporal(x, f), p, ref.temporal_adj(f), residual_from_input=False)
    h = s + z + p["tpattention.attn.Temporal_pos_embed"]
    h = ref.layer_norm(_prior_mhsa_mlp(h, p, "tpattention.", heads), p, "Temporal_norm.", 1e-6)
    return ref._temporal_to_spatial(h, n)


def mode_forward(mode, p, x2d, x_t=None, t=None, heads=4):
    """UMD / PMD in eval mode from a state dict; (B,T,J,3) or (B,H,T,J,3)."""
    C, f = p["head.1.weight"].shape[1], x2d.shape[1]
    x, te, out_shape = ref._fold_input(x2d, x_t, t, p, "", C)
    n = x.shape[1]
    first_pair = {"umd": _first_pair_umd, "pmd": _first_pair_pmd}[mode]
    x = ref._st_stack(first_pair(x, te, p, f, n, heads), p, "", heads, f, n, first=0)
    return ref._head(x, p, "", out_shape)


# ------------------------------------------------------------------ sizes and keys
def analytic_parameters(mode, C=512, J=17, T=243, c_in=5, L=7, r=2):
    """Parameter count from the layer shapes (docs/method.md §2.1-2.8, §3.2), for SMD/UMD/PMD with 2 TPA layers."""
    gcn_bn = lambda i, o, N: (2 * i * o + N * o + N * N + o) + 2 * o  # noqa: E731  W, M, Â, b; BN affine
    ln = 2 * C
    attn = (C * 3 * C + 3 * C) + (C * C + C)                            # qkv, proj
    mlp = (C * r * C + r * C) + (r * C * C + C)                         # fc1, fc2
    prior_block = lambda prior, tokens: prior + tokens * C + ln + attn + ln + mlp  # noqa: E731
    tpa = gcn_bn(c_in, C, T) + gcn_bn(C, C, T) if mode == "pmd" else 2 * gcn_bn(C, C, T)
    blocks = 2 * L * (ln + attn + ln + mlp)                             # STE_i, TTE_i
    norms_head = 2 * ln + ln + (C * 3 + 3)                              # Spatial/Temporal_norm, head
    time = (C * 2 * C + 2 * C) + (2 * C * C + C)                        # time_mlp.1, time_mlp.3
    return prior_block(gcn_bn(c_in, C, J), J) + prior_block(tpa, T) + blocks + norms_head + time


def test_parameter_counts_at_paper_config():
    # The formula reproduces docs/method.md's SMD count, so its PMD value is trustworthy. PMD differs from SMD
    # only in TPA_1's W: (2, 5, 512) instead of (2, 512, 512), i.e. 36,266,614 - 524,288 + 5,120.
    assert analytic_parameters("smd") == 36_266_614
    assert analytic_parameters("pmd") == 36_266_614 - 2 * 512 * 512 + 2 * 5 * 512 == 35_747_446
    counts = {}
    for mode in MODES:
        torch.manual_seed(0)
        counts[mode] = count_parameters(build_model(ModelConfig(mode=mode)))
    assert counts["smd"] == counts["umd"] == 36_266_614  # Table 6 lists UMD and SMD with equal sizes
    assert counts["pmd"] == analytic_parameters("pmd")


@pytest.mark.parametrize("diffusion", [True, False])
def test_state_dict_keys_align_with_smd(diffusion):
    sd = {m: tiny(m, diffusion=diffusion).state_dict() for m in MODES}
    assert set(sd["umd"]) == set(sd["smd"]) == set(sd["pmd"])
    c_in = 5 if diffusion else 2
    assert tuple(sd["pmd"]["tpattention.attn.tpa.gconv1.gconv.W"].shape) == (2, c_in, 32)
    assert tuple(sd["pmd"]["tpattention.attn.tpa.gconv2.gconv.W"].shape) == (2, 32, 32)
    assert tuple(sd["umd"]["tpattention.attn.tpa.gconv1.gconv.W"].shape) == (2, 32, 32)
    one = tiny("pmd", tpa_layers=1).state_dict()
    assert not any("gconv2" in k for k in one) and "tpattention.attn.tpa.gconv1.gconv.W" in one


def test_umd_and_smd_start_from_the_same_seeded_weights():
    """Same modules built in the same order, so a seeded UMD vs SMD comparison starts from equal weights."""
    sd = {}
    for mode in ("smd", "umd"):
        torch.manual_seed(0)
        sd[mode] = build_model(ModelConfig(**{**TINY, "depth": 1, "mode": mode})).state_dict()
    assert all(torch.equal(sd["smd"][k], sd["umd"][k]) for k in sd["smd"])


# ------------------------------------------------------------------ forward
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("H", [None, 3])
def test_denoiser_shapes_hypotheses_and_time(mode, H):
    m = tiny(mode, seed=1)
    x2d, x_t, t = inputs(2, H=H)
    out = m(x2d, x_t, t)
    assert out.shape == x_t.shape and torch.isfinite(out).all()
    assert (out - m(x2d, x_t, t + 1)).abs().max() > 1e-4  # e_t reaches the output
    if H:  # folding H into the batch must not mix hypotheses
        for h in range(H):
            torch.testing.assert_close(out[:, h], m(x2d, x_t[:, h], t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_lifter_shapes_with_and_without_hypothesis_axis(mode):
    m = tiny(mode, seed=3, diffusion=False)
    x2d, _, _ = inputs(4)
    out = m(x2d)
    assert out.shape == (2, 9, 17, 3)
    out_h = m(x2d.unsqueeze(1).expand(-1, 2, -1, -1, -1))
    assert out_h.shape == (2, 2, 9, 17, 3)
    torch.testing.assert_close(out_h[:, 1], out, rtol=1e-5, atol=1e-5)


def test_umd_rewires_smd_weights():
    smd = tiny("smd", seed=5)
    umd = build_model(ModelConfig(**{**TINY, "depth": 1, "mode": "umd"})).eval()
    umd.load_state_dict(smd.state_dict())  # strict: same modules, same keys and shapes
    x2d, x_t, t = inputs(6, H=2)
    assert (umd(x2d, x_t, t) - smd(x2d, x_t, t)).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["umd", "pmd"])
@pytest.mark.parametrize("H", [None, 3])
def test_denoiser_matches_functional_reimplementation(mode, H):
    m = tiny(mode, seed=7)
    x2d, x_t, t = inputs(8, H=H)
    out = m(x2d, x_t, t)
    torch.testing.assert_close(out, mode_forward(mode, m.state_dict(), x2d, x_t, t), rtol=1e-5, atol=1e-5)
    assert out.std() > 0.05


@pytest.mark.parametrize("mode,kw", [("umd", {}), ("pmd", {}), ("umd", {"tpa_layers": 1}),
                                     ("pmd", {"tpa_layers": 1})])
def test_lifter_matches_functional_reimplementation(mode, kw):
    m = tiny(mode, seed=9, diffusion=False, attention="math", **kw)
    x2d, _, _ = inputs(10)
    torch.testing.assert_close(m(x2d), mode_forward(mode, m.state_dict(), x2d), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ training mode
@pytest.mark.parametrize("mode", MODES)
def test_every_parameter_gets_a_gradient_and_bn_statistics_update(mode):
    m = tiny(mode, seed=11, drop_path_rate=0.1).train()
    x2d, x_t, t = inputs(12, H=2)
    m(x2d, x_t, t).square().mean().backward()
    missing = [k for k, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient in mode {mode}: {missing}"
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)]
    assert len(bns) == 3 and all(bn.num_batches_tracked.item() == 1 for bn in bns)


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("kw,match", [
    (dict(mode="xmd"), "model.mode must be 'smd', 'umd' or 'pmd'"),
    (dict(mode="umd", use_kpa=False), "needs model.use_kpa=true and model.use_tpa=true"),
    (dict(mode="pmd", use_tpa=False), "needs model.use_kpa=true and model.use_tpa=true"),
    (dict(mode="pmd", arch="mixste", depth=8), "applies to arch 'ktpformer' only"),
])
def test_mode_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        build_model(ModelConfig(**{**TINY, **kw}))


def test_smd_still_allows_kpa_or_tpa_alone():
    for kw in (dict(use_kpa=False), dict(use_tpa=False), dict(tpa_layers=1)):
        ModelConfig(**{**TINY, "mode": "smd", **kw}).validate()


@pytest.mark.parametrize("mode", ["umd", "pmd"])
def test_ablation_yaml_loads_and_builds(mode):
    path = ABLATIONS / f"ktpformer_h36m-gt_243f_{mode}.yaml"
    cfg = load_experiment(path)
    assert (cfg.model.mode, cfg.model.arch, cfg.model.num_frames, cfg.model.tpa_layers) == (mode, "ktpformer", 243, 2)
    assert cfg.data.keypoints == "gt" and cfg.train.output_dir == f"runs/ablation_{mode}"
    small = ["model.channels=32", "model.num_heads=4", "model.depth=1", "model.num_frames=9", "data.num_frames=9"]
    torch.manual_seed(0)
    m = build_model(load_experiment(path, small).model).eval()
    x2d, x_t, t = inputs(13, H=2)
    assert m(x2d, x_t, t).shape == x_t.shape


def test_every_ablation_yaml_loads():
    paths = sorted(ABLATIONS.glob("*.yaml"))
    assert len(paths) >= 12
    modes = {load_experiment(p).model.mode for p in paths}
    assert modes == {"smd", "umd", "pmd"}
