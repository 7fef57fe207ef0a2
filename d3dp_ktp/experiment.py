"""ExperimentConfig: the five config sections of a run, read from YAML overrides and key=value pairs.

A YAML file holds only overrides, grouped by section::

    model: {channels: 128, depth: 3}
    train: {epochs: 40}
    sampling: {num_hypotheses: 20, num_steps: 10}   # saved with the checkpoints: sample.py/eval defaults

Unknown sections or keys raise with the list of valid ones; values are type-checked. The sampling
keys of older files (diffusion.num_hypotheses, eval.num_steps, train.val_hypotheses, ...) are moved
to their new place with a warning (diffusion.migrate_sampling_keys).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .config import deep_merge, from_dict, load_yaml, parse_overrides
from .data.config import DataConfig
from .diffusion import DiffusionConfig, SamplingConfig, migrate_sampling_keys
from .evaluation.config import EvalConfig
from .models import ModelConfig
from .training.config import TrainConfig


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)   # the trained model's sampling defaults
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "ExperimentConfig":
        self.model.validate()
        self.diffusion.validate()
        self.train.validate()
        if self.data.num_frames != self.model.num_frames:
            raise ValueError(f"data.num_frames ({self.data.num_frames}) must equal model.num_frames "
                             f"({self.model.num_frames}): the model is built for windows of T frames")
        return self


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Defaults <- YAML file <- ``section.key=value`` overrides; validated."""
    values = load_yaml(path) if path else {}
    values = deep_merge(values, parse_overrides(list(overrides or [])))
    values, moved = migrate_sampling_keys(values)
    if moved:
        warnings.warn(f"{path or 'the overrides'}: sampling settings have moved: {', '.join(moved)}; "
                      "please update the file")
    return from_dict(ExperimentConfig, values).validate()
