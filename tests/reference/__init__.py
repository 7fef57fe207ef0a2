"""Test-only helpers: the independent reference (``official_ref``) and seeded model fixtures.

Nothing in this package is imported by the library. ``official_ref`` does not import ``d3dp_ktp``;
the helpers below only touch modules through ``state_dict()``.
"""
from __future__ import annotations

import torch

# A tiny configuration that still exercises every code path (hypotheses, graphs, several pairs).
TINY = dict(num_frames=9, channels=32, num_heads=4, drop_path_rate=0.0)


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int, out_scale: float = 0.3) -> torch.nn.Module:
    """Give every floating tensor of ``module.state_dict()`` non-trivial values, seeded.

    Biases, LayerNorm/BatchNorm affine parameters, BN running statistics, the learnable topology Â
    (asymmetric, so the symmetrisation matters), the modulation M and the positional embeddings all
    move away from their (often symmetric or zero) initial values; matrices keep their random init.
    The output head is shrunk so that x̂0 rarely hits the ±1.1 clamp of the sampler.
    """
    g = torch.Generator().manual_seed(seed)
    for key, v in module.state_dict().items():
        if not v.is_floating_point():
            continue
        n = lambda: torch.randn(v.shape, generator=g, dtype=v.dtype)  # noqa: E731
        u = lambda: torch.rand(v.shape, generator=g, dtype=v.dtype)   # noqa: E731
        if key.endswith("running_var"):
            v.copy_(0.5 + u())
        elif key.endswith("running_mean"):
            v.copy_(0.2 * n())
        elif key.endswith("adj2"):
            v.copy_(0.3 * u())
        elif key.endswith(".M"):
            v.copy_(1.0 + 0.3 * n())
        elif key.endswith("pos_embed"):
            v.copy_(0.5 * n())
        elif key.endswith("bias"):
            v.copy_(0.1 * n())
        elif key.endswith("weight") and v.dim() == 1:
            v.copy_(1.0 + 0.2 * n())
        if key.endswith("head.1.weight"):
            v.mul_(out_scale)
    return module

