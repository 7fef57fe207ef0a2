"""KTPFormer's graph convolutions: LearnableGraphConv, KPA/TPA, the stacked TPA (docs/method.md §2.1-2.2) and
the input-level TPA of the PMD ablation (our choice)."""
from __future__ import annotations

import math

import torch
from torch import nn


class LearnableGraphConv(nn.Module):
    """y_i = S_ii (m_i ∘ x_i W0) + Σ_{j≠i} S_ij (m_j ∘ x_j W1) + b, with S = sym(A + Â) (docs/method.md §2.1).

    A (the fixed local topology) is a non-persistent buffer: it moves with the module but, as in
    the official code, is not part of the state dict and is rebuilt from the skeleton/frame count.
    """

    def __init__(self, in_features: int, out_features: int, adj: torch.Tensor,
                 use_prior: bool = True, use_global: bool = True):
        super().__init__()
        n = adj.shape[0]
        self.W = nn.Parameter(torch.zeros(2, in_features, out_features))
        nn.init.xavier_uniform_(self.W.data, gain=1.414)
        self.M = nn.Parameter(torch.ones(n, out_features))
        self.register_buffer("adj", adj.clone() if use_prior else torch.zeros_like(adj), persistent=False)
        # Â, "simulated global topology", initialised to 1e-6 everywhere.
        self.adj2 = nn.Parameter(torch.full((n, n), 1e-6)) if use_global else None
        self.bias = nn.Parameter(torch.zeros(out_features))
        stdv = 1.0 / math.sqrt(out_features)
        self.bias.data.uniform_(-stdv, stdv)
        self.register_buffer("eye", torch.eye(n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.matmul(x, self.W[0])
        h1 = torch.matmul(x, self.W[1])
        adj = self.adj + self.adj2 if self.adj2 is not None else self.adj
        adj = (adj.T + adj) / 2
        out = torch.matmul(adj * self.eye, self.M * h0) + torch.matmul(adj * (1 - self.eye), self.M * h1)
        return out + self.bias.view(1, 1, -1)


class GraphConvBNReLU(nn.Module):
    """KPA / TPA: ReLU(BatchNorm1d(GCN(x))) with BN statistics per channel over samples × nodes."""

    def __init__(self, in_features: int, out_features: int, adj: torch.Tensor,
                 use_prior: bool = True, use_global: bool = True):
        super().__init__()
        self.gconv = LearnableGraphConv(in_features, out_features, adj, use_prior, use_global)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gconv(x).transpose(1, 2)
        return self.relu(self.bn(x).transpose(1, 2))


class StackedTPA(nn.Module):
    """Z = X + TPA_2(TPA_1(X)) over the frame axis (docs/method.md §2.2); one layer for the SMD-S ablation."""

    def __init__(self, dim: int, adj: torch.Tensor, layers: int = 2,
                 use_prior: bool = True, use_global: bool = True):
        super().__init__()
        self.gconv1 = GraphConvBNReLU(dim, dim, adj, use_prior, use_global)
        self.gconv2 = GraphConvBNReLU(dim, dim, adj, use_prior, use_global) if layers == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gconv1(x)
        if self.gconv2 is not None:
            out = self.gconv2(out)
        return x + out


class InputTPA(nn.Module):
    """PMD's TPA on the raw input (our choice; no official code): Z1 = TPA_1(X), Z = Z1 + TPA_2(Z1).

    X is (B·J, T, c_in) with c_in = 2 (lifter) or 5 (denoiser), so TPA_1 maps c_in -> C and the
    residual can only start after it; with one layer Z = Z1. Keys match StackedTPA (gconv1/gconv2).
    """

    def __init__(self, in_features: int, dim: int, adj: torch.Tensor, layers: int = 2,
                 use_prior: bool = True, use_global: bool = True):
        super().__init__()
        self.gconv1 = GraphConvBNReLU(in_features, dim, adj, use_prior, use_global)
        self.gconv2 = GraphConvBNReLU(dim, dim, adj, use_prior, use_global) if layers == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gconv1(x)
        return z if self.gconv2 is None else z + self.gconv2(z)
