"""Import checkpoints written by the official KTPFormer and D3DP training scripts (docs/method.md §2.9, §6.8).

An official file is a pickled dict {epoch, lr, random_state, optimizer, model_pos}; model_pos is a
DataParallel state dict (keys prefixed ``module.``). D3DP's keys are ``pose_estimator.*`` plus 12
float64 schedule buffers, which are recomputed from the config and so ignored here. Every other key
must be accounted for; architecture sizes are read off the tensor shapes.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import numpy.random._pickle as nprp
import torch

try:
    from numpy._core import multiarray  # NumPy >= 2
except ImportError:  # NumPy 1.x names the same module numpy.core
    from numpy.core import multiarray

from .diffusion import DiffusionConfig
from .factory import build_diffusion
from .models import ModelConfig, build_model

SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)
LAYOUT_BY_JOINTS = {17: "h36m", 15: "humaneva15"}


def _numpy_safe_globals() -> list:
    """Exactly the NumPy globals needed to unpickle a RandomState (and its uint32 key array)."""
    return [nprp.__randomstate_ctor, nprp.__bit_generator_ctor, np.random.mtrand.RandomState,
            np.random.MT19937, multiarray._reconstruct, (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            np.ndarray, np.dtype, np.dtypes.UInt32DType, np.dtypes.Float64DType, np.dtypes.Int64DType]


def torch_load_untrusted(path: str | Path) -> object:
    """torch.load with weights_only=True and the RandomState allow-list; clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"refusing to load {path}: it contains objects outside the safe allow-list "
                         f"(weights_only=True). Detail: {str(err).splitlines()[-1][:300]}") from None
    except Exception as err:  # noqa: BLE001  any parse failure of a foreign file is the file's fault
        raise ValueError(f"cannot read {path}: not a PyTorch checkpoint, or truncated/corrupted "
                         f"({type(err).__name__}: {str(err)[:200]})") from None


def official_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """model_pos (or a bare state dict) with the DataParallel ``module.`` prefix stripped."""
    state = obj.get("model_pos", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} holds no model state dict (expected a dict with 'model_pos')")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _depth(state: dict, prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"STEblocks\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def infer_model_config(state: dict, prefix: str, arch: str, **overrides) -> ModelConfig:
    """Frames, joints, channels, depth, MLP ratio, input channels and ablation switches from shapes."""
    C = state[prefix + "head.1.weight"].shape[1]
    if arch == "mixste":
        T = state[prefix + "Temporal_pos_embed"].shape[1]
        J = state[prefix + "Spatial_pos_embed"].shape[1]
        c_in = state[prefix + "Spatial_patch_to_embedding.weight"].shape[1]
        extra = {}
    else:
        T = state[prefix + "tpattention.attn.Temporal_pos_embed"].shape[1]
        J = state[prefix + "kpattention.attn.Spatial_pos_embed"].shape[1]
        kpa = prefix + "kpattention.attn.kpa."
        use_kpa = kpa + "gconv.W" in state
        c_in = state[kpa + "gconv.W"].shape[1] if use_kpa else state[kpa + "weight"].shape[1]
        tpa = prefix + "tpattention.attn.tpa."
        extra = dict(use_kpa=use_kpa, use_tpa=tpa + "gconv1.gconv.W" in state,
                     tpa_layers=2 if tpa + "gconv2.gconv.W" in state else 1,
                     graph_global=any(k.endswith("adj2") for k in state))
    if c_in not in (2, 5):
        raise ValueError(f"input embedding takes {c_in} channels; expected 2 (lifter) or 5 (denoiser)")
    if J not in LAYOUT_BY_JOINTS and "layout" not in overrides:
        raise ValueError(f"checkpoint has {J} joints; pass layout=... to name its skeleton")
    mlp_ratio = state[prefix + "STEblocks.0.mlp.fc1.weight"].shape[0] / C
    values = dict(arch=arch, diffusion=c_in == 5, num_frames=T, num_joints=J, layout=LAYOUT_BY_JOINTS.get(J, ""),
                  channels=C, depth=_depth(state, prefix), mlp_ratio=mlp_ratio, drop_path_rate=0.0, **extra)
    values.update(overrides)
    return ModelConfig(**values)


def detect_official(state: dict, source: str) -> tuple[str, str]:
    """('d3dp'|'ktpformer', arch) from the key layout."""
    if any(k.startswith("pose_estimator.") for k in state):
        arch = "mixste" if "pose_estimator.Spatial_patch_to_embedding.weight" in state else "ktpformer"
        return "d3dp", arch
    if any(k.startswith("kpattention.") for k in state):
        return "ktpformer", "ktpformer"
    raise ValueError(f"{source} is neither an official KTPFormer nor a D3DP checkpoint "
                     f"(first keys: {list(state)[:5]})")


def load_official(path: str | Path, diffusion: DiffusionConfig | None = None, **model_overrides) -> torch.nn.Module:
    """Read an official .bin and return our model in eval mode: a KTPFormer lifter, or a D3DP wrapper.

    ``model_overrides`` sets what shapes cannot tell (``num_heads``, ``layout``, ``graph_prior``).
    """
    source = str(path)
    state = official_state_dict(torch_load_untrusted(path), source)
    kind, arch = detect_official(state, source)
    prefix = "pose_estimator." if kind == "d3dp" else ""
    if kind == "d3dp":
        state = {k: v for k, v in state.items() if k not in SCHEDULE_BUFFERS}
    try:
        cfg = infer_model_config(state, prefix, arch, **model_overrides)
    except KeyError as err:  # a key the architecture is read from is absent: say which, in the caller's terms
        raise ValueError(f"{source} is missing the key 'module.{err.args[0]}' needed to infer the "
                         "architecture; the file is not a complete official checkpoint") from None
    model = build_diffusion(cfg, diffusion or DiffusionConfig()) if kind == "d3dp" else build_model(cfg)
    load_state_strict(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, source)
    return model.eval()


def load_state_strict(model: torch.nn.Module, state: dict, source: str) -> None:
    """load_state_dict that names every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"weights in {source} do not fit the model: missing keys {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''}, shape mismatches {shapes[:5]}")
    model.load_state_dict(state, strict=True)

