"""D3DP diffusion: schedule/scheduler (diffusers), the wrapper with loss() and sample()."""
from .config import DiffusionConfig, check_sampling_args
from .d3dp import D3DP, LossOutput
from .scheduler import D3DPScheduler, cosine_alphas_cumprod, d3dp_time_pairs

__all__ = ["DiffusionConfig", "check_sampling_args", "D3DP", "LossOutput", "D3DPScheduler",
           "cosine_alphas_cumprod", "d3dp_time_pairs"]
