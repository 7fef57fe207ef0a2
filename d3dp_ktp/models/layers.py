"""Transformer pieces shared by KTPFormer and MixSTE (docs/method.md §2.3-2.6, §3.1)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """timm's stochastic depth: one keep draw per row of the first axis, kept rows scaled by 1/(1-p)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class Attention(nn.Module):
    """Multi-head self-attention, qkv with bias, scale d^-1/2 (docs/method.md §2.3 step 6).

    'sdpa' and 'math' compute the same softmax(q k^T / sqrt(d)) v; sdpa lets GPUs use fused kernels.
    """

    def __init__(self, dim: int, num_heads: int, mode: str = "sdpa"):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.mode = mode
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.mode == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            out = attn @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Linear(C, rC) -> exact GELU -> Linear(rC, C); dropout is 0 everywhere in both papers."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; both LayerNorms use eps 1e-6 (docs/method.md §2.4)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, attention: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attention)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SinusoidalEmbedding(nn.Module):
    """D3DP's sinusoidal embedding of the raw integer step t (docs/method.md §3.1): [sin | cos], (B,) -> (B, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        arg = t[:, None] * freq[None, :]
        return torch.cat((arg.sin(), arg.cos()), dim=-1)


def time_mlp(dim: int) -> nn.Sequential:
    """sinusoidal(C) -> Linear(C, 2C) -> GELU -> Linear(2C, C); keys time_mlp.1 / time_mlp.3 as D3DP."""
    return nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))


def drop_path_rates(rate: float, n: int) -> list[float]:
    """linspace(0, rate, n) as python floats (docs/method.md §2.6)."""
    return [x.item() for x in torch.linspace(0, rate, n)]
