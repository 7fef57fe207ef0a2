"""Pose datasets (Human3.6M, MPI-INF-3DHP, HumanEva-I, custom), training chunks and evaluation windows."""
from d3dp_ktp.data.config import DataConfig
from d3dp_ktp.data.custom import custom_camera, load_custom, write_custom_dataset
from d3dp_ktp.data.dataset import CameraInfo, PoseDataset, Video, action_group
from d3dp_ktp.data.registry import STANDARD_SPLITS, load_dataset, load_splits
from d3dp_ktp.data.windows import (ChunkBatchSampler, ChunkDataset, chunk_bounds, eval_windows, stitch,
                                   window_frame_indices, window_keep_mask)

__all__ = [
    "CameraInfo", "ChunkBatchSampler", "ChunkDataset", "DataConfig", "PoseDataset", "STANDARD_SPLITS", "Video",
    "action_group", "chunk_bounds", "custom_camera", "eval_windows", "load_custom",
    "load_dataset", "load_splits", "stitch", "window_frame_indices", "window_keep_mask", "write_custom_dataset",
]
