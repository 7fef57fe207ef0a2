"""evaluate(): perfect and offset predictors, action averaging, double counting, official vs clean."""
import math

import numpy as np
import pytest
import torch

from d3dp_ktp import aggregation, metrics
from d3dp_ktp.diffusion import DiffusionConfig, SamplingConfig
from d3dp_ktp.evaluation import EvalConfig, evaluate
from d3dp_ktp.evaluation.report import markdown
from d3dp_ktp.evaluation.runner import select_windows
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig

from .helpers import StubModel, make_dataset, make_video, x_offset

J_FRACTION = 16 / 17  # non-root joints carry the offset; the predicted root is zeroed (error 0)


def cfg(**kw):
    """EvalConfig with H=K=2 on the CPU; H, K, seed... go to its SamplingConfig."""
    sampling = {k: kw.pop(k) for k in list(kw) if k in SamplingConfig.__dataclass_fields__}
    return EvalConfig(sampling=SamplingConfig(**{"num_hypotheses": 2, "num_steps": 2, **sampling}),
                      **{"device": "cpu", **kw})


def test_perfect_predictor_gives_zero_for_every_metric_protocol_and_mode():
    ds = make_dataset([make_video("S9", "Walking", 10, 0), make_video("S9", "Eating 1", 7, 1)])
    for mode in ("official", "clean"):
        result = evaluate(StubModel(ds, 4), ds, cfg(mode=mode))
        summary = result.summary()
        assert set(summary) == {"J-Best", "P-Best", "P-Agg", "J-Agg", "P2/J-Best", "P2/P-Best", "P2/P-Agg",
                                "P2/J-Agg"}
        for name, values in summary.items():
            assert len(values) == 2
            assert np.allclose(values, 0, atol=1e-3), (mode, name, values)
        assert result.mode == mode


def test_constant_offset_gives_known_mpjpe_for_all_aggregations():
    ds = make_dataset([make_video("S9", "Walking", 9, 0)])
    stub = StubModel(ds, 4, perturb=lambda video, i: x_offset(torch.full((4,), 0.05)))
    summary = evaluate(stub, ds, cfg(protocol2=False)).summary()
    for name in ("J-Best", "P-Best", "P-Agg", "J-Agg"):
        assert summary[name] == pytest.approx([50 * J_FRACTION] * 2, abs=1e-3)


def per_frame_stub(ds, T, errors_mm):
    """Frame f of video v has an x offset of errors_mm[v.action][f] mm on every non-root joint."""
    from d3dp_ktp.data.windows import window_frame_indices

    def perturb(video, i):
        idx = window_frame_indices(video.num_frames, T)[i]
        return x_offset(torch.tensor(errors_mm[video.action], dtype=torch.float32)[idx] / 1000)
    return StubModel(ds, T, perturb)


def test_action_groups_frame_weighted_then_unweighted_mean_and_double_counting():
    # T = 4. "Walking" (F=6): windows [0..3] and [2..5], frames 2-3 in both. "Walking 1" (F=4): one
    # window. "Eating" (F=2 < T): one window padded with frame 1 twice.
    errors = {"Walking": [1, 2, 3, 4, 5, 6], "Walking 1": [10, 10, 10, 10], "Eating": [2, 4]}
    ds = make_dataset([make_video("S9", a, len(e), i) for i, (a, e) in enumerate(errors.items())])
    stub = per_frame_stub(ds, 4, errors)
    official = evaluate(stub, ds, cfg(mode="official", protocol2=False))
    clean = evaluate(stub, ds, cfg(mode="clean", protocol2=False))
    # official: every window frame counts -> Walking (1+2+3+4 + 3+4+5+6 + 4*10)/12, Eating (2+4+4+4)/4
    walk_o, eat_o = (10 + 18 + 40) / 12, (2 + 4 + 4 + 4) / 4
    # clean: each frame once -> Walking (21 + 40)/10, Eating (2+4)/2
    walk_c, eat_c = (21 + 40) / 10, (2 + 4) / 2
    for result, walk, eat, frames in ((official, walk_o, eat_o, (12, 4)), (clean, walk_c, eat_c, (10, 2))):
        table = result.table()["J-Best"]
        assert list(table) == ["Eating", "Walking"]  # paper order of the H36M groups
        assert table["Walking"][0] == pytest.approx(walk * J_FRACTION, abs=1e-4)
        assert table["Eating"][0] == pytest.approx(eat * J_FRACTION, abs=1e-4)
        assert result.summary()["P-Agg"][1] == pytest.approx((walk + eat) / 2 * J_FRACTION, abs=1e-4)
        assert result.frames() == {"Eating": frames[1], "Walking": frames[0]}
        assert result.settings["num_windows"] == 4


def test_by_subject_tables_and_pooling():
    ds = make_dataset([make_video("S9", "Walking", 4, 0), make_video("S11", "Walking", 4, 1)])
    stub = StubModel(ds, 4, lambda v, i: x_offset(torch.full((4,), 0.005 if v.subject == "S9" else 0.015)))
    result = evaluate(stub, ds, cfg(by_subject=True, protocol2=False))
    assert result.subjects == ["S9", "S11"]
    assert result.summary("S9")["J-Best"][0] == pytest.approx(5 * J_FRACTION, abs=1e-4)
    assert result.summary("S11")["J-Best"][0] == pytest.approx(15 * J_FRACTION, abs=1e-4)
    assert result.summary()["J-Best"][0] == pytest.approx(10 * J_FRACTION, abs=1e-4)  # one group, both pooled
    assert "by_subject" in result.to_dict()
    with pytest.raises(ValueError, match="S1"):
        result.summary("S1")


def test_p_best_is_per_batch_in_official_and_per_window_in_clean():
    # One video of two windows (T=4), H=2, K=1. Window 0: hypotheses 1 mm / 3 mm; window 1: 4 mm / 1 mm.
    ds = make_dataset([make_video("S9", "Walking", 8, 0)])
    table = {0: (1.0, 3.0), 1: (4.0, 1.0)}
    stub = StubModel(ds, 4, lambda v, i: x_offset(torch.tensor(table[i])[None, :, None].expand(1, 2, 4) / 1000))
    run = lambda **kw: evaluate(stub, ds, cfg(num_steps=1, protocol2=False, **kw)).summary()  # noqa: E731
    official = run(mode="official", batch_size=2)
    # per batch: mean(h0) = 2.5, mean(h1) = 2 -> h1 for both windows -> (3 + 1)/2
    assert official["P-Best"][0] == pytest.approx(2.0 * J_FRACTION, abs=1e-4)
    assert run(mode="official", batch_size=1)["P-Best"][0] == pytest.approx(1.0 * J_FRACTION, abs=1e-4)
    clean = run(mode="clean", batch_size=2)
    assert clean["P-Best"][0] == pytest.approx(1.0 * J_FRACTION, abs=1e-4)
    for summary in (official, clean):  # the other rules do not depend on the mode
        assert summary["J-Best"][0] == pytest.approx(1.0 * J_FRACTION, abs=1e-4)
        assert summary["P-Agg"][0] == pytest.approx((2.0 + 2.5) / 2 * J_FRACTION, abs=1e-4)


def test_clean_p_best_chooses_on_counted_frames_official_on_every_frame():
    # T=4, H=2, K=1. Walking (F=6): window 1 = frames 2-5 is the one stitching keeps, so positions 2-3 of
    # window 0 (frames 2-3 again) are not counted in clean mode. Eating (F=2): positions 2-3 are
    # replicate padding. Hypothesis A is 1 mm on every counted frame and 10 mm on the overlap/padding;
    # B is 2 mm everywhere. Walking window 1: A 1 mm, B 3 mm.
    ds = make_dataset([make_video("S9", "Walking", 6, 0), make_video("S9", "Eating", 2, 1)])
    mm = {("Walking", 0): ([1, 1, 10, 10], [2, 2, 2, 2]), ("Walking", 1): ([1, 1, 1, 1], [3, 3, 3, 3]),
          ("Eating", 0): ([1, 1, 10, 10], [2, 2, 2, 2])}
    stub = StubModel(ds, 4, lambda v, i: x_offset(torch.tensor(mm[v.action, i])[None] / 1000))
    run = lambda **kw: evaluate(stub, ds, cfg(num_steps=1, protocol2=False, **kw))  # noqa: E731
    # official, windows one by one: over all 4 frames B wins Walking 0 (5.5 > 2) and Eating (5.5 > 2),
    # A wins Walking 1 (1 < 3) -> Walking (4*2 + 4*1)/8 = 1.5, Eating 2.
    official = run(mode="official", batch_size=1).table()["P-Best"]
    assert official["Walking"][0] == pytest.approx(1.5 * J_FRACTION, abs=1e-4)
    assert official["Eating"][0] == pytest.approx(2.0 * J_FRACTION, abs=1e-4)
    # official per batch of 2: Walking A (22 + 4)/8 = 3.25 > B (8 + 12)/8 = 2.5 -> B for both: 2.5.
    walking = run(mode="official", batch_size=2).table()["P-Best"]["Walking"][0]
    assert walking == pytest.approx(2.5 * J_FRACTION, abs=1e-4)
    # clean: chosen on the counted frames only (Walking 0: frames 0-1; Eating: frames 0-1) -> A everywhere.
    for batch_size in (1, 2):
        clean = run(mode="clean", batch_size=batch_size)
        for group in ("Walking", "Eating"):
            assert clean.table()["P-Best"][group][0] == pytest.approx(1.0 * J_FRACTION, abs=1e-4)
        assert "counted frames" in clean.settings["p_best"]


def test_jpma_uses_gt_root_in_official_and_estimated_root_in_clean():
    T, H = 6, 5
    ds = make_dataset([make_video("S9", "Walking", T, 3)])
    g = torch.Generator().manual_seed(0)
    noise = 0.08 * torch.randn(1, H, T, 17, 3, generator=g)
    noise[:, 0] = 0  # hypothesis 0 is the GT, whose reprojection with the GT root is exactly x2d
    stub = StubModel(ds, T, lambda v, i: noise)
    official = evaluate(stub, ds, cfg(num_hypotheses=H, num_steps=1, mode="official", protocol2=False))
    clean = evaluate(stub, ds, cfg(num_hypotheses=H, num_steps=1, mode="clean", protocol2=False))
    assert official.summary()["J-Agg"][0] == pytest.approx(0.0, abs=1e-4)
    # clean: same rule with the root estimated from 2D (aggregation.estimate_root), recomputed here
    video = ds.videos[0]
    y = torch.from_numpy(video.positions_3d)[None].clone()
    y[:, :, 0] = 0
    P = (y[:, None, None] + noise[None]).clone()
    P[..., 0, :] = 0
    x2d = torch.from_numpy(video.keypoints_2d)[None]
    index = aggregation.jpma_index(P, x2d, torch.from_numpy(video.camera), root=None)
    expected = metrics.multi_hypothesis_errors(P, y, index)["J-Agg"][0].item() * 1000
    assert clean.summary()["J-Agg"][0] == pytest.approx(expected, rel=1e-4)
    assert clean.summary()["J-Agg"][0] > 1.0
    assert "ground-truth" in official.settings["jpma_root"] and "estimated" in clean.settings["jpma_root"]


def test_one_sample_call_per_batch_never_across_videos_and_max_windows():
    ds = make_dataset([make_video("S9", "Walking", 20, 0), make_video("S9", "Eating", 3, 1)])
    stub = StubModel(ds, 4)
    evaluate(stub, ds, cfg(batch_size=2, protocol2=False))
    assert stub.calls == [2, 2, 1, 1]  # 5 windows of Walking, then Eating's single padded window
    stub.calls.clear()
    result = evaluate(stub, ds, cfg(batch_size=2, max_windows=3, protocol2=False))
    assert stub.calls == [2, 1] and result.settings["num_windows"] == 3


def test_select_windows_spreads_evenly_over_the_whole_test_set():
    counts = [5, 1, 3, 7]  # N = 16 windows; round(linspace(0, 15, 4)) = 0, 5, 10, 15
    chosen = select_windows(counts, 4)
    assert [c.tolist() for c in chosen] == [[0], [0], [], [1, 6]]
    assert chosen[0][0] == 0 and chosen[-1][-1] == counts[-1] - 1  # first window of the first video, last of the last
    assert [c.tolist() for c in select_windows(counts, 4)] == [c.tolist() for c in chosen]  # deterministic
    for m in (0, 16, 17, 1000):  # 0 and m >= N keep every window
        assert [c.tolist() for c in select_windows(counts, m)] == [list(range(n)) for n in counts]
    assert [c.tolist() for c in select_windows(counts, 1)] == [[0], [], [], []]
    with pytest.raises(ValueError, match="max_windows must be >= 0"):
        select_windows(counts, -1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(1, 9, size=rng.integers(2, 12)).tolist()
        m = int(rng.integers(2, sum(counts) + 1))
        offsets = np.cumsum([0, *counts[:-1]])
        flat = np.concatenate([c + o for c, o in zip(select_windows(counts, m), offsets)])
        assert len(flat) == m and flat[0] == 0 and flat[-1] == sum(counts) - 1
        assert (np.diff(flat) >= 1).all() and np.diff(flat).max() - np.diff(flat).min() <= 1  # evenly spaced


def test_max_windows_evaluates_an_even_subset_and_drops_groups_without_windows():
    # T=4: Walking 5 windows, Eating 1, Phoning 2, Sitting 3 -> N = 11. max_windows=3 keeps global windows
    # 0, 5, 10: Walking #0, Eating #0, Sitting #2; Phoning gets none and must not turn the mean into NaN.
    frames = {"Walking": 20, "Eating": 3, "Phoning": 8, "Sitting": 12}
    offset_mm = {"Walking": 1.0, "Eating": 2.0, "Phoning": 100.0, "Sitting": 6.0}
    ds = make_dataset([make_video("S9", a, f, i) for i, (a, f) in enumerate(frames.items())])
    seen = []

    def perturb(video, i):
        seen.append((video.action, i))
        return x_offset(torch.full((4,), offset_mm[video.action] / 1000))
    stub = StubModel(ds, 4, perturb)
    result = evaluate(stub, ds, cfg(batch_size=2, max_windows=3, protocol2=False))
    assert seen == [("Walking", 0), ("Eating", 0), ("Sitting", 2)] and stub.calls == [1, 1, 1]
    assert result.settings["num_windows"] == 3 and result.settings["total_windows"] == 11
    assert list(result.table()["J-Best"]) == ["Eating", "Sitting", "Walking"]
    assert result.summary()["J-Best"] == pytest.approx([3.0 * J_FRACTION] * 2, abs=1e-4)  # (1 + 2 + 6)/3
    assert any("3 of 11 windows" in n for n in result.notes)
    assert any("left out of the averages: Phoning" in n for n in result.notes)
    text = markdown(result)
    assert "3 of 11 windows" in text and "evenly spread" in text
    seen.clear()
    again = evaluate(stub, ds, cfg(batch_size=2, max_windows=3, protocol2=False))
    assert seen == [("Walking", 0), ("Eating", 0), ("Sitting", 2)] and again.summary() == result.summary()


def test_max_windows_at_least_the_total_evaluates_everything():
    ds = make_dataset([make_video("S9", "Walking", 9, 0), make_video("S9", "Eating", 3, 1)])
    stub = StubModel(ds, 4, lambda v, i: x_offset(torch.full((4,), 0.001 * (i + 1))))
    full = evaluate(stub, ds, cfg(protocol2=False))
    for m in (4, 50):
        capped = evaluate(stub, ds, cfg(protocol2=False, max_windows=m))
        assert capped.summary() == full.summary() and capped.settings["num_windows"] == 4
        assert capped.notes == full.notes == [] and capped.settings["window_selection"] == "every window"


def test_real_tiny_model_is_seeded_and_every_batch_draws_fresh_noise():
    torch.manual_seed(0)
    model = build_diffusion(ModelConfig(channels=32, num_heads=4, depth=1, num_frames=9), DiffusionConfig())
    ds = make_dataset([make_video("S9", "Walking", 20, 0), make_video("S9", "Eating", 12, 1)])
    a = evaluate(model, ds, cfg(batch_size=2, seed=1))
    b = evaluate(model, ds, cfg(batch_size=2, seed=1))
    c = evaluate(model, ds, cfg(batch_size=2, seed=2))
    assert a.summary() == b.summary()
    assert a.summary()["J-Best"] != c.summary()["J-Best"]
    assert all(math.isfinite(v) and v > 0 for vals in a.summary().values() for v in vals)
    assert a.settings["window"] == 9 and a.settings["num_windows"] == 5


def test_dataset_without_intrinsics_skips_j_agg_with_a_note():
    from dataclasses import replace
    video = make_video("S9", "Walking", 8, 0)
    video.cam = replace(video.cam, intrinsics=None)
    ds = make_dataset([video])
    result = evaluate(StubModel(ds, 4), ds, cfg())
    assert "J-Agg" not in result.summary() and "P2/J-Agg" not in result.summary()
    assert any("J-Agg" in n and "intrinsics" in n for n in result.notes)
    assert result.settings["jpma_root"] == "skipped"


def test_checkpoint_mismatch_and_bad_config_are_clear_errors():
    from d3dp_ktp.skeleton import HUMANEVA15
    ds = make_dataset([make_video("S9", "Walking", 8, 0)])
    with pytest.raises(ValueError, match="checkpoint mismatch.*15 joints"):
        evaluate(StubModel(ds, 4, skeleton=HUMANEVA15), ds, cfg())
    with pytest.raises(ValueError, match="mode"):
        EvalConfig(mode="honest")
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(batch_size=0)
    with pytest.raises(ValueError, match="num_hypotheses"):
        EvalConfig(sampling=SamplingConfig(num_hypotheses=0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error():
    ds = make_dataset([make_video("S9", "Walking", 8, 0)])
    with pytest.raises(ValueError, match="CUDA is not available"):
        evaluate(StubModel(ds, 4), ds, cfg(device="cuda"))


def test_automatic_batch_size_takes_whole_videos_in_clean_mode_only():
    ds = make_dataset([make_video("S9", "Walking", 20, 0), make_video("S9", "Eating", 3, 1)])
    stub = StubModel(ds, 4)
    stub.cfg = ModelConfig(channels=32, num_heads=4, depth=1, num_frames=4)  # for the memory estimate
    stub.parameters = lambda: iter(())
    evaluate(stub, ds, cfg(batch_size=0, mode="clean", protocol2=False))
    assert stub.calls == [5, 1]  # each video in one call: a 2 GiB CPU budget holds many windows
    with pytest.raises(ValueError, match="official P-Best depends on the batch size"):
        cfg(batch_size=0, mode="official")
