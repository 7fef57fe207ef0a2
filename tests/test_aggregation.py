import pytest
import torch

from d3dp_ktp.aggregation import (check_frame_weights, estimate_root, gather_hypotheses, hypothesis_errors, jpma,
                                  jpma_index, joint_min_index, p_agg, p_best, pose_min_index)
from d3dp_ktp.camera import normalized_intrinsics, project_to_2d, project_to_2d_linear
from d3dp_ktp.metrics import multi_hypothesis_errors

# H36M camera 54138969 (VideoPose3D table), normalised: realistic focal length, centre and distortion.
H36M_CAMERA = torch.from_numpy(normalized_intrinsics(
    1145.04931640625, 1143.78094482421875, 512.54150390625, 515.45148162841796875,
    [-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043],
    [-0.0009756988729350269, -0.00142447161488235], 1000, 1002))


def random_scene(generator: torch.Generator, B: int, T: int, J: int = 17, dtype=torch.float32):
    """Root-relative GT (B, T, J, 3) with root joint 0 and a root trajectory ~4-6 m in front of the camera."""
    Y = 0.3 * torch.randn(B, T, J, 3, generator=generator, dtype=dtype)
    Y[:, :, 0] = 0
    root = torch.stack([0.5 * torch.randn(B, T, generator=generator, dtype=dtype),
                        0.3 * torch.randn(B, T, generator=generator, dtype=dtype),
                        4 + 2 * torch.rand(B, T, generator=generator, dtype=dtype)], dim=-1)
    return Y, root


def test_p_agg_is_hypothesis_mean():
    torch.manual_seed(0)
    P = torch.randn(2, 3, 4, 5, 17, 3)
    out = p_agg(P)
    assert out.shape == (2, 3, 5, 17, 3)
    torch.testing.assert_close(out, P.sum(dim=2) / 4)


def j_best(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """J-Best oracle pose: the J-Best rule's per-joint index, gathered from P."""
    return gather_hypotheses(P, joint_min_index(hypothesis_errors(P, Y)))


def test_j_best_picks_the_closest_hypothesis_per_joint():
    torch.manual_seed(1)
    P = torch.randn(2, 2, 6, 3, 17, 3)
    Y = torch.randn(2, 3, 17, 3)
    pose = j_best(P, Y)
    assert pose.shape == (2, 2, 3, 17, 3)
    best_error = hypothesis_errors(P, Y).min(dim=2).values
    torch.testing.assert_close(torch.linalg.vector_norm(pose - Y[:, None], dim=-1), best_error)
    # The oracle pose is what the J-Best metric measures.
    assert multi_hypothesis_errors(P, Y)["J-Best"].allclose(best_error.mean(dim=(0, 2, 3)))


def test_p_best_pose_batch_versus_window():
    Y = torch.zeros(2, 1, 1, 3)
    P = torch.zeros(2, 1, 2, 1, 1, 3)
    P[0, 0, :, 0, 0, 0] = torch.tensor([1.0, 0.0])  # window 0 prefers h = 1
    P[1, 0, :, 0, 0, 0] = torch.tensor([0.2, 3.0])  # window 1 prefers h = 0; batch means (0.6, 1.5) -> h = 0
    torch.testing.assert_close(p_best(P, Y, per="batch"), P[:, :, 0])
    torch.testing.assert_close(p_best(P, Y, per="window")[:, 0, 0, 0, 0], torch.tensor([0.0, 0.2]))
    index = pose_min_index(hypothesis_errors(P, Y), per="window")
    assert index.shape == (2, 1, 1, 1) and index.flatten().tolist() == [1, 0]


def test_p_best_keeps_one_hypothesis_for_the_whole_window():
    torch.manual_seed(2)
    P = torch.randn(3, 2, 5, 4, 17, 3)
    Y = torch.randn(3, 4, 17, 3)
    for per in ("batch", "window"):
        index = pose_min_index(hypothesis_errors(P, Y), per=per)
        assert (index == index[:, :, :1, :1]).all()
        if per == "batch":
            assert (index == index[:1]).all()


def padded_window_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B=1, K=1, H=2, T=4, J=1; frames 2-3 are padding (weight 0). Errors along x per frame:
    hypothesis A (h=0) 1, 1, 10, 10; hypothesis B (h=1) 2, 2, 2, 2. Over the counted frames A wins
    (1 < 2); over all four frames B wins (5.5 > 2)."""
    P = torch.zeros(1, 1, 2, 4, 1, 3, dtype=torch.float64)
    P[0, 0, 0, :, 0, 0] = torch.tensor([1.0, 1.0, 10.0, 10.0])
    P[0, 0, 1, :, 0, 0] = 2.0
    return P, torch.zeros(1, 4, 1, 3, dtype=torch.float64), torch.tensor([[1.0, 1.0, 0.0, 0.0]])


@pytest.mark.parametrize("per", ["batch", "window"])
def test_p_best_weights_choose_on_the_counted_frames_only(per):
    P, Y, weights = padded_window_case()
    e = hypothesis_errors(P, Y)
    assert pose_min_index(e, per=per).unique().tolist() == [1]  # every frame: B (official rule)
    assert pose_min_index(e, per=per, weights=weights).unique().tolist() == [0]  # counted frames: A
    assert pose_min_index(e, per=per, weights=weights.bool()).unique().tolist() == [0]
    torch.testing.assert_close(p_best(P, Y, per=per, weights=weights), P[:, :, 0])


def test_p_best_weights_are_frame_weighted_per_window_and_pooled_per_batch():
    # Window 0 as in padded_window_case (A on its counted frames); window 1: A 3, B 0 on every frame.
    P0, Y0, w0 = padded_window_case()
    P1 = torch.zeros_like(P0)
    P1[0, 0, 0, :, 0, 0] = 3.0
    P, Y = torch.cat([P0, P1]), torch.cat([Y0, Y0])
    weights = torch.cat([w0, torch.ones(1, 4)])
    e = hypothesis_errors(P, Y)
    assert pose_min_index(e, per="window", weights=weights)[:, 0, 0, 0].tolist() == [0, 1]
    # Batch pooled over the 6 counted frames: A (1+1+4*3)/6 = 2.33 > B (2+2+0)/6 = 0.67 -> B.
    assert pose_min_index(e, per="batch", weights=weights).unique().tolist() == [1]
    # A window whose frames all have weight 0 counts for nothing; it falls back to every frame (B).
    zero = torch.cat([torch.zeros(1, 4), torch.ones(1, 4)])
    assert pose_min_index(e, per="window", weights=zero)[:, 0, 0, 0].tolist() == [1, 1]


def test_p_best_unit_weights_pick_what_the_unweighted_rule_picks():
    g = torch.Generator().manual_seed(3)
    e = torch.rand(3, 2, 6, 5, 17, generator=g)
    for per in ("batch", "window"):
        assert torch.equal(pose_min_index(e, per=per, weights=torch.ones(3, 5)), pose_min_index(e, per=per))
        assert torch.equal(pose_min_index(e, per=per, weights=torch.full((3, 5), 2.5)), pose_min_index(e, per=per))


@pytest.mark.parametrize("weights, match", [
    (torch.ones(1, 3), r"weights must be a real tensor of shape \(B, T\) = \(1, 4\)"),
    (torch.ones(4), "weights must be a real tensor of shape"),
    ([[1.0, 1.0, 0.0, 0.0]], "weights must be a real tensor of shape"),
    (torch.tensor([[1.0, -1.0, 0.0, 0.0]]), "finite and >= 0"),
    (torch.tensor([[1.0, float("nan"), 0.0, 0.0]]), "finite and >= 0"),
    (torch.tensor([[1.0, float("inf"), 0.0, 0.0]]), "finite and >= 0"),
])
def test_p_best_weights_are_validated(weights, match):
    P, Y, _ = padded_window_case()
    with pytest.raises(ValueError, match=match):
        pose_min_index(hypothesis_errors(P, Y), per="window", weights=weights)
    assert check_frame_weights(torch.ones(1, 4), 1, 4).shape == (1, 4)


def make_jpma_case(generator: torch.Generator, linear: bool, K: int = 2, H: int = 5, dtype=torch.float32):
    """One hypothesis per (b, k, f, j) equals GT (projects exactly onto x2d); the others are perturbed."""
    B, T, J = 2, 3, 17
    Y, root = random_scene(generator, B, T, J, dtype)
    project = project_to_2d_linear if linear else project_to_2d
    camera = H36M_CAMERA.to(dtype)
    x2d = project(Y + root[:, :, None], camera)
    truth = torch.randint(0, H, (B, K, T, J), generator=generator)
    truth[..., 0] = 0  # every hypothesis has root 0, so the first index wins the tie
    P = Y[:, None, None] + 0.05 * torch.randn(B, K, H, T, J, 3, generator=generator, dtype=dtype)
    P[..., 0, :] = 0
    where = truth[:, :, None, :, :, None].expand(B, K, 1, T, J, 3)
    P.scatter_(2, where, Y[:, None, None].expand(B, K, 1, T, J, 3))
    return P, Y, x2d, camera, root, truth


@pytest.mark.parametrize("linear", [False, True])
def test_jpma_picks_the_hypothesis_that_reprojects_onto_x2d(linear):
    g = torch.Generator().manual_seed(3)
    P, Y, x2d, camera, root, truth = make_jpma_case(g, linear)
    index = jpma_index(P, x2d, camera, root=root, linear=linear)
    assert index.shape == truth.shape and index.dtype == torch.long
    assert torch.equal(index, truth)
    torch.testing.assert_close(jpma(P, x2d, camera, root=root, linear=linear), Y[:, None].expand(2, 2, 3, 17, 3))
    assert multi_hypothesis_errors(P, Y, jpma_index=index)["J-Agg"].abs().max() < 1e-7


def test_jpma_accepts_per_window_cameras_and_per_step_roots():
    g = torch.Generator().manual_seed(4)
    P, Y, x2d, camera, root, truth = make_jpma_case(g, linear=False)
    cameras = camera.expand(2, 9).clone()
    roots = root[:, None].expand(2, 2, 3, 3)
    assert torch.equal(jpma_index(P, x2d, cameras, root=roots), truth)


def test_jpma_without_root_uses_the_estimated_root():
    g = torch.Generator().manual_seed(5)
    B, K, T, J = 2, 2, 3, 17
    Y, root = random_scene(g, B, T, J, torch.float64)
    camera = H36M_CAMERA.double()
    x2d = project_to_2d_linear(Y + root[:, :, None], camera)
    # Hypotheses Y, Y + d, Y - d in a random order per joint: their mean is exactly Y, so the
    # estimated root is exact and the GT-equal hypothesis must win.
    d = 0.05 * torch.randn(B, K, 1, T, J, 3, generator=g, dtype=torch.float64)
    d[..., 0, :] = 0
    stack = torch.cat([torch.zeros_like(d), d, -d], dim=2)
    order = torch.argsort(torch.rand(B, K, 3, T, J, generator=g), dim=2)
    P = Y[:, None, None] + stack.gather(2, order[..., None].expand(B, K, 3, T, J, 3))
    truth = order.argmin(dim=2)  # where the zero offset landed
    truth[..., 0] = 0
    index = jpma_index(P, x2d, camera, linear=True)
    assert torch.equal(index, truth)
    torch.testing.assert_close(index, jpma_index(P, x2d, camera, root=estimate_root(P, x2d, camera), linear=True))


@pytest.mark.parametrize("multi_hypothesis", [False, True])
def test_estimate_root_recovers_a_known_translation(multi_hypothesis):
    g = torch.Generator().manual_seed(6)
    B, K, H, T = 3, 2, 4, 5
    Y, root = random_scene(g, B, T)
    x2d = project_to_2d_linear(Y + root[:, :, None], H36M_CAMERA)
    if multi_hypothesis:
        d = 0.1 * torch.randn(B, K, H // 2, T, 17, 3, generator=g)
        pose = Y[:, None, None] + torch.cat([d, -d], dim=2)  # mean over hypotheses is Y
        expected = root[:, None].expand(B, K, T, 3)
    else:
        pose, expected = Y, root
    estimate = estimate_root(pose, x2d, H36M_CAMERA.expand(B, 9))
    assert estimate.shape == expected.shape and estimate.dtype == torch.float32
    torch.testing.assert_close(estimate, expected, atol=1e-5, rtol=0)
    # Only fx, fy, cx, cy are used: a 4-vector camera gives the same answer.
    torch.testing.assert_close(estimate_root(pose, x2d, H36M_CAMERA[:4]), estimate, atol=1e-6, rtol=0)


def test_estimate_root_confidence_weights_ignore_a_corrupted_joint():
    g = torch.Generator().manual_seed(7)
    Y, root = random_scene(g, 2, 4, dtype=torch.float64)
    camera = H36M_CAMERA.double()
    x2d = project_to_2d_linear(Y + root[:, :, None], camera)
    x2d[:, :, 5] += 0.2  # a detector outlier
    assert (estimate_root(Y, x2d, camera) - root).abs().max() > 1e-3
    weights = torch.ones(17, dtype=torch.float64)
    weights[5] = 0
    torch.testing.assert_close(estimate_root(Y, x2d, camera, weights=weights), root, atol=1e-9, rtol=0)
    per_frame = weights.expand(2, 4, 17)
    torch.testing.assert_close(estimate_root(Y, x2d, camera, weights=per_frame), root, atol=1e-9, rtol=0)


def test_single_hypothesis_single_step_single_frame():
    g = torch.Generator().manual_seed(8)
    P, Y, x2d, camera, root, truth = make_jpma_case(g, linear=False, K=1, H=1)
    assert (jpma_index(P, x2d, camera, root=root) == 0).all()
    for pose in (p_agg(P), j_best(P, Y), p_best(P, Y), jpma(P, x2d, camera, root=root)):
        torch.testing.assert_close(pose, P[:, :, 0])
    linear_x2d = project_to_2d_linear(Y[:, :1] + root[:, :1, None], camera)
    torch.testing.assert_close(estimate_root(Y[:, :1], linear_x2d, camera), root[:, :1], atol=1e-5, rtol=0)


def test_gather_hypotheses_validates_index():
    torch.manual_seed(9)
    P = torch.randn(1, 1, 3, 2, 17, 3)
    with pytest.raises(ValueError, match="index must have shape"):
        gather_hypotheses(P, torch.zeros(1, 1, 2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"index must hold integer hypothesis indices in \[0, 3\)"):
        gather_hypotheses(P, torch.full((1, 1, 2, 17), 3))
    with pytest.raises(ValueError, match="x must have shape"):
        gather_hypotheses(P[0], torch.zeros(1, 1, 2, 17, dtype=torch.long))


@pytest.mark.parametrize("kwargs, match", [
    (dict(x2d=torch.zeros(2, 3, 17, 3)), "x2d must have shape"),
    (dict(camera=torch.zeros(3, 9)), "camera must have shape"),
    (dict(camera=torch.zeros(4)), "camera must have shape"),  # the distorted model needs all 9 values
    (dict(root=torch.zeros(2, 4, 3)), "root must have shape"),
])
def test_jpma_shape_errors(kwargs, match):
    g = torch.Generator().manual_seed(10)
    P, Y, x2d, camera, root, truth = make_jpma_case(g, linear=False)
    args = dict(x2d=x2d, camera=camera, root=root) | kwargs
    with pytest.raises(ValueError, match=match):
        jpma_index(P, **args)


def test_estimate_root_and_p_best_errors():
    torch.manual_seed(11)
    with pytest.raises(ValueError, match="pose must have shape"):
        estimate_root(torch.zeros(3, 17, 3), torch.zeros(3, 17, 2), H36M_CAMERA)
    with pytest.raises(ValueError, match="weights must have shape"):
        estimate_root(torch.zeros(1, 2, 17, 3), torch.zeros(1, 2, 17, 2), H36M_CAMERA, weights=torch.ones(16))
    with pytest.raises(ValueError, match="weights must be non-negative"):
        estimate_root(torch.zeros(1, 2, 17, 3), torch.zeros(1, 2, 17, 2), H36M_CAMERA, weights=-torch.ones(17))
    with pytest.raises(ValueError, match="fewer than two distinct joints"):
        weights = torch.zeros(1, 2, 17)
        weights[0, 0] = 1  # frame 1 has no usable joint
        estimate_root(torch.randn(1, 2, 17, 3), torch.randn(1, 2, 17, 2), H36M_CAMERA, weights=weights)
    with pytest.raises(ValueError, match="per must be one of"):
        p_best(torch.zeros(1, 1, 2, 1, 17, 3), torch.zeros(1, 1, 17, 3), per="joint")
