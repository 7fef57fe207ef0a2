"""Helpers shared by the training tests: a tiny custom dataset and the overrides of a ~1 s run.

With ``data.batch_size=2`` subject A gives 8 training rows (4 videos, each un-flipped and flipped),
so one epoch is 4 optimizer steps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.data.fixtures import write_custom


def write_tiny_data(root: Path, seed: int = 0) -> Path:
    """Subjects 'A' (train: 2 actions x 2 cameras) and 'B' (test) of the custom format."""
    write_custom(root, np.random.RandomState(seed))
    return root


def tiny_overrides(data: Path, out: Path, **train) -> list[str]:
    """A KTPFormer of one S/T pair, C=32, T=9; ``train`` adds train.<key>=<value> overrides."""
    base = ["data.dataset=custom", f"data.root={data}", "data.name=mocap", "data.keypoints=gt",
            "data.subjects_train=[A]", "data.subjects_test=[B]", "data.num_frames=9", "data.batch_size=2",
            "model.num_frames=9", "model.channels=32", "model.num_heads=4", "model.depth=1",
            "train.epochs=2", f"train.output_dir={out}", "train.tracker=none", "train.progress=false",
            "train.save_every=0", "eval.batch_size=2"]
    return base + [f"train.{k}={v}" for k, v in train.items()]


def checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def fit(data: Path, out: Path, resume: bool = False, **train):
    """Run the Trainer in this process on the tiny config; returns its final TrainerState."""
    from d3dp_ktp.experiment import load_experiment
    from d3dp_ktp.training.trainer import Trainer

    return Trainer(load_experiment(None, tiny_overrides(data, out, **train)), resume=resume).fit()


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: on a shared CPU, OpenMP threads of these tiny models spin-wait for each
    other and a step takes seconds instead of milliseconds. Import it into a test module to use it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_main():
    """train.py's ``main(argv) -> exit code``, loaded from the file (it is a script, not a module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_cli", Path(__file__).resolve().parents[2] / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
