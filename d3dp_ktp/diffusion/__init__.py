"""D3DP diffusion: schedule/scheduler (diffusers), the wrapper with loss() and sample(), SamplingConfig."""
from .config import DiffusionConfig, SamplingConfig, check_sampling_args, migrate_sampling_keys
from .d3dp import D3DP, LossOutput
from .scheduler import D3DPScheduler, cosine_alphas_cumprod, d3dp_time_pairs

__all__ = ["DiffusionConfig", "SamplingConfig", "check_sampling_args", "migrate_sampling_keys", "D3DP",
           "LossOutput", "D3DPScheduler", "cosine_alphas_cumprod", "d3dp_time_pairs"]
