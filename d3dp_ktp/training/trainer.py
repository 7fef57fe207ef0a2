"""The training loop, in accelerate's canonical order (HOUSE_STYLE): Accelerator, trackers, set_seed,
build, prepare, load_state to resume, loop under accumulate, log, save_state, end_training.

The trainer only calls ``model.loss`` (through ``forward``, so DDP syncs gradients) and the evaluation
entry point; it never touches the schedule. Resumable state lives in ``<output_dir>/state`` and is
swapped in atomically; model checkpoints (``last``, ``best``, ``epoch_<n>``) are our safetensors folders.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..atomic import recover_dir, replace_dir, write_error
from ..checkpoints import save_checkpoint
from ..config import to_dict
from ..data import ChunkBatchSampler, ChunkDataset, load_splits
from ..evaluation import evaluate
from ..experiment import ExperimentConfig
from ..factory import build_diffusion
from .ema import EMA
from .interrupts import Interrupts

STATE_DIR = "state"
TRAINER_STATE = "trainer_state.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainerState:
    epoch: int = 0                 # epochs completed
    step_in_epoch: int = 0         # batches of the current epoch already consumed (per process)
    global_step: int = 0           # optimizer steps
    best: float = math.inf         # best validation error (mm)
    loss_sum: float = 0.0          # sum of the batch losses of the current epoch (exact mean after a resume)
    sampler: dict = field(default_factory=dict)   # chunk sampler state at the start of `epoch`
    history: list = field(default_factory=list)   # per-epoch {epoch, loss, val...}


class Trainer:
    def __init__(self, cfg: ExperimentConfig, resume: bool = False):
        self.cfg = cfg.validate()
        tc = cfg.train
        self.out = Path(tc.output_dir)
        # AcceleratorState is a per-process singleton that refuses a second Accelerator with other
        # settings (a notebook or test that trains twice, e.g. fp32 then bf16). The process-group part
        # (PartialState) is kept, so this is safe under `accelerate launch` too.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(mixed_precision=tc.mixed_precision, cpu=tc.cpu,
                                       gradient_accumulation_steps=tc.grad_accum,
                                       log_with="tensorboard" if tc.tracker == "tensorboard" else None,
                                       project_dir=str(self.out))
        if tc.tracker == "tensorboard":
            self.accelerator.init_trackers("d3dp_ktp", config=_flat_hparams(to_dict(cfg)))
        set_seed(tc.seed)
        self.train_set, self.test_set = load_splits(cfg.data)
        self.chunks = ChunkDataset.from_dataset(self.train_set, cfg.data.num_frames, cfg.data.flip_mode,
                                                  cfg.data.augment, cfg.data.seed)
        self.sampler = ChunkBatchSampler(self.chunks, cfg.data.batch_size, seed=cfg.data.seed)
        model = build_diffusion(cfg.model, cfg.diffusion, cfg.sampling)
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tc.betas, eps=tc.eps,
                                      weight_decay=tc.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.ema = EMA(self.unwrapped, tc.ema_decay) if tc.ema_decay > 0 else None
        if self.ema is not None:
            self.accelerator.register_for_checkpointing(self.ema)
        self.state = TrainerState(sampler=self.sampler.state_dict())
        self._pending: list[tuple[torch.Tensor, int, int]] = []  # (loss, epoch, step) not yet read back
        self._diverged = False
        self.interrupts = Interrupts()
        if resume:
            self._recover_state()
            if (self.out / STATE_DIR).is_dir():
                self._load_state()

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.unwrapped

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainerState:
        """Train to ``train.epochs`` (or a step/time budget, or Ctrl-C); saves ``state`` and ``last``."""
        tc = self.cfg.train
        self._t0 = time.monotonic()
        with Interrupts() as self.interrupts:
            try:
                while self.state.epoch < tc.epochs and not self._should_stop():
                    if not self._train_epoch():
                        break  # budget hit mid-epoch: the saved state resumes from here
                    self._end_epoch()
            finally:
                try:
                    self._finish()
                finally:
                    self.accelerator.end_training()
        return self.state

    def _finish(self) -> None:
        """Save the resumable state and ``last`` unless the run diverged or a second Ctrl-C aborted it
        (then the previous saves are what a resume continues from)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if self._diverged or self.interrupts.aborted:
            return
        self._save_state()  # reads back the pending losses first: NaN weights are never saved
        if acc.is_main_process:
            save_checkpoint(self.eval_model, self.out / "last", to_dict(self.cfg), self._meta())

    def _epoch_batches(self) -> list[list[int]]:
        """This epoch's batches for this process, including those already consumed before a resume."""
        self.sampler.load_state_dict(self.state.sampler)
        batches = list(self.sampler)  # draws the epoch order (advances the RandomState)
        acc = self.accelerator
        if acc.num_processes > 1:  # equal batch counts per process keep DDP in step
            usable = len(batches) // acc.num_processes * acc.num_processes
            batches = batches[acc.process_index:usable:acc.num_processes]
        return batches

    def _train_epoch(self) -> bool:
        """Train on the rest of this epoch; True when all its batches are done."""
        tc, acc, st = self.cfg.train, self.accelerator, self.state
        for group in self.optimizer.param_groups:  # lr_e = lr0 · decay^e (docs/method.md §6.7)
            group["lr"] = tc.lr * tc.lr_decay ** st.epoch
        batches = self._epoch_batches()
        # A DataLoader draws a worker base seed from the global torch RNG on every iter() unless it
        # has its own generator; that extra draw on resume would shift the noise of all later steps.
        workers = self.cfg.data.num_workers
        loader = DataLoader(self.chunks, batch_sampler=batches[st.step_in_epoch:], num_workers=workers,
                            pin_memory=acc.device.type == "cuda", prefetch_factor=4 if workers else None,
                            generator=torch.Generator().manual_seed(tc.seed + st.epoch))
        self.model.train()
        self._bar = tqdm(loader, desc=f"epoch {st.epoch + 1}/{tc.epochs}",
                         disable=not (tc.progress and acc.is_main_process))
        for x2d, y3d, _cam in self._bar:
            self._train_step(x2d.to(acc.device, non_blocking=True), y3d.to(acc.device, non_blocking=True))
            if acc.sync_gradients:
                self._after_step(x2d.shape[0])
                if self._should_stop():  # only between optimizer steps: accumulated gradients are not saved
                    break
        return st.step_in_epoch >= len(batches)

    def _train_step(self, x2d: torch.Tensor, y3d: torch.Tensor) -> None:
        """One batch. No host-device sync: the loss stays on the device until the next read-back."""
        tc, acc = self.cfg.train, self.accelerator
        with acc.accumulate(self.model):
            out = self.model(x2d, y3d)
            acc.backward(out.loss)
            if tc.grad_clip > 0 and acc.sync_gradients:
                acc.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.state.step_in_epoch += 1
        self._pending.append((out.value.detach(), self.state.epoch + 1, self.state.global_step + 1))

    def _after_step(self, batch: int) -> None:
        tc, acc, st = self.cfg.train, self.accelerator, self.state
        st.global_step += 1
        if self.ema is not None:
            self.ema.update(self.unwrapped)
        if st.global_step % tc.log_every == 0:
            loss, lr = self._read_losses(), self.optimizer.param_groups[0]["lr"]
            acc.log({"train/loss": loss, "train/lr": lr}, step=st.global_step)
            elapsed = time.monotonic() - self._t0
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}",
                                  seq_s=f"{batch * st.global_step / max(elapsed, 1e-9):.1f}")
        if tc.state_every_steps and st.global_step % tc.state_every_steps == 0:
            self._save_state()

    def _read_losses(self) -> float:
        """Read the losses of the steps since the last read back (one host-device sync), add them
        to the epoch sum and return their mean. Raises TrainingDiverged at the first non-finite one,
        on every process when it happened on any (DDP shares the NaN gradients)."""
        if not self._pending:
            return math.nan
        pending, self._pending = self._pending, []
        values = torch.stack([v for v, _, _ in pending]).cpu().double()  # the one sync; float64 on the host
        bad = torch.nonzero(~torch.isfinite(values)).flatten().tolist()
        if self._on_any_process(bool(bad)):
            self._diverged = True
            _, epoch, step = pending[bad[0] if bad else -1]
            where = (f"loss became {values[bad[0]].item()} at epoch {epoch}, step {step}" if bad else
                     f"the loss became non-finite on another process by epoch {epoch}, step {step}")
            raise TrainingDiverged(f"{where}; the last good checkpoint in {self.out} is kept. "
                                   "Lower train.lr or use train.mixed_precision=no.")
        self.state.loss_sum += float(values.sum())  # float64 sums of float32 values: exact, order-free
        return float(values.mean())

    def _should_stop(self) -> bool:
        """Step budget (the same on every process); wall-time budget and Ctrl-C, decided together by all
        processes at log steps when there are several, so that they stop after the same step."""
        tc, st, acc = self.cfg.train, self.state, self.accelerator
        if tc.max_steps and st.global_step >= tc.max_steps:
            return True
        local = self.interrupts.requested or (bool(tc.max_minutes)
                                              and time.monotonic() - self._t0 >= tc.max_minutes * 60)
        if acc.num_processes == 1:
            return local
        return st.global_step % tc.log_every == 0 and self._on_any_process(local)

    def _on_any_process(self, flag: bool) -> bool:
        """True if ``flag`` is set on any process (collective: every process must call it together)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return flag
        return acc.reduce(torch.tensor(float(flag), device=acc.device), reduction="sum").item() > 0

    def _end_epoch(self) -> None:
        tc, acc, st = self.cfg.train, self.accelerator, self.state
        self._read_losses()
        loss = st.loss_sum / max(st.step_in_epoch, 1)
        st.epoch += 1
        st.step_in_epoch, st.loss_sum = 0, 0.0
        st.sampler = self.sampler.state_dict()  # the RandomState after drawing this epoch's order
        record = {"epoch": st.epoch, "loss": loss}
        if tc.val_every and st.epoch % tc.val_every == 0 and acc.is_main_process:
            record.update(self._validate())
        st.history.append(record)
        acc.log({f"val/{k}": v for k, v in record.items() if k not in ("epoch",)}, step=st.global_step)
        if acc.is_main_process:
            self._save_checkpoints(record)
        self._save_state()  # collective; waits for the main process's checkpoints

    def _validate(self) -> dict:
        tc = self.cfg.train
        ecfg = dataclasses.replace(self.cfg.eval, sampling=tc.val_sampling, max_windows=tc.val_max_windows)
        summary = evaluate(self.eval_model, self.test_set, ecfg).summary()
        return {f"val_{k}": float(v[-1]) for k, v in summary.items() if "/" not in k}

    def _save_checkpoints(self, record: dict) -> None:
        tc, st = self.cfg.train, self.state
        value = record.get(f"val_{tc.best_metric}")
        if value is not None and value < st.best:
            st.best = value
            save_checkpoint(self.eval_model, self.out / "best", to_dict(self.cfg), self._meta())
        if tc.save_every and st.epoch % tc.save_every == 0:
            save_checkpoint(self.eval_model, self.out / f"epoch_{st.epoch}", to_dict(self.cfg), self._meta())

    def _meta(self) -> dict:
        st = self.state
        return {"epoch": st.epoch, "global_step": st.global_step, "best": None if math.isinf(st.best) else st.best,
                "history": st.history[-1:] if st.history else []}

    # ------------------------------------------------------------------ state
    def _save_state(self) -> None:
        """accelerate.save_state plus our trainer state into ``.state.tmp``, then swapped in.

        Collective: every process calls it, because accelerate writes one RNG file per process and
        an exact multi-process resume needs all of them. Only the main process renames folders.
        """
        self._read_losses()
        acc = self.accelerator
        # One fixed temporary name (not atomic_dir's random one): every process writes its RNG file into it.
        tmp, final = self.out / ".state.tmp", self.out / STATE_DIR
        try:
            if acc.is_main_process:
                self.out.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
            acc.wait_for_everyone()
            acc.save_state(str(tmp), safe_serialization=True)
            acc.wait_for_everyone()
            if acc.is_main_process:
                (tmp / TRAINER_STATE).write_text(json.dumps(dataclasses.asdict(self.state)))
                replace_dir(tmp, final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise write_error(err, "training state", final) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _recover_state(self) -> None:
        """Undo what a kill inside _save_state can leave: ``state`` moved aside to ``.state.old`` but
        the new one not yet renamed in (put the old one back), and unfinished ``.state.*`` folders."""
        if self.accelerator.is_main_process and self.out.is_dir():
            recover_dir(self.out / STATE_DIR, marker=TRAINER_STATE)
            for tmp in self.out.glob(".state.*"):
                shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _load_state(self) -> None:
        folder = self.out / STATE_DIR
        self.accelerator.load_state(str(folder))
        self.state = TrainerState(**json.loads((folder / TRAINER_STATE).read_text()))
        self.accelerator.print(f"resumed from {folder}: epoch {self.state.epoch}, step {self.state.global_step}")


def _flat_hparams(d: dict, prefix: str = "") -> dict:
    """TensorBoard hparams accept scalars and strings only."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_hparams(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
