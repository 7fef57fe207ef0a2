"""Convert an official KTPFormer / D3DP ``.bin`` checkpoint into our checkpoint folder.

    python -m d3dp_ktp.convert checkpoint/best_epoch.bin runs/d3dp_official [--num-heads 8] [--layout h36m]

The .bin is read without executing pickled code (docs/method.md §6.8); the architecture is inferred from the
tensor shapes, and what shapes cannot tell (heads, skeleton) comes from the options.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoints import CONFIG_NAME, WEIGHTS_NAME, save_checkpoint
from .diffusion import D3DP, D3DPScheduler
from .official import load_official


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m d3dp_ktp.convert", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="official checkpoint (.bin) from KTPFormer or D3DP")
    parser.add_argument("output", type=Path, help="checkpoint folder to write (replaced atomically)")
    parser.add_argument("--num-heads", type=int, default=None,
                        help="attention heads (not stored in the file; the official default is 8)")
    parser.add_argument("--layout", default=None,
                        help="skeleton layout (h36m, humaneva15, mpi_inf_3dhp); inferred from the joint count")
    parser.add_argument("--keypoint-layout", default=None,
                        help="order of the 2D input the network was trained on, when not the skeleton's: coco for "
                             "D3DP's in_the_wild_best_epoch.bin (the file cannot tell)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {k: v for k, v in (("num_heads", args.num_heads), ("layout", args.layout),
                                   ("keypoint_layout", args.keypoint_layout)) if v is not None}
    try:
        model = load_official(args.input, **overrides)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    denoiser = model.pose_estimator if isinstance(model, D3DP) else model
    path = save_checkpoint(model, args.output, meta={"converted_from": str(args.input)})
    kind = "D3DP wrapper" if isinstance(model, D3DP) else "lifter"
    cfg = denoiser.cfg
    print(f"read {args.input}: {kind}, arch={cfg.arch}, T={cfg.num_frames}, J={cfg.num_joints}, "
          f"C={cfg.channels}, depth={cfg.depth}, heads={cfg.num_heads}, keypoints={cfg.keypoint_layout or cfg.layout}")
    written = [WEIGHTS_NAME, CONFIG_NAME] + ([D3DPScheduler.config_name] if isinstance(model, D3DP) else [])
    print(f"wrote {path}: {', '.join(written)}")


if __name__ == "__main__":
    main()
