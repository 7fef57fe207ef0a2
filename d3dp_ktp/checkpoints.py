"""Checkpoints: our format (safetensors + resolved config) and import of official .bin files.

Our format is a folder::

    model.safetensors        weights of the D3DP wrapper (keys pose_estimator.*) or of a lifter
    config.yaml              the resolved config: model, diffusion, sampling (+ any other sections), meta

The scheduler is rebuilt from the diffusion section (N_t, cosine s), its one source; folders written
before this also hold a scheduler_config.json, which is ignored. Their sampling settings, then kept
as diffusion.num_hypotheses/num_steps/eta/flip (and eval.*, train.val_hypotheses/val_steps), are read
into the sampling section (diffusion.migrate_sampling_keys).

Writes are atomic (temporary folder, then rename), so an interrupted save never destroys the
previous checkpoint. Foreign .bin files are read with ``torch.load(weights_only=True)`` and an
allow-list of the NumPy globals a pickled RandomState needs; pickled code is never executed.
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_dir, recover_dir, write_error
from .diffusion import migrate_sampling_keys
from .factory import build_from_config, model_sections
from .official import load_official, load_state_strict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"


def save_checkpoint(model: torch.nn.Module, path: str | Path, config: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically. ``config`` adds sections (data, train...)."""
    path = Path(path)
    sections = {**(config or {}), **model_sections(model)}
    if meta:
        sections["meta"] = meta
    try:
        # A previous save killed mid-swap is undone first: its old folder becomes the one this replaces.
        with atomic_dir(path, marker=CONFIG_NAME) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME))
            (tmp / CONFIG_NAME).write_text(yaml.safe_dump(sections, sort_keys=False))
    except OSError as err:  # disk full, read-only folder...: say which checkpoint was not written
        raise write_error(err, "checkpoint", path) from err
    return path


def read_config(path: str | Path) -> dict:
    """The config sections stored in a checkpoint folder, older sampling keys moved to ``sampling``."""
    path = Path(path)
    file = path / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a d3dp-ktp checkpoint folder: {file} is missing")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"checkpoint config {file} is corrupted: {err}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"checkpoint config {file} has no 'model' section")
    return migrate_sampling_keys(data)[0]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    eval_mode: bool = True, **official_overrides) -> tuple[torch.nn.Module, dict]:
    """Load our checkpoint folder (or an official .bin); returns (model, config sections).

    ``official_overrides`` are model settings an official .bin cannot tell, passed to `load_official`
    (e.g. keypoint_layout='coco' for D3DP's in-the-wild model); our folders store them already.
    """
    path = Path(path)
    if path.is_file() and path.suffix in (".bin", ".pt", ".pth"):
        model = load_official(path, **official_overrides)
        return model.eval() if eval_mode else model, model_sections(model)
    recover_dir(path, marker=CONFIG_NAME)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    sections = read_config(path)
    if eval_mode:  # the evaluation model has no drop-path (docs/method.md §2.6)
        sections["model"] = {**sections["model"], "drop_path_rate": 0.0}
    model = build_from_config(sections)
    try:
        state = load_file(str(path / WEIGHTS_NAME), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read weights {path / WEIGHTS_NAME}: {err}; the file is missing, "
                         "truncated or corrupted") from None
    load_state_strict(model, state, str(path))
    model.to(map_location)
    return (model.eval() if eval_mode else model), sections
