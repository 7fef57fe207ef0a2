#!/usr/bin/env python
"""Lift 2D human keypoints (17 joints per frame, in pixels) to 3D poses with a D3DP diffusion model.

With no arguments this runs the built-in demo: the small checkpoint in assets/demo/checkpoint/ lifts
assets/demo/demo_input.npz, writes outputs/demo/ and prints the error against the demo's 3D ground truth.

examples:
  python sample.py
  python sample.py --input detections.json --layout coco --width 1920 --height 1080 --checkpoint runs/ktp/best
  python sample.py --input clip.npz --checkpoint in_the_wild_best_epoch.bin -H 20 -K 10 --save-hypotheses

input files (pixels, origin top-left; details in d3dp_ktp/inference/io.py):
  .npz   'keypoints' (frames, 17, 2 or 3) [+ 'width', 'height', 'layout'], or VideoPose3D's custom 2D npz
  .npy   an array (frames, 17, 2 or 3)
  .json  a list of frames (each [[x, y(, score)], ...] or {"keypoints": [x0, y0, s0, ...]}),
         or {"frames": [...], "width": W, "height": H, "layout": "coco"}
  .csv   one row per frame: x0,y0,(s0),x1,y1,(s1),...
  A third value per keypoint is its detection confidence. Missing keypoints (NaN, confidence <= 0 or
  below --min-score, empty frames) are filled by interpolation over time.

outputs (in --out): poses_3d.npz and poses_3d.json with 'poses_3d' (frames, 17, 3) in metres,
root-relative camera space (x right, y down, z forward), 'uncertainty' (frames, 17) in metres,
'root_trajectory', the cleaned 2D and the settings; preview.png; animation.gif (+ .mp4 with ffmpeg).

A model sees T frames at a time (fixed by the checkpoint); longer inputs are cut into overlapping
windows that are cross-faded, shorter ones are padded. A busy CPU may run faster with --threads 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

from d3dp_ktp.sampling import add_sampling_arguments, check_sampling_flags, sampling_for

REPO = Path(__file__).resolve().parent
DEMO_DIR_ENV = "D3DP_KTP_DEMO_DIR"   # overrides assets/demo (used by the tests)
DEMO_OUT = Path("outputs") / "demo"


def demo_paths() -> tuple[Path, Path]:
    """(checkpoint folder, input file) of the built-in demo."""
    root = Path(os.environ.get(DEMO_DIR_ENV) or REPO / "assets" / "demo")
    return root / "checkpoint", root / "demo_input.npz"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--input", metavar="FILE", help="2D keypoint file (.npz, .npy, .json, .csv); default: the demo input")
    io.add_argument("--video", metavar="NAME", help="which video of a VideoPose3D npz holding several")
    io.add_argument("--layout", metavar="{coco,h36m}", help="keypoint order in the file: coco (most 2D detectors) or h36m; overrides the file")
    io.add_argument("--width", type=float, metavar="PX", help="image width in pixels (needed unless the file states it)")
    io.add_argument("--height", type=float, metavar="PX", help="image height in pixels (needed unless the file states it)")
    io.add_argument("--min-score", type=float, default=0.0, metavar="S", help="keypoints with a lower confidence count as missing (default 0)")
    io.add_argument("--out", metavar="DIR", help="output folder (default: outputs/demo, or outputs/<input name>)")
    io.add_argument("--save-hypotheses", action="store_true", help="also save every hypothesis of every step, (K, H, frames, 17, 3)")
    io.add_argument("--no-video", action="store_true", help="skip the GIF/MP4 animation (the PNG preview is still written)")
    m = p.add_argument_group("model and sampling")
    m.add_argument("--checkpoint", metavar="PATH", help="checkpoint folder from train.py or an official .bin (default: the demo checkpoint)")
    m.add_argument("--model-layout", choices=("h36m", "coco"), metavar="{h36m,coco}",
                   help="official .bin only: the keypoint order the network was trained on (the file cannot "
                        "tell). Default: coco when the file name contains 'in_the_wild' (D3DP's in-the-wild "
                        "model), else h36m")
    add_sampling_arguments(m, dtype_help="; fp16/bf16 run the network in half precision (GPU: several times "
                           "faster; fp16 stays closer to fp32, about 0.2 mm on the demo model, bf16 about 2 mm)")
    m.add_argument("--agg", choices=("jpma", "mean"), default="jpma",
                   help="how hypotheses become one pose: jpma = per joint the hypothesis that best matches the 2D "
                        "(default), mean = their average")
    m.add_argument("--focal", type=float, metavar="PX", help="camera focal length in pixels for jpma (default 1.15 x width)")
    m.add_argument("--stride", type=int, metavar="N", help="frames between window starts for long inputs (default: half the model's window T; T = no overlap, 2x faster)")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", default="auto", metavar="{auto,cpu,cuda}", help="auto (GPU if available), cpu or cuda (default auto)")
    r.add_argument("--batch-size", type=int, default=0, metavar="N",
                   help="windows per model call; lower it if memory runs out (default: chosen from a memory budget, "
                        "which keeps the time per window constant as H and K grow)")
    r.add_argument("--threads", type=int, metavar="N", help="CPU threads for PyTorch (default: PyTorch's choice)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
        try:
            return run(args)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2


def official_layout(checkpoint: Path, model_layout: str | None) -> dict:
    """The keypoint_layout override for an official .bin (none for our checkpoint folders)."""
    if Path(checkpoint).is_dir():
        if model_layout:
            raise ValueError("--model-layout applies to official .bin files only; a checkpoint folder "
                             "stores its keypoint layout in config.yaml")
        return {}
    if model_layout is None and "in_the_wild" in Path(checkpoint).name:
        model_layout = "coco"
        print(f"note: {Path(checkpoint).name} is taken as D3DP's in-the-wild model, trained on COCO-ordered "
              "keypoints; pass --model-layout h36m if it is not")
    return {"keypoint_layout": model_layout} if model_layout and model_layout != "h36m" else {}


def run(args: argparse.Namespace) -> int:
    import torch

    from d3dp_ktp.checkpoints import load_checkpoint
    from d3dp_ktp.inference import pipeline, visualize
    from d3dp_ktp.inference.io import read_keypoints

    check_sampling_flags(args)
    demo = args.input is None
    checkpoint, input_path = resolve_paths(args)
    if args.checkpoint is None and not demo:
        print(f"note: no --checkpoint given, using the demo checkpoint {checkpoint}")
    out_dir = Path(args.out) if args.out else DEMO_OUT if demo else Path("outputs") / Path(input_path).stem
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cfg = pipeline.LiftConfig(batch_size=args.batch_size, stride=args.stride, agg=args.agg, focal=args.focal,
                              save_hypotheses=args.save_hypotheses)
    device = pipeline.resolve_device(args.device)
    kf = read_keypoints(input_path, video=args.video)
    model, _ = load_checkpoint(checkpoint, map_location=device, **official_layout(checkpoint, args.model_layout))
    model.to(device)  # official .bin files load on the CPU
    if not hasattr(model, "sample"):
        raise ValueError(f"{checkpoint} is a deterministic lifter, not a D3DP diffusion model; sample.py needs "
                         "a checkpoint trained with model.diffusion: true")
    cfg = dataclasses.replace(cfg, sampling=sampling_for(model, args))  # the checkpoint's + flags
    start = time.perf_counter()
    result, inp = pipeline.lift_keypoints(model, kf, cfg, args.layout, args.width, args.height, args.min_score, device)
    seconds = time.perf_counter() - start
    settings = pipeline.result_settings(cfg, inp, result, input=str(input_path), checkpoint=str(checkpoint),
                                        device=str(device), input_layout=args.layout or kf.layout)
    names = model.skeleton.joint_names
    written = pipeline.save_result(out_dir, result, inp, settings, names)
    written.append(visualize.render_preview(out_dir / "preview.png", inp.pixels, model.keypoint_skeleton,
                                            result.poses_3d, model.skeleton, inp.width, inp.height))
    if not args.no_video:
        written += visualize.render_animation(out_dir, inp.pixels, model.keypoint_skeleton, result.poses_3d,
                                              model.skeleton, inp.width, inp.height)
    report(result, inp, kf, cfg, seconds, written, model.skeleton.root)
    return 0


def resolve_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(checkpoint, input): the given ones, else the demo's; a missing file names what to pass."""
    demo_checkpoint, demo_input = demo_paths()
    input_path = Path(args.input) if args.input else demo_input
    checkpoint = Path(args.checkpoint) if args.checkpoint else demo_checkpoint
    if args.input is None and not demo_input.exists():
        raise FileNotFoundError(f"the built-in demo input {demo_input} is not in this checkout; pass --input FILE "
                                "(and --checkpoint PATH)")
    if args.checkpoint is None and not demo_checkpoint.exists():
        raise FileNotFoundError(f"the built-in demo checkpoint {demo_checkpoint} is not in this checkout; pass "
                                "--checkpoint PATH (a train.py checkpoint folder or an official .bin)")
    return checkpoint, input_path


def report(result, inp, kf, cfg, seconds: float, written: list[Path], root: int) -> None:
    from d3dp_ktp.inference.pipeline import mpjpe_mm

    s = cfg.sampling
    print(f"lifted {inp.num_frames} frames ({result.num_windows} window(s) of T={result.window}, "
          f"H={s.num_hypotheses} hypotheses, K={s.num_steps} steps, {cfg.agg}) in {seconds:.1f} s")
    for path in written:
        print(f"wrote {path}")
    if "poses_3d_gt" in kf.extras:
        print(f"MPJPE vs ground truth in {kf.path.name}: {mpjpe_mm(result.poses_3d, kf.extras['poses_3d_gt'], root):.1f} mm")


if __name__ == "__main__":
    sys.exit(main())
