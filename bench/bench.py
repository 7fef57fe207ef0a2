#!/usr/bin/env python
"""Benchmark D3DP sampling and training with the KTPFormer (or MixSTE) denoiser; see bench/README.md.

    python bench/bench.py --frames 243 --channels 512 --depth 7 -H 1 -K 1 --dtype bf16 --compile \
        --device cuda --check --json runs/bench_h100_bf16.json

Sampling: latency of one ``D3DP.sample`` call on B windows (H hypotheses, K steps, flip TTA), windows/s
and frames/s (each window yields T frames). Training: one optimiser step (loss, backward, AdamW) on
B sequences, sequences/s. FLOPs are counted once per call with FlopCounterMode; achieved TFLOP/s,
MFU (against the datasheet peak, GPUs only) and the fraction of a measured matmul ceiling follow.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

# bench/ is a script folder beside the package: make `d3dp_ktp` importable from a plain checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from d3dp_ktp import perf  # noqa: E402
from d3dp_ktp.diffusion import D3DP, DiffusionConfig, SamplingConfig  # noqa: E402
from d3dp_ktp.factory import build_diffusion  # noqa: E402
from d3dp_ktp.models import ModelConfig, build_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m = p.add_argument_group("model and sampler (hyper-parameters)")
    m.add_argument("--arch", choices=("ktpformer", "mixste"), default="ktpformer")
    m.add_argument("--frames", "-T", type=int, default=243, help="T, frames per window")
    m.add_argument("--channels", "-C", type=int, default=512, help="C")
    m.add_argument("--depth", "-L", type=int, default=7, help="L, STE/TTE pairs after KPA/TPA")
    m.add_argument("--heads", type=int, default=8)
    m.add_argument("-H", "--hypotheses", type=int, default=1, help="H, hypotheses per window")
    m.add_argument("-K", "--steps", type=int, default=1, help="K, DDIM steps")
    m.add_argument("--no-flip", action="store_true", help="disable the flip test-time augmentation")
    m.add_argument("--attention", choices=("sdpa", "math"), default="sdpa")
    r = p.add_argument_group("runtime")
    r.add_argument("--batch-size", "-B", type=int, default=1, help="windows per sample call / sequences per step")
    r.add_argument("--dtype", choices=tuple(perf.DTYPES), default="fp32", help="autocast dtype")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    r.add_argument("--compile-mode", default="default",
                   help="default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs")
    r.add_argument("--compile-on-error", choices=("warn", "raise"), default="raise",
                   help="if compilation fails: stop, or warn and time the eager model")
    r.add_argument("--warmup", type=int, default=2, help="untimed calls per phase (the FLOP-counting call "
                   "of an eager run counts as the first)")
    r.add_argument("--iters", type=int, default=10, help="timed calls per phase")
    r.add_argument("--only", choices=("sample", "train", "both", "memory"), default="both",
                   help="memory: only the training-memory estimate (activations saved for backward), no timing")
    r.add_argument("--check", action="store_true",
                   help="compare sampled x0 with fp32 eager attention=math (same latents and step noise)")
    r.add_argument("--official", action="store_true",
                   help="also time the official-equivalent sampler on the same inputs (fp32 eager, explicit "
                        "softmax attention, flip as a second denoiser pass) and print the speed-up over it")
    r.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="sampling backend: onnx runs the denoiser in ONNX Runtime (CPU, fp32)")
    r.add_argument("--budget-gib", type=float, default=None, help="memory budget for max_windows_for_budget "
                   "(default: 0.8 x free GPU memory, or 0.5 x available RAM on CPU)")
    r.add_argument("--ceiling-n", type=int, default=None,
                   help="n of the n x n x n matmul that measures the ceiling (0 = skip; default 8192 GPU, 2048 CPU)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch intra-op CPU threads (default: torch's); 1 avoids OpenMP thrashing on a busy machine")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    args = p.parse_args(argv)
    for name in ("frames", "channels", "depth", "heads", "hypotheses", "steps", "batch_size", "iters"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    if args.warmup < 0:
        raise SystemExit(f"--warmup must be >= 0, got {args.warmup}")
    if args.backend == "onnx" and (args.dtype != "fp32" or args.compile or torch.device(args.device).type != "cpu"):
        raise SystemExit("--backend onnx runs fp32 on the CPU: use --dtype fp32 --device cpu, without --compile")
    return args


def build(args) -> torch.nn.Module:
    """The D3DP wrapper for the benchmarked configuration, seeded, on ``args.device``."""
    torch.manual_seed(args.seed)
    model_cfg = ModelConfig(arch=args.arch, num_frames=args.frames, channels=args.channels, depth=args.depth,
                            num_heads=args.heads, attention=args.attention)
    sampling = SamplingConfig(num_hypotheses=args.hypotheses, num_steps=args.steps, flip=not args.no_flip)
    return build_diffusion(model_cfg, DiffusionConfig(), sampling).to(args.device)


def make_inputs(args, model) -> dict:
    """Fixed random inputs and noise, drawn on the CPU (seeded) and moved once, outside the timed loops."""
    g = torch.Generator().manual_seed(args.seed + 1)
    B, T, J, H, K = args.batch_size, args.frames, model.pose_estimator.cfg.num_joints, args.hypotheses, args.steps
    x = {"x2d": torch.rand(B, T, J, 2, generator=g) * 2 - 1,
         "y3d": 0.3 * torch.randn(B, T, J, 3, generator=g),
         "latents": torch.randn(B, H, T, J, 3, generator=g),
         "step_noise": torch.randn(K - 1, B, H, T, J, 3, generator=g),
         "t": torch.randint(0, model.cfg.num_train_timesteps, (B,), generator=g),
         "noise": torch.randn(B, T, J, 3, generator=g)}
    return {k: v.to(args.device) for k, v in x.items()}


class OfficialEquivalentD3DP(D3DP):
    """The official D3DP sampler's execution on our weights: the same DDIM loop and passes, but the
    flipped input is a second denoiser call (official ``ddim_sample`` calls the network twice per step),
    run fp32 eager with explicit softmax attention (what the official Attention does)."""

    def predict_x0(self, x2d, x2d_flip, x, t, dtype=None, max_batch=None):  # one call per pass, unsplit
        s, c = self.cfg.scale, self.cfg.clamp
        x_in = torch.clamp(x, -c * s, c * s) / s
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        p = self.pose_estimator(x2d, x_in, t_batch).float()
        if x2d_flip is not None:
            p_flip = self.pose_estimator(x2d_flip, self.flip_3d(x_in), t_batch).float()
            p = (p + self.flip_3d(p_flip)) / 2
        return torch.clamp(p * s, -c * s, c * s)


def official_equivalent(model: D3DP) -> OfficialEquivalentD3DP:
    """A fresh fp32 eager attention='math' copy of ``model``'s weights with the official flip passes."""
    denoiser = model.pose_estimator
    twin = build_model(replace(denoiser.cfg, attention="math")).to(next(denoiser.parameters()).device)
    twin.load_state_dict(denoiser.state_dict())
    return OfficialEquivalentD3DP(twin, model.cfg, model.skeleton, model.keypoint_skeleton,
                                  model.sampling).eval()


def official_sample_fn(model, x: dict):
    return lambda: model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])


def sample_fn(model, x: dict, args):
    def call():
        with perf.autocast(args.device, args.dtype):
            return model.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    return call


def train_fn(model, x: dict, args):
    """One optimiser step. t and noise are fixed device tensors so no RNG copy runs inside the loop."""
    device = torch.device(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")

    def call():
        model.train()
        opt.zero_grad(set_to_none=True)
        with perf.autocast(device, args.dtype):
            out = model.loss(x["x2d"], x["y3d"], t=x["t"], noise=x["noise"])
        scaler.scale(out.loss).backward()
        scaler.step(opt)
        scaler.update()
    return call


def train_memory(model, x: dict, args) -> dict:
    """Training memory from one forward: activations autograd keeps (measured on any device) plus
    weights, gradients and AdamW's two moments (16 bytes per parameter; the autocast weight copies
    are among the activations)."""
    params = list(model.parameters())

    def forward():
        model.train()
        with perf.autocast(args.device, args.dtype):
            model.loss(x["x2d"], x["y3d"], t=x["t"], noise=x["noise"])
    saved = perf.saved_for_backward_bytes(forward, exclude=params)
    states = 16 * sum(p.numel() for p in params)
    return {"activations_saved_bytes": saved, "weights_grads_adam_bytes": states, "estimate_bytes": saved + states}


def reset_peak_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> tuple[int, str]:
    """(bytes, what): CUDA max_memory_allocated since the last reset, else the process's peak RSS so far."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "process_peak_rss"  # Linux reports KiB


def measure(fn, flops: int, warmup: int, args, peak: float | None, ceiling: float | None) -> dict:
    """Time ``fn`` and turn the median into throughputs, TFLOP/s, MFU and peak memory."""
    reset_peak_memory(args.device)
    times = perf.time_calls(fn, args.device, warmup=warmup, iters=args.iters)
    med = statistics.median(times)
    mem, mem_kind = peak_memory(args.device)
    tflops = flops / med / 1e12
    B = args.batch_size
    return {"ms_per_call_median": med * 1e3, "ms_per_call_min": min(times) * 1e3,
            "ms_per_call_mean": statistics.fmean(times) * 1e3, "items_per_s": B / med,
            "frames_per_s": B * args.frames / med, "flops_per_call": flops, "tflops_achieved": tflops,
            "mfu": perf.mfu(flops, med, peak), "fraction_of_matmul_ceiling": tflops / ceiling if ceiling else None,
            "peak_memory_bytes": mem, "peak_memory_kind": mem_kind, "times_s": times}


def run_check(model, sampler, x: dict, args) -> dict:
    """Sampled x0 of the benchmarked variant (``sampler``: ``model`` or its ONNX twin) vs fp32 eager
    attention='math' with ``model``'s weights, same latents and z."""
    reference = build_diffusion(replace(model.pose_estimator.cfg, attention="math"), model.cfg,
                                model.sampling).to(args.device)
    reference.load_state_dict(model.state_dict())
    x0_ref = reference.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
    x0 = sample_fn(sampler, x, args)()
    diff = (x0.double() - x0_ref.double()).abs()
    compiled = perf.compiled_forward(model)
    variant = (f"{args.dtype} {'compiled' if compiled is not None and compiled.active else 'eager'} "
               f"attention={args.attention}" + (" onnxruntime" if args.backend == "onnx" else ""))
    return {"reference": "fp32 eager attention=math", "variant": variant,
            "mean_abs_diff_mm": diff.mean().item() * 1e3, "max_abs_diff_mm": diff.max().item() * 1e3,
            "final_step_mean_abs_diff_mm": diff[:, -1].mean().item() * 1e3,
            "rel_l2": (torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(x0_ref.double())).item(),
            "finite": bool(torch.isfinite(x0).all())}


def memory_budget(args) -> int:
    if args.budget_gib is not None:
        return int(args.budget_gib * 2 ** 30)
    if torch.device(args.device).type == "cuda":
        return int(0.8 * torch.cuda.mem_get_info(torch.device(args.device))[0])
    return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor()} ({os.cpu_count()} CPUs, " \
           f"{torch.get_num_threads()} torch threads)"


def environment(args) -> dict:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "float32_matmul_precision": torch.get_float32_matmul_precision(), "python": platform.python_version(),
            # CPU figures are only comparable at similar load: other processes share the cores.
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            # Without AVX512-BF16/AMX, CPU bf16 is emulated and slower than fp32 (perf.cpu_native_half).
            "cpu_native_bf16": perf.cpu_native_half("bf16") if device.type == "cpu" else None}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def pct(fraction) -> str:
    return fmt(None if fraction is None else 100 * fraction, ".1f")


PHASE_NAMES = {"sample": "sample", "official": "sample, official-equivalent", "train": "train"}


def table(results: dict) -> str:
    head = ("phase", "ms/call", "windows/s", "seq/s", "frames/s", "GFLOP/call", "TFLOP/s", "MFU", "%ceiling",
            "peak MiB")
    rows = [head]
    for phase in ("sample", "official", "train"):
        r = results.get(phase)
        if r is None:
            continue
        rows.append((PHASE_NAMES[phase], fmt(r["ms_per_call_median"], ".1f"),
                     fmt(r["items_per_s"] if phase != "train" else None, ".3g"),
                     fmt(r["items_per_s"] if phase == "train" else None, ".3g"), fmt(r["frames_per_s"], ".4g"),
                     fmt(r["flops_per_call"] / 1e9, ".1f"), fmt(r["tflops_achieved"], ".3g"), pct(r["mfu"]),
                     pct(r["fraction_of_matmul_ceiling"]), fmt(r["peak_memory_bytes"] / 2 ** 20, ".0f")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def run(args) -> dict:
    """Build, count FLOPs (eager), compile, check, then time each phase; returns the JSON record."""
    model = build(args)
    x = make_inputs(args, model)
    phases = {p: fn for p, fn in (("sample", sample_fn(model, x, args)), ("train", train_fn(model, x, args)))
              if args.only in (p, "both")}
    if args.official and "sample" in phases:
        phases["official"] = keep_last(official_sample_fn(official_equivalent(model), x))
    memory = train_memory(model, x, args) if args.only in ("train", "both", "memory") else None
    # Counting runs each call once, eagerly: FLOPs do not depend on dtype, compilation or backend.
    flops = {p: perf.count_flops(fn) for p, fn in phases.items()}
    if args.compile:
        perf.compile_denoiser(model, args.compile_mode, on_error=args.compile_on_error)
    sampler = onnx_sampler(model) if args.backend == "onnx" else model
    if "sample" in phases:
        phases["sample"] = keep_last(sample_fn(sampler, x, args))
    # The counting call warmed the eager torch model; a compiled or ONNX one still needs all its warm-ups.
    fresh = args.compile or args.backend == "onnx"
    warmup = {p: args.warmup if fresh and p == "sample" else max(args.warmup - 1, 0) for p in phases}
    peak = perf.peak_device_tflops(args.device, args.dtype)
    n = args.ceiling_n if args.ceiling_n is not None else (8192 if torch.device(args.device).type == "cuda" else 2048)
    ceiling = perf.measure_matmul_tflops(args.device, args.dtype, n=n, iters=5) if n > 0 else None
    out = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "environment": environment(args), "peak_tflops": peak, "matmul_ceiling_tflops": ceiling,
           "denoiser_flops_per_sequence_analytic": perf.denoiser_flops(model.pose_estimator.cfg),
           "train_memory": memory}
    if args.check:
        out["check"] = run_check(model, sampler, x, args)
    for p, fn in phases.items():
        # The official-equivalent path is fp32 whatever --dtype says: no MFU against a bf16 peak.
        same = p != "official" or args.dtype == "fp32"
        out[p] = measure(fn, flops[p], warmup[p], args, peak if same else perf.peak_device_tflops(args.device, "fp32"),
                         ceiling if same else None)
    if "official" in out:
        out["speedup_over_official"] = out["official"]["ms_per_call_median"] / out["sample"]["ms_per_call_median"]
        diff = (phases["sample"].last.double() - phases["official"].last.double()).abs()
        out["official_max_abs_diff_mm"] = diff.max().item() * 1e3
    compiled = perf.compiled_forward(model)
    out["compiled"] = compiled is not None and compiled.active
    budget = memory_budget(args)
    out["memory_budget_bytes"] = budget
    out["max_windows_for_budget"] = perf.max_windows_for_budget(
        model, args.frames, args.hypotheses, not args.no_flip, budget, K=args.steps, dtype=args.dtype)
    return out


class keep_last:  # noqa: N801 (used like a function)
    """``fn`` that remembers its last result, so the timed calls double as the outputs to compare."""

    def __init__(self, fn):
        self.fn, self.last = fn, None

    def __call__(self):
        self.last = self.fn()
        return self.last


def onnx_sampler(model):
    """``model`` with its denoiser exported to ONNX Runtime (into a temporary folder, removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from d3dp_ktp.inference.onnx_backend import onnx_model

    folder = tempfile.mkdtemp(prefix="bench-onnx-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return onnx_model(model, folder, verbose=False)


def report(out: dict) -> str:
    a, env = out["config"], out["environment"]
    load = env["load_average_1min"]
    lines = [f"device: {env['device_name']} | load {fmt(load, '.1f')} | torch {env['torch']} | dtype {a['dtype']} | "
             f"compiled {out['compiled']} | attention {a['attention']} | backend {a['backend']}"
             + (f" | native bf16 {env['cpu_native_bf16']}" if env.get("cpu_native_bf16") is not None else ""),
             f"config: {a['arch']} T={a['frames']} C={a['channels']} L={a['depth']} heads={a['heads']} "
             f"H={a['hypotheses']} K={a['steps']} flip={not a['no_flip']} B={a['batch_size']} "
             f"(warmup {a['warmup']}, iters {a['iters']}, median)",
             f"peak {fmt(out['peak_tflops'], '.1f')} TFLOP/s (datasheet) | matmul ceiling "
             f"{fmt(out['matmul_ceiling_tflops'], '.3g')} TFLOP/s (measured) | denoiser pass "
             f"{out['denoiser_flops_per_sequence_analytic'] / 1e9:.4g} GFLOP/sequence (analytic)",
             table(out)] + _memory_lines(out) + [
             f"max windows per sample call within {out['memory_budget_bytes'] / 2 ** 30:.1f} GiB: "
             f"{out['max_windows_for_budget']}"]
    if "speedup_over_official" in out:
        lines.append(f"speed-up over the official-equivalent sampler (fp32 eager, explicit softmax attention, "
                     f"flip as a second pass; same inputs and passes): {out['speedup_over_official']:.2f}x; "
                     f"max |dx0| between the two {out['official_max_abs_diff_mm']:.4f} mm")
    if "check" in out:
        c = out["check"]
        lines.append(f"check ({c['variant']} vs {c['reference']}): mean |dx0| {c['mean_abs_diff_mm']:.4f} mm, "
                     f"max {c['max_abs_diff_mm']:.4f} mm, final step {c['final_step_mean_abs_diff_mm']:.4f} mm, "
                     f"rel L2 {c['rel_l2']:.2e}, finite {c['finite']}")
    return "\n".join(lines)


def _memory_lines(out: dict) -> list[str]:
    m = out["train_memory"]
    if m is None:
        return []
    return [f"train step at B={out['config']['batch_size']}: activations saved for backward "
            f"{m['activations_saved_bytes'] / 2 ** 30:.2f} GiB + weights/grads/AdamW "
            f"{m['weights_grads_adam_bytes'] / 2 ** 30:.2f} GiB = {m['estimate_bytes'] / 2 ** 30:.2f} GiB "
            "(estimate before allocator overhead and transient buffers)"]


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = run(args)
    print(report(out))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
