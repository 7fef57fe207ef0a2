"""Skeleton tables, the 32->17 removal rule, adjacencies A_N / A_T and the flip (docs/method.md §1, §11)."""
import numpy as np
import pytest
import torch

from d3dp_ktp.skeleton import (COCO, H36M, H36M_32_LEFT, H36M_32_PARENTS, H36M_32_RIGHT, H36M_KEPT, H36M_REMOVED,
                               HUMANEVA15, MPI_INF_3DHP, adjacency_from_parents, flip_pose, get_skeleton,
                               remove_joints, spatial_adjacency, temporal_adjacency)
from tests.reference import official_ref as ref

FINAL_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]


# ------------------------------------------------------------------ tables and the removal rule
def test_32_joint_tables_match_spec():
    assert list(H36M_32_PARENTS) == [-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20,
                                     19, 22, 12, 24, 25, 26, 27, 28, 27, 30]
    assert list(H36M_32_LEFT) == [6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23]
    assert list(H36M_32_RIGHT) == [1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31]
    assert sorted(H36M_REMOVED) == [4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31]
    assert list(H36M_KEPT) == [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
    assert sorted(set(range(32)) - set(H36M_REMOVED)) == list(H36M_KEPT)


def test_removal_rule_gives_spec_parents_before_rewiring():
    parents, left, right = remove_joints(H36M_32_PARENTS, H36M_32_LEFT, H36M_32_RIGHT, H36M_REMOVED)
    assert list(parents) == [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 7, 11, 12, 7, 14, 15]
    assert list(left) == [4, 5, 6, 11, 12, 13]
    assert list(right) == [1, 2, 3, 14, 15, 16]
    # The transcription of VideoPose3D's loop gives the same answer.
    assert (list(parents), list(left), list(right)) == ref.remove_joints(
        H36M_32_PARENTS, H36M_32_LEFT, H36M_32_RIGHT, H36M_REMOVED)


def test_shoulder_rewiring_gives_final_parents():
    parents, left, right = remove_joints(H36M_32_PARENTS, H36M_32_LEFT, H36M_32_RIGHT, H36M_REMOVED)
    parents = list(parents)
    parents[11] = parents[14] = 8
    assert parents == FINAL_PARENTS
    assert list(H36M.parents) == FINAL_PARENTS == ref.h36m17()[0]
    assert list(H36M.joints_left) == [4, 5, 6, 11, 12, 13] == list(left)
    assert list(H36M.joints_right) == [1, 2, 3, 14, 15, 16] == list(right)
    assert H36M.root == 0 and H36M.num_joints == 17


def test_other_layouts_match_spec():
    assert list(HUMANEVA15.parents) == [-1, 0, 1, 2, 3, 1, 5, 6, 0, 8, 9, 0, 11, 12, 1]
    assert (list(HUMANEVA15.joints_left), list(HUMANEVA15.joints_right)) == ([2, 3, 4, 8, 9, 10], [5, 6, 7, 11, 12, 13])
    assert list(MPI_INF_3DHP.parents) == [1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1]
    assert MPI_INF_3DHP.root == 14
    assert (list(MPI_INF_3DHP.joints_left), list(MPI_INF_3DHP.joints_right)) == ([5, 6, 7, 11, 12, 13],
                                                                                 [2, 3, 4, 8, 9, 10])
    assert list(COCO.joints_left) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert list(COCO.joints_right) == [2, 4, 6, 8, 10, 12, 14, 16]


def test_unknown_layout_lists_known_ones():
    assert get_skeleton("h36m") is H36M
    with pytest.raises(ValueError, match="h36m"):
        get_skeleton("h37m")


# ------------------------------------------------------------------ A_N (docs/method.md §1.2, §11)
def test_spatial_adjacency_rows_of_spec():
    A = spatial_adjacency(H36M)
    assert A.shape == (17, 17) and A.dtype == torch.float32
    row0 = torch.zeros(17)
    row0[0] = 1
    row0[[1, 4, 7]] = 1 / 3
    torch.testing.assert_close(A[0], row0, rtol=0, atol=1e-7)
    row8 = torch.zeros(17)
    row8[8] = 1
    row8[[7, 9, 11, 14]] = 0.25
    torch.testing.assert_close(A[8], row8, rtol=0, atol=1e-7)
    for leaf in (3, 6, 10, 13, 16):
        expected = torch.zeros(17)
        expected[leaf] = 1
        expected[FINAL_PARENTS[leaf]] = 1
        torch.testing.assert_close(A[leaf], expected, rtol=0, atol=0)


def test_spatial_adjacency_is_not_symmetric_and_has_spec_degrees():
    A = spatial_adjacency(H36M)
    assert A[0, 1].item() == pytest.approx(1 / 3, abs=1e-7)
    assert A[1, 0].item() == pytest.approx(1 / 2, abs=1e-7)
    assert torch.all(torch.diagonal(A) == 1)
    off = A - torch.diag(torch.diagonal(A))
    degree = (off > 0).sum(1)
    expected = [2] * 17
    expected[0], expected[8] = 3, 4
    for leaf in (3, 6, 10, 13, 16):
        expected[leaf] = 1
    assert degree.tolist() == expected
    # every off-diagonal row sums to 1 (row-normalised before the diagonal overwrite)
    torch.testing.assert_close(off.sum(1), torch.ones(17))
    torch.testing.assert_close(A, ref.spatial_adj_h36m(), rtol=0, atol=1e-7)


def test_adjacency_row_without_edges_stays_zero_off_diagonal():
    # a lone node (no parent, no child) keeps a zero row apart from the diagonal
    A = adjacency_from_parents([-1, 0, -1])
    torch.testing.assert_close(A[2], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(A[0], torch.tensor([1.0, 1.0, 0.0]))


def test_mpi_adjacency_root_14_has_no_self_loop_edge():
    A = spatial_adjacency(MPI_INF_3DHP)
    # pelvis 14 neighbours: right hip 8, left hip 11, spine 15  -> 1/3 each
    assert A[14, 14] == 1
    torch.testing.assert_close(A[14, [8, 11, 15]], torch.full((3,), 1 / 3))
    assert (A[14] > 0).sum() == 4


# ------------------------------------------------------------------ A_T (docs/method.md §1.3)
def test_temporal_adjacency_small_T():
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0],
                             [0.5, 1.0, 0.5, 0.0, 0.0],
                             [0.0, 0.5, 1.0, 0.5, 0.0],
                             [0.0, 0.0, 0.5, 1.0, 0.5],
                             [0.0, 0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(temporal_adjacency(5), expected, rtol=0, atol=0)
    torch.testing.assert_close(temporal_adjacency(5), ref.temporal_adj(5), rtol=0, atol=0)
    torch.testing.assert_close(temporal_adjacency(1), torch.ones(1, 1))
    torch.testing.assert_close(temporal_adjacency(2), torch.ones(2, 2))


def test_temporal_adjacency_243():
    A = temporal_adjacency(243)
    assert A.shape == (243, 243)
    assert A[0, 1] == 1 and A[242, 241] == 1 and A[100, 99] == 0.5 and A[100, 101] == 0.5
    assert A[100, 102] == 0
    torch.testing.assert_close(A, ref.temporal_adj(243), rtol=0, atol=0)


def test_temporal_adjacency_rejects_empty():
    with pytest.raises(ValueError, match="num_frames"):
        temporal_adjacency(0)


# ------------------------------------------------------------------ flip (docs/method.md §1.1)
def test_flip_negates_x_and_swaps_sides():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 17, 3, generator=g)
    y = flip_pose(x, H36M.joints_left, H36M.joints_right)
    assert y is not x
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :] * torch.tensor([-1.0, 1.0, 1.0]))
    for l, r in zip(H36M.joints_left, H36M.joints_right):
        torch.testing.assert_close(y[..., l, 0], -x[..., r, 0])
        torch.testing.assert_close(y[..., r, 1:], x[..., l, 1:])
    for j in (7, 8, 9, 10):  # centre joints stay, mirrored
        torch.testing.assert_close(y[..., j, 1:], x[..., j, 1:])


@pytest.mark.parametrize("layout", ["h36m", "humaneva15", "mpi_inf_3dhp", "coco"])
def test_flip_is_an_involution(layout):
    sk = get_skeleton(layout)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, sk.num_joints, 2)).astype(np.float32)
    np.testing.assert_array_equal(flip_pose(flip_pose(x, sk.joints_left, sk.joints_right),
                                            sk.joints_left, sk.joints_right), x)
    t = torch.from_numpy(x)
    once = flip_pose(t, sk.joints_left, sk.joints_right)
    assert not torch.equal(once, t)
    torch.testing.assert_close(flip_pose(once, sk.joints_left, sk.joints_right), t, rtol=0, atol=0)
    np.testing.assert_array_equal(once.numpy(), flip_pose(x, sk.joints_left, sk.joints_right))


def test_flip_does_not_modify_input_and_checks_joints():
    x = torch.arange(17 * 3, dtype=torch.float32).reshape(17, 3)
    before = x.clone()
    flip_pose(x, H36M.joints_left, H36M.joints_right)
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match="joints"):
        flip_pose(torch.zeros(2, 10, 3), H36M.joints_left, H36M.joints_right)
