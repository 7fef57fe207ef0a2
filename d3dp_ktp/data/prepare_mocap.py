"""Convert BVH folders (any rig) into VideoPose3D-style npz files (3D world poses, cameras, 2D keypoints).

Example::

    python -m d3dp_ktp.data.prepare_mocap --bvh-dir CMU/cmu_iclone \\
        --bvh-dir CMU/cmu_salsa --out data/cmu --name cmu
    python -m d3dp_ktp.data.prepare_mocap --list-joints take.bvh        # hierarchy + automatic guess
    python -m d3dp_ktp.data.prepare_mocap --bvh-dir mine --rig-map my_rig.yaml --out data/mine --name mine

writes ``data_3d_cmu.npz``, ``data_2d_cmu_gt.npz`` and (with ``--noise-px`` > 0) ``data_2d_cmu_noisy.npz``.
Rigs: the two CMU rigs are built in, others are mapped from joint names (d3dp_ktp/data/rigs.py) or
by ``--rig-map``. Subjects: CMU names ``SSS_TT.bvh``, else the file's folder name (``--subject``
or ``--subjects-csv`` override). The data was obtained from mocap.cs.cmu.edu (created with funding
from NSF EIA-0196217).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from d3dp_ktp.data.augment import bone_lengths, stature
from d3dp_ktp.data.bvh import load_bvh
from d3dp_ktp.data.mocap import (SPLITS, MocapConfig, MocapDataset, build_dataset, choose_rig, find_bvh_files,
                                 inside_image_fraction, read_subject_csv, sanity_stats, write_dataset)
from d3dp_ktp.data.rigs import UNITS, describe_hierarchy, load_rig_map, rig_map_to_yaml


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bvh-dir", action="append", help="folder of .bvh files, subfolders included (repeatable)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--list-joints", metavar="FILE", help="print FILE's joint hierarchy with the automatic "
                        "mapping and a rig map to start from, then exit")
    parser.add_argument("--rig-map", metavar="YAML", help="rig map for every file (format: d3dp_ktp/data/rigs.py)")
    parser.add_argument("--no-builtin-rigs", action="store_true",
                        help="map the CMU rigs by joint names too, as any other rig (a check of the heuristics)")
    parser.add_argument("--units", choices=sorted(UNITS), help="file units for every file (default: the rig "
                        "map's, else detected from the body's height)")
    parser.add_argument("--subject", help="subject name for every file (CMU trial names still name the action)")
    parser.add_argument("--subjects-csv", metavar="CSV", help="rows 'file,subject[,action]' naming each file")
    parser.add_argument("--name", default="cmu", help="dataset name used in the file names")
    parser.add_argument("--fps", type=float, default=MocapConfig.fps)
    parser.add_argument("--cameras", type=int, default=MocapConfig.num_cameras)
    parser.add_argument("--noise-px", type=float, default=MocapConfig.noise_px,
                        help="std of the detector-like 2D noise in pixels; 0 writes no noisy file")
    parser.add_argument("--outlier-prob", type=float, default=MocapConfig.outlier_prob)
    parser.add_argument("--seed", type=int, default=MocapConfig.seed)
    parser.add_argument("--max-seconds-per-file", type=float, default=None)
    args = parser.parse_args(argv)
    if args.list_joints is None and (not args.bvh_dir or not args.out):
        parser.error("--bvh-dir and --out are required (or --list-joints FILE)")
    return args


def summary(dataset: MocapDataset, paths) -> str:
    """Per file its rig, units, height and thigh; per subject trials, frames and plausibility numbers;
    then the files written.

    height: estimated stature (m, ``augment.stature``); thigh: median length (m); upright/L-R ok: see ``sanity_stats``; in img: share of 2D points inside
    the images; fixed: native-rate frames repaired as glitches."""
    split_of = {s: k for k, subjects in SPLITS.items() for s in subjects}
    lines = list(dataset.trial_info)
    lines += [f"{'subject':8s} {'split':9s} {'trials':>6s} {'frames':>7s} {'minutes':>7s} {'height':>6s} {'thigh':>6s} "
              f"{'upright':>7s} {'L/R ok':>6s} {'in img':>6s} {'fixed':>5s}"]
    for subject, actions in dataset.positions_3d.items():
        poses = np.concatenate(list(actions.values()))
        stats = sanity_stats(poses)
        gt = dataset.positions_2d["gt"][subject]
        inside = np.mean([inside_image_fraction(kp, cam) for views in gt.values()
                          for kp, cam in zip(views, dataset.cameras[subject])])
        lines.append(f"{subject:8s} {split_of.get(subject, '-'):9s} {len(actions):6d} {len(poses):7d} "
                     f"{len(poses) / dataset.fps / 60:7.2f} {stature(bone_lengths(poses)):6.2f} "
                     f"{stats['thigh']:6.3f} {stats['upright']:7.1%} "
                     f"{stats['left_is_left']:6.1%} {inside:6.1%} {dataset.repaired_frames[subject]:5d}")
    total = sum(len(x) for actions in dataset.positions_3d.values() for x in actions.values())
    lines.append(f"total: {len(dataset.positions_3d)} subjects, {total} frames at {dataset.fps:g} fps, "
                 f"{len(next(iter(dataset.cameras.values())))} cameras per subject")
    lines += [f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB)" for p in paths]
    return "\n".join(lines)


def list_joints(path) -> str:
    """The hierarchy of one BVH file with the automatic mapping, then that mapping as a rig map."""
    motion = load_bvh(path)
    try:
        rig = choose_rig(motion, str(path))
    except ValueError as err:
        return describe_hierarchy(motion) + f"\n\nno automatic mapping: {err}"
    return (f"rig: {rig.name}\n" + describe_hierarchy(motion, rig) + "\n\n# rig map of this guess (edit, save and pass --rig-map):\n"
            + rig_map_to_yaml(rig))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.list_joints:
            print(list_joints(args.list_joints))
            return 0
        cfg = MocapConfig(fps=args.fps, num_cameras=args.cameras, noise_px=args.noise_px,
                          outlier_prob=args.outlier_prob, seed=args.seed,
                          max_seconds_per_file=args.max_seconds_per_file, units=args.units)
        rig = load_rig_map(args.rig_map) if args.rig_map else None
        subject_map = read_subject_csv(args.subjects_csv) if args.subjects_csv else None
        dataset = build_dataset(find_bvh_files(args.bvh_dir), cfg, rig, args.subject, subject_map,
                                not args.no_builtin_rigs)
        paths = write_dataset(dataset, Path(args.out), args.name)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(dataset, paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
