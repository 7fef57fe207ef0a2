"""EvalConfig: how a D3DP model is evaluated (docs/method.md §5, §6.6, §7.4-7.5, §10)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..diffusion.config import SamplingConfig

MODES = ("official", "clean")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EvalConfig:
    # H, K, eta, flip, dtype and the noise seed. None: the model's own (``model.sampling``, i.e. the
    # checkpoint's); README default 5/5, the paper's comparison uses H=20, K=10.
    sampling: SamplingConfig | None = None
    # 'official': the published protocol with its quirks (docs/method.md §12 items 1-3): GT root trajectory in
    # JPMA, P-Best chosen per batch of `batch_size` windows, overlapping/padded window frames counted
    # again. 'clean': every frame counted once, P-Best per window, JPMA root estimated from 2D.
    mode: str = "official"
    # Windows per sampling batch; batches never cross videos. It changes official P-Best (docs/method.md §12.2):
    # D3DP uses 4 on Human3.6M and 2 on MPI-INF-3DHP. 0 (clean mode only) = as many as fit in memory.
    batch_size: int = 4
    protocol2: bool = True            # also report Protocol #2 (P-MPJPE) versions of the four metrics
    by_subject: bool = False          # also keep per-subject tables (HumanEva protocol, docs/method.md §8)
    # Evaluate only this many windows (0 = all), for quick evaluation and training-time validation:
    # an evenly spread, deterministic subset of the whole test set, the windows at indices
    # round(linspace(0, N-1, max_windows)) of all N windows in dataset order (runner.select_windows),
    # so every part of the test set is represented. Action groups left without a window drop out of
    # the average; the report says how many windows of how many were evaluated.
    max_windows: int = 0
    device: str = "auto"              # 'auto' = cuda when available, else cpu

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"eval.mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.batch_size < 0:
            raise ValueError(f"eval.batch_size must be >= 1 window, or 0 for automatic, got {self.batch_size}")
        if self.batch_size == 0 and self.mode == "official":
            raise ValueError("eval.batch_size=0 (automatic) is for mode 'clean': the official P-Best depends on the "
                             "batch size, so give it explicitly (D3DP: 4 on Human3.6M, 2 on MPI-INF-3DHP)")
        if self.max_windows < 0:
            raise ValueError(f"eval.max_windows must be >= 0 (0 = all windows), got {self.max_windows}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"eval.device must be one of {', '.join(DEVICES)} or 'cuda:N', got '{self.device}'")

    def for_model(self, model) -> "EvalConfig":
        """This config with ``sampling`` filled in from the model's own (SamplingConfig() for a model
        without one, such as a test stub)."""
        if self.sampling is not None:
            return self
        return dataclasses.replace(self, sampling=getattr(model, "sampling", None) or SamplingConfig())
