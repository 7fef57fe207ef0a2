"""MPI-INF-3DHP: PCK@150 / AUC / MPJPE on valid frames, per sequence, activity, mean and pooled."""
import numpy as np
import pytest
import torch

from d3dp_ktp.data.mpi_inf_3dhp import load_mpi_inf_3dhp
from d3dp_ktp.evaluation import EvalConfig, evaluate
from d3dp_ktp.sampling import SamplingConfig
from d3dp_ktp import aggregation

from .helpers import StubModel, mpi_sequence, write_mpi_inf_3dhp, x_offset

ROOT = 14
PERFECT_AUC = 100 * 30 / 31


@pytest.fixture
def dataset(tmp_path):
    seqs = {"TS1": mpi_sequence("TS1", 11, 0), "TS5": mpi_sequence("TS5", 6, 1)}
    write_mpi_inf_3dhp(tmp_path, seqs, tmp_path / "annot")
    return load_mpi_inf_3dhp(tmp_path, ("TS1", "TS5"), annot_mat_dir=tmp_path / "annot"), seqs


def cfg(**kw):
    return EvalConfig(**{"sampling": SamplingConfig(2, 2), "batch_size": 2, "device": "cpu",
                         "protocol2": False, **kw})


def offset_stub(ds, offset_m, invalid_offset_m=0.0):
    """x offset on every non-root joint; frames marked invalid get ``invalid_offset_m`` instead."""
    from d3dp_ktp.data.windows import window_frame_indices

    def perturb(video, i):
        idx = window_frame_indices(video.num_frames, 4)[i]
        off = torch.where(torch.from_numpy(video.valid[idx]), offset_m, invalid_offset_m).float()
        return x_offset(off, root=ROOT)
    return StubModel(ds, 4, perturb)


def test_perfect_predictor_gives_pck_100_auc_96_77_mpjpe_0(dataset):
    ds, seqs = dataset
    result = evaluate(offset_stub(ds, 0.0, invalid_offset_m=5.0), ds, cfg())  # invalid frames must not count
    for metric in ("J-Best", "P-Best", "P-Agg", "J-Agg"):
        t = result.pck[metric]
        for row in [*t["sequences"].values(), t["mean"], t["all"], *t["activities"].values()]:
            assert row["PCK"] == pytest.approx([100.0, 100.0])
            assert row["AUC"] == pytest.approx([PERFECT_AUC] * 2)
            assert row["MPJPE"] == pytest.approx([0.0, 0.0], abs=1e-3)
    valid = {s: int(d["valid"].sum()) for s, d in seqs.items()}
    t = result.pck["J-Best"]
    assert {s: r["frames"] for s, r in t["sequences"].items()} == valid
    assert t["all"]["frames"] == sum(valid.values())
    acts = np.concatenate([d["activity"][d["valid"] > 0] for d in seqs.values()])
    assert sum(r["frames"] for r in t["activities"].values()) == len(acts)


def test_constant_offset_gives_known_pck_auc_mpjpe(dataset):
    ds, _ = dataset
    near = evaluate(offset_stub(ds, 0.102), ds, cfg()).pck["P-Agg"]["all"]
    # 102 mm on the 14 PCK joints: below 150 (PCK 100); only thresholds 105..150 (10 of 31) exceed it
    assert near["PCK"][-1] == pytest.approx(100.0)
    assert near["AUC"][-1] == pytest.approx(100 * 10 / 31, abs=1e-6)
    assert near["MPJPE"][-1] == pytest.approx(102 * 16 / 17, abs=1e-3)  # all 17 joints, pelvis error 0
    far = evaluate(offset_stub(ds, 0.16), ds, cfg()).pck["J-Best"]["mean"]
    assert far["PCK"][-1] == pytest.approx(0.0) and far["AUC"][-1] == pytest.approx(0.0)


def test_sequence_mean_is_unweighted_and_all_is_pooled(dataset):
    ds, _ = dataset

    def perturb(video, i):  # TS1 52 mm, TS5 112 mm (off the 5 mm threshold grid)
        off = 0.052 if video.subject == "TS1" else 0.112
        return x_offset(torch.full((4,), off), root=ROOT)
    t = evaluate(StubModel(ds, 4, perturb), ds, cfg()).pck["J-Best"]
    n1, n5 = t["sequences"]["TS1"]["frames"], t["sequences"]["TS5"]["frames"]
    e1, e5 = 52 * 16 / 17, 112 * 16 / 17
    assert t["mean"]["MPJPE"][-1] == pytest.approx((e1 + e5) / 2, abs=1e-3)
    assert t["all"]["MPJPE"][-1] == pytest.approx((n1 * e1 + n5 * e5) / (n1 + n5), abs=1e-3)
    assert t["mean"]["AUC"][-1] == pytest.approx((100 * 20 / 31 + 100 * 8 / 31) / 2, abs=1e-6)


def test_clean_p_best_ignores_invalid_frames_official_includes_them(dataset):
    # Hypothesis A: 10 mm on valid frames, 500 mm on invalid ones; B: 20 mm everywhere. Every window has
    # an invalid frame, so over all frames (official, docs/method.md §7.4) B wins; over the scored frames A does.
    ds, _ = dataset
    from d3dp_ktp.data.windows import window_frame_indices

    def perturb(video, i):
        valid = torch.from_numpy(video.valid[window_frame_indices(video.num_frames, 4)[i]])
        a = torch.where(valid, 0.010, 0.5).float()
        return x_offset(torch.stack([a, torch.full((4,), 0.020)])[None], root=ROOT)
    stub = StubModel(ds, 4, perturb)
    for mode, mm in (("official", 20.0), ("clean", 10.0)):
        result = evaluate(stub, ds, cfg(mode=mode))
        assert result.pck["P-Best"]["all"]["MPJPE"] == pytest.approx([mm * 16 / 17] * 2, abs=1e-3), mode
        assert result.summary()["P-Best"] == pytest.approx([mm * 16 / 17] * 2, abs=1e-3), mode


def test_pixel_jpma_matches_normalised_selection_and_picks_the_gt_hypothesis(dataset):
    ds, _ = dataset
    video = ds.videos[1]  # TS5: 1920x1080, so the normalisation is not square
    g = torch.Generator().manual_seed(0)
    y = torch.from_numpy(video.positions_3d[:4])[None]
    root = y[:, :, ROOT].clone()
    y = y.clone()
    y[:, :, ROOT] = 0
    P = y[:, None, None] + 0.05 * torch.randn(1, 1, 3, 4, 17, 3, generator=g)
    P[:, :, 1] = y[:, None]
    P[..., ROOT, :] = 0
    x2d = torch.from_numpy(video.keypoints_2d[:4])[None]
    cam = torch.from_numpy(video.camera)
    pix = aggregation.jpma_index(P, x2d, cam, root=root, linear=True, image_size=(video.res_w, video.res_h))
    assert torch.equal(pix, aggregation.jpma_index(P, x2d, cam, root=root, linear=True))
    assert (pix[..., [j for j in range(17) if j != ROOT]] == 1).all()  # annot2 = projection of annot3


def test_npz_without_activities_still_gives_sequence_tables(tmp_path):
    write_mpi_inf_3dhp(tmp_path, {"TS2": mpi_sequence("TS2", 9, 3)})
    ds = load_mpi_inf_3dhp(tmp_path, ("TS2",))
    pck = evaluate(StubModel(ds, 4), ds, cfg(mode="clean")).pck["J-Agg"]
    assert pck["sequences"]["TS2"]["PCK"][-1] == pytest.approx(100.0)
    assert list(pck["activities"]) == []
