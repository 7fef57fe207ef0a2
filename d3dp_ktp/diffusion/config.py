"""DiffusionConfig: the D3DP schedule, training objective and sampling defaults (SPEC §4)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiffusionConfig:
    num_train_timesteps: int = 1000   # N_t
    cosine_s: float = 0.008           # offset s of the cosine schedule (SPEC §4.1)
    scale: float = 1.0                # "SNR scale": x0 is multiplied by it before noising (SPEC §4.2)
    clamp: float = 1.1                # x_t and x0_hat are clamped to ±clamp·scale (SPEC §4.3-4.4)
    # Training objective. D3DP: plain MPJPE on x0. The KTPFormer terms (paper eq. 14) are optional.
    weighted_mpjpe: bool = False      # per-joint weights of SPEC §5.8 instead of plain MPJPE
    lambda_tc: float = 0.0            # temporal-consistency weight (KTPFormer: 0.5)
    lambda_vel: float = 0.0           # MPJVE weight (KTPFormer: 2.0)
    # Official quirk (SPEC §4.3.5): backward with the detached loss as upstream gradient, i.e. L·∇L.
    loss_scaled_gradient: bool = True
    # Sampling defaults; every sample() call can override them.
    num_hypotheses: int = 5           # H
    num_steps: int = 5                # K
    eta: float = 1.0                  # DDIM η (1 in D3DP)
    flip: bool = True                 # flip test-time augmentation inside every step (SPEC §4.5)

    def validate(self) -> None:
        if self.num_train_timesteps < 1:
            raise ValueError(f"diffusion.num_train_timesteps must be >= 1, got {self.num_train_timesteps}")
        if self.scale <= 0 or self.clamp <= 0:
            raise ValueError(f"diffusion.scale and diffusion.clamp must be positive, got {self.scale}, {self.clamp}")
        check_sampling_args(self.num_hypotheses, self.num_steps, self.eta, self.num_train_timesteps)
        for name in ("lambda_tc", "lambda_vel"):
            if getattr(self, name) < 0:
                raise ValueError(f"diffusion.{name} must be >= 0, got {getattr(self, name)}")


def check_sampling_args(num_hypotheses: int, num_steps: int, eta: float, num_train_timesteps: int = 1000) -> None:
    """Validate H, K and eta with messages that say what is allowed."""
    if not isinstance(num_hypotheses, int) or num_hypotheses < 1:
        raise ValueError(f"num_hypotheses (H) must be an integer >= 1, got {num_hypotheses!r}")
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps (K) must be an integer in [1, {num_train_timesteps}], got {num_steps!r}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0 (1 = D3DP's DDIM, 0 = deterministic DDIM), got {eta!r}")
