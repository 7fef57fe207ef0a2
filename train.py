#!/usr/bin/env python
"""Train a D3DP diffusion model (KTPFormer or MixSTE denoiser).

    python train.py configs/cmu_small_cpu.yaml
    python train.py configs/ktpformer_h36m-cpn_243f_h20k10.yaml data.root=/data/h36m train.output_dir=runs/ktp
    accelerate launch --num_processes 2 train.py CONFIG ...     # several processes, no code change
    accelerate launch --multi_gpu --num_processes 2 train.py CONFIG train.cpu=true   # 2 CPU processes (gloo)

(On CPU, ``accelerate launch --cpu --num_processes 2`` starts a single process unless mpirun is set up.)

Overrides are section.key=value (sections: model, diffusion, data, train, eval). Re-running with
--resume continues an interrupted run exactly from <train.output_dir>/state. Ctrl-C once stops after
the current optimizer step and saves; twice stops at once and keeps the last completed save.
"""
from __future__ import annotations

import argparse
import sys

from d3dp_ktp.experiment import load_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML file of overrides (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, applied after the file")
    parser.add_argument("--resume", action="store_true", help="continue from <train.output_dir>/state if present")
    args = parser.parse_args(argv)
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config:  # only overrides were given
        config, overrides = None, [config] + overrides
    try:
        cfg = load_experiment(config, overrides)
        from d3dp_ktp.training.trainer import Trainer, TrainingDiverged
        trainer = Trainer(cfg, resume=args.resume)
        state = trainer.fit()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return 3
    if not trainer.accelerator.is_main_process:
        return 0
    if trainer.interrupts.requested:
        print(f"interrupted after epoch {state.epoch} step {state.global_step}; state saved in "
              f"{cfg.train.output_dir}: add --resume to continue exactly", file=sys.stderr)
        return 130
    print(f"done: {state.epoch} epochs, {state.global_step} steps; checkpoints in {cfg.train.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
