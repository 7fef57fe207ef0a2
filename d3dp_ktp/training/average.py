"""Average the weights of several checkpoints of one run (stochastic weight averaging, post hoc).

    python -m d3dp_ktp.training.average runs/x/epoch_6 runs/x/epoch_7 ... --out runs/x/avg

On a small model trained briefly the epoch checkpoints scatter around a good solution; with
body-shape augmentation the scatter shows mostly in the body size each epoch leans to, so a single
epoch's error on unseen bodies swings by several mm (docs/mocap.md). The uniform mean of the weights
of several epochs of the same run sits in the middle and is steadier than any of them. Only
checkpoints of one architecture can be averaged (same model and diffusion sections, same weight
names and shapes); the output keeps the last checkpoint's config sections and lists its sources
under ``meta.averaged``. ``train.ema_decay`` does the same while training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from d3dp_ktp.checkpoints import load_checkpoint, read_config, save_checkpoint


def average_state_dicts(states: list[dict]) -> dict:
    """Mean of floating-point tensors over ``states`` (same keys and shapes); other tensors from the last."""
    if not states:
        raise ValueError("nothing to average: give at least one checkpoint")
    keys = list(states[-1])
    for i, state in enumerate(states):
        if list(state) != keys or any(state[k].shape != states[-1][k].shape for k in keys):
            raise ValueError(f"checkpoint {i + 1} has other weights than the last one (names or shapes differ): "
                             "only checkpoints of one architecture can be averaged")
    return {k: (torch.stack([s[k].double() for s in states]).mean(0).to(states[-1][k].dtype)
                if states[-1][k].is_floating_point() else states[-1][k]) for k in keys}


def average_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """Write the weight average of the checkpoint folders ``paths`` to the new folder ``out``."""
    configs = [read_config(p) for p in paths]
    for path, cfg in zip(paths, configs):
        for section in ("model", "diffusion"):
            if cfg.get(section) != configs[-1].get(section):
                raise ValueError(f"{path}: its '{section}' section differs from {paths[-1]}'s; "
                                 "only checkpoints of one architecture can be averaged")
    models = [load_checkpoint(p)[0] for p in paths]
    model = models[-1]
    model.load_state_dict(average_state_dicts([m.state_dict() for m in models]))
    extra = {k: v for k, v in configs[-1].items() if k not in ("model", "diffusion", "sampling", "meta")}
    return save_checkpoint(model, out, extra, meta={"averaged": [str(p) for p in paths]})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders of one run")
    parser.add_argument("--out", required=True, help="new checkpoint folder for the average")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and not args.force:
            raise ValueError(f"--out {out} exists; pass --force to replace it")
        if out.resolve() in {Path(p).resolve() for p in args.checkpoints}:
            raise ValueError(f"--out {out} is one of the checkpoints being averaged; choose a new folder")
        average_checkpoints(args.checkpoints, out)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: the mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
