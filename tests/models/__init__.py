"""Tests of d3dp_ktp.models, and the tiny models and inputs they share."""
import torch

from d3dp_ktp.models import ModelConfig, build_model
from tests.reference import TINY, randomize_


def tiny(seed=0, **kw):
    """A tiny eval-mode model (T=9, C=32, 4 heads; depth 2 unless given) with non-trivial weights
    (random BN statistics, Â, P_s, P_t, ...)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{**TINY, "depth": 2, **kw})
    return randomize_(build_model(cfg), seed + 100).eval()


def inputs(seed, B=2, H=None, T=9, J=17):
    """x2d (B, T, J, 2), x_t (B[, H], T, J, 3) clamped to ±1.1, t (B,)."""
    g = torch.Generator().manual_seed(seed)
    x2d = torch.randn(B, T, J, 2, generator=g)
    x_t = torch.randn(*((B, H) if H else (B,)), T, J, 3, generator=g).clamp(-1.1, 1.1)
    t = torch.randint(0, 1000, (B,), generator=g)
    return x2d, x_t, t
