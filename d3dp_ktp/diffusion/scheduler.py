"""D3DP's DDIM sampler as a diffusers scheduler (docs/method.md §4.1, §4.4, §4.6).

diffusers' DDIMScheduler with "trailing" spacing matches D3DP only when K divides 1000 and keeps ᾱ
in float32. This scheduler keeps ᾱ in float64, lists D3DP's truncated time pairs for every K and
steps to the next *listed* timestep, so it reproduces the official sampler at any K.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput


def cosine_alphas_cumprod(num_train_timesteps: int = 1000, s: float = 0.008) -> torch.Tensor:
    """ᾱ_i of the cosine schedule (docs/method.md §4.1), float64, shape (N_t,)."""
    # Same torch float64 ops as D3DP's cosine_beta_schedule, so the values agree to the last bit.
    x = torch.linspace(0, num_train_timesteps, num_train_timesteps + 1, dtype=torch.float64)
    f = torch.cos(((x / num_train_timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    f = f / f[0]
    betas = torch.clip(1 - (f[1:] / f[:-1]), 0, 0.999)
    return torch.cumprod(1.0 - betas, dim=0)


def d3dp_time_pairs(num_steps: int, num_train_timesteps: int = 1000) -> list[tuple[int, int]]:
    """D3DP's (t, t_next) pairs: int(linspace(-1, N_t-1, K+1)) reversed and paired (docs/method.md §4.4)."""
    times = torch.linspace(-1, num_train_timesteps - 1, steps=num_steps + 1)
    times = list(reversed(times.int().tolist()))
    return list(zip(times[:-1], times[1:]))


def randn(shape: tuple, generator: torch.Generator | None, device: torch.device | str,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, I) drawn where the generator lives (the global CPU RNG when there is none), then moved to
    ``device``: a seed gives the same poses on every device, and a generator on the GPU draws there
    without a host copy (diffusers' randn_tensor also draws on a CPU generator's device)."""
    where = generator.device if generator is not None else "cpu"
    return torch.randn(shape, generator=generator, dtype=dtype, device=where).to(device)


@dataclass
class D3DPSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor            # x_{t_next}
    pred_original_sample: torch.Tensor   # x̂0, the value D3DP collects at every step


class D3DPScheduler(SchedulerMixin, ConfigMixin):
    """DDIM with x0 prediction, ᾱ in float64 and D3DP's time pairs.

    State: frozen config (constructor), ᾱ derived once, per-run ``timesteps`` from ``set_timesteps``.
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, cosine_s: float = 0.008,
                 prediction_type: str = "sample"):
        if prediction_type != "sample":
            raise ValueError("D3DPScheduler predicts x0 only (prediction_type='sample')")
        self.alphas_cumprod = cosine_alphas_cumprod(num_train_timesteps, cosine_s)  # ᾱ, float64
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, dtype=torch.int64)
        self._next = {}

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """K sampling steps: timesteps t_K..t_1 and, for each, the next listed timestep (-1 = end)."""
        n = self.config.num_train_timesteps
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= n:
            raise ValueError(f"num_inference_steps (K) must be an integer in [1, {n}], got {num_inference_steps!r}")
        pairs = d3dp_time_pairs(num_inference_steps, n)
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.tensor([t for t, _ in pairs], dtype=torch.int64, device=device)
        self._next = dict(pairs)

    def time_pairs(self) -> list[tuple[int, int]]:
        return list(self._next.items())

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a Python float (float64); ᾱ_{-1} = 1 (set_alpha_to_one)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def sigma_and_c(self, t: int, t_next: int, eta: float) -> tuple[float, float]:
        """σ = η·sqrt((1-ᾱ_t/ᾱ_next)(1-ᾱ_next)/(1-ᾱ_t)), c = sqrt(1-ᾱ_next-σ²) (docs/method.md §4.4 step 6)."""
        a, a_next = self.alpha_bar(t), self.alpha_bar(t_next)
        sigma = eta * math.sqrt((1 - a / a_next) * (1 - a_next) / (1 - a))
        return sigma, math.sqrt(max(1 - a_next - sigma ** 2, 0.0))

    def predict_noise_from_start(self, x_t: torch.Tensor, t: int, x0: torch.Tensor) -> torch.Tensor:
        """ε̂ = (sqrt(1/ᾱ_t)·x_t - x̂0) / sqrt(1/ᾱ_t - 1), computed in float64 as D3DP, cast back."""
        a = self.alphas_cumprod[t]
        eps = (torch.sqrt(1.0 / a) * x_t.double() - x0.double()) / torch.sqrt(1.0 / a - 1)
        return eps.to(x_t.dtype)

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, eta: float = 1.0,
             variance_noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
             return_dict: bool = True):
        """One DDIM move t -> t_next given x̂0 (already clamped and flip-averaged) and the unclamped x_t.

        The noise z of a stochastic step is ``variance_noise`` when given, else drawn from
        ``generator`` (`randn`); giving both is an error, as in diffusers' DDIMScheduler.
        """
        if variance_noise is not None and generator is not None:
            raise ValueError("Cannot pass both generator and variance_noise. Please make sure that either "
                             "`generator` or `variance_noise` stays `None`.")
        t = int(timestep)
        if t not in self._next:
            raise ValueError(f"timestep {t} is not one of this run's timesteps {self.timesteps.tolist()}; "
                             "call set_timesteps(K) first")
        t_next = self._next[t]
        x0 = model_output
        # 1. ε̂ from the unclamped sample (docs/method.md §4.4 step 4).
        eps = self.predict_noise_from_start(sample, t, x0)
        if t_next < 0:
            # 2. Last step: D3DP returns x̂0 and draws no noise.
            prev = x0
        else:
            # 3. x_{t_next} = sqrt(ᾱ_next)·x̂0 + c·ε̂ + σ·z (DDIM, eq. 12 of Song et al.).
            sigma, c = self.sigma_and_c(t, t_next, eta)
            prev = x0 * math.sqrt(self.alpha_bar(t_next)) + c * eps
            if sigma > 0:
                if variance_noise is None:
                    variance_noise = randn(sample.shape, generator, sample.device, sample.dtype)
                prev = prev + sigma * variance_noise
        if not return_dict:
            return (prev, x0)
        return D3DPSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """q_sample: sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε per sample (float64 coefficients, x0's dtype out)."""
        a = self._alphas_on(x0.device)[timesteps].reshape(-1, *([1] * (x0.dim() - 1)))
        return (torch.sqrt(a) * x0.double() + torch.sqrt(1 - a) * noise.double()).to(x0.dtype)

    def _alphas_on(self, device: torch.device) -> torch.Tensor:
        """ᾱ on ``device``, copied once rather than in every training step."""
        cache = self.__dict__.setdefault("_alphas_cache", {})
        if device not in cache:
            cache[device] = self.alphas_cumprod.to(device)
        return cache[device]

    def __len__(self) -> int:
        return self.config.num_train_timesteps
