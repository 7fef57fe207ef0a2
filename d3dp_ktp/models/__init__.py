"""Denoisers: KTPFormer (docs/method.md §2, §3.2) and D3DP's MixSTE (docs/method.md §3.1), built through build_model."""
from __future__ import annotations

from .base import SpatioTemporalLifter
from .config import ModelConfig
from .ktpformer import KTPFormer
from .mixste import MixSTE

__all__ = ["ModelConfig", "KTPFormer", "MixSTE", "SpatioTemporalLifter", "build_model", "count_parameters"]


def build_model(cfg: ModelConfig) -> SpatioTemporalLifter:
    """The one constructor for every denoiser/lifter this package knows."""
    cfg.validate()
    return KTPFormer(cfg) if cfg.arch == "ktpformer" else MixSTE(cfg)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
