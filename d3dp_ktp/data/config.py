"""Data configuration: which files to read, which subjects/actions, and how training chunks are cut."""
from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("h36m", "mpi_inf_3dhp", "humaneva", "custom")
FLIP_MODES = ("paired", "random", "none")


@dataclass(frozen=True)
class DataConfig:
    # 'h36m' | 'mpi_inf_3dhp' | 'humaneva' | 'custom' (file formats: d3dp_ktp/data/<dataset>.py).
    dataset: str = "h36m"
    # Folder holding the npz files (data_3d_*.npz, data_2d_*.npz, data_*_3dhp_ori.npz).
    root: str = "data"
    # custom only: <name> in data_3d_<name>.npz / data_2d_<name>_<keypoints>.npz.
    name: str = ""
    # 2D source, <kp> in data_2d_<dataset>_<kp>.npz: 'cpn_ft_h36m_dbb' (CPN, the paper's), 'gt',
    # 'detectron_pt_coco', ... Ignored by mpi_inf_3dhp, whose 2D is always the annotation.
    keypoints: str = "cpn_ft_h36m_dbb"
    # mpi_inf_3dhp only: folder with the official TS1..TS6/annot_data.mat; '' reads data_test_3dhp_ori.npz.
    annot_mat_dir: str = ""
    # SPEC §6.4 (Human3.6M). Other datasets need their own: see STANDARD_SPLITS in d3dp_ktp/data/registry.py.
    subjects_train: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
    subjects_test: tuple[str, ...] = ("S9", "S11")
    # '*' for all, else comma-separated action prefixes (official -a, e.g. 'Walk,Jog' for HumanEva).
    actions: str = "*"
    # T: frames per training chunk and evaluation window (the receptive field, SPEC §6.5/§6.6).
    num_frames: int = 243
    # 'paired': every chunk un-flipped and flipped each epoch (official, SPEC §6.5); 'random': each
    # chunk once per epoch, flipped with probability 0.5; 'none': no flip augmentation.
    flip_mode: str = "paired"
    # Chunks per training batch (D3DP: 1024 // 243 = 4).
    batch_size: int = 4
    # DataLoader workers; chunk slicing is cheap, so 0 (main process) is usually enough.
    num_workers: int = 0
    # Seed of the NumPy RandomState that permutes the chunks each epoch (official: 1234).
    seed: int = 1234

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {', '.join(DATASETS)}, got '{self.dataset}'")
        if self.dataset == "custom" and not self.name:
            raise ValueError("data.name must name the custom dataset (data_3d_<name>.npz) when data.dataset=custom")
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"data.flip_mode must be one of {', '.join(FLIP_MODES)}, got '{self.flip_mode}'")
        for key in ("num_frames", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
