"""Build models from config sections: the one place that wires denoiser, skeletons and diffusion."""
from __future__ import annotations

import torch

from .config import from_dict, to_dict
from .diffusion import D3DP, DiffusionConfig, SamplingConfig, migrate_sampling_keys
from .models import ModelConfig, build_model
from .skeleton import get_skeleton


def build_diffusion(model_cfg: ModelConfig, diffusion_cfg: DiffusionConfig,
                    sampling: SamplingConfig | None = None) -> D3DP:
    """The D3DP wrapper around ``build_model(model_cfg)``, with the flip lists of its layouts and its
    sampling defaults (SamplingConfig() when None)."""
    if not model_cfg.diffusion:
        raise ValueError("a D3DP wrapper needs a diffusion denoiser (model.diffusion: true)")
    skeleton = get_skeleton(model_cfg.layout)
    keypoints = get_skeleton(model_cfg.keypoint_layout) if model_cfg.keypoint_layout else skeleton
    return D3DP(build_model(model_cfg), diffusion_cfg, skeleton, keypoints, sampling)


def build_from_config(sections: dict) -> torch.nn.Module:
    """Rebuild a model from a config dict with 'model' (and 'diffusion', 'sampling') sections; the
    sampling keys of older files (diffusion.num_hypotheses, ...) are read where they were."""
    sections, _ = migrate_sampling_keys(sections)
    model_cfg = from_dict(ModelConfig, sections.get("model", {}), prefix="model.")
    if not model_cfg.diffusion:
        return build_model(model_cfg)
    return build_diffusion(model_cfg, from_dict(DiffusionConfig, sections.get("diffusion", {}), "diffusion."),
                           from_dict(SamplingConfig, sections.get("sampling", {}), "sampling."))


def window_length(model) -> int:
    """T, the frames per window the model is built for: the denoiser config's num_frames of a D3DP model,
    the config's of a lifter, or ``model.num_frames`` (stand-ins such as test stubs)."""
    cfg = getattr(getattr(model, "pose_estimator", model), "cfg", None)
    T = getattr(cfg, "num_frames", None) or getattr(model, "num_frames", None)
    if not isinstance(T, int) or T < 1:
        raise ValueError("cannot tell the model's window length: expected model.pose_estimator.cfg.num_frames "
                         "(a D3DP model), model.cfg.num_frames (a lifter) or model.num_frames")
    return T


def model_sections(model: torch.nn.Module) -> dict:
    """The config sections that rebuild ``model``."""
    if isinstance(model, D3DP):
        return {"model": to_dict(model.pose_estimator.cfg), "diffusion": to_dict(model.cfg),
                "sampling": to_dict(model.sampling)}
    return {"model": to_dict(model.cfg)}
