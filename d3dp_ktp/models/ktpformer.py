"""KTPFormer (SPEC §2) and its use as the D3DP denoiser (SPEC §3.2, our choice)."""
from __future__ import annotations

import torch
from torch import nn

from ..skeleton import get_skeleton, spatial_adjacency, temporal_adjacency
from .base import SpatioTemporalLifter
from .config import ModelConfig
from .graph import GraphConvBNReLU, StackedTPA
from .layers import Attention, Mlp, drop_path_rates


class PriorAttention(Attention):
    """KPAttention / TPAttention (SPEC §2.3): prior(x) + P (+ e_t) -> pre-norm MHSA with residual.

    The residual source is the token after the positional (and time) embedding. Additions are out of
    place: the official in-place add onto the ReLU output breaks autograd on PyTorch 2 (SPEC §12.4).
    The drop-path rate of this block is dpr[0] = 0, so the residual is a plain sum.
    """

    def __init__(self, prior_name: str, prior: nn.Module, pos_name: str, tokens: int, cfg: ModelConfig):
        super().__init__(cfg.channels, cfg.num_heads, cfg.attention)
        self.prior_name, self.pos_name = prior_name, pos_name
        self.add_module(prior_name, prior)  # official keys: attn.kpa.* / attn.tpa.*
        self.register_parameter(pos_name, nn.Parameter(torch.zeros(1, tokens, cfg.channels)))
        self.norm1 = nn.LayerNorm(cfg.channels, eps=1e-5)

    def forward(self, x: torch.Tensor, e_t: torch.Tensor | float = 0.0) -> torch.Tensor:
        h = getattr(self, self.prior_name)(x) + getattr(self, self.pos_name)
        h = h + e_t  # D3DP time embedding, added once after KPA + P_s (SPEC §3.2)
        return h + super().forward(self.norm1(h))


class PriorBlock(nn.Module):
    """KPA_Block / TPA_Block: PriorAttention, then x + MLP(LN(x)) with LN eps 1e-6 (SPEC §2.4)."""

    def __init__(self, attn: PriorAttention, cfg: ModelConfig):
        super().__init__()
        self.attn = attn
        self.norm2 = nn.LayerNorm(cfg.channels, eps=1e-6)
        self.mlp = Mlp(cfg.channels, int(cfg.channels * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, e_t: torch.Tensor | float = 0.0) -> torch.Tensor:
        x = self.attn(x, e_t)
        return x + self.mlp(self.norm2(x))


class KTPFormer(SpatioTemporalLifter):
    """KPA pair, TPA pair, then ``depth`` STE/TTE pairs with shared norms and an LN+Linear head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        C, J, T = cfg.channels, cfg.num_joints, cfg.num_frames
        skeleton = get_skeleton(cfg.layout)
        if skeleton.num_joints != J:
            raise ValueError(f"layout '{cfg.layout}' has {skeleton.num_joints} joints, model.num_joints is {J}")
        c_in = 5 if cfg.diffusion else 2
        if cfg.use_kpa:
            kpa = GraphConvBNReLU(c_in, C, spatial_adjacency(skeleton), cfg.graph_prior, cfg.graph_global)
        else:
            kpa = nn.Linear(c_in, C)  # the paper's baseline: a linear lift
        tpa = (StackedTPA(C, temporal_adjacency(T), cfg.tpa_layers, cfg.graph_prior, cfg.graph_global)
               if cfg.use_tpa else nn.Identity())
        self.kpattention = PriorBlock(PriorAttention("kpa", kpa, "Spatial_pos_embed", J, cfg), cfg)
        self.tpattention = PriorBlock(PriorAttention("tpa", tpa, "Temporal_pos_embed", T, cfg), cfg)
        rates = drop_path_rates(cfg.drop_path_rate, cfg.depth + 1)[1:]  # KPA/TPA take dpr[0] = 0
        self.STEblocks, self.TTEblocks = self._blocks(rates)

    def embed(self, x: torch.Tensor, e_t, frames: int) -> torch.Tensor:
        n = x.shape[1]
        x = self.Spatial_norm(self.kpattention(x, self._broadcast_time(e_t, frames)))
        b = x.shape[0] // frames
        x = x.reshape(b, frames, n, -1).transpose(1, 2).reshape(b * n, frames, -1)
        x = self.Temporal_norm(self.tpattention(x))
        return x.reshape(b, n, frames, -1).transpose(1, 2).reshape(b * frames, n, -1)
