"""In-the-wild inference: read 2D keypoint files, lift sequences of any length, save and draw results.

    from d3dp_ktp.checkpoints import load_checkpoint
    from d3dp_ktp.inference import LiftConfig, lift_keypoints, read_keypoints
    model, _ = load_checkpoint("assets/demo/checkpoint")
    result, inp = lift_keypoints(model, read_keypoints("clip.json"), LiftConfig(), layout="coco",
                                 width=1920, height=1080)
    result.poses_3d  # (F, 17, 3) metres, root-relative camera space
    # LiftConfig(model.sampling.override(num_hypotheses=20, num_steps=10)): other than the checkpoint's H, K

`sample.py` is the command-line front end.
"""
from d3dp_ktp.inference.io import (KeypointFile, MissingKeypointsWarning, PreparedKeypoints, coco_to_h36m,
                                   prepare_keypoints, read_keypoints)
from d3dp_ktp.inference.pipeline import LiftConfig, LiftResult, lift, lift_keypoints

__all__ = ["KeypointFile", "MissingKeypointsWarning", "PreparedKeypoints", "coco_to_h36m", "prepare_keypoints",
           "read_keypoints", "LiftConfig", "LiftResult", "lift", "lift_keypoints"]
