"""SamplingConfig: how a D3DP model samples (H, K, eta, flip, dtype, seed), and the command-line flags
that override it. Free of torch, so the scripts can build their --help without importing it.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Mapping

DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class SamplingConfig:
    """How a D3DP model draws its hypotheses (docs/method.md §4.4-4.5), in one place.

    A model carries one (``D3DP.sampling``) and every checkpoint stores it as its ``sampling``
    section, so ``D3DP.sample``, sample.py and the eval/ scripts default to the values the model
    was saved with; an argument or flag given overrides them (`override`). Validated once, when
    built. The batch size is not here: in lifting it only trades memory for speed, in evaluation it
    is part of the official protocol (EvalConfig.batch_size).
    """
    num_hypotheses: int = 5           # H (D3DP's README default; the paper's comparison uses 20)
    num_steps: int = 5                # K DDIM steps (paper: 10)
    eta: float = 1.0                  # DDIM η: 1 = D3DP's stochastic sampler, 0 = deterministic DDIM
    flip: bool = True                 # flip test-time augmentation inside every step (docs/method.md §4.5)
    dtype: str = "fp32"               # 'bf16'/'fp16': the denoiser under autocast (GPU fast path)
    seed: int = 1                     # seeds every sampling noise (D3DP evaluates with seed 1)

    def __post_init__(self):
        self.validate()

    def validate(self, num_train_timesteps: int = 1000) -> None:
        check_sampling_args(self.num_hypotheses, self.num_steps, self.eta, num_train_timesteps)
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be true or false, got {self.flip!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'fp32', 'bf16' or 'fp16', got '{self.dtype}'")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def override(self, **values) -> "SamplingConfig":
        """A copy with the given values; None means "keep this one" (an absent command-line flag)."""
        given = {k: v for k, v in values.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self


def check_sampling_args(num_hypotheses: int, num_steps: int, eta: float, num_train_timesteps: int = 1000) -> None:
    """Validate H, K and eta with messages that say what is allowed."""
    if not isinstance(num_hypotheses, int) or num_hypotheses < 1:
        raise ValueError(f"num_hypotheses (H) must be an integer >= 1, got {num_hypotheses!r}")
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps (K) must be an integer in [1, {num_train_timesteps}], got {num_steps!r}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0 (1 = D3DP's DDIM, 0 = deterministic DDIM), got {eta!r}")


# Where the sampling settings lived before SamplingConfig (checkpoints and experiment YAML files
# written until then): section -> {old key: SamplingConfig field}. `migrate_sampling_keys` maps them.
LEGACY_SAMPLING_KEYS = {
    "diffusion": {"num_hypotheses": "num_hypotheses", "num_steps": "num_steps", "eta": "eta", "flip": "flip"},
    "eval": {"num_hypotheses": "num_hypotheses", "num_steps": "num_steps", "eta": "eta", "flip": "flip",
             "dtype": "dtype", "seed": "seed"},
}
# train.* -> train.val_sampling.*
LEGACY_VALIDATION_KEYS = {"val_hypotheses": "num_hypotheses", "val_steps": "num_steps"}


def migrate_sampling_keys(sections: Mapping) -> tuple[dict, list[str]]:
    """Config sections with the pre-SamplingConfig keys moved to ``sampling`` / ``train.val_sampling``.

    Returns (sections, notes): each note names an old key and where it went. Values already under the
    new keys win; of the old ones, eval.* wins over diffusion.* (the eval settings were the ones the
    eval/ scripts used).
    """
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in sections.items()}
    notes: list[str] = []
    moved: dict = {}
    for section in ("diffusion", "eval"):  # later sections override earlier ones
        values = out.get(section)
        if isinstance(values, dict):
            for old, new in LEGACY_SAMPLING_KEYS[section].items():
                if old in values:
                    moved[new] = values.pop(old)
                    notes.append(f"{section}.{old} -> sampling.{new}")
    if moved:
        current = out.get("sampling")
        out["sampling"] = {**moved, **(current if isinstance(current, Mapping) else {})}
    train = out.get("train")
    if isinstance(train, dict) and any(k in train for k in LEGACY_VALIDATION_KEYS):
        val = {new: train.pop(old) for old, new in LEGACY_VALIDATION_KEYS.items() if old in train}
        notes += [f"train.{old} -> train.val_sampling.{new}" for old, new in LEGACY_VALIDATION_KEYS.items()
                  if new in val]
        current = train.get("val_sampling")
        train["val_sampling"] = {**val, **(current if isinstance(current, Mapping) else {})}
    return out, notes


# ----------------------------------------------------------------------------- command line
FLAGS = {"hypotheses": "num_hypotheses", "steps": "num_steps", "eta": "eta", "flip": "flip", "dtype": "dtype",
         "seed": "seed"}  # argparse dest -> SamplingConfig field


def add_sampling_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, dtype_help: str = "") -> None:
    """-H, -K, --eta, --flip/--no-flip, --dtype, --seed. None of them has a value of its own: absent,
    the checkpoint's sampling section decides (`sampling_overrides`), and --help says so."""
    d = SamplingConfig()

    def own(field: str, fallback) -> str:
        return (f"default: the checkpoint's sampling.{field}; {fallback} for an official .bin or a checkpoint "
                "saved without one")

    p.add_argument("-H", "--hypotheses", type=int, metavar="H",
                   help=f"number of 3D hypotheses drawn per frame ({own('num_hypotheses', d.num_hypotheses)})")
    p.add_argument("-K", "--steps", type=int, metavar="K",
                   help=f"DDIM denoising steps ({own('num_steps', d.num_steps)})")
    p.add_argument("--eta", type=float, metavar="ETA",
                   help=f"DDIM eta: 1 = D3DP's stochastic sampler, 0 = deterministic ({own('eta', d.eta)})")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction,
                   help="flip test-time augmentation in every step; --no-flip is 2x faster, slightly worse "
                        f"({own('flip', 'on' if d.flip else 'off')})")
    p.add_argument("--dtype", choices=DTYPES,
                   help=f"precision of the denoiser{dtype_help} ({own('dtype', d.dtype)})")
    p.add_argument("--seed", type=int,
                   help=f"random seed; the same seed gives the same result ({own('seed', d.seed)})")


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The SamplingConfig fields given on the command line (absent flags are left out)."""
    return {field: getattr(args, dest) for dest, field in FLAGS.items() if getattr(args, dest, None) is not None}


def check_sampling_flags(args: argparse.Namespace) -> None:
    """Fail fast, before a checkpoint or input is read: the given flags alone must make a valid config
    (the same messages as `SamplingConfig.validate`); `sampling_for` builds the one used."""
    SamplingConfig().override(**sampling_overrides(args))


def sampling_for(model, args: argparse.Namespace) -> SamplingConfig:
    """The model's sampling settings (its checkpoint's) with the flags given; validated once, here."""
    base = getattr(model, "sampling", None) or SamplingConfig()
    return base.override(**sampling_overrides(args))
