#!/usr/bin/env python
"""Evaluate a D3DP checkpoint on HumanEva-I (docs/method.md §8): per subject and action group (Walking, Jog).

    python eval/humaneva.py --checkpoint runs/humaneva/best --data-dir data --keypoints gt -H 20 -K 10

Reads data_3d_humaneva15.npz and data_2d_humaneva15_<keypoints>.npz (VideoPose3D format); test
subjects Validate/S1..S3, actions 'Walk,Jog' (prefix match), reported per subject (--by-subject is
on by default). HumanEva has no camera intrinsics, so J-Agg (JPMA) is skipped with a note.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from d3dp_ktp.data.humaneva import SUBJECTS_TEST, load_humaneva  # noqa: E402
from d3dp_ktp.evaluation.cli import DatasetCLI, check_data_dir, check_keypoints, main  # noqa: E402


def load(args):
    root = check_data_dir(args)
    check_keypoints(root, "data_2d_humaneva15_", args.keypoints)
    return load_humaneva(root, args.keypoints, args.subjects.split(","), args.actions)


DATASET = DatasetCLI(name="humaneva", description=__doc__, subjects=SUBJECTS_TEST, load=load, batch_size=4,
                  actions="Walk,Jog", keypoints="gt", by_subject=True)

if __name__ == "__main__":
    sys.exit(main(DATASET))
