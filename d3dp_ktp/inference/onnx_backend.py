"""ONNX Runtime backend for sampling: the denoiser exported once to ONNX, run by ONNX Runtime on the CPU.

Only the network moves; the D3DP sampler (DDIM loop, flip averaging, clamps, noise) stays the torch
code of `D3DP.sample`, so with the same latents and step noise both backends run the same loop and
differ only by float rounding inside the network (~1e-6 m per pass)::

    model, _ = load_checkpoint("runs/ktp/best")
    fast = onnx_model(model, checkpoint="runs/ktp/best")   # exports on first use, then reuses the file
    result = lift(fast, x2d, LiftConfig())                 # the same call as with `model`

`onnx_model` returns a new `D3DP` (same diffusion config and skeletons, hence the same scheduler)
whose ``pose_estimator`` is an `OnnxDenoiser`: a parameter-free module that hands x2d, x_t and t to
an ONNX Runtime session. The model passed in is not modified.

Export (our choice): the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``), opset 17,
one dynamic batch axis. The torch.export-based exporter (the default since torch 2.9) needs the
extra package ``onnxscript``; the TorchScript one needs only torch, exports the demo model in about
a second and its graph passes ``onnx.checker`` and matches torch to ~1e-6. The network is exported
with hypotheses folded into the batch, (N, T, J, c) with N = B·H·(2 with flip), so one file serves
every H, batch size and flip setting.

Cache: ``<checkpoint folder>/onnx/denoiser-<key>.onnx`` (beside an official ``.bin`` for a file),
where ``key`` hashes the weights, the model config and the export settings; when that folder is not
writable (an installed, read-only checkpoint) the file goes to the user cache directory
(``$XDG_CACHE_HOME/d3dp-ktp/onnx``, default ``~/.cache/d3dp-ktp/onnx``) with a note saying so. Files
are written to a temporary name in the same folder and renamed, so a killed export leaves no
half-written model.

Install the optional dependencies with ``pip install "onnx>=1.14" "onnxruntime>=1.16"`` (the
``onnx`` extra of pyproject.toml).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from d3dp_ktp.atomic import atomic_file
from d3dp_ktp.diffusion import D3DP

INSTALL_HINT = 'pip install "onnx>=1.14" "onnxruntime>=1.16"'
BACKENDS = ("torch", "onnx")
CACHE_ENV = "D3DP_KTP_CACHE_DIR"   # overrides the user cache directory (used by the tests)
_FORMAT = "d3dp-ktp onnx denoiser v1"  # bump when the exported graph's inputs/outputs change
_INPUTS = ("x2d", "x_t", "t")
_GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OnnxConfig:
    opset: int = 17                   # ONNX opset; 17 has LayerNormalization and runs on ORT >= 1.12
    graph_optimization: str = "all"   # ORT graph optimisation level: disable | basic | extended | all
    threads: int | None = None        # ORT intra-op threads; None = torch.get_num_threads() (--threads)
    spinning: bool = False            # ORT worker threads busy-wait between ops: faster on an idle
                                      # machine, much slower when other jobs share the cores
    check_atol: float = 1e-4          # export check: max |ORT - torch| in metres on random inputs

    def validate(self) -> None:
        if not 13 <= self.opset <= 21:
            raise ValueError(f"ONNX opset must be between 13 and 21, got {self.opset}")
        if self.graph_optimization not in _GRAPH_LEVELS:
            raise ValueError(f"graph_optimization must be one of {', '.join(_GRAPH_LEVELS)}, "
                             f"got '{self.graph_optimization}'")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"ONNX Runtime threads must be >= 1, got {self.threads}")


def check_backend(name: str) -> None:
    """'torch' or 'onnx'; 'onnx' also needs onnxruntime (and onnx to export): a clear error if missing."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got '{name}'")
    if name == "onnx":
        _import("onnxruntime")


def _import(module: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise ValueError(f"the ONNX backend needs the package '{module}', which is not installed "
                         f"({err}); install it with: {INSTALL_HINT}") from err


# ----------------------------------------------------------------------------- export and cache

class _FoldedDenoiser(nn.Module):
    """The denoiser on hypothesis-folded inputs: x2d (N, T, J, 2), x_t (N, T, J, 3), t (N,) -> (N, T, J, 3)."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x2d, x_t, t):
        return self.denoiser(x2d, x_t, t)


def cache_key(denoiser: nn.Module, cfg: OnnxConfig) -> str:
    """sha256 (first 16 hex digits) of the weights, the model config and what shapes the exported graph."""
    h = hashlib.sha256()
    meta = {"format": _FORMAT, "opset": cfg.opset, "torch": torch.__version__.split("+")[0],
            "model": asdict(denoiser.cfg), "class": type(denoiser).__name__}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, tensor in sorted(denoiser.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def user_cache_dir() -> Path:
    """Where exports go when the checkpoint's folder is read-only: $D3DP_KTP_CACHE_DIR, else
    $XDG_CACHE_HOME/d3dp-ktp/onnx, else ~/.cache/d3dp-ktp/onnx."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "d3dp-ktp" / "onnx"


def cache_path(checkpoint: str | Path | None, key: str) -> Path:
    """``<checkpoint folder>/onnx/denoiser-<key>.onnx`` if that folder is writable, else the user cache."""
    name = f"denoiser-{key}.onnx"
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        folder = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "onnx"
        if (folder / name).is_file() or _writable(folder):
            return folder / name
        fallback = user_cache_dir() / name
        print(f"note: {folder} is not writable; the ONNX export is cached in {fallback}", file=sys.stderr)
        return fallback
    return user_cache_dir() / name


def _writable(folder: Path) -> bool:
    """True if files can be created in ``folder`` (made if missing); tried, since os.access misjudges
    read-only mounts and ACLs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            return True
    except OSError:
        return False


def export_denoiser(denoiser: nn.Module, path: str | Path, cfg: OnnxConfig = OnnxConfig()) -> Path:
    """Export ``denoiser`` to ``path`` (atomic), check it with onnx.checker and against torch; returns path.

    The graph takes x2d (N, T, J, 2) float32, x_t (N, T, J, 3) float32 and t (N,) int64, N dynamic,
    and returns x0 (N, T, J, 3). Raises ValueError if ONNX Runtime's output differs from torch's by
    more than ``cfg.check_atol`` on random inputs of another batch size than the traced one.
    """
    onnx = _import("onnx")
    cfg.validate()
    path = Path(path)
    was_training = denoiser.training
    net = _FoldedDenoiser(denoiser).eval()   # BatchNorm running statistics, as in sampling
    try:
        with atomic_file(path) as tmp:       # a checked file appears under its name, or nothing does
            _trace_export(net, str(tmp), cfg)
            onnx.checker.check_model(str(tmp))
            _check_against_torch(net, str(tmp), cfg)
    finally:
        denoiser.train(was_training)
    return path


def _example_inputs(denoiser: nn.Module, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    T, J = denoiser.cfg.num_frames, denoiser.cfg.num_joints
    return (torch.rand(n, T, J, 2, generator=g) * 2 - 1, torch.randn(n, T, J, 3, generator=g),
            torch.randint(0, 1000, (n,), generator=g))


def _trace_export(net: _FoldedDenoiser, path: str, cfg: OnnxConfig) -> None:
    inputs = _example_inputs(net.denoiser, 2, seed=0)
    axes = {name: {0: "N"} for name in (*_INPUTS, "x0")}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about the denoiser's input shape checks (Python bools from shapes) and the
        # legacy exporter about itself; the checks hold for any batch, which _check_against_torch verifies.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, path, dynamo=False, opset_version=cfg.opset, input_names=list(_INPUTS),
                          output_names=["x0"], dynamic_axes=axes, do_constant_folding=True)


def _check_against_torch(net: _FoldedDenoiser, path: str, cfg: OnnxConfig) -> None:
    """ORT vs torch on random inputs with 3 sequences (the trace had 2), so a baked-in batch size fails."""
    inputs = _example_inputs(net.denoiser, 3, seed=1)
    session = make_session(path, cfg)
    got = session.run(None, {k: v.numpy() for k, v in zip(_INPUTS, inputs)})[0]
    with torch.no_grad():
        want = net(*inputs).numpy()
    err = float(np.abs(got - want).max())
    if not err <= cfg.check_atol:
        raise ValueError(f"the ONNX export of the denoiser differs from torch by {err:.3g} (> {cfg.check_atol}) "
                         "on random inputs; use the torch backend (--backend torch)")


def make_session(path: str | Path, cfg: OnnxConfig = OnnxConfig()):
    """An ONNX Runtime CPU session for ``path`` with ``cfg``'s threads and graph optimisation."""
    ort = _import("onnxruntime")
    cfg.validate()
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.threads or torch.get_num_threads()
    so.inter_op_num_threads = 1        # the graph is one chain of ops: nothing to run side by side
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[cfg.graph_optimization]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.spinning else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- the stand-in denoiser

class OnnxDenoiser(nn.Module):
    """Stands in for the denoiser inside `D3DP`: ``forward(x2d, x_t, t)`` with the torch call's shapes.

    x2d (B, T, J, 2) or (B, H, T, J, 2), x_t (B, T, J, 3) or (B, H, T, J, 3), t (B,) -> x0 like x_t.
    Hypotheses are folded into the batch here, as the torch denoiser does inside. Runs on the CPU
    in fp32; ``cfg`` is the exported model's config (D3DP's shape checks read it).
    """

    def __init__(self, session, model_cfg, path: Path | None = None):
        super().__init__()
        self.session, self.cfg, self.path = session, model_cfg, path

    def forward(self, x2d: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_t.device.type != "cpu":
            raise ValueError(f"the ONNX backend runs on the CPU, got tensors on {x_t.device}; use --device cpu")
        if torch.is_autocast_enabled("cpu"):
            raise ValueError("the ONNX backend runs in fp32; use dtype 'fp32' (or the torch backend for bf16/fp16)")
        lead = x_t.shape[:-3]
        H = x_t.shape[1] if x_t.dim() == 5 else 1
        if x2d.dim() == 4 and x_t.dim() == 5:
            x2d = x2d.unsqueeze(1).expand(-1, H, -1, -1, -1)
        feed = {"x2d": _numpy(x2d.reshape(-1, *x2d.shape[-3:]), np.float32),
                "x_t": _numpy(x_t.reshape(-1, *x_t.shape[-3:]), np.float32),
                "t": _numpy(torch.as_tensor(t).reshape(-1).repeat_interleave(H), np.int64)}
        out = self.session.run(None, feed)[0]
        return torch.from_numpy(out).reshape(*lead, *out.shape[-3:])


def _numpy(x: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy(), dtype=dtype)


def onnx_model(model: D3DP, checkpoint: str | Path | None = None, cfg: OnnxConfig = OnnxConfig(),
               verbose: bool = True) -> D3DP:
    """A copy of ``model`` whose denoiser runs in ONNX Runtime; exports once per weights (see module doc).

    ``checkpoint``: the folder or .bin the model was loaded from (the export is cached beside it);
    None caches in the user cache directory. ``model`` itself is left unchanged.
    """
    if not isinstance(model, D3DP):
        raise ValueError(f"the ONNX backend samples D3DP diffusion models, got {type(model).__name__}")
    cfg.validate()
    check_backend("onnx")
    denoiser = model.pose_estimator
    if isinstance(denoiser, OnnxDenoiser):
        return model
    path = cache_path(checkpoint, cache_key(denoiser, cfg))
    session = None
    if path.is_file():
        try:
            session = make_session(path, cfg)
        except Exception as err:  # ORT raises its own classes (InvalidProtobuf, Fail...) for a damaged file
            print(f"note: the cached ONNX export {path} cannot be read ({type(err).__name__}); exporting it again",
                  file=sys.stderr)
    if session is None:
        if verbose:
            print(f"exporting the denoiser to ONNX (once for these weights): {path}", file=sys.stderr)
        export_denoiser(denoiser if _on_cpu(denoiser) else _cpu_copy(denoiser), path, cfg)
        session = make_session(path, cfg)
    return D3DP(OnnxDenoiser(session, denoiser.cfg, path), model.cfg, model.skeleton, model.keypoint_skeleton,
                model.sampling)


def _on_cpu(module: nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in module.parameters())


def _cpu_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).cpu()
