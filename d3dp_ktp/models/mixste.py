"""D3DP's MixSTE2 denoiser (docs/method.md §3.1), kept so the D3DP baseline and its checkpoints reproduce."""
from __future__ import annotations

import torch
from torch import nn

from .base import SpatioTemporalLifter, to_spatial, to_temporal
from .config import ModelConfig
from .layers import drop_path_rates


class MixSTE(SpatioTemporalLifter):
    """Linear patch embedding + P_s + e_t, then ``depth`` STE/TTE pairs (P_t added before TTE_0).

    ``Spatial_norm``, ``Temporal_norm``, ``head`` and ``time_mlp`` come from the base class (base.py).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        C = cfg.channels
        self.Spatial_patch_to_embedding = nn.Linear(5 if cfg.diffusion else 2, C)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, cfg.num_joints, C))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, C))
        self.STEblocks, self.TTEblocks = self._blocks(drop_path_rates(cfg.drop_path_rate, cfg.depth))

    def forward(self, x2d: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        """x2d (B[, H], T, J, 2) [, x_t (B[, H], T, J, 3), t (B,)] -> (B[, H], T, J, 3) (see base.py)."""
        T, J = self.cfg.num_frames, self.cfg.num_joints
        x, e_t, lead = self.fold_inputs(x2d, x_t, t)     # (B·H·T, J, c_in) spatial tokens, (B·H·T, 1, C)
        x = self.Spatial_patch_to_embedding(x) + self.Spatial_pos_embed
        x = x + e_t                                      # D3DP time embedding, once, before STE_0
        for i, (ste, tte) in enumerate(zip(self.STEblocks, self.TTEblocks)):
            x = to_temporal(self.Spatial_norm(ste(x)), T)  # spatial MHSA over joints
            if i == 0:
                x = x + self.Temporal_pos_embed            # P_t, before the first temporal block only
            x = to_spatial(self.Temporal_norm(tte(x)), J)  # temporal MHSA over frames
        return self.head(x).reshape(*lead, T, J, 3)
