"""Convert CMU BVH folders into VideoPose3D-style npz files (3D world poses, cameras, 2D keypoints).

Example::

    python -m d3dp_ktp.data.prepare_mocap --bvh-dir CMU/cmu_iclone \\
        --bvh-dir CMU/cmu_salsa --out data/cmu --name cmu

writes ``data_3d_cmu.npz``, ``data_2d_cmu_gt.npz`` and (with ``--noise-px`` > 0) ``data_2d_cmu_noisy.npz``.
The data was obtained from mocap.cs.cmu.edu (created with funding from NSF EIA-0196217).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from d3dp_ktp.data.mocap import (SPLITS, MocapConfig, MocapDataset, build_dataset, find_bvh_files,
                                 inside_image_fraction, sanity_stats, write_dataset)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bvh-dir", action="append", required=True, help="folder of .bvh files (repeatable)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", default="cmu", help="dataset name used in the file names")
    parser.add_argument("--fps", type=float, default=MocapConfig.fps)
    parser.add_argument("--cameras", type=int, default=MocapConfig.num_cameras)
    parser.add_argument("--noise-px", type=float, default=MocapConfig.noise_px,
                        help="std of the detector-like 2D noise in pixels; 0 writes no noisy file")
    parser.add_argument("--outlier-prob", type=float, default=MocapConfig.outlier_prob)
    parser.add_argument("--seed", type=int, default=MocapConfig.seed)
    parser.add_argument("--max-seconds-per-file", type=float, default=None)
    return parser.parse_args(argv)


def summary(dataset: MocapDataset, paths) -> str:
    """Subjects, trials, frames and plausibility numbers, then the files written.

    thigh: median length (m); upright/L-R ok: see ``sanity_stats``; in img: share of 2D points inside
    the images; fixed: native-rate frames repaired as glitches."""
    split_of = {s: k for k, subjects in SPLITS.items() for s in subjects}
    lines = [f"{'subject':8s} {'split':9s} {'trials':>6s} {'frames':>7s} {'minutes':>7s} {'thigh':>6s} "
             f"{'upright':>7s} {'L/R ok':>6s} {'in img':>6s} {'fixed':>5s}"]
    for subject, actions in dataset.positions_3d.items():
        poses = np.concatenate(list(actions.values()))
        stats = sanity_stats(poses)
        gt = dataset.positions_2d["gt"][subject]
        inside = np.mean([inside_image_fraction(kp, cam) for views in gt.values()
                          for kp, cam in zip(views, dataset.cameras[subject])])
        lines.append(f"{subject:8s} {split_of.get(subject, '-'):9s} {len(actions):6d} {len(poses):7d} "
                     f"{len(poses) / dataset.fps / 60:7.2f} {stats['thigh']:6.3f} {stats['upright']:7.1%} "
                     f"{stats['left_is_left']:6.1%} {inside:6.1%} {dataset.repaired_frames[subject]:5d}")
    total = sum(len(x) for actions in dataset.positions_3d.values() for x in actions.values())
    lines.append(f"total: {len(dataset.positions_3d)} subjects, {total} frames at {dataset.fps:g} fps, "
                 f"{len(next(iter(dataset.cameras.values())))} cameras per subject")
    lines += [f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB)" for p in paths]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = MocapConfig(fps=args.fps, num_cameras=args.cameras, noise_px=args.noise_px,
                      outlier_prob=args.outlier_prob, seed=args.seed,
                      max_seconds_per_file=args.max_seconds_per_file)
    dataset = build_dataset(find_bvh_files(args.bvh_dir), cfg)
    paths = write_dataset(dataset, Path(args.out), args.name)
    print(summary(dataset, paths))


if __name__ == "__main__":
    main()
