#!/usr/bin/env python
"""Fine-tune a checkpoint (by default the bundled demo model) with a config's recipe: the recipe of
the current demo model, whose first 80 CPU-minutes came from ``configs/cmu_small_cpu.yaml``.

    python assets/demo/finetune.py configs/cmu_small_cpu.yaml data.augment.body=true train.lr=3e-4 ...

Same arguments as ``train.py`` plus ``--init CHECKPOINT``: the weights are loaded into the freshly
built model before the first step (optimizer and learning-rate schedule start anew).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from d3dp_ktp.checkpoints import load_checkpoint
from d3dp_ktp.experiment import load_experiment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--init", default=str(Path(__file__).resolve().parent / "checkpoint"),
                        help="checkpoint folder whose weights start the run")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <train.output_dir>/state (weights, optimizer, data order) instead")
    args = parser.parse_args(argv)
    cfg = load_experiment(args.config, args.overrides)
    from d3dp_ktp.training.trainer import Trainer
    resume = args.resume and (Path(cfg.train.output_dir) / "state").is_dir()
    trainer = Trainer(cfg, resume=resume)
    if not resume:
        start, _ = load_checkpoint(args.init)
        with torch.no_grad():
            missing = trainer.unwrapped.load_state_dict(start.state_dict(), strict=True)
        print(f"initialised from {args.init} ({missing})")
    state = trainer.fit()
    print(f"done: {state.epoch} epochs, {state.global_step} steps, best {state.best:.1f} mm; "
          f"checkpoints in {cfg.train.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
