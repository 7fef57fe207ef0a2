#!/usr/bin/env python
"""The CPU table of bench/README.md from one run: every sampler variant side by side on the same inputs.

    nice -n 5 python bench/cpu_table.py --out runs/cpu_table.md      # ~10 min on 2 busy cores

Three parts, each printed as a Markdown table:

1. **Demo lift**: what ``python sample.py`` times (`lift_keypoints` on the bundled demo, H=5, K=5),
   torch backend vs ONNX Runtime backend, and the mean distance between their poses.
2. **Sampler variants on the demo model**: one `D3DP.sample` call on 10 windows (the demo's 150
   frames), H=5, K=5, flip: the official-equivalent execution (fp32 eager, explicit softmax
   attention, flip as a second pass), ours fp32 (SDPA, flip batched), ours with explicit attention,
   bf16 and fp16 autocast, torch.compile, and ONNX Runtime.
3. **Paper configuration** (T=243, C=512, L=7, random weights), H=1, K=1, flip, one window: the same
   variants without torch.compile (inductor takes minutes to compile this model on a small CPU) and
   without fp16 (emulated on most CPUs, minutes per call).

Variants are timed round-robin (one call of each, then again), so a change in the machine's load
hits all of them alike; the table gives the median per variant, the speed-up over the
official-equivalent path and the largest difference of x0 from it. The load average is recorded
before and after.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py; puts the repository on sys.path)

from d3dp_ktp import perf  # noqa: E402
from d3dp_ktp.checkpoints import load_checkpoint  # noqa: E402
from d3dp_ktp.factory import build_diffusion  # noqa: E402
from d3dp_ktp.inference import pipeline  # noqa: E402
from d3dp_ktp.inference.io import read_keypoints  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    p.add_argument("--iters", type=int, default=3, help="timed rounds per part (median reported)")
    p.add_argument("--skip", action="append", default=[], choices=("lift", "demo", "paper", "compile"),
                   help="leave out a part (or the torch.compile variant); repeatable")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown to this file")
    args = p.parse_args(argv)
    if args.iters < 1 or (args.threads is not None and args.threads < 1):
        raise SystemExit("--iters and --threads must be >= 1")
    return args


def round_robin(fns: dict, iters: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every ``fns[name]()``: ``warmup`` untimed rounds, then ``iters`` timed
    rounds, each round calling every variant once in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def sampler_variants(model, x: dict, compile_too: bool, folder: Path, halves=("bf16", "fp16")) -> dict:
    """name -> a zero-argument call of one sampler variant; every one keeps its last x0."""
    def ours(sampler, dtype="fp32"):
        def call():
            with perf.autocast("cpu", dtype):
                return sampler.sample(x["x2d"], latents=x["latents"], step_noise=x["step_noise"])
        return bench.keep_last(call)

    math = build_diffusion(dataclasses.replace(model.pose_estimator.cfg, attention="math"), model.cfg).eval()
    math.load_state_dict(model.state_dict())
    variants = {"official-equivalent: fp32 eager, explicit softmax, flip as 2nd pass":
                bench.keep_last(bench.official_sample_fn(bench.official_equivalent(model), x)),
                "ours, fp32 eager (SDPA, flip batched)": ours(model),
                "ours, fp32 eager, explicit softmax attention": ours(math)}
    for half in halves:
        variants[f"ours, {half} autocast"] = ours(model, half)
    if compile_too:
        compiled = copy.deepcopy(math)   # explicit attention: what inductor fuses best on a CPU
        perf.compile_denoiser(compiled, on_error="warn")
        variants["ours, torch.compile fp32 (explicit softmax)"] = ours(compiled)
    from d3dp_ktp.inference.onnx_backend import onnx_model
    variants["ours, ONNX Runtime fp32"] = ours(onnx_model(model, folder, verbose=False))
    return variants


def variant_table(title: str, model, x: dict, frames: int, iters: int, compile_too: bool, folder: Path,
                  halves=("bf16", "fp16")) -> str:
    fns = sampler_variants(model, x, compile_too, folder, halves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the emulated-fp16 warning: the table shows the cost itself
        times = round_robin(fns, iters)
    official = next(iter(fns))
    t_off = statistics.median(times[official])
    ref = fns[official].last.double()
    rows = [f"**{title}**", "", "| variant | s/call | frames/s | speed-up vs official-eq. | max abs diff of x0 |",
            "|---|---|---|---|---|"]
    for name, fn in fns.items():
        med = statistics.median(times[name])
        diff = (fn.last.double() - ref).abs().max().item() * 1e3
        rows.append(f"| {name} | {med:.2f} | {frames / med:.1f} | {t_off / med:.2f}x | {diff:.3g} mm |")
    return "\n".join(rows)


def demo_inputs(model, windows: int, H: int, K: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    cfg = model.pose_estimator.cfg
    T, J = cfg.num_frames, cfg.num_joints
    return {"x2d": torch.rand(windows, T, J, 2, generator=g) * 2 - 1,
            "latents": torch.randn(windows, H, T, J, 3, generator=g),
            "step_noise": torch.randn(K - 1, windows, H, T, J, 3, generator=g)}


def lift_table(iters: int, folder: Path) -> str:
    """sample.py's lifting step on the demo, torch vs ONNX Runtime (export done before timing)."""
    from d3dp_ktp.inference.onnx_backend import onnx_model

    model, _ = load_checkpoint(DEMO / "checkpoint")
    start = time.perf_counter()
    fast = onnx_model(model, folder, verbose=False)
    export_s = time.perf_counter() - start
    kf = read_keypoints(DEMO / "demo_input.npz")
    cfg = pipeline.LiftConfig()
    results = {}

    def lift(name, m):
        def call():
            results[name] = pipeline.lift_keypoints(m, kf, cfg)[0]
        return call
    times = round_robin({"torch": lift("torch", model), "onnx": lift("onnx", fast)}, iters)
    gt = kf.extras["poses_3d_gt"]
    diff = np.linalg.norm(results["onnx"].poses_3d - results["torch"].poses_3d, axis=-1).mean() * 1e3
    t_torch, t_onnx = statistics.median(times["torch"]), statistics.median(times["onnx"])
    rows = ["**Demo lift** (`python sample.py`: 150 frames, 10 windows of T=27, H=5, K=5, flip, JPMA)", "",
            "| backend | lift s | speed-up | MPJPE vs GT |", "|---|---|---|---|"]
    for name, t in (("torch", t_torch), ("onnx", t_onnx)):
        mpjpe = pipeline.mpjpe_mm(results[name].poses_3d, gt, model.skeleton.root)
        rows.append(f"| {name} | {t:.2f} | {t_torch / t:.2f}x | {mpjpe:.2f} mm |")
    rows.append(f"\nmean distance between the two backends' poses: {diff:.2g} mm; one-time ONNX export "
                f"(+ check against torch): {export_s:.1f} s")
    return "\n".join(rows)


def header(args) -> str:
    import onnxruntime

    env = bench.environment(argparse.Namespace(device="cpu"))
    return (f"CPU table, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: {env['device_name']}, "
            f"native bf16 {env['cpu_native_bf16']}, torch {env['torch']}, onnxruntime {onnxruntime.__version__}, "
            f"{torch.get_num_threads()} threads (torch and ONNX Runtime); median of {args.iters} round-robin "
            f"rounds after 1 warm-up round; load average before: {os.getloadavg()[0]:.1f}")


def main(argv=None) -> str:
    import tempfile

    args = parse_args(argv)
    from d3dp_ktp.inference.onnx_backend import check_backend
    try:
        check_backend("onnx")   # the table has ONNX Runtime rows
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    parts = [header(args)]
    with tempfile.TemporaryDirectory(prefix="cpu-table-") as tmp:
        if "lift" not in args.skip:
            parts.append(lift_table(args.iters, Path(tmp) / "lift"))
        if "demo" not in args.skip:
            model = load_checkpoint(DEMO / "checkpoint")[0].eval()
            parts.append(variant_table("Sampler variants on the demo model (T=27, C=64, L=2; 10 windows, H=5, "
                                       "K=5, flip)", model, demo_inputs(model, 10, 5, 5), 10 * 27, args.iters,
                                       "compile" not in args.skip, Path(tmp) / "demo"))
        if "paper" not in args.skip:
            ns = bench.parse_args(["-H", "1", "-K", "1", "--device", "cpu"])
            model = bench.build(ns).eval()
            parts.append(variant_table("Paper configuration (T=243, C=512, L=7, random weights; 1 window, H=1, "
                                       "K=1, flip)", model, demo_inputs(model, 1, 1, 1), 243, args.iters, False,
                                       Path(tmp) / "paper", halves=("bf16",)))
    parts.append(f"load average after: {os.getloadavg()[0]:.1f}")
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_name(f".{args.out.name}.tmp")
        tmp_out.write_text(text)
        os.replace(tmp_out, args.out)
    return text


if __name__ == "__main__":
    main()
