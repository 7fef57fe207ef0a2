#!/usr/bin/env python
"""Evaluate a D3DP checkpoint on Human3.6M (docs/method.md §5, §6): J-Best, P-Best, P-Agg, J-Agg per DDIM step.

    python eval/h36m.py --checkpoint checkpoint/best_epoch.bin --data-dir data \\
        --keypoints cpn_ft_h36m_dbb -H 20 -K 10 --mode both --out outputs/eval_h36m

Reads data_3d_h36m.npz and data_2d_h36m_<keypoints>.npz (VideoPose3D format) from --data-dir.
--checkpoint is our checkpoint folder or an official D3DP .bin. Writes h36m_<mode>.{md,csv,json}
and PNG plots to --out. 'official' reproduces the published protocol (GT root trajectory in
JPMA, P-Best per batch of --batch-size windows, overlapping/padded frames counted twice); 'clean'
counts every frame once, picks P-Best per window and estimates the JPMA root from 2D.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from d3dp_ktp.data.h36m import SUBJECTS_TEST, load_h36m  # noqa: E402
from d3dp_ktp.evaluation.cli import DatasetCLI, check_data_dir, check_keypoints, main  # noqa: E402


def load(args):
    root = check_data_dir(args)
    check_keypoints(root, "data_2d_h36m_", args.keypoints)
    return load_h36m(root, args.keypoints, args.subjects.split(","), args.actions)


DATASET = DatasetCLI(name="h36m", description=__doc__, subjects=SUBJECTS_TEST, load=load, batch_size=4,
                  keypoints="cpn_ft_h36m_dbb")

if __name__ == "__main__":
    sys.exit(main(DATASET))
