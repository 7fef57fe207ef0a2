"""DiffusionConfig: the D3DP schedule and training objective (docs/method.md §4).

How a model samples (H, K, eta, flip, dtype, seed) is d3dp_ktp.sampling.SamplingConfig, re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..sampling import DTYPES, SamplingConfig, check_sampling_args, migrate_sampling_keys

__all__ = ["DiffusionConfig", "SamplingConfig", "DTYPES", "check_sampling_args", "migrate_sampling_keys"]


@dataclass(frozen=True)
class DiffusionConfig:
    num_train_timesteps: int = 1000   # N_t
    cosine_s: float = 0.008           # offset s of the cosine schedule (docs/method.md §4.1)
    scale: float = 1.0                # "SNR scale": x0 is multiplied by it before noising (docs/method.md §4.2)
    clamp: float = 1.1                # x_t and x0_hat are clamped to ±clamp·scale (docs/method.md §4.3-4.4)
    # Training objective. D3DP: plain MPJPE on x0. The KTPFormer terms (paper eq. 14) are optional.
    weighted_mpjpe: bool = False      # per-joint weights of docs/method.md §5.8 instead of plain MPJPE
    lambda_tc: float = 0.0            # temporal-consistency weight (KTPFormer: 0.5)
    lambda_vel: float = 0.0           # MPJVE weight (KTPFormer: 2.0)
    # Official quirk (docs/method.md §4.3.5): backward with the detached loss as upstream gradient, i.e. L·∇L.
    loss_scaled_gradient: bool = True

    def validate(self) -> None:
        if self.num_train_timesteps < 1:
            raise ValueError(f"diffusion.num_train_timesteps must be >= 1, got {self.num_train_timesteps}")
        if self.scale <= 0 or self.clamp <= 0:
            raise ValueError(f"diffusion.scale and diffusion.clamp must be positive, got {self.scale}, {self.clamp}")
        for name in ("lambda_tc", "lambda_vel"):
            if getattr(self, name) < 0:
                raise ValueError(f"diffusion.{name} must be >= 0, got {getattr(self, name)}")
