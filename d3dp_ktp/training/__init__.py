"""Training: TrainConfig and the accelerate Trainer."""
from .config import TrainConfig

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged"]


def __getattr__(name):  # the trainer pulls in data/evaluation; import it only when asked for
    if name in ("Trainer", "TrainingDiverged", "TrainerState"):
        from . import trainer
        return getattr(trainer, name)
    raise AttributeError(name)
