#!/usr/bin/env python
"""Evaluate a D3DP checkpoint on a custom dataset (our npz format, e.g. from the mocap tool).

    python eval/custom.py --checkpoint runs/cmu_small_cpu/best --data-dir data/cmu --name cmu \
        --keypoints noisy --subjects cmu07,cmu61 -H 5 -K 5 --mode both

Reads data_3d_<name>.npz and data_2d_<name>_<keypoints>.npz (d3dp_ktp/data/custom.py). The cameras
in the file give JPMA its intrinsics, so all four aggregations are reported, per action group.
Outputs are named after the dataset: <name>_<mode>.{md,csv,json,png}. Without --subjects every
subject of the file is evaluated except the CMU training subjects of the mocap tool's split
(cmu01-06, cmu60), so the CMU conversion gives cmu07 and cmu61 and any other conversion all of its own.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from d3dp_ktp.data.custom import custom_subjects, load_custom  # noqa: E402
from d3dp_ktp.data.mocap import SPLITS  # noqa: E402
from d3dp_ktp.evaluation.cli import DatasetCLI, check_data_dir, check_keypoints, main  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--name", required=True, help="<name> of data_3d_<name>.npz")


def default_subjects(root, name: str) -> list[str]:
    """Every subject of the file except those the mocap tool's CMU split trains on (docs/mocap.md)."""
    subjects = custom_subjects(root, name)
    held_out = [s for s in subjects if s not in SPLITS["train"]]
    if not held_out:
        raise ValueError(f"every subject of data_3d_{name}.npz ({', '.join(subjects)}) is a training subject of "
                         "the CMU split; pass --subjects to evaluate on them anyway")
    left = sorted(set(subjects) - set(held_out))
    print(f"subjects: {', '.join(held_out)}" + (f" (training subjects left out: {', '.join(left)})" if left else ""))
    return held_out


def load(args):
    root = check_data_dir(args)
    check_keypoints(root, f"data_2d_{args.name}_", args.keypoints)
    subjects = args.subjects.split(",") if args.subjects else default_subjects(root, args.name)
    return load_custom(root, args.name, args.keypoints, subjects, args.actions)


DATASET = DatasetCLI(name="custom", description=__doc__, subjects=(), load=load, batch_size=4,
                  keypoints="gt", add_arguments=add_arguments)

if __name__ == "__main__":
    sys.exit(main(DATASET))
