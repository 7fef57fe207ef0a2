"""TrainConfig: optimisation and run settings (docs/method.md §6.7). Hyper-parameters first, runtime flags after."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..diffusion.config import SamplingConfig


@dataclass(frozen=True)
class TrainConfig:
    # --- hyper-parameters (D3DP column of docs/method.md §6.7) ---
    epochs: int = 400
    lr: float = 6e-5                  # initial learning rate
    lr_decay: float = 0.993           # lr_e = lr · decay^e, applied after every epoch
    weight_decay: float = 0.1         # AdamW, on all parameters
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_accum: int = 1               # batches accumulated per optimizer step
    grad_clip: float = 0.0            # max grad norm; 0 = off (the papers do not clip)
    ema_decay: float = 0.0            # EMA of weights for validation/checkpoints; 0 = off
    seed: int = 1                     # random / NumPy / torch seed (D3DP seeds with 1)
    # --- validation and checkpoints ---
    val_every: int = 1                # epochs between validations; 0 = never
    # Sampling during validation: D3DP validates with H=1, K=1 (eta 1, flip on, seed 1).
    val_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(num_hypotheses=1, num_steps=1))
    val_max_windows: int = 0          # validation windows, evenly spread over the test set; 0 = all
    best_metric: str = "P-Agg"        # which validation error selects the best checkpoint
    save_every: int = 20              # epochs between numbered checkpoints; 0 = never
    state_every_steps: int = 0        # also save the resumable state every N steps; 0 = epoch ends only
    # --- runtime flags (do not change the result) ---
    output_dir: str = "runs/default"
    mixed_precision: str = "no"       # 'no' | 'bf16' | 'fp16'
    cpu: bool = False                 # force CPU even when a GPU is present
    max_steps: int = 0                # stop after this many optimizer steps; 0 = no limit
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0 = no limit
    log_every: int = 20               # steps between log lines / tracker points
    tracker: str = "tensorboard"      # 'tensorboard' | 'none'
    progress: bool = True             # tqdm progress bar

    def validate(self) -> None:
        for name in ("epochs", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lr_decay"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"train.mixed_precision must be 'no', 'bf16' or 'fp16', got '{self.mixed_precision}'")
        if self.tracker not in ("tensorboard", "none"):
            raise ValueError(f"train.tracker must be 'tensorboard' or 'none', got '{self.tracker}'")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.best_metric not in ("J-Best", "P-Best", "P-Agg", "J-Agg"):
            raise ValueError(f"train.best_metric must be J-Best, P-Best, P-Agg or J-Agg, got '{self.best_metric}'")
