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

import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .diffusion import migrate_sampling_keys
from .factory import build_from_config, model_sections
from .official import load_official

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"


def save_checkpoint(model: torch.nn.Module, path: str | Path, config: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically. ``config`` adds sections (data, train...)."""
    path = Path(path)
    _recover(path)  # a previous save killed mid-swap: its old folder becomes the one this save replaces
    sections = {**(config or {}), **model_sections(model)}
    if meta:
        sections["meta"] = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(yaml.safe_dump(sections, sort_keys=False))
        _fsync_dir(tmp)
        _replace_dir(tmp, path)
    except OSError as err:  # disk full, read-only folder...: say which checkpoint was not written
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(err, "checkpoint", path) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_error(err: OSError, what: str, path: Path) -> OSError:
    """``err`` re-worded to name ``path``; the errno is kept, so a PermissionError stays one."""
    message = f"cannot write {what} {path}: {err.strerror or err}; the previous {what} is kept"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)


def _fsync_dir(folder: Path) -> None:
    """Flush every file, and give the folder the permissions a plain mkdir/open would have: mkdtemp
    makes it private (0700), which would hide a shared checkpoint from other users."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _recover(path: Path) -> None:
    """Undo a save killed between the two renames of _replace_dir: the previous checkpoint sits in
    ``.<name>.old`` and ``path`` is missing, so put it back."""
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and (old / CONFIG_NAME).is_file():
        os.replace(old, path)


def _replace_dir(tmp: Path, path: Path) -> None:
    """Swap ``tmp`` into ``path``; the old folder is kept aside until the new one is in place."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    _recover(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    sections = read_config(path)
    if eval_mode:  # the evaluation model has no drop-path (SPEC §2.6)
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

