#!/usr/bin/env python
"""Lift 2D human keypoints (pixels, from the common 2D detectors) to 3D poses with a D3DP diffusion model.

With no arguments this runs the built-in demo: the small checkpoint in assets/demo/checkpoint/ lifts
assets/demo/demo_input.npz, writes outputs/demo/ and prints the error against the demo's 3D ground truth.

examples:
  python sample.py
  python sample.py --input alphapose-results.json --width 1920 --height 1080 --checkpoint runs/ktp/best
  python sample.py --input openpose_json/ --width 1280 --height 720 --list-people
  python sample.py --input clip.npz --checkpoint in_the_wild_best_epoch.bin -H 20 -K 10 --save-hypotheses
  python sample.py --input detections.json --layout coco --video clip.mp4 --bvh --world --smooth

input formats (recognised from the content; pixels, origin top-left; details and the keypoint mapping
to the 17 Human3.6M joints in docs/inputs.md):
  AlphaPose     alphapose-results.json, COCO-17 / Halpe-26 / Halpe-136, several people, idx track ids
                  python scripts/demo_inference.py --video clip.mp4 --outdir out [--pose_track]
  OpenPose      a --write_json folder of *_keypoints.json (or one file), BODY_25 or COCO-18
                  openpose.bin --video clip.mp4 --write_json out/ --display 0 --render_pose 0
  MMPose        the inferencer's prediction JSON (per frame: instances with keypoints, keypoint_scores)
                  python demo/inferencer_demo.py clip.mp4 --pose2d human --pred-out-dir out
  rtmlib        write per frame {"frame_id": i, "instances": [{"keypoints": k, "keypoint_scores": s}]}
  Detectron2    the npz of VideoPose3D's inference/infer_video_d2.py (boxes, keypoints, metadata)
                  python infer_video_d2.py --cfg COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x.yaml ...
  VideoPose3D   the custom npz of data/prepare_data_2d_custom.py; our mocap data_2d_<name>_<kp>.npz
                  (several sequences: --sequence NAME)
  ours          .npz 'keypoints' (frames, 17, 2|3) [+ 'width', 'height', 'layout', 'fps'], .npy (frames, 17, 2|3),
                  .json list of frames or {"frames": [...], "width": W, "height": H, "layout": "coco"},
                  .csv one row per frame x0,y0,(s0),x1,...
  A third value per keypoint is its detection confidence. Missing keypoints (NaN, confidence <= 0 or
  below --min-score, frames without the person) are filled by interpolation over time. With several
  people the main one (longest, largest track) is lifted: --list-people, --person ID, --all-people.
  Keypoints that do not look like their layout (COCO read as H36M or the reverse) are refused.

outputs (in --out; every file is described in docs/outputs.md): poses_3d.npz and poses_3d.json with
'poses_3d' (frames, 17, 3) in metres, root-relative camera space (x right, y down, z forward), one
length per bone unless --raw, 'uncertainty' (frames, 17) in metres, 'root_trajectory', the cleaned 2D
and the settings; poses_3d.csv; preview.png; video_3d.mp4 (with --video: every video frame beside the
3D) or animation.mp4 + animation.gif; animation.bvh with --bvh.

A model sees T frames at a time (fixed by the checkpoint); longer inputs are cut into overlapping
windows that are cross-faded, shorter ones are padded. A busy CPU may run faster with --threads 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

from d3dp_ktp.inference.layouts import LAYOUTS  # numpy only: keeps the argument checks fast
from d3dp_ktp.sampling import add_sampling_arguments, check_sampling_flags, sampling_for

REPO = Path(__file__).resolve().parent
DEMO_DIR_ENV = "D3DP_KTP_DEMO_DIR"   # overrides assets/demo (used by the tests)
DEMO_OUT = Path("outputs") / "demo"
INPUT_LAYOUTS = tuple(LAYOUTS)


def demo_paths() -> tuple[Path, Path]:
    """(checkpoint folder, input file) of the built-in demo."""
    root = Path(os.environ.get(DEMO_DIR_ENV) or REPO / "assets" / "demo")
    return root / "checkpoint", root / "demo_input.npz"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--input", metavar="FILE", help="2D keypoints: a detector's output file or OpenPose/MMPose folder "
                    "(formats below, recognised from the content); default: the demo input")
    io.add_argument("--sequence", metavar="NAME", help="which sequence of an npz holding several (VideoPose3D custom "
                    "npz, our mocap data_2d_*.npz: 'subject/action[/camera]'); the error lists them")
    io.add_argument("--video", metavar="FILE", help="the source video: its size and frame rate are used, and "
                                                    "video_3d.mp4 shows every frame beside the 3D")
    io.add_argument("--layout", metavar="NAME", help=f"keypoint order in the file, overrides the file: {', '.join(INPUT_LAYOUTS)} "
                    "(default: what the file or its format says; 17 unlabelled keypoints are recognised as coco or h36m)")
    io.add_argument("--width", type=float, metavar="PX", help="image width in pixels (needed unless the file states it)")
    io.add_argument("--height", type=float, metavar="PX", help="image height in pixels (needed unless the file states it)")
    io.add_argument("--min-score", type=float, default=0.0, metavar="S", help="keypoints with a lower confidence count as missing (default 0)")
    io.add_argument("--person", type=int, metavar="ID", help="lift this person (a track id from --list-people; default: "
                    "the main person, the longest and largest track)")
    io.add_argument("--list-people", action="store_true", help="print each person's track (id, first/last frame, "
                    "frames present, mean box height) and exit")
    io.add_argument("--all-people", action="store_true", help="lift every person present in 10 frames or more, each "
                    "into OUT/person_<id>/")
    io.add_argument("--force", action="store_true", help="lift keypoints that do not look like their --layout (the "
                    "check that stops mislabelled COCO/H36M input)")
    io.add_argument("--out", metavar="DIR", help="output folder (default: outputs/demo, or outputs/<input name>)")
    io.add_argument("--save-hypotheses", action="store_true", help="also save every hypothesis of every step, (K, H, frames, 17, 3)")
    io.add_argument("--no-video", action="store_true", help="skip the animation and video_3d.mp4 (the PNG preview is still written)")
    o = p.add_argument_group("post-processing and exports (docs/outputs.md)")
    o.add_argument("--fps", type=float, metavar="FPS", help="frame rate of the input (default: the video's, else the file's, else 25)")
    o.add_argument("--raw", action="store_true", help="keep the unconstrained JPMA output (default: one length per bone for the whole sequence)")
    o.add_argument("--smooth", action="store_true", help="Savitzky-Golay filter over time (0.2 s window, degree 2)")
    o.add_argument("--world", action="store_true", help="also store the poses in a gravity-aligned frame with the floor at y=0 (found from the feet); the BVH and CSV use it")
    o.add_argument("--bvh", action="store_true", help="write animation.bvh (joints named as joint_names, Y up, centimetres; root-relative like poses_3d, with the root trajectory under --world)")
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
    r.add_argument("--quiet", action="store_true", help="no progress bar and no notes (warnings and errors still show)")
    r.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="onnx: run the network in ONNX Runtime on the CPU (faster on CPUs; exported once per "
                        "checkpoint; needs: pip install onnx onnxruntime) (default torch)")
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
        except KeyboardInterrupt:
            # Every file is written to a temporary name and renamed when complete, so nothing is half-written.
            print("interrupted (Ctrl-C): stopped; files written so far are complete, no file is half-written",
                  file=sys.stderr)
            return 130


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
    plan = prepare_input(args)       # every check that needs no torch: a mistake is reported in about a second
    if plan is None:
        return 0                     # --list-people
    import torch

    from d3dp_ktp.checkpoints import load_checkpoint
    from d3dp_ktp.inference import pipeline

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = pipeline.LiftConfig(batch_size=args.batch_size, stride=args.stride, agg=args.agg, focal=args.focal,
                              save_hypotheses=args.save_hypotheses)
    device = pipeline.resolve_device("cpu" if args.backend == "onnx" and args.device == "auto" else args.device)
    checkpoint = plan.checkpoint
    model, _ = load_checkpoint(checkpoint, map_location=device, **plan.model_layout)
    model.to(device)  # official .bin files load on the CPU
    if not hasattr(model, "sample"):
        raise ValueError(f"{checkpoint} is a deterministic lifter, not a D3DP diffusion model; sample.py needs "
                         "a checkpoint trained with model.diffusion: true")
    cfg = dataclasses.replace(cfg, sampling=sampling_for(model, args))  # the checkpoint's + flags
    if cfg.sampling.dtype != "fp32" and args.backend == "onnx":
        raise ValueError(f"{checkpoint} samples in {cfg.sampling.dtype}; --backend onnx runs fp32: pass --dtype fp32")
    if args.backend == "onnx":
        from d3dp_ktp.inference.onnx_backend import onnx_model  # onnxruntime: an optional dependency
        model = onnx_model(model, checkpoint)
    for person in plan.people:
        lift_person(args, plan, person, model, cfg, device)
    return 0


def prepare_input(args: argparse.Namespace):
    """Check every argument, the input and the output folder, and read the people to lift (no torch).
    Returns None after printing the --list-people table."""
    from d3dp_ktp.inference.inputs import InputOptions, InputPlan, TrackingConfig, load_input, people_table
    from d3dp_ktp.inference.video import probe_video

    begin = time.perf_counter()
    check_args(args)
    demo = args.input is None
    checkpoint, input_path = resolve_paths(args)
    if args.checkpoint is not None and not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    out_dir = Path(args.out) if args.out else DEMO_OUT if demo else Path("outputs") / Path(input_path).stem
    check_out_dir(out_dir)
    model_layout = official_layout(checkpoint, args.model_layout)
    video = probe_video(args.video) if args.video else None
    width, height = args.width, args.height
    if video is not None and width is None and height is None:
        width, height = video.width, video.height  # the video's size is the keypoints' image size
    opts = InputOptions(sequence=args.sequence, layout=args.layout, width=width, height=height,
                        min_score=args.min_score, person=args.person, all_people=args.all_people, force=args.force,
                        tracking=TrackingConfig())
    det, tracks, people = load_input(input_path, opts)
    if args.list_people:
        print(people_table(det, tracks))
        return None
    if args.checkpoint is None and not demo:
        note(args, f"no --checkpoint given, using the demo checkpoint {checkpoint}")
    for person in people:
        for text in person.notes:
            note(args, text)
    return InputPlan(checkpoint, input_path, out_dir, model_layout, people, video, begin)


def note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"note: {text}")


def check_args(args: argparse.Namespace) -> None:
    """Numbers and names the model would only reject after loading (same messages)."""
    from d3dp_ktp.inference.layouts import get_layout

    check_sampling_flags(args)
    checks = [
        (args.batch_size >= 0, f"--batch-size must be >= 0 windows (0 = chosen from memory), got {args.batch_size}"),
        (args.stride is None or args.stride >= 1, f"--stride must be >= 1 frame, got {args.stride}"),
        (args.threads is None or args.threads >= 1, f"--threads must be >= 1, got {args.threads}"),
        (args.focal is None or args.focal > 0, f"focal length must be positive pixels, got {args.focal}"),
        (args.width is None or args.width > 0, f"--width must be positive pixels, got {args.width}"),
        (args.height is None or args.height > 0, f"--height must be positive pixels, got {args.height}"),
        (args.min_score >= 0, f"--min-score must be >= 0, got {args.min_score}"),
        (not (args.person is not None and args.all_people), "--person and --all-people exclude each other"),
        (args.device in ("auto", "cpu") or args.device.startswith("cuda"),
         f"unknown device '{args.device}'; use auto, cpu or cuda"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if args.layout is not None:
        get_layout(args.layout)
    if args.backend == "onnx":
        missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"--backend onnx needs {' and '.join(missing)}, which is not installed; install it "
                             'with: pip install "onnx>=1.14" "onnxruntime>=1.16" (or pip install .[onnx])')
        if args.dtype not in (None, "fp32") or args.device.startswith("cuda"):
            raise ValueError("--backend onnx runs fp32 on the CPU; drop --dtype/--device cuda, or use --backend torch")


def check_out_dir(out_dir: Path) -> None:
    """The output folder must be a folder (or creatable) and writable, checked before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output folder {out_dir} exists and is a file; pass --out with a folder (created if "
                         "needed)")
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot create the output folder {out_dir}: {probe} is a file; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"the output folder {out_dir} is not writable ({probe}: permission denied); choose "
                         "another --out")


def lift_person(args: argparse.Namespace, plan, person, model, cfg, device) -> None:
    """Lift one person and write their outputs (into OUT/person_<id>/ with --all-people)."""
    from tqdm import tqdm

    from d3dp_ktp.data.windows import window_starts
    from d3dp_ktp.factory import window_length
    from d3dp_ktp.inference import outputs, pipeline

    kf, input_path, checkpoint = person.keypoints, plan.input_path, plan.checkpoint
    out_dir = plan.out_dir / person.name if person.name else plan.out_dir
    T = window_length(model)
    windows = len(window_starts(len(kf.keypoints), T, cfg.effective_stride(T)))
    bar = tqdm(total=windows, unit="window", desc=f"lifting {person.name or kf.path.name}", disable=args.quiet,
               leave=False, file=sys.stderr)
    start = time.perf_counter()
    with bar:
        result, inp = pipeline.lift_keypoints(model, kf, cfg, args.layout, kf.width, kf.height, args.min_score,
                                              device, progress=bar.update)
    seconds = time.perf_counter() - start
    settings = pipeline.result_settings(cfg, inp, result, input=str(input_path), checkpoint=str(checkpoint),
                                        device=str(device), input_layout=args.layout or kf.layout,
                                        backend=args.backend)
    settings.update(person_settings(person))
    fps, fps_source = outputs.resolve_fps(plan.video and plan.video.fps, kf.extras.get("fps"), args.fps)
    out_cfg = outputs.OutputConfig(body=outputs.BodyConfig(consistent=not args.raw, smooth=args.smooth, world=args.world),
                                   write_bvh=args.bvh, animation=not args.no_video, animation_mp4=args.input is not None)
    written, summary, poses = outputs.write_outputs(out_dir, result, inp, {**settings, "fps_source": fps_source}, model,
                                                    out_cfg, fps, plan.video)
    report(result, inp, kf, cfg, seconds, written, model.skeleton.root, poses)
    print(f"frame rate: {float(fps):.3f} fps ({fps_source})")
    for line in summary:
        print(line)
    print(f"total time {time.perf_counter() - plan.begin:.1f} s")


def person_settings(person) -> dict:
    """Which person of the file was lifted and where they are missing (interpolated), for the settings."""
    out = {"person": None if person.track is None else person.track.id,
           "person_missing_frames": [list(r) for r in person.missing]}
    for key in ("sequence", "first_frame"):
        if key in person.keypoints.extras:
            out[key] = person.keypoints.extras[key]
    return out


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


def report(result, inp, kf, cfg, seconds: float, written: list[Path], root: int, poses) -> None:
    from d3dp_ktp.inference.pipeline import mpjpe_mm

    s = cfg.sampling
    print(f"lifted {inp.num_frames} frames ({result.num_windows} window(s) of T={result.window}, "
          f"H={s.num_hypotheses} hypotheses, K={s.num_steps} steps, {cfg.agg}) in {seconds:.1f} s")
    for path in written:
        print(f"wrote {path}")
    if "poses_3d_gt" in kf.extras:
        gt = kf.extras["poses_3d_gt"]
        print(f"MPJPE vs ground truth in {kf.path.name}: {mpjpe_mm(poses, gt, root):.1f} mm "
              f"(raw {cfg.agg} output: {mpjpe_mm(result.poses_3d, gt, root):.1f} mm)")


if __name__ == "__main__":
    sys.exit(main())
