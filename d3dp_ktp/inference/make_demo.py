"""Build the embedded demo (``assets/demo``) from a trained checkpoint and a held-out sequence.

    python -m d3dp_ktp.inference.make_demo --checkpoint runs/cmu_small_cpu/best \
        --data-root data/cmu --name cmu --keypoints noisy --subject cmu07 --action 07_05 --camera 0 --frames 150

Writes ``assets/demo/checkpoint/`` (our checkpoint folder, drop-path off) and
``assets/demo/demo_input.npz`` with ``keypoints`` (F, 17, 2) pixels, ``width``, ``height``, ``layout``
``poses_3d_gt`` (F, 17, 3) camera-space metres, root-relative, for the demo's MPJPE, and the
recording's ``fps``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..camera import image_coordinates
from ..checkpoints import load_checkpoint, save_checkpoint
from ..data import load_custom
from ..data.io import save_npz


def demo_sequence(data_root: str, name: str, keypoints: str, subject: str, action: str, camera: int,
                  frames: int, start: int = 0) -> dict:
    """One held-out (subject, action, camera) video cut to ``frames`` frames, in the demo file layout."""
    dataset = load_custom(data_root, name, keypoints, [subject], action)
    videos = [v for v in dataset[subject].get(action, []) if v.camera_index == camera]
    if not videos:
        raise ValueError(f"no video {subject}/{action} camera {camera} in {data_root}")
    video = videos[0]
    sl = slice(start, start + frames)
    pos = video.positions_3d[sl].copy()
    pos[:, dataset.skeleton.root] = 0  # the root column holds the trajectory; the demo wants root-relative
    kps = image_coordinates(video.keypoints_2d[sl], video.res_w, video.res_h)
    return {"keypoints": kps.astype(np.float32), "width": np.int64(video.res_w), "height": np.int64(video.res_h),
            "layout": "h36m", "poses_3d_gt": pos.astype(np.float32),
            "source": f"CMU mocap (mocap.cs.cmu.edu) {subject} {action} camera {camera}, {keypoints} 2D",
            **({"fps": float(dataset.fps)} if dataset.fps else {})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", default="data/cmu")
    parser.add_argument("--name", default="cmu")
    parser.add_argument("--keypoints", default="noisy")
    parser.add_argument("--subject", default="cmu07")
    parser.add_argument("--action", default="07_05")
    parser.add_argument("--camera", type=int, default=0)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--out", default="assets/demo")
    args = parser.parse_args(argv)
    out = Path(args.out)
    model, sections = load_checkpoint(args.checkpoint)
    keep = {k: v for k, v in sections.items() if k in ("model", "diffusion", "meta")}
    save_checkpoint(model, out / "checkpoint", keep)
    seq = demo_sequence(args.data_root, args.name, args.keypoints, args.subject, args.action, args.camera,
                        args.frames, args.start)
    save_npz(out / "demo_input.npz", **seq)
    print(f"wrote {out / 'checkpoint'} and {out / 'demo_input.npz'} ({len(seq['keypoints'])} frames)")


if __name__ == "__main__":
    main()
