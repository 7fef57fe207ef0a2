"""A literal, functional re-implementation of the official KTPFormer / D3DP code paths (docs/method.md §1-§4).

Written from docs/method.md alone and in the official repos' style (SemGCN graph utilities, timm-style
attention, einops-like rearranges spelled out with permute/reshape, DiffusionDet-style sampler), so
that the library in ``d3dp_ktp`` can be checked against something that shares none of its code.
Nothing here imports ``d3dp_ktp``.

Every network function takes a *state dict with the official key names* (docs/method.md §2.9, §3.1-3.2), with
or without the DataParallel ``module.`` prefix stripped, and runs in evaluation mode: BatchNorm uses
its running statistics, dropout and drop-path are the identity. The fixed graph A is rebuilt here
from the skeleton (it is not in official state dicts).

Shape legend: B batch, H hypotheses, T frames, J joints (17), C channels, K DDIM steps.
"""
from __future__ import annotations

import math

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# Skeleton (docs/method.md §1.1): VideoPose3D's Skeleton.remove_joints, then the shoulder rewiring.
# ----------------------------------------------------------------------------------------------
H36M32_PARENTS = [-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20,
                  19, 22, 12, 24, 25, 26, 27, 28, 27, 30]
H36M32_LEFT = [6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23]
H36M32_RIGHT = [1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31]
H36M32_REMOVED = [4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31]


def remove_joints(parents, joints_left, joints_right, joints_to_remove):
    """VideoPose3D ``Skeleton.remove_joints`` transcribed (loops and index offsets as there)."""
    parents = list(parents)
    valid_joints = [j for j in range(len(parents)) if j not in joints_to_remove]
    for i in range(len(parents)):
        while parents[i] in joints_to_remove:
            parents[i] = parents[parents[i]]
    index_offsets = np.zeros(len(parents), dtype=int)
    new_parents = []
    for i, parent in enumerate(parents):
        if i not in joints_to_remove:
            new_parents.append(int(parent - index_offsets[parent]))
        else:
            index_offsets[i:] += 1
    new_left = [int(j - index_offsets[j]) for j in joints_left if j in valid_joints]
    new_right = [int(j - index_offsets[j]) for j in joints_right if j in valid_joints]
    return new_parents, new_left, new_right


def h36m17():
    """(parents, joints_left, joints_right) of the 17-joint H36M skeleton as the loader builds it."""
    parents, left, right = remove_joints(H36M32_PARENTS, H36M32_LEFT, H36M32_RIGHT, H36M32_REMOVED)
    parents[11] = 8  # Human36mDataset rewires both shoulders to the thorax
    parents[14] = 8
    return parents, left, right


# ----------------------------------------------------------------------------------------------
# Graph utilities (docs/method.md §1.2-1.3): SemGCN's adj_mx_from_edges, KTPFormer flavour (diag := 1).
# ----------------------------------------------------------------------------------------------
def _normalize_rows(mx: np.ndarray) -> np.ndarray:
    rowsum = mx.sum(1)
    with np.errstate(divide="ignore"):
        r_inv = np.power(rowsum, -1).flatten()
    r_inv[np.isinf(r_inv)] = 0.0
    return (np.diag(r_inv) @ mx).astype(np.float32)


def adj_mx_from_edges(num_pts: int, edges) -> torch.Tensor:
    adj = np.zeros((num_pts, num_pts), dtype=np.float32)
    for i, j in edges:
        adj[i, j] = 1.0
    gt = (adj.T > adj).astype(np.float32)
    adj = adj + adj.T * gt - adj * gt  # "build symmetric adjacency matrix"
    adj = _normalize_rows(adj)         # no + I before normalising (KTPFormer, unlike D3DP's copy)
    adj = torch.tensor(adj, dtype=torch.float)
    for i in range(num_pts):           # then the diagonal is overwritten with 1
        adj[i, i] = 1.0
    return adj


def adj_from_parents(parents) -> torch.Tensor:
    edges = [(i, p) for i, p in enumerate(parents) if p >= 0]
    return adj_mx_from_edges(len(parents), edges)


def spatial_adj_h36m() -> torch.Tensor:
    return adj_from_parents(h36m17()[0])


def temporal_adj(num_frames: int) -> torch.Tensor:
    return adj_from_parents([f - 1 for f in range(num_frames)])


# ----------------------------------------------------------------------------------------------
# Layers, functional (docs/method.md §2.1-2.4)
# ----------------------------------------------------------------------------------------------
def linear(x, p, pre):
    return torch.matmul(x, p[pre + "weight"].t()) + p[pre + "bias"]


def layer_norm(x, p, pre, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * p[pre + "weight"] + p[pre + "bias"]


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def softmax(x):
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def mhsa(x, p, pre, heads):
    """timm Attention: qkv (bias) -> (3, B, h, N, d), softmax(q k^T d^-1/2) v, merge, proj."""
    B, N, C = x.shape
    qkv = linear(x, p, pre + "qkv.").reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = softmax(torch.matmul(q, k.transpose(-2, -1)) * (C // heads) ** -0.5)
    out = torch.matmul(attn, v).transpose(1, 2).reshape(B, N, C)
    return linear(out, p, pre + "proj.")


def mlp(x, p, pre):
    return linear(gelu(linear(x, p, pre + "fc1.")), p, pre + "fc2.")


def block(x, p, pre, heads):
    """Standard pre-norm Block, LayerNorm eps 1e-6 (docs/method.md §2.4)."""
    x = x + mhsa(layer_norm(x, p, pre + "norm1.", 1e-6), p, pre + "attn.", heads)
    return x + mlp(layer_norm(x, p, pre + "norm2.", 1e-6), p, pre + "mlp.")


def learnable_graph_conv(x, p, pre, A):
    """docs/method.md §2.1: S = sym(A + Â); y = (S∘I)(M∘xW0) + (S∘(1-I))(M∘xW1) + b."""
    W, M, adj2, bias = p[pre + "W"], p[pre + "M"], p[pre + "adj2"], p[pre + "bias"]
    h0 = torch.matmul(x, W[0])
    h1 = torch.matmul(x, W[1])
    adj = A.to(x.device) + adj2
    adj = (adj.T + adj) / 2
    E = torch.eye(adj.size(0), dtype=torch.float)
    out = torch.matmul(adj * E, M * h0) + torch.matmul(adj * (1 - E), M * h1)
    return out + bias.view(1, 1, -1)


def batch_norm_eval(x, p, pre, eps=1e-5):
    """BatchNorm1d in eval mode on (S, C, N): running statistics per channel."""
    rm, rv = p[pre + "running_mean"][None, :, None], p[pre + "running_var"][None, :, None]
    return (x - rm) / torch.sqrt(rv + eps) * p[pre + "weight"][None, :, None] + p[pre + "bias"][None, :, None]


def graph_conv_bn_relu(x, p, pre, A):
    """KPA / TPA (docs/method.md §2.2): ReLU(BN(GCN(x))), BN on the (S, C, N) layout."""
    x = learnable_graph_conv(x, p, pre + "gconv.", A).transpose(1, 2)
    x = batch_norm_eval(x, p, pre + "bn.").transpose(1, 2)
    return torch.relu(x)


def sinusoidal_embedding(time, dim):
    """D3DP's SinusoidalPositionEmbeddings (docs/method.md §3.1): [sin | cos] of the raw integer step."""
    half_dim = dim // 2
    emb = math.log(10000) / (half_dim - 1)
    emb = torch.exp(torch.arange(half_dim) * -emb)
    emb = time[:, None] * emb[None, :]
    return torch.cat((emb.sin(), emb.cos()), dim=-1)


def time_mlp(t, p, pre):
    dim = p[pre + "time_mlp.1.weight"].shape[1]
    h = sinusoidal_embedding(t, dim)
    return linear(gelu(linear(h, p, pre + "time_mlp.1.")), p, pre + "time_mlp.3.")


# ----------------------------------------------------------------------------------------------
# Shared pieces of both networks: input folding (docs/method.md §3.1 training/inference shapes) and the
# alternating spatial/temporal stack (docs/method.md §2.5 step 8).
# ----------------------------------------------------------------------------------------------
def _fold_input(x_2d, x_3d, t, p, pre, C):
    """Returns tokens (b f, n, c_in), the time embedding (b f, n, C) or None, and the output shape."""
    if x_3d is None:  # deterministic lifter
        b, f, n, c = x_2d.shape
        return x_2d.reshape(b * f, n, c), None, (b, f, n, 3)
    if x_3d.dim() == 4:  # training shapes: (B, T, J, .)
        x = torch.cat((x_2d, x_3d), dim=-1)
        b, f, n, c = x.shape
        x = x.reshape(b * f, n, c)                                   # 'b f n c -> (b f) n c'
        te = time_mlp(t, p, pre)[:, None, None, :].repeat(1, f, n, 1)
        return x, te.reshape(b * f, n, C), (b, f, n, 3)
    # inference shapes: x_2d (B, T, J, 2), x_3d (B, H, T, J, 3)
    x_2d = x_2d[:, None].repeat(1, x_3d.shape[1], 1, 1, 1)
    x = torch.cat((x_2d, x_3d), dim=-1)
    b, h, f, n, c = x.shape
    x = x.reshape(b * h * f, n, c)                                   # 'b h f n c -> (b h f) n c'
    te = time_mlp(t, p, pre)[:, None, None, None, :].repeat(1, h, f, n, 1)
    return x, te.reshape(b * h * f, n, C), (b, h, f, n, 3)


def _spatial_to_temporal(x, f):
    """'(b f) n c -> (b n) f c'"""
    bf, n, c = x.shape
    return x.reshape(bf // f, f, n, c).permute(0, 2, 1, 3).reshape(bf // f * n, f, c)


def _temporal_to_spatial(x, n):
    """'(b n) f c -> (b f) n c'"""
    bn, f, c = x.shape
    return x.reshape(bn // n, n, f, c).permute(0, 2, 1, 3).reshape(bn // n * f, n, c)


def _st_stack(x, p, pre, heads, f, n, first):
    i = first
    while pre + f"STEblocks.{i}.norm1.weight" in p:
        x = block(x, p, pre + f"STEblocks.{i}.", heads)
        x = layer_norm(x, p, pre + "Spatial_norm.", 1e-6)
        x = _spatial_to_temporal(x, f)
        x = block(x, p, pre + f"TTEblocks.{i}.", heads)
        x = layer_norm(x, p, pre + "Temporal_norm.", 1e-6)
        x = _temporal_to_spatial(x, n)
        i += 1
    return x


def _head(x, p, pre, out_shape):
    x = layer_norm(x, p, pre + "head.0.", 1e-5)
    return linear(x, p, pre + "head.1.").reshape(out_shape)


def strip_module(state: dict) -> dict:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


# ----------------------------------------------------------------------------------------------
# KTPFormer (docs/method.md §2.5) and the KTPFormer denoiser (docs/method.md §3.2)
# ----------------------------------------------------------------------------------------------
def ktpformer_forward(p, x_2d, x_3d=None, t=None, heads=8, pre=""):
    """KTPFormer lifter (x_3d None) or denoiser; (B,T,J,3) or (B,H,T,J,3)."""
    p = strip_module(p)
    C = p[pre + "head.1.weight"].shape[1]
    f = x_2d.shape[1]
    A_s, A_t = spatial_adj_h36m(), temporal_adj(f)
    x, te, out_shape = _fold_input(x_2d, x_3d, t, p, pre, C)
    n = x.shape[1]
    # KPA_Block: KPAttention (KPA, +P_s [+ e_t], pre-norm MHSA with LN eps 1e-5, residual), MLP.
    a = pre + "kpattention.attn."
    x = graph_conv_bn_relu(x, p, a + "kpa.", A_s)
    x = x + p[a + "Spatial_pos_embed"]
    if te is not None:
        x = x + te
    x = x + mhsa(layer_norm(x, p, a + "norm1.", 1e-5), p, a, heads)
    x = x + mlp(layer_norm(x, p, pre + "kpattention.norm2.", 1e-6), p, pre + "kpattention.mlp.")
    x = layer_norm(x, p, pre + "Spatial_norm.", 1e-6)
    x = _spatial_to_temporal(x, f)
    # TPA_Block: StackedTPA (residual), +P_t, pre-norm MHSA, MLP.
    a = pre + "tpattention.attn."
    z = graph_conv_bn_relu(x, p, a + "tpa.gconv1.", A_t)
    z = graph_conv_bn_relu(z, p, a + "tpa.gconv2.", A_t)
    x = x + z
    x = x + p[a + "Temporal_pos_embed"]
    x = x + mhsa(layer_norm(x, p, a + "norm1.", 1e-5), p, a, heads)
    x = x + mlp(layer_norm(x, p, pre + "tpattention.norm2.", 1e-6), p, pre + "tpattention.mlp.")
    x = layer_norm(x, p, pre + "Temporal_norm.", 1e-6)
    x = _temporal_to_spatial(x, n)
    x = _st_stack(x, p, pre, heads, f, n, first=0)
    return _head(x, p, pre, out_shape)


# ----------------------------------------------------------------------------------------------
# D3DP's MixSTE2 (docs/method.md §3.1)
# ----------------------------------------------------------------------------------------------
def mixste2_forward(p, x_2d, x_3d, t, heads=8, pre=""):
    """STE_forward, TTE_foward, ST_foward and the head; (B,T,J,3) or (B,H,T,J,3)."""
    p = strip_module(p)
    C = p[pre + "head.1.weight"].shape[1]
    f = x_2d.shape[1]
    x, te, out_shape = _fold_input(x_2d, x_3d, t, p, pre, C)
    n = x.shape[1]
    x = linear(x, p, pre + "Spatial_patch_to_embedding.")
    x = x + p[pre + "Spatial_pos_embed"]
    x = x + te
    x = block(x, p, pre + "STEblocks.0.", heads)
    x = layer_norm(x, p, pre + "Spatial_norm.", 1e-6)
    x = _spatial_to_temporal(x, f)
    x = x + p[pre + "Temporal_pos_embed"]
    x = block(x, p, pre + "TTEblocks.0.", heads)
    x = layer_norm(x, p, pre + "Temporal_norm.", 1e-6)
    x = _temporal_to_spatial(x, n)
    x = _st_stack(x, p, pre, heads, f, n, first=1)
    return _head(x, p, pre, out_shape)


# ----------------------------------------------------------------------------------------------
# Official key lists (docs/method.md §2.9, §3.1, §3.2), for checking our state dicts
# ----------------------------------------------------------------------------------------------
_WB = ("weight", "bias")
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _block_keys(pre):
    return [f"{pre}{m}.{w}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
            for w in _WB]


def _common_keys(depth, first):
    keys = []
    for i in range(first, depth):
        keys += _block_keys(f"STEblocks.{i}.") + _block_keys(f"TTEblocks.{i}.")
    return keys + [f"{m}.{w}" for m in ("Spatial_norm", "Temporal_norm", "head.0", "head.1") for w in _WB]


def ktpformer_keys(depth=7, diffusion=False) -> set[str]:
    a = "kpattention.attn."
    keys = [a + "kpa.gconv." + w for w in ("W", "M", "adj2", "bias")] + [a + "kpa.bn." + w for w in _BN]
    keys += [a + "Spatial_pos_embed"] + [f"{a}{m}.{w}" for m in ("qkv", "proj", "norm1") for w in _WB]
    keys += [f"kpattention.{m}.{w}" for m in ("norm2", "mlp.fc1", "mlp.fc2") for w in _WB]
    a = "tpattention.attn."
    for g in ("gconv1", "gconv2"):
        keys += [f"{a}tpa.{g}.gconv.{w}" for w in ("W", "M", "adj2", "bias")]
        keys += [f"{a}tpa.{g}.bn.{w}" for w in _BN]
    keys += [a + "Temporal_pos_embed"] + [f"{a}{m}.{w}" for m in ("qkv", "proj", "norm1") for w in _WB]
    keys += [f"tpattention.{m}.{w}" for m in ("norm2", "mlp.fc1", "mlp.fc2") for w in _WB]
    keys += _common_keys(depth, 0)
    if diffusion:
        keys += [f"time_mlp.{i}.{w}" for i in (1, 3) for w in _WB]
    return set(keys)


def mixste2_keys(depth=8) -> set[str]:
    keys = ["Spatial_patch_to_embedding.weight", "Spatial_patch_to_embedding.bias", "Spatial_pos_embed",
            "Temporal_pos_embed"] + [f"time_mlp.{i}.{w}" for i in (1, 3) for w in _WB]
    return set(keys + _common_keys(depth, 0))


# ----------------------------------------------------------------------------------------------
# D3DP diffusion (docs/method.md §4.1, §4.4, §4.5)
# ----------------------------------------------------------------------------------------------
def cosine_beta_schedule(timesteps=1000, s=0.008) -> np.ndarray:
    """Nichol & Dhariwal's cosine betas as D3DP computes them, float64 (NumPy here)."""
    steps = timesteps + 1
    x = np.linspace(0, timesteps, steps, dtype=np.float64)
    alphas_cumprod = np.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - (alphas_cumprod[1:] / alphas_cumprod[:-1])
    return np.clip(betas, 0, 0.999)


def d3dp_buffers(timesteps=1000) -> dict[str, torch.Tensor]:
    """The 12 float64 (timesteps,) buffers registered by the official D3DP wrapper."""
    betas = cosine_beta_schedule(timesteps)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    out = {
        "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac), "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1), "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.clip(post_var, 1e-20, None)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in out.items()}


def time_pairs(sampling_timesteps, total_timesteps=1000):
    times = torch.linspace(-1, total_timesteps - 1, steps=sampling_timesteps + 1)
    times = list(reversed(times.int().tolist()))
    return list(zip(times[:-1], times[1:]))


def _extract(a, t, x_shape):
    b = t.shape[0]
    out = a.gather(-1, t)
    return out.reshape(b, *((1,) * (len(x_shape) - 1)))


def _flip(x, left, right):
    x = x.clone()
    x[..., 0] *= -1
    x[..., left + right, :] = x[..., right + left, :]
    return x


def ddim_sample(model_fn, inputs_2d, latents, step_noise=None, sampling_timesteps=5, eta=1.0,
                flip=True, scale=1.0, joints_left=(4, 5, 6, 11, 12, 13), joints_right=(1, 2, 3, 14, 15, 16),
                kps_left=None, kps_right=None):
    """D3DP's ``ddim_sample_flip`` (docs/method.md §4.4-4.5) with the randomness supplied.

    model_fn(x2d (B,T,J,2), x_t (B,H,T,J,3), t (B,)) -> (B,H,T,J,3). latents: the initial ``img``;
    step_noise[k]: the ``randn_like`` draw of step k (k < K-1). With flip=False it is the same loop
    without the mirrored pass (the official non-flip path is broken, docs/method.md §12.10; this is its intent).
    Returns the stacked x_start of every step, (B, K, H, T, J, 3).
    """
    jl, jr = list(joints_left), list(joints_right)
    kl = jl if kps_left is None else list(kps_left)
    kr = jr if kps_right is None else list(kps_right)
    buf = d3dp_buffers()
    batch = inputs_2d.shape[0]
    input_2d_flip = _flip(inputs_2d, kl, kr)
    img = latents.clone().float()
    preds_all = []
    for k, (time, time_next) in enumerate(time_pairs(sampling_timesteps)):
        time_cond = torch.full((batch,), time, dtype=torch.long)
        # model_predictions
        x_t = torch.clamp(img, min=-1.1 * scale, max=1.1 * scale) / scale
        pred_pose = model_fn(inputs_2d, x_t, time_cond)
        if flip:
            x_t_flip = _flip(x_t, jl, jr)
            pred_pose_flip = _flip(model_fn(input_2d_flip, x_t_flip, time_cond), jl, jr)
            pred_pose = (pred_pose + pred_pose_flip) / 2
        x_start = torch.clamp(pred_pose * scale, min=-1.1 * scale, max=1.1 * scale)
        pred_noise = ((_extract(buf["sqrt_recip_alphas_cumprod"], time_cond, img.shape) * img - x_start)
                      / _extract(buf["sqrt_recipm1_alphas_cumprod"], time_cond, img.shape))
        pred_noise = pred_noise.float()
        preds_all.append(x_start)
        if time_next < 0:
            img = x_start
            continue
        alpha = buf["alphas_cumprod"][time]
        alpha_next = buf["alphas_cumprod"][time_next]
        sigma = eta * ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
        c = (1 - alpha_next - sigma ** 2).sqrt()
        noise = step_noise[k] if step_noise is not None else torch.zeros_like(x_start)
        img = x_start * alpha_next.sqrt() + c * pred_noise + sigma * noise
    return torch.stack(preds_all, dim=1)


def q_sample_train(y, t, noise, scale=1.0):
    """D3DP's prepare_diffusion_concat per sample: clamp(q_sample(scale·y), ±1.1·scale)/scale."""
    buf = d3dp_buffers()
    x = (_extract(buf["sqrt_alphas_cumprod"], t, y.shape) * (y * scale)
         + _extract(buf["sqrt_one_minus_alphas_cumprod"], t, y.shape) * noise)
    return (torch.clamp(x, min=-1.1 * scale, max=1.1 * scale) / scale).float()
