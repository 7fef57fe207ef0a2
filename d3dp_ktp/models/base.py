"""What KTPFormer and MixSTE share: input checks, hypothesis folding, token regrouping, shared norms and head."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import Block, time_mlp


def to_temporal(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Spatial tokens to temporal tokens: (b·f, n, c) -> (b·n, f, c)."""
    b, n = x.shape[0] // frames, x.shape[1]
    return x.reshape(b, frames, n, -1).transpose(1, 2).reshape(b * n, frames, -1)


def to_spatial(x: torch.Tensor, joints: int) -> torch.Tensor:
    """Temporal tokens to spatial tokens: (b·n, f, c) -> (b·f, n, c)."""
    b, f = x.shape[0] // joints, x.shape[1]
    return x.reshape(b, joints, f, -1).transpose(1, 2).reshape(b * f, joints, -1)


class SpatioTemporalLifter(nn.Module):
    """What every lifter here shares; each subclass writes its whole ``forward`` (ktpformer.py, mixste.py).

    Shared modules (built first, in this order, so seeded initialisation and state-dict keys stay as
    the official code's): ``Spatial_norm`` and ``Temporal_norm`` (one LayerNorm each, shared by every
    STE/TTE pair), the ``head`` LN + Linear(C, 3) and, for a denoiser, the ``time_mlp`` of D3DP.

    Public call: ``forward(x2d, x_t=None, t=None)``
      x2d: (B, T, J, 2) or (B, H, T, J, 2)   normalised 2D keypoints
      x_t: (B, T, J, 3) or (B, H, T, J, 3)   noisy 3D (diffusion denoisers only)
      t:   (B,) integer diffusion steps       (diffusion denoisers only)
    Returns (B, T, J, 3) or (B, H, T, J, 3): x0 for a denoiser, the 3D pose for a lifter.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.channels
        self.Spatial_norm = nn.LayerNorm(C, eps=1e-6)
        self.Temporal_norm = nn.LayerNorm(C, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, 3))
        if cfg.diffusion:
            self.time_mlp = time_mlp(C)

    def _blocks(self, rates: list[float]) -> tuple[nn.ModuleList, nn.ModuleList]:
        """One spatial (STE) and one temporal (TTE) transformer block per drop-path rate."""
        cfg = self.cfg
        make = lambda p: Block(cfg.channels, cfg.num_heads, cfg.mlp_ratio, p, cfg.attention)  # noqa: E731
        return nn.ModuleList(make(p) for p in rates), nn.ModuleList(make(p) for p in rates)

    def _check(self, x: torch.Tensor, channels: int, name: str) -> None:
        T, J = self.cfg.num_frames, self.cfg.num_joints
        if x.dim() not in (4, 5) or x.shape[-1] != channels:
            raise ValueError(f"{name} must have shape (B, T, J, {channels}) or (B, H, T, J, {channels}), "
                             f"got {tuple(x.shape)}")
        if x.shape[-2] != J:
            raise ValueError(f"{name} has {x.shape[-2]} joints but the model was built for {J} joints "
                             f"(layout '{self.cfg.layout}')")
        if x.shape[-3] != T:
            raise ValueError(f"{name} has {x.shape[-3]} frames but the model was built for T={T} frames; "
                             "pad or cut the sequence into windows of T frames")

    def fold_inputs(self, x2d: torch.Tensor, x_t: torch.Tensor | None, t: torch.Tensor | None):
        """Check the inputs, concatenate [2D, 3D] (2D first) and fold hypotheses and frames into the batch.

        Returns spatial tokens x (B·H·T, J, c_in), the time embedding e_t broadcast to the tokens
        (B·H·T, 1, C) (0.0 for a lifter), and the leading axes (B,) or (B, H) of the output.
        """
        self._check(x2d, 2, "x2d")
        if not self.cfg.diffusion:
            return x2d.reshape(-1, *x2d.shape[-2:]), 0.0, x2d.shape[:-3]
        if x_t is None or t is None:
            raise ValueError("a diffusion denoiser needs x_t (noisy 3D) and t (diffusion steps)")
        self._check(x_t, 3, "x_t")
        lead = x_t.shape[:-3]
        if x2d.dim() == 4 and x_t.dim() == 5:
            x2d = x2d.unsqueeze(1).expand(-1, x_t.shape[1], -1, -1, -1)
        if x2d.shape[:-1] != x_t.shape[:-1]:
            raise ValueError(f"x2d {tuple(x2d.shape)} and x_t {tuple(x_t.shape)} disagree on (B, H, T, J)")
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() != 1 or t.shape[0] != x_t.shape[0]:
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
        hyps = x_t.shape[1] if x_t.dim() == 5 else 1
        e_t = self.time_mlp(t).repeat_interleave(hyps, dim=0)                     # (B·H, C)
        e_t = e_t.repeat_interleave(self.cfg.num_frames, dim=0).unsqueeze(1)      # (B·H·T, 1, C)
        x = torch.cat((x2d, x_t), dim=-1)
        return x.reshape(-1, *x.shape[-2:]), e_t, lead
