"""Performance helpers: mixed precision, torch.compile, FLOP counting, MFU and memory-budgeted batching.

Nothing here changes what the model computes. The helpers wrap an existing ``D3DP`` (or a bare
denoiser) so that ``bench/bench.py``, training and evaluation can opt in to faster execution:

    with autocast("cuda", "bf16"):                    # matmuls in bf16, schedule maths stays fp32
        x0 = d3dp.sample(x2d)
    compile_denoiser(d3dp, "max-autotune")            # torch.compile on d3dp.pose_estimator
    flops = count_flops(d3dp.sample, x2d)             # FLOPs of one call (2 per multiply-add)
    n = max_windows_for_budget(d3dp, 243, H=20, flip=True, bytes_budget=60 * 2**30)

Shape legend: B windows, H hypotheses, K DDIM steps, T frames, J joints, C channels.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import statistics
import time
import warnings
from typing import Callable, Iterable

import torch
from torch.utils import flop_counter

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------- mixed precision
def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'fp32' | 'bf16' | 'fp16' | a torch dtype | None (= fp32) -> torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {list(DTYPES)} (or None for fp32), got {dtype!r}")


def autocast(device: str | torch.device, dtype: str | torch.dtype | None):
    """Autocast context for ``D3DP.sample`` / ``D3DP.loss``; fp32 or None gives a no-op context.

    Only autocast-listed ops (linear, matmul, sdpa) drop to bf16/fp16; LayerNorm, softmax and the
    DDIM arithmetic stay in fp32, and ``predict_x0``/``loss`` cast the network output back to fp32.
    fp16 training additionally needs ``torch.amp.GradScaler`` (bf16 does not). On a CPU without
    hardware support for the dtype (`cpu_native_half`) it warns once: emulated half-precision
    matmuls plus the casts are slower than fp32, not faster.
    """
    dt = resolve_dtype(dtype)
    device_type = torch.device(device).type
    if dt == torch.float32:
        return contextlib.nullcontext()
    if device_type == "cuda" and dt == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"this GPU ({torch.cuda.get_device_name()}) has no bf16 support; use dtype 'fp16'")
    if device_type == "cpu" and not cpu_native_half(dt):
        _warn_emulated(dt)
    return torch.autocast(device_type, dtype=dt)


# CPU features with hardware bf16/fp16 arithmetic: x86 AVX512-BF16 / AMX-BF16 (Cooper Lake, Sapphire
# Rapids, Zen 4+) and AVX512-FP16 / AMX-FP16; Arm's BF16 extension and half-precision SIMD (asimdhp).
# Without them oneDNN and the autocast casts emulate the dtype through fp32, several times slower.
_NATIVE_CPU_FLAGS = {torch.bfloat16: ("avx512_bf16", "amx_bf16", "bf16"),
                     torch.float16: ("avx512_fp16", "amx_fp16", "asimdhp")}


def cpu_features() -> set[str]:
    """Lower-case CPU feature names: torch's own detection (cpuinfo) where available, else /proc/cpuinfo."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        try:
            return {name.lower() for name, present in capabilities().items() if present is True}
        except (RuntimeError, AttributeError):
            pass
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln.split(":", 1)[1] for ln in f if ln.split(":", 1)[0].strip() in ("flags", "Features")]
    except OSError:
        return set()
    return {flag.lower() for line in lines[:1] for flag in line.split()}


def cpu_native_half(dtype: str | torch.dtype) -> bool:
    """True if this CPU computes ``dtype`` (bf16 or fp16) in hardware; True for fp32."""
    dt = resolve_dtype(dtype)
    return dt == torch.float32 or bool(set(_NATIVE_CPU_FLAGS[dt]) & cpu_features())


def _warn_emulated(dt: torch.dtype) -> None:
    global _WARNED_EMULATED
    if dt in _WARNED_EMULATED:  # once per process: the sampler enters autocast at every step
        return
    _WARNED_EMULATED = _WARNED_EMULATED | {dt}
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dt]
    flags = "/".join(f.upper() for f in _NATIVE_CPU_FLAGS[dt][:2])
    warnings.warn(f"this CPU has no native {name} ({flags}): {name} autocast is emulated and typically 2-8x "
                  "slower than fp32 here; use dtype fp32 on this CPU", RuntimeWarning, stacklevel=3)


_WARNED_EMULATED: frozenset = frozenset()


# --------------------------------------------------------------------------- torch.compile
class CompiledForward:
    """A denoiser's ``forward`` replaced by its compiled version, with a guarded fall-back to eager.

    torch.compile compiles lazily, at the first call for each input shape, so failures (no C++
    compiler, no Triton, an unsupported op) surface there. ``on_error='raise'`` turns them into a
    RuntimeError that says how to run without compiling; ``'warn'`` warns once and runs eager.
    Errors that are not compilation errors (shape checks, out of memory) propagate unchanged.
    """

    def __init__(self, eager: Callable, on_error: str, **options):
        self.eager, self.on_error, self.options = eager, on_error, options
        self.compiled = torch.compile(eager, **options)
        self.error: Exception | None = None     # the compile error once we fell back to eager

    def __deepcopy__(self, memo):
        # A copied torch.compile wrapper would keep calling the *original* module, so an EMA copy
        # would silently run the live weights: compile the copy's own forward instead.
        return CompiledForward(copy.deepcopy(self.eager, memo), self.on_error, **self.options)

    def __call__(self, *args, **kwargs):
        if self.error is not None:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as err:
            summary = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            if self.on_error == "raise":
                raise RuntimeError(f"torch.compile of the denoiser failed ({summary}). Run without compiling "
                                   "(bench.py: drop --compile) or pass on_error='warn' to fall back to eager.") from err
            warnings.warn(f"torch.compile of the denoiser failed ({summary}); running eager instead", RuntimeWarning)
            self.error = err
            return self.eager(*args, **kwargs)

    @property
    def active(self) -> bool:
        """True while calls go through the compiled graph (False after a fall-back)."""
        return self.error is None


def compile_denoiser(model: torch.nn.Module, mode: str = "default", *, backend: str | Callable = "inductor",
                     on_error: str = "warn", dynamic: bool = False) -> torch.nn.Module:
    """torch.compile ``model.pose_estimator`` (a D3DP wrapper) or ``model`` itself (a bare denoiser), in place.

    Shapes are fixed per run (``dynamic=False``): one graph for sampling (B·(1+flip), H, T, J) and one
    for training (B, T, J). ``mode='reduce-overhead'`` adds CUDA graphs on GPU (the sampler consumes
    each output before the next call, as cudagraph replays require). Only ``forward`` is replaced,
    by an instance attribute, so ``state_dict`` keys, hooks and checkpoints are unchanged;
    ``del denoiser.forward`` undoes it; ``copy.deepcopy`` gives the copy its own compiled forward.
    Returns ``model`` for chaining.
    """
    if on_error not in ("warn", "raise"):
        raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
    denoiser = getattr(model, "pose_estimator", model)
    if isinstance(denoiser.__dict__.get("forward"), CompiledForward):
        raise ValueError("the denoiser is already compiled; `del denoiser.forward` first to recompile")
    denoiser.forward = CompiledForward(denoiser.forward, on_error, mode=mode, backend=backend, dynamic=dynamic)
    return model


def compiled_forward(model: torch.nn.Module) -> CompiledForward | None:
    """The CompiledForward installed by compile_denoiser, or None for an eager model."""
    denoiser = getattr(model, "pose_estimator", model)
    forward = denoiser.__dict__.get("forward")
    return forward if isinstance(forward, CompiledForward) else None


# --------------------------------------------------------------------------- FLOPs
def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                             **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA sdpa kernels (flash, efficient, cudnn) but not the CPU one, so an
# sdpa model on CPU would silently lose its attention FLOPs; register the same formula for it.
_EXTRA_FLOP_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    _EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward] = \
        _cpu_sdpa_backward_flops


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """Total FLOPs (2 per multiply-add, matmul/attention only) of one call ``fn(*args, **kwargs)``.

    The call really runs (it doubles as a warm-up); a backward inside ``fn`` is counted too.
    Elementwise ops, norms and softmax are not counted, as in the usual MFU convention.
    """
    with flop_counter.FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def saved_for_backward_bytes(fn: Callable, exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``fn()`` (its activations).

    A device-free measure of training activation memory: run ``fn`` (a forward returning the loss;
    its graph is dropped afterwards) anywhere, CPU included. Storages of ``exclude`` (the parameters,
    counted with the optimiser state instead) are skipped. Attention kernels differ by device: the
    CPU math path keeps the T×T probabilities, a GPU flash kernel only their log-sum-exp, so a CPU
    figure over-estimates a GPU one by up to 4·B·J·heads·T² bytes per temporal layer.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip and t.device.type != "meta":
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def denoiser_flops(cfg, sequences: int = 1) -> int:
    """Analytic forward FLOPs of ``sequences`` denoiser passes over (T, J) tokens (cross-check of count_flops).

    N = T·J tokens, r = mlp_ratio. Per transformer layer: N·C²·(8 + 4r) for qkv, proj and the MLP,
    plus 4·C·(T·J² or J·T²) for q·kᵀ and attn·v over the spatial (or temporal) axis. A graph conv
    over n nodes and m node sets adds 4·m·n·c_in·C (the two weight matrices) + 4·m·n²·C (A·h).
    KTPFormer (docs/method.md §2.5) has 2·(depth+1) layers, KPA, the stacked TPA and the head; MixSTE has
    2·depth layers and a Linear patch embedding. The time MLP (8·C² per window) is ignored.
    """
    T, J, C, r = cfg.num_frames, cfg.num_joints, cfg.channels, cfg.mlp_ratio
    N, c_in = T * J, (5 if cfg.diffusion else 2)
    pairs = cfg.depth + 1 if cfg.arch == "ktpformer" else cfg.depth
    per_pair = 2 * N * C * C * (8 + 4 * r) + 4 * C * (T * J * J + J * T * T)   # one spatial + one temporal layer
    flops = pairs * per_pair + 2 * N * C * 3                                   # + head Linear(C, 3)
    if cfg.arch == "ktpformer" and cfg.use_kpa:
        flops += 4 * N * c_in * C + 4 * T * J * J * C                     # KPA over J joints, T frames
    else:
        flops += 2 * N * c_in * C                                         # Linear patch embedding
    if cfg.arch == "ktpformer" and cfg.use_tpa:
        flops += cfg.tpa_layers * (4 * N * C * C + 4 * J * T * T * C)      # TPA over T frames, J joints
        if cfg.mode == "pmd":                                             # its first layer reads c_in, not C
            flops -= 4 * N * (C - c_in) * C
    return int(round(flops * sequences))


# --------------------------------------------------------------------------- peak rates and MFU
# Dense (no sparsity) datasheet peaks in TFLOP/s per GPU: (bf16, fp16, tf32, fp32 without tensor cores).
# Matched by substring of torch.cuda.get_device_name(), first match wins (so NVL/PCIe before SXM).
PEAK_TFLOPS: list[tuple[str, dict[str, float | None]]] = [
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H200 NVL", {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),   # SXM (HBM3)
    ("H200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("GH200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.0, "fp16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2}),
    ("V100", {"bf16": None, "fp16": 125.0, "tf32": None, "fp32": 15.7}),
]


def peak_tflops_for_name(name: str, dtype: str | torch.dtype | None, tf32: bool = False) -> float | None:
    """Datasheet dense peak for a GPU name; None when unknown. ``tf32``: fp32 matmuls use TF32."""
    dt = resolve_dtype(dtype)
    key = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dt, "tf32" if tf32 else "fp32")
    for pattern, peaks in PEAK_TFLOPS:
        if pattern in name:
            return peaks[key]
    return None


def peak_device_tflops(device: str | torch.device, dtype: str | torch.dtype | None) -> float | None:
    """Peak TFLOP/s of ``device`` for matmuls in ``dtype``; None on CPU or an unknown GPU (no MFU then)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    tf32 = torch.get_float32_matmul_precision() != "highest"
    return peak_tflops_for_name(torch.cuda.get_device_name(device), dtype, tf32)


def mfu(flops: float, seconds: float, peak_tflops: float | None) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the peak (a fraction), None without a peak."""
    if peak_tflops is None or seconds <= 0:
        return None
    return flops / seconds / (peak_tflops * 1e12)


# --------------------------------------------------------------------------- timing
def synchronize(device: str | torch.device) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable, device: str | torch.device, warmup: int = 1, iters: int = 5) -> list[float]:
    """Seconds per call of ``fn()`` for ``iters`` calls after ``warmup`` untimed ones.

    On CUDA each call is bracketed by events and the host synchronises once, after the last call,
    so host-side launch overhead overlaps the device work as it would in a real loop.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type != "cuda":
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def measure_matmul_tflops(device: str | torch.device, dtype: str | torch.dtype | None, n: int = 4096,
                          iters: int = 10) -> float:
    """Achieved TFLOP/s of an n×n×n matmul in ``dtype`` (median of ``iters``): the practical ceiling.

    Random operands, since zeros run faster on some GPUs than real data; two operand sets alternate
    so repeated calls do not just re-read one cached pair.
    """
    device, dt = torch.device(device), resolve_dtype(dtype)
    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(n, n, generator=g).to(device, dt), torch.randn(n, n, generator=g).to(device, dt))
             for _ in range(2)]
    calls = itertools.count()
    times = time_calls(lambda: torch.mm(*pairs[next(calls) % 2]), device, warmup=2, iters=iters)
    return 2 * n ** 3 / statistics.median(times) / 1e12


# --------------------------------------------------------------------------- memory budget
# Peak live activations of one no-grad denoiser pass, in units of T·J·C fp32 values per sequence:
# measured on CPU with a storage tracker (tests/test_perf.py) as 8.4-10.1 for sdpa (the stacked TPA
# stage and the MLP, 2·mlp_ratio·C wide, are the peaks); 12 leaves a margin. Under autocast the
# residual stream and LayerNorms stay fp32, so the fp32 figure bounds bf16/fp16 as well.
_TOKEN_FACTOR = 12


def window_activation_bytes(cfg, num_hypotheses: int, flip: bool) -> int:
    """Estimated peak activation bytes of one window (H hypotheses, ×2 with flip) during sampling.

    bytes = 4 · n · (12·T·J·C + A),  n = H·(2 if flip else 1) sequences,
    A = 2·heads·(J·T² + T·J²) for attention='math' (scores and softmax of the temporal and spatial
    attention are materialised), 0 for 'sdpa' (fused kernels never hold the T×T matrix).
    """
    T, J, C = cfg.num_frames, cfg.num_joints, cfg.channels
    n = num_hypotheses * (2 if flip else 1)
    attn = 2 * cfg.num_heads * (J * T * T + T * J * J) if cfg.attention == "math" else 0
    return 4 * n * (_TOKEN_FACTOR * T * J * C + attn)


def max_windows_for_budget(model: torch.nn.Module, T: int, H: int, flip: bool, bytes_budget: int, *,
                           K: int = 1, dtype: str | torch.dtype | None = None) -> int:
    """How many T-frame windows one ``D3DP.sample`` call can take within ``bytes_budget`` (>= 1).

    budget = weights (+ 2 bytes per parameter for the autocast copies under bf16/fp16)
             + B · (window_activation_bytes + 4·(K + 4)·H·T·J·3 for x, ε̂, z and the K outputs).
    Returns max(1, floor((budget - weights) / per_window)): 1 means "no batching fits", not a
    guarantee that one window fits. On CUDA pass ~0.8 × torch.cuda.mem_get_info()[0] as the budget
    to leave room for allocator fragmentation and the cuBLAS workspace.
    """
    denoiser = getattr(model, "pose_estimator", model)
    cfg = denoiser.cfg
    if T != cfg.num_frames:
        raise ValueError(f"the model was built for T={cfg.num_frames} frames, not T={T}")
    if H < 1 or K < 1:
        raise ValueError(f"H and K must be >= 1, got H={H}, K={K}")
    params = sum(p.numel() for p in denoiser.parameters())
    weights = params * (4 + (0 if resolve_dtype(dtype) == torch.float32 else 2))
    per_window = window_activation_bytes(cfg, H, flip) + 4 * (K + 4) * H * T * cfg.num_joints * 3
    return max(1, int((bytes_budget - weights) // per_window))
