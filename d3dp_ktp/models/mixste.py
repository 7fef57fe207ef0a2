"""D3DP's MixSTE2 denoiser (SPEC §3.1), kept so the D3DP baseline and its checkpoints reproduce."""
from __future__ import annotations

import torch
from torch import nn

from .base import SpatioTemporalLifter, to_spatial, to_temporal
from .config import ModelConfig
from .layers import drop_path_rates


class MixSTE(SpatioTemporalLifter):
    """Linear patch embedding + P_s + e_t, then ``depth`` STE/TTE pairs (P_t added before TTE_0)."""

    _first_pair_in_stack = 1

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        C = cfg.channels
        self.Spatial_patch_to_embedding = nn.Linear(5 if cfg.diffusion else 2, C)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, cfg.num_joints, C))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, C))
        self.STEblocks, self.TTEblocks = self._blocks(drop_path_rates(cfg.drop_path_rate, cfg.depth))

    def embed(self, x: torch.Tensor, e_t, frames: int) -> torch.Tensor:
        n = x.shape[1]
        x = self.Spatial_patch_to_embedding(x) + self.Spatial_pos_embed
        x = x + self._broadcast_time(e_t, frames)
        x = to_temporal(self.Spatial_norm(self.STEblocks[0](x)), frames)
        x = self.Temporal_norm(self.TTEblocks[0](x + self.Temporal_pos_embed))
        return to_spatial(x, n)
