"""KTPFormer (docs/method.md §2) and its use as the D3DP denoiser (docs/method.md §3.2, our choice).

Table 6 of the KTPFormer paper compares four ways to combine KPA and TPA; ``ModelConfig.mode`` picks one:

* ``smd`` (Separate Mode, the paper's model and the official code): KPA -> spatial MHSA, then
  StackedTPA -> temporal MHSA. With ``tpa_layers=1`` it is SMD-S.
* ``umd`` (United Mode) and ``pmd`` (Parallel Mode): no official code exists; the wiring below is our
  reading of the paper's one-sentence descriptions (see ``_embed_umd`` / ``_embed_pmd``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..skeleton import get_skeleton, spatial_adjacency, temporal_adjacency
from .base import SpatioTemporalLifter, to_spatial, to_temporal
from .config import ModelConfig
from .graph import GraphConvBNReLU, InputTPA, StackedTPA
from .layers import Attention, Mlp, drop_path_rates


class PriorAttention(Attention):
    """KPAttention / TPAttention (docs/method.md §2.3): prior(x) + P (+ e_t) -> pre-norm MHSA with residual.

    The residual source is the token after the positional (and time) embedding. Additions are out of
    place: the official in-place add onto the ReLU output breaks autograd on PyTorch 2 (docs/method.md §12.4).
    The drop-path rate of this block is dpr[0] = 0, so the residual is a plain sum.
    """

    def __init__(self, prior_name: str, prior: nn.Module, pos_name: str, tokens: int, cfg: ModelConfig):
        super().__init__(cfg.channels, cfg.num_heads, cfg.attention)
        self.prior_name, self.pos_name = prior_name, pos_name
        self.add_module(prior_name, prior)  # official keys: attn.kpa.* / attn.tpa.*
        self.register_parameter(pos_name, nn.Parameter(torch.zeros(1, tokens, cfg.channels)))
        self.norm1 = nn.LayerNorm(cfg.channels, eps=1e-5)

    @property
    def prior(self) -> nn.Module:
        return getattr(self, self.prior_name)

    @property
    def pos(self) -> nn.Parameter:
        return getattr(self, self.pos_name)

    def tokens(self, x: torch.Tensor, e_t: torch.Tensor | float = 0.0) -> torch.Tensor:
        """prior(x) + P (+ e_t): the embedded tokens that attend() takes."""
        h = self.prior(x) + self.pos
        return h + e_t  # D3DP time embedding, added once after KPA + P_s (docs/method.md §3.2)

    def attend(self, h: torch.Tensor) -> torch.Tensor:
        """h + MHSA(LN(h)) on embedded tokens."""
        return h + super().forward(self.norm1(h))

    def forward(self, x: torch.Tensor, e_t: torch.Tensor | float = 0.0) -> torch.Tensor:
        return self.attend(self.tokens(x, e_t))


class PriorBlock(nn.Module):
    """KPA_Block / TPA_Block: PriorAttention, then x + MLP(LN(x)) with LN eps 1e-6 (docs/method.md §2.4)."""

    def __init__(self, attn: PriorAttention, cfg: ModelConfig):
        super().__init__()
        self.attn = attn
        self.norm2 = nn.LayerNorm(cfg.channels, eps=1e-6)
        self.mlp = Mlp(cfg.channels, int(cfg.channels * cfg.mlp_ratio))

    def transform(self, h: torch.Tensor) -> torch.Tensor:
        """MHSA + MLP on tokens that are already embedded (UMD and PMD embed them elsewhere)."""
        x = self.attn.attend(h)
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, e_t: torch.Tensor | float = 0.0) -> torch.Tensor:
        return self.transform(self.attn.tokens(x, e_t))


class KTPFormer(SpatioTemporalLifter):
    """KPA pair, TPA pair, then ``depth`` STE/TTE pairs with shared norms and an LN+Linear head.

    All three modes have the same modules and state-dict keys; PMD's first TPA graph conv reads the
    c_in input channels instead of C, so its W is (2, c_in, C). ``Spatial_norm``, ``Temporal_norm``,
    ``head`` and ``time_mlp`` come from the base class (base.py), built first.
    """

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
        tpa = self._tpa(c_in)  # built before the attention blocks: keeps the seeded init of earlier versions
        self.kpattention = PriorBlock(PriorAttention("kpa", kpa, "Spatial_pos_embed", J, cfg), cfg)
        self.tpattention = PriorBlock(PriorAttention("tpa", tpa, "Temporal_pos_embed", T, cfg), cfg)
        rates = drop_path_rates(cfg.drop_path_rate, cfg.depth + 1)[1:]  # KPA/TPA take dpr[0] = 0
        self.STEblocks, self.TTEblocks = self._blocks(rates)

    def _tpa(self, c_in: int) -> nn.Module:
        cfg = self.cfg
        if not cfg.use_tpa:
            return nn.Identity()
        adj = temporal_adjacency(cfg.num_frames)
        if cfg.mode == "pmd":  # TPA on the raw input (c_in channels per joint and frame)
            return InputTPA(c_in, cfg.channels, adj, cfg.tpa_layers, cfg.graph_prior, cfg.graph_global)
        return StackedTPA(cfg.channels, adj, cfg.tpa_layers, cfg.graph_prior, cfg.graph_global)

    def forward(self, x2d: torch.Tensor, x_t: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        """x2d (B[, H], T, J, 2) [, x_t (B[, H], T, J, 3), t (B,)] -> (B[, H], T, J, 3) (see base.py)."""
        T, J = self.cfg.num_frames, self.cfg.num_joints
        x, e_t, lead = self.fold_inputs(x2d, x_t, t)     # (B·H·T, J, c_in) spatial tokens, (B·H·T, 1, C)
        embed = {"smd": self._embed_smd, "umd": self._embed_umd, "pmd": self._embed_pmd}[self.cfg.mode]
        x = embed(x, e_t, T)                             # KPA and TPA pairs -> (B·H·T, J, C)
        for ste, tte in zip(self.STEblocks, self.TTEblocks):
            x = to_temporal(self.Spatial_norm(ste(x)), T)  # spatial MHSA over joints, then
            x = to_spatial(self.Temporal_norm(tte(x)), J)  # temporal MHSA over frames
        return self.head(x).reshape(*lead, T, J, 3)

    def _embed_smd(self, x: torch.Tensor, e_t, frames: int) -> torch.Tensor:
        """SMD (official): [KPA + P_s + e_t -> MHSA+MLP] -> [StackedTPA + P_t -> MHSA+MLP]."""
        n = x.shape[1]
        x = self.Spatial_norm(self.kpattention(x, e_t))
        x = self.Temporal_norm(self.tpattention(to_temporal(x, frames)))
        return to_spatial(x, n)

    def _embed_umd(self, x: torch.Tensor, e_t, frames: int) -> torch.Tensor:
        """UMD (our choice): KPA + P_s + e_t -> StackedTPA + P_t -> spatial MHSA+MLP -> temporal MHSA+MLP.

        Paper: "the output of the KPA is fed into the two TPA blocks with a residual connection,
        followed by stacked spatio-temporal encoders". The first STE/TTE pair is the KPA/TPA blocks'
        own MHSA+MLP, so UMD has SMD's modules and parameter count (as Table 6 lists).
        """
        n = x.shape[1]
        h = self.kpattention.attn.tokens(x, e_t)                             # (B·T, J, C)
        h = to_spatial(self.tpattention.attn.tokens(to_temporal(h, frames)), n)
        x = self.Spatial_norm(self.kpattention.transform(h))
        x = self.Temporal_norm(self.tpattention.transform(to_temporal(x, frames)))
        return to_spatial(x, n)

    def _embed_pmd(self, x: torch.Tensor, e_t, frames: int) -> torch.Tensor:
        """PMD (our choice): temporal MHSA+MLP over [spatial branch + TPA(raw input) + P_t].

        Paper: "the input is fed into TPA and Kinematics-Enhanced Transformer simultaneously, and the
        outputs of them are then added together and fed into temporal MHSA". The spatial branch is
        SMD's (KPA + P_s + e_t -> MHSA+MLP -> Spatial_norm); TPA sees the c_in raw channels over frames.
        """
        n = x.shape[1]
        s = to_temporal(self.Spatial_norm(self.kpattention(x, e_t)), frames)  # (B·J, T, C)
        z = self.tpattention.attn.prior(to_temporal(x, frames))               # (B·J, T, C)
        h = s + z + self.tpattention.attn.pos
        x = self.Temporal_norm(self.tpattention.transform(h))
        return to_spatial(x, n)
