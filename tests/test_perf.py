"""d3dp_ktp.perf and bench/bench.py on tiny seeded configs (CPU; the CUDA checks skip without a GPU)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from d3dp_ktp import perf
from d3dp_ktp.diffusion import DiffusionConfig, SamplingConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
TINY = ModelConfig(num_frames=9, channels=32, depth=1, num_heads=4, drop_path_rate=0.0)
SMALL = ModelConfig(num_frames=27, channels=64, depth=2, num_heads=8, drop_path_rate=0.0)


def d3dp(cfg: ModelConfig = TINY, seed: int = 0, H: int = 2, K: int = 2):
    torch.manual_seed(seed)
    return build_diffusion(cfg, DiffusionConfig(), SamplingConfig(num_hypotheses=H, num_steps=K)).eval()


def noise_for(model, B: int = 2, seed: int = 1) -> dict:
    """x2d and fixed latents/step noise, so two samplers see exactly the same randomness."""
    g = torch.Generator().manual_seed(seed)
    cfg, H, K = model.pose_estimator.cfg, model.sampling.num_hypotheses, model.sampling.num_steps
    T, J = cfg.num_frames, cfg.num_joints
    return {"x2d": torch.rand(B, T, J, 2, generator=g) * 2 - 1,
            "latents": torch.randn(B, H, T, J, 3, generator=g),
            "step_noise": torch.randn(K - 1, B, H, T, J, 3, generator=g)}


def denoiser_inputs(cfg: ModelConfig, B: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    T, J = cfg.num_frames, cfg.num_joints
    return (torch.randn(B, T, J, 2, generator=g), torch.randn(B, T, J, 3, generator=g),
            torch.randint(0, 1000, (B,), generator=g))


# ------------------------------------------------------------------------------------------ FLOPs
@pytest.mark.parametrize("attention,mode", [("sdpa", "smd"), ("math", "smd"), ("math", "umd"), ("math", "pmd")])
def test_count_flops_matches_analytic_ktpformer_forward(attention, mode):
    cfg = replace(SMALL, attention=attention, mode=mode)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        counted = perf.count_flops(model, *denoiser_inputs(cfg, B=3))
    analytic = perf.denoiser_flops(cfg, sequences=3)
    # The analytic formula leaves out only the time MLP (8·C² per window), far below 1%; the 10%
    # tolerance guards the formula's structure (layer count, graph convs), not rounding. On CPU the
    # sdpa count relies on the formula perf registers for the CPU flash kernel.
    assert abs(counted - analytic) / analytic < 0.10
    assert abs(counted - analytic) / analytic < 0.01


def test_count_flops_includes_backward():
    cfg = SMALL
    torch.manual_seed(0)
    model = build_model(cfg)
    x2d, x_t, t = denoiser_inputs(cfg, B=2)
    forward = perf.count_flops(model, x2d, x_t, t)
    train = perf.count_flops(lambda: model(x2d, x_t, t).square().mean().backward())
    # backward of a matmul costs two matmuls (input and weight gradients), so fwd+bwd is ~3x forward.
    assert 2.5 < train / forward < 3.3


def test_paper_denoiser_pass_is_about_031_tflop():
    assert 0.30e12 < perf.denoiser_flops(ModelConfig()) < 0.32e12


# ------------------------------------------------------------------------------- mixed precision
def test_autocast_bf16_sample_is_close_to_fp32():
    model = d3dp(SMALL)
    x = noise_for(model)
    ref = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    with perf.autocast("cpu", "bf16"):
        low = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    diff = (low - ref).abs()
    rel = torch.linalg.vector_norm(low - ref) / torch.linalg.vector_norm(ref)
    # bf16 keeps 8 significant bits (unit roundoff u = 2^-8 = 3.9e-3). The matmul inputs are rounded
    # at each of the ~20 matmuls, the fp32 residual stream and LayerNorms keep errors from
    # compounding, so the output error is a few u relative: 2e-2 allows ~5u (measured 5e-3 to 8e-3).
    # With |x0| ~ 0.3-1.1 m (random weights, clamped at 1.1 m) that is < 5 mm mean (measured ~2 mm).
    assert rel < 2e-2
    assert diff.mean() * 1e3 < 5.0
    assert diff.max() > 0  # autocast was actually in effect


def test_autocast_fp32_is_a_no_op_and_bad_dtypes_are_rejected():
    with perf.autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
    with perf.autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with perf.autocast(torch.device("cpu"), torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="bf16"):
        perf.autocast("cpu", "int8")


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has the given feature flags; the once-per-process warning is re-armed."""
    monkeypatch.setattr(perf, "_WARNED_EMULATED", frozenset())
    return lambda *flags: monkeypatch.setattr(perf, "cpu_features", lambda: set(flags))


def test_cpu_native_half_reads_the_cpu_features(cpu_flags):
    cpu_flags("avx2", "avx512f")                      # AVX-512 without its BF16 extension
    assert not perf.cpu_native_half("bf16") and not perf.cpu_native_half(torch.float16)
    assert perf.cpu_native_half("fp32")
    cpu_flags("avx512f", "avx512_bf16")               # Zen 4, Cooper Lake
    assert perf.cpu_native_half("bf16") and not perf.cpu_native_half("fp16")
    cpu_flags("amx_bf16", "amx_fp16")                 # Sapphire Rapids and later
    assert perf.cpu_native_half("bf16") and perf.cpu_native_half("fp16")


def test_cpu_features_falls_back_to_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 AVX512_BF16\n\nprocessor\t: 1\nflags\t: fpu\n")
    real_open = open
    monkeypatch.setattr(perf, "open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path,
                                                                        *a, **k), raising=False)
    assert perf.cpu_features() == {"fpu", "sse2", "avx2", "avx512_bf16"}


def test_bf16_on_a_cpu_without_native_bf16_warns_once(cpu_flags):
    cpu_flags("avx2")
    with pytest.warns(RuntimeWarning, match="no native bf16 .*slower than fp32"):
        with perf.autocast("cpu", "bf16"):
            assert torch.is_autocast_enabled("cpu")   # an explicit request is still honoured
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with perf.autocast("cpu", "bf16"):             # once per process, not at every DDIM step
            pass
        cpu_flags("avx512_bf16")
        perf._WARNED_EMULATED = frozenset()
        with perf.autocast("cpu", "bf16"), perf.autocast("cpu", "fp32"):
            pass                                       # native bf16, and fp32: no warning


def test_half_precision_is_never_the_default():
    """fp32 unless bf16/fp16 is asked for: sample.py, the Python API, evaluation and the bench."""
    import importlib.util

    import yaml

    from d3dp_ktp.sampling import SamplingConfig, sampling_for

    assert SamplingConfig().dtype == "fp32"   # what LiftConfig/EvalConfig use for a model without its own
    demo = yaml.safe_load((REPO / "assets" / "demo" / "checkpoint" / "config.yaml").read_text())
    assert demo["sampling"]["dtype"] == "fp32"
    for script in ("sample.py", "bench/bench.py"):
        spec = importlib.util.spec_from_file_location(f"_defaults_{Path(script).stem}", REPO / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parser = module.build_parser() if hasattr(module, "build_parser") else None
        args = parser.parse_args([]) if parser else module.parse_args([])
        if script == "sample.py":   # no flag: the checkpoint's value, else SamplingConfig's
            assert args.dtype is None and sampling_for(object(), args).dtype == "fp32"
        else:
            assert args.dtype == "fp32", script


def test_attention_math_and_sdpa_agree():
    sdpa = d3dp(replace(SMALL, attention="sdpa"))
    math = build_diffusion(replace(SMALL, attention="math"), sdpa.cfg, sdpa.sampling).eval()
    math.load_state_dict(sdpa.state_dict())
    inputs = denoiser_inputs(SMALL, B=2)
    with torch.no_grad():
        torch.testing.assert_close(sdpa.pose_estimator(*inputs), math.pose_estimator(*inputs), atol=1e-5, rtol=0)
    x = noise_for(sdpa)
    torch.testing.assert_close(sdpa.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"]),
                               math.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"]),
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ compile
def failing_backend(graph_module, example_inputs):
    raise RuntimeError("no C++ compiler on this machine")


def test_compile_falls_back_to_eager_with_a_warning():
    model = d3dp()
    x = noise_for(model)
    eager = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    keys = list(model.state_dict())
    perf.compile_denoiser(model, backend=failing_backend, on_error="warn")
    with pytest.warns(RuntimeWarning, match="running eager"):
        out = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    torch.testing.assert_close(out, eager, atol=0, rtol=0)
    assert not perf.compiled_forward(model).active
    assert list(model.state_dict()) == keys  # checkpoints are unaffected by compiling


def test_compile_failure_can_raise_a_clear_error():
    model = d3dp()
    perf.compile_denoiser(model, backend=failing_backend, on_error="raise")
    with pytest.raises(RuntimeError, match="drop --compile"):
        model.sample(noise_for(model)["x2d"])
    with pytest.raises(ValueError, match="already compiled"):
        perf.compile_denoiser(model)
    with pytest.raises(ValueError, match="on_error"):
        perf.compile_denoiser(d3dp(), on_error="ignore")


def test_compiled_denoiser_matches_eager():
    model = d3dp()
    x = noise_for(model)
    eager = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    perf.compile_denoiser(model, backend="eager", on_error="raise")  # dynamo tracing, no codegen (fast)
    out = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    assert perf.compiled_forward(model).active
    torch.testing.assert_close(out, eager, atol=1e-6, rtol=0)
    # A copy (an EMA model, say) must run its own weights, not the original's.
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    twin_out = twin.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    assert perf.compiled_forward(twin).active
    del twin.pose_estimator.forward
    assert perf.compiled_forward(twin) is None
    torch.testing.assert_close(twin_out, twin.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"]),
                               atol=1e-6, rtol=0)
    assert not torch.allclose(twin_out, out)


# --------------------------------------------------------------------------------- peak / MFU
def test_peak_table_and_mfu():
    assert perf.peak_tflops_for_name("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert perf.peak_tflops_for_name("NVIDIA H100 PCIe", "bf16") == 756.0
    assert perf.peak_tflops_for_name("NVIDIA H200", "fp16") == 989.4
    assert perf.peak_tflops_for_name("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert perf.peak_tflops_for_name("NVIDIA A100-SXM4-80GB", "fp32", tf32=True) == 156.0
    assert perf.peak_tflops_for_name("Tesla V100-SXM2-16GB", "bf16") is None
    assert perf.peak_tflops_for_name("Some Future GPU", "bf16") is None
    assert perf.peak_device_tflops("cpu", "bf16") is None
    assert perf.mfu(1e12, 1.0, None) is None
    assert perf.mfu(5e14, 1.0, 1000.0) == pytest.approx(0.5)


def test_time_calls_returns_one_positive_time_per_iteration():
    calls = []
    times = perf.time_calls(lambda: calls.append(torch.ones(4).sum()), "cpu", warmup=2, iters=3)
    assert len(times) == 3 and all(t > 0 for t in times) and len(calls) == 5


# ------------------------------------------------------------------------------- memory budget
class PeakLiveBytes(TorchDispatchMode):
    """Peak bytes of storages created inside the mode and still alive (CPU stand-in for max_memory_allocated)."""

    def __init__(self):
        super().__init__()
        self.live, self.peak = {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                s = t.untyped_storage()
                self.live.setdefault(s.data_ptr(), (StorageWeakRef(s), s.nbytes()))
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_window_activation_estimate_bounds_the_measured_peak(attention):
    cfg = replace(SMALL, attention=attention)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    H, flip = 2, True
    n = H * 2                       # one window = H hypotheses, twice with flip
    with torch.no_grad(), PeakLiveBytes() as tracker:
        model(*denoiser_inputs(cfg, B=n))
    estimate = perf.window_activation_bytes(cfg, H, flip)
    assert tracker.peak <= estimate < 2.5 * tracker.peak  # an upper bound, but not a useless one


def test_max_windows_for_budget_is_monotone_and_at_least_one():
    model = d3dp(SMALL)
    budgets = [0, 2 ** 20, 2 ** 24, 2 ** 27, 2 ** 30, 2 ** 34, 2 ** 36]
    for flip in (True, False):
        for dtype in ("fp32", "bf16"):
            counts = [perf.max_windows_for_budget(model, 27, 5, flip, b, K=5, dtype=dtype) for b in budgets]
            assert all(c >= 1 for c in counts)
            assert counts == sorted(counts) and counts[-1] > counts[0]
    assert perf.max_windows_for_budget(model, 27, 5, False, 2 ** 30) > perf.max_windows_for_budget(model, 27, 5, True,
                                                                                                   2 ** 30)
    with pytest.raises(ValueError, match="T=27"):
        perf.max_windows_for_budget(model, 243, 5, True, 2 ** 30)


# -------------------------------------------------------------------------------------- bench CLI
def test_bench_cli_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench.py"), "-T", "9", "-C", "32", "-L", "1", "--heads", "4",
           "-H", "2", "-K", "2", "-B", "2", "--device", "cpu", "--warmup", "1", "--iters", "2", "--threads", "1",
           "--ceiling-n", "128", "--check", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sample" in proc.stdout and "check" in proc.stdout
    result = json.loads(out.read_text())
    for key in ("config", "environment", "peak_tflops", "matmul_ceiling_tflops", "sample", "train", "check",
                "compiled", "max_windows_for_budget"):
        assert key in result
    cfg = replace(TINY, drop_path_rate=0.1)
    per_sequence = perf.denoiser_flops(cfg)
    for phase in ("sample", "train"):
        r = result[phase]
        assert r["ms_per_call_median"] > 0 and r["items_per_s"] > 0 and len(r["times_s"]) == 2
        assert r["frames_per_s"] == pytest.approx(9 * r["items_per_s"])
        assert r["mfu"] is None and result["peak_tflops"] is None  # no datasheet peak for a CPU
    # sampling: K steps x (B windows x H hypotheses x 2 flips) denoiser passes
    assert result["sample"]["flops_per_call"] == pytest.approx(2 * 2 * 2 * 2 * per_sequence, rel=0.01)
    assert result["check"]["mean_abs_diff_mm"] < 1e-3  # fp32 sdpa vs fp32 math
    assert result["max_windows_for_budget"] >= 1 and result["compiled"] is False


def _bench_module():
    sys.path.insert(0, str(REPO / "bench"))
    import bench
    return bench


def test_bench_official_equivalent_side_by_side_and_onnx_backend(capsys):
    """One run times ours and the official-equivalent path on the same inputs: same FLOPs (same
    passes), the same x0 up to float rounding, and the ratio of the two medians."""
    pytest.importorskip("onnxruntime", reason="the ONNX backend's optional dependencies are missing: "
                        "pip install onnx onnxruntime")
    bench = _bench_module()
    argv = ["-T", "9", "-C", "32", "-L", "1", "--heads", "4", "-H", "2", "-K", "2", "-B", "2", "--device", "cpu",
            "--warmup", "1", "--iters", "2", "--ceiling-n", "0", "--only", "sample", "--official", "--check"]
    r = bench.main(argv + ["--backend", "onnx"])
    stdout = capsys.readouterr().out
    assert "sample, official-equivalent" in stdout and "speed-up over the official-equivalent" in stdout
    assert r["official"]["flops_per_call"] == r["sample"]["flops_per_call"] > 0
    assert r["speedup_over_official"] == pytest.approx(
        r["official"]["ms_per_call_median"] / r["sample"]["ms_per_call_median"])
    assert 0 < r["official_max_abs_diff_mm"] < 1e-2         # ORT + sdpa vs math: float rounding only
    assert "onnxruntime" in r["check"]["variant"] and r["check"]["max_abs_diff_mm"] < 1e-2
    with pytest.raises(SystemExit, match="--backend onnx runs fp32 on the CPU"):
        bench.parse_args(argv + ["--backend", "onnx", "--dtype", "bf16"])


def test_official_equivalent_runs_flip_as_a_second_pass_with_explicit_attention():
    bench = _bench_module()

    model = d3dp()
    official = bench.official_equivalent(model)
    assert official.pose_estimator.cfg.attention == "math" and official.pose_estimator is not model.pose_estimator
    calls = []
    official.pose_estimator.register_forward_hook(lambda m, inp, out: calls.append(inp[1].shape[0]))
    x = noise_for(model)
    got = official.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    assert calls == [2, 2, 2, 2]     # K=2 steps x (plain, flipped) calls of B=2 windows each
    want = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------- CUDA (if any)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_sample_and_event_timing():
    model = d3dp(SMALL).cuda()
    x = {k: v.cuda() for k, v in noise_for(model).items()}
    ref = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    with perf.autocast("cuda", "bf16"):
        low = model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    assert (low - ref).abs().mean() * 1e3 < 5.0
    times = perf.time_calls(lambda: model.sample(x["x2d"]), "cuda", warmup=1, iters=3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert perf.peak_device_tflops("cuda", "bf16") is None or perf.peak_device_tflops("cuda", "bf16") > 0


# ------------------------------------------------------------------------------- training memory
def test_saved_for_backward_bytes_counts_activations_once_and_skips_parameters():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 16)
    x = torch.randn(4, 8, requires_grad=True)

    def forward():
        y = lin(x)           # keeps x (4·8 floats) and the weight (a parameter: skipped)
        return (y * y).sum()  # keeps y once, though it is saved twice (4·16 floats)
    assert perf.saved_for_backward_bytes(forward, exclude=lin.parameters()) == 4 * (4 * 8 + 4 * 16)
    assert perf.saved_for_backward_bytes(forward) == 4 * (4 * 8 + 4 * 16 + 8 * 16)
    with torch.no_grad():
        assert perf.saved_for_backward_bytes(forward) == 0
