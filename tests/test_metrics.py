import math

import numpy as np
import pytest
import torch

from d3dp_ktp.diffusion import D3DP, DiffusionConfig
from d3dp_ktp.metrics import (H36M_JOINT_WEIGHTS, HUMANEVA15_JOINT_WEIGHTS, MPI_INF_3DHP_PCK_GROUPS, joint_errors,
                              mpjpe, mpjve, multi_hypothesis_errors, n_mpjpe, p_mpjpe, pck_auc, procrustes_align,
                              temporal_consistency, weighted_mpjpe)
from d3dp_ktp.skeleton import get_skeleton


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q  # a proper rotation, det +1


def videopose3d_p_mpjpe(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Reference: VideoPose3D's NumPy p_mpjpe (per pose), i.e. docs/method.md §5.5 transcribed."""
    mu_x, mu_y = target.mean(1, keepdims=True), predicted.mean(1, keepdims=True)
    x0, y0 = target - mu_x, predicted - mu_y
    n_x = np.sqrt((x0 ** 2).sum((1, 2), keepdims=True))
    n_y = np.sqrt((y0 ** 2).sum((1, 2), keepdims=True))
    u, s, vt = np.linalg.svd(np.matmul((x0 / n_x).transpose(0, 2, 1), y0 / n_y))
    v = vt.transpose(0, 2, 1)
    sign = np.sign(np.linalg.det(np.matmul(v, u.transpose(0, 2, 1))))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign.flatten()
    r = np.matmul(v, u.transpose(0, 2, 1))
    a = s.sum(1, keepdims=True)[:, :, None] * n_x / n_y
    aligned = a * np.matmul(predicted, r) + mu_x - a * np.matmul(mu_y, r)
    return np.linalg.norm(aligned - target, axis=-1).mean(1)


# --- single-hypothesis metrics -----------------------------------------------------------------

def test_perfect_prediction_gives_zero_everywhere():
    torch.manual_seed(0)
    y = torch.randn(2, 5, 17, 3, dtype=torch.float64)
    assert mpjpe(y, y) == 0
    assert weighted_mpjpe(y, y, H36M_JOINT_WEIGHTS) == 0
    assert mpjve(y, y) == 0
    assert n_mpjpe(y, y) == pytest.approx(0, abs=1e-12)
    assert p_mpjpe(y, y) == pytest.approx(0, abs=1e-7)


def test_constant_offset_gives_offset_norm_and_zero_velocity_error():
    torch.manual_seed(1)
    y = torch.randn(3, 4, 17, 3, dtype=torch.float64)
    d = torch.tensor([0.03, -0.04, 0.12], dtype=torch.float64)  # |d| = 0.13
    assert mpjpe(y + d, y).item() == pytest.approx(0.13)
    assert mpjve(y + d, y).item() == pytest.approx(0.0, abs=1e-12)
    # Weights are NOT renormalised (docs/method.md §5.8): the constant error is scaled by mean(w).
    w = torch.tensor(H36M_JOINT_WEIGHTS)
    assert weighted_mpjpe(y + d, y, w).item() == pytest.approx(0.13 * w.mean().item())
    assert weighted_mpjpe(y + d, y, w).item() > 0.13 * 1.5


def test_joint_weight_tables():
    assert len(H36M_JOINT_WEIGHTS) == 17 and sum(H36M_JOINT_WEIGHTS) == 36.5
    assert len(HUMANEVA15_JOINT_WEIGHTS) == 15 and sum(HUMANEVA15_JOINT_WEIGHTS) == 34.5


def test_weighted_mpjpe_uses_weight_of_the_erring_joint():
    torch.manual_seed(2)
    y = torch.randn(1, 2, 17, 3)
    pred = y.clone()
    pred[..., 12, 0] += 0.5  # LElbow, weight 4
    expected = 4 * 0.5 / 17
    assert weighted_mpjpe(pred, y, H36M_JOINT_WEIGHTS).item() == pytest.approx(expected, rel=1e-5)


def test_temporal_consistency_matches_hand_computation():
    torch.manual_seed(3)
    T, v = 6, 0.02
    base = torch.randn(2, 1, 17, 3, dtype=torch.float64)
    step = torch.tensor([v, 0.0, 0.0], dtype=torch.float64)
    pred = base + torch.arange(T, dtype=torch.float64)[:, None, None] * step
    w = torch.tensor(H36M_JOINT_WEIGHTS, dtype=torch.float64)
    # Squared velocity v² on one of three coordinates, weighted per joint, mean over (b, t, j, c).
    assert temporal_consistency(pred, w).item() == pytest.approx(w.mean().item() * v ** 2 / 3)


def test_mpjve_matches_velocity_difference():
    torch.manual_seed(4)
    y = torch.randn(2, 5, 17, 3, dtype=torch.float64)
    pred = y.clone()
    pred[:, 3, 5] += torch.tensor([0.0, 0.3, 0.4], dtype=torch.float64)  # one joint jumps at frame 3
    # Two frame pairs (2->3, 3->4) each see a 0.5 error at one joint: 2 * 2 * 0.5 / (2 * 4 * 17).
    assert mpjve(pred, y).item() == pytest.approx(2 * 2 * 0.5 / (2 * 4 * 17))


class FixedPrediction(torch.nn.Module):
    """A 'denoiser' that always returns ``pred``, so D3DP.loss measures its objective on it."""

    def __init__(self, pred: torch.Tensor):
        super().__init__()
        self.pred = pred

    def forward(self, x2d, x_t, t):
        return self.pred


def d3dp_objective(pred: torch.Tensor, y: torch.Tensor, **diffusion) -> torch.Tensor:
    """The training objective D3DP composes from these metrics, with its gradient (root of y zeroed)."""
    cfg = DiffusionConfig(loss_scaled_gradient=False, **diffusion)  # L itself, not L·sg(L)
    model = D3DP(FixedPrediction(pred), cfg, get_skeleton("h36m"))
    x2d = torch.zeros(*y.shape[:-1], 2)
    return model.loss(x2d, y, generator=torch.Generator().manual_seed(0)).loss


KTPFORMER_LOSS = dict(weighted_mpjpe=True, lambda_tc=0.5, lambda_vel=2.0)  # docs/method.md §2.10: λ_T = 0.5, λ_M = 2.0


def test_ktpformer_loss_composition_and_lambdas():
    torch.manual_seed(5)
    y = torch.randn(2, 7, 17, 3)
    y[:, :, 0] = 0
    pred = y + 0.05 * torch.randn_like(y)
    w = H36M_JOINT_WEIGHTS
    l_w, l_tc, l_v = weighted_mpjpe(pred, y, w), temporal_consistency(pred, w), mpjve(pred, y)
    assert d3dp_objective(pred, y, **KTPFORMER_LOSS).item() == pytest.approx((l_w + 0.5 * l_tc + 2.0 * l_v).item(),
                                                                             rel=1e-6)
    custom = d3dp_objective(pred, y, weighted_mpjpe=True, lambda_tc=1.0, lambda_vel=0.0)
    assert custom.item() == pytest.approx((l_w + l_tc).item(), rel=1e-6)
    assert d3dp_objective(pred, y).item() == pytest.approx(mpjpe(pred, y).item(), rel=1e-6)  # D3DP: plain MPJPE


def test_ktpformer_loss_single_frame_is_weighted_mpjpe_and_differentiable():
    torch.manual_seed(6)
    y = torch.randn(3, 1, 17, 3)
    y[:, :, 0] = 0
    pred = (y + 0.1 * torch.randn_like(y)).requires_grad_()
    loss = d3dp_objective(pred, y, **KTPFORMER_LOSS)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(weighted_mpjpe(pred, y, H36M_JOINT_WEIGHTS).item())
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_n_mpjpe_removes_scale_and_matches_formula():
    torch.manual_seed(7)
    y = torch.randn(2, 3, 17, 3, dtype=torch.float64)
    assert n_mpjpe(1.7 * y, y).item() == pytest.approx(0, abs=1e-12)
    pred = y + 0.1 * torch.randn_like(y)
    s = (y * pred).sum(-1).mean(-1) / (pred ** 2).sum(-1).mean(-1)
    assert n_mpjpe(pred, y).item() == pytest.approx(mpjpe(s[..., None, None] * pred, y).item())


def test_p_mpjpe_invariant_to_similarity_transform():
    g = torch.Generator().manual_seed(8)
    y = torch.randn(4, 17, 3, dtype=torch.float64, generator=g)
    pred = 0.6 * y @ random_rotation(g) + torch.tensor([0.3, -1.0, 4.0], dtype=torch.float64)
    assert mpjpe(pred, y) > 0.5
    assert p_mpjpe(pred, y).item() == pytest.approx(0, abs=1e-10)


def test_p_mpjpe_excludes_reflections():
    torch.manual_seed(9)
    y = torch.randn(4, 17, 3, dtype=torch.float64)
    mirrored = y * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert p_mpjpe(mirrored, y).item() > 0.1


def test_p_mpjpe_matches_videopose3d_reference_per_pose():
    rng = np.random.default_rng(10)
    y = rng.normal(size=(64, 17, 3))
    pred = y + rng.normal(scale=0.3, size=y.shape)
    pred[:8] *= np.array([-1.0, 1.0, 1.0])  # some poses need the reflection fix
    ours = p_mpjpe(torch.from_numpy(pred), torch.from_numpy(y), reduce="none").numpy()
    np.testing.assert_allclose(ours, videopose3d_p_mpjpe(pred, y), rtol=0, atol=1e-12)


def test_p_mpjpe_degenerate_poses_do_not_abort():
    torch.manual_seed(18)
    y = torch.randn(2, 17, 3, dtype=torch.float64)
    collapsed = torch.zeros_like(y)  # e.g. an untrained model predicting every joint at the root
    errors = p_mpjpe(collapsed, y, reduce="none")
    expected = joint_errors(y.mean(dim=-2, keepdim=True).expand_as(y), y).mean(dim=-1)  # centroid fit
    torch.testing.assert_close(errors, expected)
    assert p_mpjpe(y, torch.zeros_like(y)).item() == pytest.approx(0, abs=1e-12)


def test_procrustes_is_batched_and_keeps_dtype():
    torch.manual_seed(11)
    y = torch.randn(2, 3, 5, 17, 3)
    pred = y + 0.1 * torch.randn_like(y)
    aligned = procrustes_align(pred, y)
    assert aligned.dtype == torch.float32 and aligned.shape == y.shape
    assert p_mpjpe(pred, y, reduce="none").shape == (2, 3, 5)
    flat = p_mpjpe(pred.reshape(-1, 17, 3), y.reshape(-1, 17, 3), reduce="none")
    torch.testing.assert_close(p_mpjpe(pred, y, reduce="none").reshape(-1), flat)


@pytest.mark.parametrize("call", [
    lambda: mpjpe(torch.zeros(2, 17, 3), torch.zeros(2, 16, 3)),
    lambda: mpjpe(torch.zeros(2, 17, 2), torch.zeros(2, 17, 2)),
    lambda: weighted_mpjpe(torch.zeros(2, 17, 3), torch.zeros(2, 17, 3), HUMANEVA15_JOINT_WEIGHTS),
    lambda: temporal_consistency(torch.zeros(17, 3), H36M_JOINT_WEIGHTS),
    lambda: mpjve(torch.zeros(17, 3), torch.zeros(17, 3)),
    lambda: p_mpjpe(torch.zeros(2, 17, 3), torch.zeros(2, 17, 3), reduce="sum"),
])
def test_single_hypothesis_shape_errors(call):
    with pytest.raises(ValueError):
        call()


def test_shape_error_names_the_argument():
    with pytest.raises(ValueError, match="w must hold one weight per joint"):
        weighted_mpjpe(torch.zeros(1, 17, 3), torch.zeros(1, 17, 3), [1.0, 2.0])
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        joint_errors(torch.zeros(1, 17, 3), torch.zeros(2, 17, 3))


# --- multi-hypothesis metrics (docs/method.md §5.2) ---------------------------------------------------

def two_window_case() -> tuple[torch.Tensor, torch.Tensor]:
    """B=2 windows, K=1, H=2, T=1, J=1; errors along x: window 0 -> (1.0, 0.0), window 1 -> (0.2, 3.0)."""
    Y = torch.zeros(2, 1, 1, 3, dtype=torch.float64)
    P = torch.zeros(2, 1, 2, 1, 1, 3, dtype=torch.float64)
    P[0, 0, 0, 0, 0, 0], P[0, 0, 1, 0, 0, 0] = 1.0, 0.0
    P[1, 0, 0, 0, 0, 0], P[1, 0, 1, 0, 0, 0] = 0.2, 3.0
    return P, Y


def test_p_best_batch_versus_window_hand_computed():
    P, Y = two_window_case()
    batch = multi_hypothesis_errors(P, Y, p_best="batch")
    window = multi_hypothesis_errors(P, Y, p_best="window")
    # Batch: E_h = (0.6, 1.5) -> h = 0 for both windows -> 0.6. Window: min(1, 0) and min(0.2, 3) -> 0.1.
    assert batch["P-Best"].item() == pytest.approx(0.6)
    assert window["P-Best"].item() == pytest.approx(0.1)
    assert batch["J-Best"].item() == pytest.approx(0.1)
    assert batch["P-Agg"].item() == pytest.approx((0.5 + 1.6) / 2)  # mean poses at x = 0.5 and 1.6
    assert "J-Agg" not in batch


def test_p_best_weights_change_only_p_best_and_none_chooses_from_every_frame():
    # Window of T=4 frames, J=17, 2 hypotheses; frames 2-3 padding. A: 1, 1, 10, 10 m along x on every
    # joint; B: 2 everywhere. Counted frames prefer A, all frames prefer B.
    P = torch.zeros(1, 1, 2, 4, 17, 3, dtype=torch.float64)
    P[0, 0, 0, :, :, 0] = torch.tensor([1.0, 1.0, 10.0, 10.0])[:, None]
    P[0, 0, 1, :, :, 0] = 2.0
    Y = torch.zeros(1, 4, 17, 3, dtype=torch.float64)
    weights = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    official = multi_hypothesis_errors(P, Y, p_best="window", reduce="frame")
    clean = multi_hypothesis_errors(P, Y, p_best="window", reduce="frame", p_best_weights=weights)
    torch.testing.assert_close(official["P-Best"][0, 0], torch.full((4,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(clean["P-Best"][0, 0], torch.tensor([1.0, 1.0, 10.0, 10.0], dtype=torch.float64))
    for name in ("J-Best", "P-Agg"):
        assert torch.equal(official[name], clean[name])
    with pytest.raises(ValueError, match=r"weights must be a real tensor of shape \(B, T\)"):
        multi_hypothesis_errors(P, Y, protocol=2, p_best_weights=torch.ones(1, 5))


def test_multi_hypothesis_orderings_on_random_data():
    torch.manual_seed(12)
    P = torch.randn(3, 2, 5, 4, 17, 3)
    Y = torch.randn(3, 4, 17, 3)
    index = torch.randint(0, 5, (3, 2, 4, 17))
    for protocol in (1, 2):
        batch = multi_hypothesis_errors(P, Y, jpma_index=index, protocol=protocol, p_best="batch")
        window = multi_hypothesis_errors(P, Y, protocol=protocol, p_best="window")
        assert batch["J-Best"].shape == (2,)
        assert (batch["J-Best"] <= window["P-Best"] + 1e-6).all()
        assert (window["P-Best"] <= batch["P-Best"] + 1e-6).all()
        assert (batch["J-Best"] <= batch["J-Agg"] + 1e-6).all()
    # Protocol 1: by the triangle inequality the mean pose is no worse than the average hypothesis.
    average_hypothesis = joint_errors(P, Y[:, None, None].expand_as(P)).mean(dim=(0, 2, 3, 4))
    assert (multi_hypothesis_errors(P, Y)["P-Agg"] <= average_hypothesis + 1e-6).all()


def test_j_agg_gathers_errors_with_the_given_index():
    torch.manual_seed(13)
    P = torch.randn(2, 1, 3, 2, 17, 3, dtype=torch.float64)
    Y = torch.randn(2, 2, 17, 3, dtype=torch.float64)
    index = torch.randint(0, 3, (2, 1, 2, 17))
    picked = P[torch.arange(2)[:, None, None, None], torch.arange(1)[None, :, None, None], index,
               torch.arange(2)[None, None, :, None], torch.arange(17)]
    expected = joint_errors(picked, Y[:, None]).mean()
    assert multi_hypothesis_errors(P, Y, jpma_index=index)["J-Agg"].item() == pytest.approx(expected.item())


def test_reductions_are_consistent():
    torch.manual_seed(14)
    P = torch.randn(3, 2, 4, 5, 17, 3, dtype=torch.float64)
    Y = torch.randn(3, 5, 17, 3, dtype=torch.float64)
    index = torch.randint(0, 4, (3, 2, 5, 17))
    shapes = {"mean": (2,), "window": (3, 2), "frame": (3, 2, 5), "none": (3, 2, 5, 17)}
    results = {r: multi_hypothesis_errors(P, Y, jpma_index=index, reduce=r) for r in shapes}
    for name in ("J-Best", "P-Best", "P-Agg", "J-Agg"):
        for reduce, shape in shapes.items():
            value = results[reduce][name]
            assert value.shape == shape
            mean = value.reshape(3, 2, -1).mean(dim=(0, 2)) if reduce != "mean" else value
            torch.testing.assert_close(mean, results["mean"][name])


def test_protocol_2_aligns_every_hypothesis_and_the_mean_pose():
    g = torch.Generator().manual_seed(15)
    Y = torch.randn(2, 3, 17, 3, dtype=torch.float64, generator=g)
    P = torch.stack([0.8 * Y @ random_rotation(g) + 0.2, 1.3 * Y @ random_rotation(g) - 0.5], dim=1)[:, None]
    index = torch.randint(0, 2, (2, 1, 3, 17), generator=g)
    p1 = multi_hypothesis_errors(P, Y, jpma_index=index, protocol=1)
    p2 = multi_hypothesis_errors(P, Y, jpma_index=index, protocol=2)
    for name in ("J-Best", "P-Best", "J-Agg"):
        assert p1[name].item() > 0.1
        assert p2[name].item() == pytest.approx(0, abs=1e-10)
    # P-Agg under protocol 2 aligns the mean pose, which is not a similarity transform of Y.
    assert p2["P-Agg"].item() == pytest.approx(p_mpjpe(P.mean(dim=2)[:, 0], Y).item())
    assert p2["P-Agg"].item() > 1e-3


def test_degenerate_sizes_single_hypothesis_step_frame():
    torch.manual_seed(16)
    P = torch.randn(2, 1, 1, 1, 17, 3)
    Y = torch.randn(2, 1, 17, 3)
    index = torch.zeros(2, 1, 1, 17, dtype=torch.long)
    out = multi_hypothesis_errors(P, Y, jpma_index=index)
    for value in out.values():  # with one hypothesis every rule reduces to plain MPJPE
        assert value.shape == (1,)
        assert value.item() == pytest.approx(mpjpe(P[:, 0, 0], Y).item(), rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(P=torch.zeros(2, 1, 3, 4, 17, 3), Y=torch.zeros(2, 5, 17, 3)), "Y must have shape"),
    (dict(P=torch.zeros(1, 3, 4, 17, 3), Y=torch.zeros(1, 4, 17, 3)), "P must be a tensor"),
    (dict(P=torch.zeros(1, 1, 3, 4, 17, 3), Y=torch.zeros(1, 4, 17, 3), protocol=3), "protocol"),
    (dict(P=torch.zeros(1, 1, 3, 4, 17, 3), Y=torch.zeros(1, 4, 17, 3), p_best="frame"), "p_best must be"),
    (dict(P=torch.zeros(1, 1, 3, 4, 17, 3), Y=torch.zeros(1, 4, 17, 3), reduce="sum"), "reduce must be"),
    (dict(P=torch.zeros(1, 1, 3, 4, 17, 3), Y=torch.zeros(1, 4, 17, 3),
          jpma_index=torch.zeros(1, 1, 4, 16, dtype=torch.long)), "index must have shape"),
])
def test_multi_hypothesis_shape_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        multi_hypothesis_errors(**kwargs)


# --- MPI-INF-3DHP PCK / AUC (docs/method.md §7.5) ---------------------------------------------------

def test_pck_auc_perfect_prediction():
    out = pck_auc(np.zeros((10, 17)))
    assert set(out["PCK"]) == {name for name, _ in MPI_INF_3DHP_PCK_GROUPS} | {"Total"}
    for name in out["PCK"]:
        assert out["PCK"][name] == 100.0
        assert out["AUC"][name] == pytest.approx(100 * 30 / 31)  # tau = 0 never counts (strict <)
    assert out["AUC"]["Total"] == pytest.approx(96.774, abs=1e-3)


def test_pck_auc_constant_100mm_error():
    out = pck_auc(torch.full((5, 17), 100.0))  # tensors are accepted too
    assert out["PCK"]["Total"] == 100.0
    assert out["AUC"]["Total"] == pytest.approx(100 * 10 / 31)  # only 105..150 exceed 100 mm


def test_pck_is_strict_at_150mm():
    out = pck_auc(np.full((3, 17), 150.0))
    assert out["PCK"]["Total"] == 0.0 and out["AUC"]["Total"] == 0.0
    assert pck_auc(np.full((3, 17), 149.999))["PCK"]["Total"] == 100.0


def test_pck_total_is_joint_weighted_and_ignores_pelvis_spine_head():
    rng = np.random.default_rng(17)
    err = np.full((4, 17), 200.0)
    err[:, 0] = 0.0  # only the Head group (1 of 14 joints) is correct
    err[:, 14:] = rng.uniform(0, 1000, size=(4, 3))  # pelvis, spine, head are not scored
    out = pck_auc(err)
    assert out["PCK"]["Head"] == 100.0 and out["PCK"]["Shou"] == 0.0
    assert out["PCK"]["Total"] == pytest.approx(100 / 14)
    err[:, 2] = 0.0  # one of two shoulders correct -> Shou 50 %, Total 2/14
    out = pck_auc(err)
    assert out["PCK"]["Shou"] == pytest.approx(50.0) and out["PCK"]["Total"] == pytest.approx(200 / 14)


def test_pck_auc_custom_groups_and_errors():
    out = pck_auc(np.array([[10.0, 60.0]]), groups={"a": [0], "b": [1]}, thresholds=[0, 50, 100])
    assert out["AUC"]["a"] == pytest.approx(200 / 3) and out["AUC"]["b"] == pytest.approx(100 / 3)
    assert out["AUC"]["Total"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="errors must have shape"):
        pck_auc(np.zeros(17))
    with pytest.raises(ValueError, match="groups"):
        pck_auc(np.zeros((2, 10)))  # default groups need 14 joints
    with pytest.raises(ValueError, match="thresholds"):
        pck_auc(np.zeros((2, 17)), thresholds=[10, 5])
    assert math.isclose(pck_auc(np.zeros((1, 17)))["PCK"]["Total"], 100.0)
