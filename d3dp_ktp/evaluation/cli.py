"""The command line shared by eval/h36m.py, eval/mpi_inf_3dhp.py and eval/humaneva.py.

Each script describes its dataset with a :class:`DatasetCLI` (defaults and a loader) and calls
:func:`main`; parsing, checkpoint loading, the evaluation runs and the report are the same for all.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..checkpoints import WEIGHTS_NAME, load_checkpoint
from ..data.dataset import PoseDataset
from ..official import load_official
from ..sampling import add_sampling_arguments, sampling_for
from .config import MODES, EvalConfig
from .report import write_report
from .runner import EvalResult, evaluate, window_length

DEFAULT_OUT = "outputs/eval"  # where the eval/ scripts write md/csv/json/png


@dataclass(frozen=True)
class DatasetCLI:
    name: str                                   # file prefix of the outputs, e.g. 'h36m'
    description: str                            # the script's --help text
    subjects: tuple[str, ...]                   # default test subjects
    load: Callable[[argparse.Namespace], PoseDataset]
    batch_size: int = 4                         # official windows per batch
    actions: str = "*"
    keypoints: str | None = None                # default 2D source; None: the dataset has only one
    by_subject: bool = False
    load_official_kwargs: dict = dataclasses.field(default_factory=dict)  # e.g. layout for 17-joint 3DHP .bin
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None  # dataset-specific options


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,5,20; got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"hypothesis counts must be integers >= 1, got '{text}'")
    return values


def build_parser(spec: DatasetCLI) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=spec.description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="our checkpoint folder or an official D3DP .bin file")
    p.add_argument("--data-dir", required=True, help="folder with the dataset's npz files")
    if spec.keypoints is not None:
        p.add_argument("--keypoints", default=spec.keypoints,
                       help=f"2D source: <kp> of data_2d_*_<kp>.npz (default {spec.keypoints})")
    add_sampling_arguments(p)
    p.add_argument("--mode", choices=MODES + ("both",), default="official",
                   help="official: the published protocol incl. its quirks (GT root in JPMA, per-batch P-Best, "
                        "double-counted overlap); clean: each frame once, per-window P-Best, JPMA root from 2D")
    p.add_argument("--batch-size", type=int, default=spec.batch_size,
                   help=f"windows per batch; official P-Best depends on it (default {spec.batch_size}); "
                        "0 = as many as fit in memory (clean mode)")
    p.add_argument("--by-subject", action="store_true", default=spec.by_subject, help="also report per subject")
    p.add_argument("--subjects", default=",".join(spec.subjects),
                   help="comma-separated test subjects" + (f" (default {','.join(spec.subjects)})" if spec.subjects
                                                           else " (default: see above)"))
    p.add_argument("--actions", default=spec.actions, help="action prefixes, comma-separated ('*' = all)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--hypotheses-sweep", type=_int_list, default=None, metavar="H1,H2,...",
                   help="also evaluate these H values and plot error vs H, e.g. 1,5,20")
    p.add_argument("--max-windows", type=int, default=0,
                   help="evaluate only N windows, evenly spread over the test set (0 = all); for quick checks")
    p.add_argument("--frames", type=int, default=0, help="expected window length T; error if the checkpoint differs")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--no-p2", action="store_true", help="skip Protocol #2 (P-MPJPE)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    if spec.add_arguments is not None:
        spec.add_arguments(p)
    return p


def checkpoint_sha256(path: Path) -> str:
    """sha256 of an official .bin, or of a checkpoint folder's model.safetensors."""
    file = path / WEIGHTS_NAME if path.is_dir() else path
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(path: Path, spec: DatasetCLI):
    if path.is_file() and spec.load_official_kwargs:
        model = load_official(path, **spec.load_official_kwargs)  # a .bin does not say its 17-joint layout
    else:
        model, _ = load_checkpoint(path)
    if not hasattr(model, "sample"):
        raise ValueError(f"{path} holds a deterministic lifter, not a D3DP diffusion model; these scripts "
                         "evaluate multi-hypothesis D3DP checkpoints")
    return model


def eval_configs(args: argparse.Namespace, model) -> list[EvalConfig]:
    modes = MODES if args.mode == "both" else (args.mode,)
    sampling = sampling_for(model, args)
    return [EvalConfig(sampling=sampling, mode=m, batch_size=args.batch_size, protocol2=not args.no_p2,
                       by_subject=args.by_subject, max_windows=args.max_windows, device=args.device) for m in modes]


def check_data_dir(args: argparse.Namespace) -> Path:
    root = Path(args.data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-dir {root} does not exist or is not a folder")
    return root


def check_keypoints(root: Path, prefix: str, keypoints: str) -> None:
    """Unknown --keypoints: name the missing file and list what the folder offers."""
    if not (root / f"{prefix}{keypoints}.npz").is_file():
        found = sorted(p.name[len(prefix):-4] for p in root.glob(f"{prefix}*.npz"))
        raise ValueError(f"unknown keypoints '{keypoints}': {root / f'{prefix}{keypoints}.npz'} does not exist; "
                         f"available in {root}: {', '.join(found) or 'none'}")


def _print_summary(result: EvalResult) -> None:
    s = result.settings
    print(f"[{result.mode}] {s['dataset']} H={s['num_hypotheses']} K={s['num_steps']}: "
          f"{s['num_windows']} of {s['total_windows']} windows, {s['num_frames']:.0f} frames")
    for name, values in result.summary().items():
        print(f"  {name:>10}: " + " ".join(f"k{k + 1}={v:.1f}" for k, v in enumerate(values)) + " mm")
    for metric, t in (result.pck or {}).items():
        m = t["mean"]
        print(f"  3DHP {metric:>7}: PCK {m['PCK'][-1]:.2f}  AUC {m['AUC'][-1]:.2f}  MPJPE {m['MPJPE'][-1]:.2f} "
              "(unweighted mean over sequences)")
    for note in result.notes:
        print(f"  note: {note}")


def run(args: argparse.Namespace, spec: DatasetCLI) -> list[Path]:
    check_data_dir(args)
    path = Path(args.checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"--checkpoint {path} does not exist (give our checkpoint folder or an official .bin)")
    model = load_model(path, spec)
    cfgs = eval_configs(args, model)
    if args.frames and args.frames != window_length(model):
        raise ValueError(f"checkpoint mismatch: {path} was built for T={window_length(model)} frames, "
                         f"--frames asked for {args.frames}")
    dataset = spec.load(args)
    extra = {"checkpoint": str(path), "checkpoint_sha256": checkpoint_sha256(path),
             "subjects": list(dataset.subjects)}
    if spec.keypoints is not None:
        extra["keypoints"] = args.keypoints
    files = []
    for cfg in cfgs:
        result = _with(evaluate(model, dataset, cfg, progress=not args.no_progress), extra)
        sweep = [result if h == cfg.sampling.num_hypotheses else
                 _with(evaluate(model, dataset, _with_hypotheses(cfg, h), progress=not args.no_progress), extra)
                 for h in (args.hypotheses_sweep or [])]
        files += write_report(result, args.out, sweep)
        _print_summary(result)
    return files


def _with_hypotheses(cfg: EvalConfig, h: int) -> EvalConfig:
    return dataclasses.replace(cfg, sampling=cfg.sampling.override(num_hypotheses=h))


def _with(result: EvalResult, extra: dict) -> EvalResult:
    result.settings.update(extra)
    return result


def main(spec: DatasetCLI, argv: Sequence[str] | None = None) -> int:
    args = build_parser(spec).parse_args(argv)
    try:
        files = run(args, spec)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
