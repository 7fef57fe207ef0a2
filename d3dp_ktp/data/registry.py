"""One entry point from a DataConfig to datasets and the training DataLoader."""
from __future__ import annotations

from typing import Sequence

from torch.utils.data import DataLoader

from d3dp_ktp.data import h36m, humaneva, mpi_inf_3dhp
from d3dp_ktp.data.config import DataConfig
from d3dp_ktp.data.custom import load_custom
from d3dp_ktp.data.dataset import PoseDataset
from d3dp_ktp.data.windows import ChunkBatchSampler, ChunkDataset

# The standard (train, test) subjects of each dataset, for error messages and configs.
STANDARD_SPLITS = {
    "h36m": (h36m.SUBJECTS_TRAIN, h36m.SUBJECTS_TEST),
    "mpi_inf_3dhp": (mpi_inf_3dhp.SUBJECTS_TRAIN, mpi_inf_3dhp.SUBJECTS_TEST),
    "humaneva": (humaneva.SUBJECTS_TRAIN, humaneva.SUBJECTS_TEST),
}
SPLITS = ("train", "test")


def split_subjects(cfg: DataConfig, split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    subjects = cfg.subjects_train if split == "train" else cfg.subjects_test
    if not subjects:
        raise ValueError(f"data.subjects_{split} is empty; list the subjects to load")
    h36m_default = DataConfig().subjects_train if split == "train" else DataConfig().subjects_test
    if cfg.dataset != "h36m" and tuple(subjects) == h36m_default:
        hint = STANDARD_SPLITS.get(cfg.dataset)
        hint = f"the standard split is {list(hint[SPLITS.index(split)])}" if hint else "list your own subjects"
        raise ValueError(f"data.subjects_{split} still holds the Human3.6M default {list(subjects)} but "
                         f"data.dataset={cfg.dataset}; set data.subjects_{split} ({hint})")
    return tuple(subjects)


def _load(cfg: DataConfig, subjects: Sequence[str]) -> PoseDataset:
    if cfg.dataset == "h36m":
        return h36m.load_h36m(cfg.root, cfg.keypoints, subjects, cfg.actions)
    if cfg.dataset == "mpi_inf_3dhp":
        return mpi_inf_3dhp.load_mpi_inf_3dhp(cfg.root, subjects, cfg.actions, cfg.annot_mat_dir)
    if cfg.dataset == "humaneva":
        return humaneva.load_humaneva(cfg.root, cfg.keypoints, subjects, cfg.actions)
    return load_custom(cfg.root, cfg.name, cfg.keypoints, subjects, cfg.actions)


def load_dataset(cfg: DataConfig, split: str) -> PoseDataset:
    """The 'train' or 'test' subjects of ``cfg`` with its action filter applied.

    Raises FileNotFoundError naming the missing file and where to get it, and ValueError for
    subjects or actions that are not in the files.
    """
    return _load(cfg, split_subjects(cfg, split))


def load_splits(cfg: DataConfig) -> tuple[PoseDataset, PoseDataset]:
    """(train, test) from a single read of the files."""
    train, test = split_subjects(cfg, "train"), split_subjects(cfg, "test")
    both = _load(cfg, tuple(dict.fromkeys(train + test)))
    return both.select(train), both.select(test)


def build_train_loader(cfg: DataConfig, dataset: PoseDataset) -> tuple[DataLoader, ChunkBatchSampler]:
    """DataLoader over T-frame chunks; keep the sampler to save/restore its RandomState."""
    chunks = ChunkDataset.from_dataset(dataset, cfg.num_frames, cfg.flip_mode, cfg.augment, cfg.seed)
    sampler = ChunkBatchSampler(chunks, cfg.batch_size, seed=cfg.seed)
    loader = DataLoader(chunks, batch_sampler=sampler, num_workers=cfg.num_workers,
                        persistent_workers=cfg.num_workers > 0)
    return loader, sampler
