#!/usr/bin/env python
"""Evaluate a D3DP checkpoint on MPI-INF-3DHP (docs/method.md §7): PCK@150mm, AUC and MPJPE per step k.

    python eval/mpi_inf_3dhp.py --checkpoint checkpoint/best_epoch_3dhp.bin --data-dir data \\
        [--annot-mat-dir mpi_inf_3dhp_test_set] -H 20 -K 10 --out outputs/eval_3dhp

Reads D3DP's data_test_3dhp_ori.npz from --data-dir, or the official TS1..TS6/annot_data.mat
from --annot-mat-dir (needed for the per-activity table). PCK/AUC follow the MATLAB test_util
exactly (14 joints, strict <, thresholds 0:5:150 mm) on the valid frames of the stitched
sequences; MPJPE averages all 17 joints. Rows: TS1..TS6, their unweighted mean (D3DP README),
the pooled 'All' row and the 7 activities. J-Agg compares reprojections in pixels with D3DP's
intrinsics (official: GT pelvis trajectory). Official batch size is 2 windows.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from d3dp_ktp.data.mpi_inf_3dhp import SUBJECTS_TEST, load_mpi_inf_3dhp  # noqa: E402
from d3dp_ktp.evaluation.cli import DatasetCLI, check_data_dir, main  # noqa: E402


def load(args):
    root = check_data_dir(args)
    if args.annot_mat_dir and not Path(args.annot_mat_dir).is_dir():
        raise FileNotFoundError(f"--annot-mat-dir {args.annot_mat_dir} does not exist (the official "
                                "mpi_inf_3dhp_test_set folder holding TS1..TS6/annot_data.mat)")
    return load_mpi_inf_3dhp(root, args.subjects.split(","), args.actions, args.annot_mat_dir)


def add_arguments(parser):
    parser.add_argument("--annot-mat-dir", default="",
                        help="official mpi_inf_3dhp_test_set folder (TS*/annot_data.mat); '' = use the npz")


DATASET = DatasetCLI(name="mpi_inf_3dhp", description=__doc__, subjects=SUBJECTS_TEST, load=load, batch_size=2,
                  load_official_kwargs={"layout": "mpi_inf_3dhp"}, add_arguments=add_arguments)

if __name__ == "__main__":
    sys.exit(main(DATASET))
