"""Training: the TrainConfig section (``training.config``) and the accelerate Trainer (``training.trainer``).

Import the trainer from its module, ``from d3dp_ktp.training.trainer import Trainer``: the package only
exports the config, because ``d3dp_ktp.experiment`` reads TrainConfig from here and the trainer itself
builds on ExperimentConfig (re-exporting it here would make the two import each other).
"""
from .config import TrainConfig

__all__ = ["TrainConfig"]
