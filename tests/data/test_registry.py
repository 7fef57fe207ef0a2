"""DataConfig validation and the load_dataset entry point."""
import dataclasses
import datetime

import numpy as np
import pytest

from d3dp_ktp.config import override
from torch.utils.data import DataLoader

from d3dp_ktp.data import ChunkBatchSampler, ChunkDataset, DataConfig, load_dataset, load_splits
from d3dp_ktp.data.io import load_npz, save_npz
from tests.data.fixtures import write_3dhp_npz, write_custom, write_h36m


def test_config_defaults_and_validation():
    cfg = DataConfig()
    assert (cfg.num_frames, cfg.batch_size, cfg.seed, cfg.flip_mode) == (243, 4, 1234, "paired")
    assert cfg.subjects_train == ("S1", "S5", "S6", "S7", "S8") and cfg.subjects_test == ("S9", "S11")
    with pytest.raises(ValueError, match="data.dataset must be one of"):
        DataConfig(dataset="h36")
    with pytest.raises(ValueError, match="data.name"):
        override(cfg, {"dataset": "custom"})
    with pytest.raises(ValueError, match="flip_mode"):
        override(cfg, {"flip_mode": "sometimes"})
    with pytest.raises(ValueError, match="unknown config key 'frames'"):
        override(cfg, {"frames": 27})
    assert override(cfg, {"subjects_test": ["S9"]}).subjects_test == ("S9",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1


def test_load_dataset_splits_and_train_loader(tmp_path):
    write_h36m(tmp_path, np.random.RandomState(6))
    cfg = DataConfig(root=str(tmp_path), keypoints="gt", subjects_train=("S1",), subjects_test=("S9",),
                     num_frames=5, batch_size=2)
    train, test = load_splits(cfg)
    assert train.subjects == ("S1",) and test.subjects == ("S9",)
    assert load_dataset(cfg, "test").actions() == test.actions()
    chunks = ChunkDataset.from_dataset(train, cfg.num_frames, cfg.flip_mode)  # what the trainer builds
    loader = DataLoader(chunks, batch_sampler=ChunkBatchSampler(chunks, cfg.batch_size, seed=cfg.seed))
    x2d, y3d, cam = next(iter(loader))
    assert x2d.shape == (2, 5, 17, 2) and y3d.shape == (2, 5, 17, 3) and cam.shape == (2, 9)
    # S1: 12 frames -> 3 chunks, 7 frames -> 2 chunks; 4 cameras; paired flips.
    assert len(loader.dataset) == (3 + 2) * 4 * 2 and len(loader) == 20
    with pytest.raises(ValueError, match="split must be"):
        load_dataset(cfg, "val")


def test_load_dataset_errors_say_what_to_fix(tmp_path):
    write_h36m(tmp_path, np.random.RandomState(7))
    cfg = DataConfig(root=str(tmp_path), keypoints="gt")
    with pytest.raises(ValueError, match=r"\['S5', 'S6', 'S7', 'S8'\].*available subjects"):
        load_dataset(cfg, "train")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing" / "data_3d_h36m.npz")):
        load_dataset(dataclasses.replace(cfg, root=str(tmp_path / "missing")), "test")
    with pytest.raises(ValueError, match="no video matches|no videos"):
        load_dataset(dataclasses.replace(cfg, subjects_test=("S9",), actions="Eating"), "test")
    mpi = DataConfig(dataset="mpi_inf_3dhp", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"Human3.6M default.*TS1"):
        load_dataset(mpi, "test")


def test_other_datasets_through_the_registry(tmp_path):
    rng = np.random.RandomState(8)
    write_3dhp_npz(tmp_path, rng)
    write_custom(tmp_path, rng, name="walks")
    mpi = load_dataset(DataConfig(dataset="mpi_inf_3dhp", root=str(tmp_path), subjects_test=("TS1", "TS5")), "test")
    assert [v.subject for v in mpi] == ["TS1", "TS5"]
    custom = DataConfig(dataset="custom", name="walks", keypoints="gt", root=str(tmp_path),
                        subjects_train=("A",), subjects_test=("B",))
    train, test = load_splits(custom)
    assert set(train.actions()) == {"walk 1", "run"} and test.actions() == ("walk 2",)


def test_npz_reader_refuses_foreign_pickles(tmp_path):
    path = save_npz(tmp_path / "evil.npz", positions_3d={"S1": {"a": datetime.date(2020, 1, 1)}})
    with pytest.raises(ValueError, match="refusing to load 'datetime.date'"):
        load_npz(path)
    ok = save_npz(tmp_path / "ok.npz", positions_3d={"S1": {"a": np.ones((2, 3), np.float32)}}, plain=np.arange(3))
    loaded = load_npz(ok)
    assert loaded["positions_3d"]["S1"]["a"].dtype == np.float32 and loaded["plain"].tolist() == [0, 1, 2]
    (tmp_path / "not.npz").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an .npz"):
        load_npz(tmp_path / "not.npz")
