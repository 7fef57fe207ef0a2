#!/usr/bin/env python
"""Evaluate a D3DP checkpoint on a custom dataset (our npz format, e.g. from the mocap tool).

    python eval/custom.py --checkpoint runs/cmu_small_cpu/best --data-dir data/cmu --name cmu \
        --keypoints noisy --subjects cmu07,cmu61 -H 5 -K 5 --mode both

Reads data_3d_<name>.npz and data_2d_<name>_<keypoints>.npz (d3dp_ktp/data/custom.py). The cameras
in the file give JPMA its intrinsics, so all four aggregations are reported, per action group.
Outputs are named after the dataset: <name>_<mode>.{md,csv,json,png}.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from d3dp_ktp.data.custom import load_custom  # noqa: E402
from d3dp_ktp.evaluation.cli import DatasetCLI, check_data_dir, check_keypoints, main  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--name", required=True, help="<name> of data_3d_<name>.npz")


def load(args):
    root = check_data_dir(args)
    check_keypoints(root, f"data_2d_{args.name}_", args.keypoints)
    return load_custom(root, args.name, args.keypoints, args.subjects.split(","), args.actions)


DATASET = DatasetCLI(name="custom", description=__doc__, subjects=("cmu07", "cmu61"), load=load, batch_size=4,
                  keypoints="gt", add_arguments=add_arguments)

if __name__ == "__main__":
    sys.exit(main(DATASET))
