"""In-the-wild inference: read 2D keypoint files, lift sequences of any length, save and draw results.

    from d3dp_ktp.checkpoints import load_checkpoint
    from d3dp_ktp.inference import LiftConfig, lift_keypoints, read_keypoints
    model, _ = load_checkpoint("assets/demo/checkpoint")
    result, inp = lift_keypoints(model, read_keypoints("alphapose-results.json"), LiftConfig(),
                                 width=1920, height=1080)
    result.poses_3d  # (F, 17, 3) metres, root-relative camera space
    # LiftConfig(model.sampling.override(num_hypotheses=20, num_steps=10)): other than the checkpoint's H, K

`sample.py` is the command-line front end. The names below are imported on first use, so that
reading and checking an input file (formats, tracking, layouts) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "KeypointFile": "io", "MissingKeypointsWarning": "io", "PreparedKeypoints": "io", "coco_to_h36m": "io",
    "prepare_keypoints": "io", "read_keypoints": "io",
    "LiftConfig": "pipeline", "LiftResult": "pipeline", "lift": "pipeline", "lift_keypoints": "pipeline",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"d3dp_ktp.inference.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'd3dp_ktp.inference' has no attribute '{name}'")
