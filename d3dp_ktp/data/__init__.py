"""Pose datasets (Human3.6M, MPI-INF-3DHP, HumanEva-I, custom), training chunks and evaluation windows.

The names below are imported on first use (PEP 562), so that `d3dp_ktp.data.io` (safe npz reading)
can be used without importing torch, as `sample.py` does to check its input in about a second.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DataConfig": "config", "custom_camera": "custom", "load_custom": "custom", "write_custom_dataset": "custom",
    "CameraInfo": "dataset", "PoseDataset": "dataset", "Video": "dataset", "action_group": "dataset",
    "STANDARD_SPLITS": "registry", "load_dataset": "registry",
    "load_splits": "registry", "ChunkBatchSampler": "windows", "ChunkDataset": "windows",
    "chunk_bounds": "windows", "eval_windows": "windows", "stitch": "windows",
    "window_frame_indices": "windows", "window_keep_mask": "windows",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"d3dp_ktp.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'd3dp_ktp.data' has no attribute '{name}'")
