"""Reliability: kills, failed and atomic writes, NaN losses, several processes, determinism."""
from __future__ import annotations

import errno
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import d3dp_ktp.checkpoints as checkpoints
from d3dp_ktp.checkpoints import load_checkpoint, save_checkpoint
from d3dp_ktp.diffusion import D3DP, DiffusionConfig
from d3dp_ktp.experiment import load_experiment
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig
from d3dp_ktp.training.trainer import TRAINER_STATE, Trainer, TrainingDiverged
from tests.training import (assert_same_weights, checkpoint_weights, fit, single_thread, tiny_overrides,  # noqa: F401
                            train_main, write_tiny_data)

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4


def _subprocess_env() -> dict:
    # One thread, as in this process (single_thread), so the weights can be compared bit for bit.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------------------------------- kills
KILL_EPOCHS = 4

# Imported at start-up by the killed training processes (first on their PYTHONPATH): before each optimizer
# step and each rename, and after each safetensors write, the process reports what it reached on one pipe
# and waits for a byte on the other. The test answers, or SIGKILLs it right there: kills land at points
# chosen from the reported progress, never from wall time, so a fast machine cannot finish first.
_PROGRESS_HOOK = """
import os
_fds = os.environ.get("D3DP_TEST_PROGRESS_FDS")
if _fds:
    _report, _answer = map(int, _fds.split(","))

    def _reported(name, fn, after=False):
        def wrapper(*args, **kwargs):
            if not after:
                os.write(_report, (name(*args) + "\\n").encode())
                os.read(_answer, 1)
            result = fn(*args, **kwargs)
            if after:
                os.write(_report, (name(*args) + "\\n").encode())
                os.read(_answer, 1)
            return result
        return wrapper

    import safetensors.torch
    import torch.optim
    os.replace = _reported(lambda src, dst: "rename " + os.path.basename(os.fspath(dst)), os.replace)
    safetensors.torch.save_file = _reported(lambda tensors, filename, *rest: "wrote " + os.path.basename(filename),
                                            safetensors.torch.save_file, after=True)
    torch.optim.AdamW.step = _reported(lambda *args: "optimizer step", torch.optim.AdamW.step)
"""

# (report, the report before it or None): where each killed run is stopped.
KILL_POINTS = {
    "mid-step": ("optimizer step", None),                       # gradients computed, weights not yet updated
    "state half-written": ("wrote model.safetensors", None),    # .state.tmp has weights, not yet optimizer/RNG
    "between renames": ("rename state", "rename .state.old"),   # `state` moved aside, the new one not yet in
}


def _train_cmd(data: Path, out: Path, resume: bool) -> list[str]:
    args = tiny_overrides(data, out, epochs=KILL_EPOCHS, val_every=0, state_every_steps=1)
    return [sys.executable, str(ROOT / "train.py"), *args] + (["--resume"] if resume else [])


def _saved_step(out: Path) -> int:
    try:
        return json.loads((out / "state" / TRAINER_STATE).read_text())["global_step"]
    except FileNotFoundError:  # no state yet
        return -1


def _assert_state_absent_or_loadable(out: Path) -> None:
    state = out / "state"
    if not state.exists():
        return
    saved = json.loads((state / TRAINER_STATE).read_text())
    assert saved["global_step"] >= 1
    weights = load_file(str(state / "model.safetensors"))
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    assert torch.load(state / "optimizer.bin", weights_only=True)["state"]


def _train_and_kill_at(data: Path, out: Path, hook: Path, log, resume: bool, point: tuple,
                       occurrence: int) -> list[str]:
    """Run train.py with the progress hook, answer its reports until the ``occurrence``-th ``point``, and
    SIGKILL it while it waits there. Returns the reports it made."""
    report_r, report_w = os.pipe()
    answer_r, answer_w = os.pipe()
    env = {**_subprocess_env(), "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}",
           "D3DP_TEST_PROGRESS_FDS": f"{report_w},{answer_r}"}
    proc = subprocess.Popen(_train_cmd(data, out, resume), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            pass_fds=(report_w, answer_r))
    os.close(report_w)
    os.close(answer_r)
    reports, seen = [], 0
    try:
        with os.fdopen(report_r, "rb") as progress:
            while seen < occurrence:
                # The child waits for an answer after each report, so at most one line is ever pending.
                assert select.select([progress], [], [], 120)[0], f"no progress report for 120 s after {reports[-3:]}"
                line = progress.readline().decode().strip()
                assert line, f"the run ended before {point} no. {occurrence}; reports: {reports[-8:]}"
                previous = reports[-1] if reports else None
                reports.append(line)
                if line == point[0] and point[1] in (None, previous):
                    seen += 1
                    if seen == occurrence:
                        break
                os.write(answer_w, b"g")
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        os.close(answer_w)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return reports


def _resume_point(out: Path) -> int:
    """The step a resume continues from: the saved state's, or the moved-aside one a kill between the
    renames left (the trainer puts it back); -1 when there is none (a fresh start)."""
    for folder in ("state", ".state.old"):
        if (out / folder / TRAINER_STATE).is_file():
            return json.loads((out / folder / TRAINER_STATE).read_text())["global_step"]
    return -1


def test_sigkill_at_reported_points_then_resume_matches_uninterrupted_run(tmp_path):
    """Kill training mid-step, with a half-written state and between the two renames of the state swap (in
    a seeded order, each at a seeded occurrence); each resume continues from the last complete state, and
    the last one ends with the weights of an uninterrupted run."""
    data, out, hook = write_tiny_data(tmp_path / "data"), tmp_path / "killed", tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_PROGRESS_HOOK)
    rng = random.Random(7)
    log_path = tmp_path / "train.log"
    with open(log_path, "wb") as log:
        for attempt, name in enumerate(rng.sample(sorted(KILL_POINTS), len(KILL_POINTS))):
            start, logged = _resume_point(out), log_path.stat().st_size
            reports = _train_and_kill_at(data, out, hook, log, resume=attempt > 0, point=KILL_POINTS[name],
                                         occurrence=rng.randint(2, 5))
            assert "optimizer step" in reports  # the kill landed in a run that was training
            resumed = re.findall(r"resumed from .*: epoch \d+, step (\d+)",
                                 log_path.read_bytes()[logged:].decode(errors="replace"))
            assert resumed == ([str(start)] if start >= 0 else [])  # from the last complete state (or afresh)
            if name == "between renames":  # the swap really was cut: only the moved-aside state is left
                assert not (out / "state").exists() and (out / ".state.old" / TRAINER_STATE).is_file()
            _assert_state_absent_or_loadable(out)
    start = _resume_point(out)
    assert start > 0
    last = Trainer(load_experiment(None, tiny_overrides(data, out, epochs=KILL_EPOCHS, val_every=0,
                                                        state_every_steps=1)), resume=True)
    assert last.state.global_step == start  # resumed from the last complete state, not from scratch
    last.fit()
    assert _saved_step(out) == KILL_EPOCHS * STEPS_PER_EPOCH
    assert not [p.name for p in out.iterdir() if p.name.startswith(".state")]  # temporary folders cleaned

    fit(data, tmp_path / "whole", epochs=KILL_EPOCHS, val_every=0)
    assert_same_weights(checkpoint_weights(tmp_path / "whole" / "last"), checkpoint_weights(out / "last"))


# ------------------------------------------------------------------------ atomic checkpoint writes
def _tiny_model(seed: int) -> D3DP:
    torch.manual_seed(seed)
    return build_diffusion(ModelConfig(num_frames=9, channels=32, num_heads=4, depth=1), DiffusionConfig())


def _partial_weights_then_fail(state, filename, *args, **kwargs):
    Path(filename).write_bytes(b"\x00" * 10)  # half-written file, then the failure
    raise RuntimeError("simulated crash while writing weights")


def _config_fails(*args, **kwargs):
    raise RuntimeError("simulated crash while writing config.yaml")


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("owner,name,replacement,error", [
    (checkpoints, "save_file", _partial_weights_then_fail, RuntimeError),
    (checkpoints.yaml, "safe_dump", _config_fails, RuntimeError),
    (checkpoints, "save_file", _interrupted, KeyboardInterrupt),
], ids=["weights", "config", "ctrl-c"])
def test_failed_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch, owner, name, replacement, error):
    path = tmp_path / "run" / "last"
    save_checkpoint(_tiny_model(0), path, meta={"global_step": 1})
    before = checkpoint_weights(path)
    monkeypatch.setattr(owner, name, replacement)
    with pytest.raises(error):
        save_checkpoint(_tiny_model(1), path, meta={"global_step": 2})
    monkeypatch.undo()
    model, sections = load_checkpoint(path)
    assert sections["meta"] == {"global_step": 1}
    assert_same_weights(before, {k: v.contiguous() for k, v in model.state_dict().items()})
    assert sorted(p.name for p in path.parent.iterdir()) == ["last"]  # no temporary folder left


def test_checkpoint_swap_killed_between_renames_is_recovered(tmp_path):
    """A kill after ``last`` was moved to ``.last.old`` but before the new folder was renamed in: the
    next load finds the previous checkpoint, and the next save replaces it cleanly."""
    path = tmp_path / "run" / "last"
    save_checkpoint(_tiny_model(0), path, meta={"global_step": 1})
    before = checkpoint_weights(path)
    path.rename(path.with_name(".last.old"))
    _, sections = load_checkpoint(path)
    assert sections["meta"] == {"global_step": 1} and path.is_dir()
    assert_same_weights(before, checkpoint_weights(path))
    path.rename(path.with_name(".last.old"))
    save_checkpoint(_tiny_model(1), path, meta={"global_step": 2})
    assert sorted(p.name for p in path.parent.iterdir()) == ["last"]
    assert load_checkpoint(path)[1]["meta"] == {"global_step": 2}


@pytest.mark.parametrize("err", [OSError(errno.ENOSPC, "No space left on device"),
                                 PermissionError(errno.EACCES, "Permission denied")], ids=["ENOSPC", "EACCES"])
def test_checkpoint_write_error_is_raised_with_the_path(tmp_path, monkeypatch, err):
    path = tmp_path / "run" / "last"
    save_checkpoint(_tiny_model(0), path)

    def fail(*args, **kwargs):
        raise err
    monkeypatch.setattr(checkpoints, "save_file", fail)
    with pytest.raises(type(err)) as info:
        save_checkpoint(_tiny_model(1), path)
    assert info.value.errno == err.errno
    assert str(path) in str(info.value) and err.strerror in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_checkpoint_into_read_only_folder_raises_permission_error(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=str(folder)):
            save_checkpoint(_tiny_model(0), folder / "last")
    finally:
        folder.chmod(0o755)


def test_failed_state_write_keeps_previous_state(tmp_path, monkeypatch):
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "run"
    fit(data, out, epochs=1, val_every=0)
    before = checkpoint_weights(out / "state")
    trainer = Trainer(load_experiment(None, tiny_overrides(data, out, epochs=2, val_every=0)), resume=True)

    def disk_full(folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"\x00" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(trainer.accelerator, "save_state", disk_full)
    with pytest.raises(OSError, match=f"training state {out / 'state'}.*No space left") as info:
        trainer.fit()
    assert info.value.errno == errno.ENOSPC
    assert json.loads((out / "state" / TRAINER_STATE).read_text())["epoch"] == 1
    assert_same_weights(before, checkpoint_weights(out / "state"))
    assert sorted(p.name for p in out.iterdir()) == ["last", "state"]  # no temporary folder left


# ------------------------------------------------------------------------------------- NaN loss
def _nan_at_step(monkeypatch, step: int) -> None:
    """The training loss (D3DP.forward) becomes NaN at the ``step``-th call, counted from 1."""
    original, calls = D3DP.forward, []

    def forward(self, x2d, y3d):
        out = original(self, x2d, y3d)
        calls.append(1)
        if len(calls) == step:
            out.loss, out.value = out.loss * float("nan"), out.value * float("nan")
        return out
    monkeypatch.setattr(D3DP, "forward", forward)


def test_nan_loss_stops_training_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "run"
    fit(data, out, epochs=1, val_every=0)
    last, state = checkpoint_weights(out / "last"), checkpoint_weights(out / "state")
    # Resumed at step 4; the 3rd step after that is global step 7 (epoch 2).
    _nan_at_step(monkeypatch, 3)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 7\b.*last good checkpoint"):
        fit(data, out, resume=True, epochs=3, val_every=0)
    assert json.loads((out / "state" / TRAINER_STATE).read_text())["global_step"] == STEPS_PER_EPOCH
    assert_same_weights(last, checkpoint_weights(out / "last"))
    assert_same_weights(state, checkpoint_weights(out / "state"))


def test_nan_loss_keeps_the_state_of_the_step_before(tmp_path, monkeypatch):
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "run"
    _nan_at_step(monkeypatch, 3)
    with pytest.raises(TrainingDiverged, match=r"step 3\b"):
        fit(data, out, epochs=2, val_every=0, state_every_steps=1)
    assert json.loads((out / "state" / TRAINER_STATE).read_text())["global_step"] == 2
    assert not (out / "last").exists()  # nothing is written after the divergence
    monkeypatch.undo()
    resumed = fit(data, out, resume=True, epochs=2, val_every=0)
    fit(data, tmp_path / "whole", epochs=2, val_every=0)
    assert resumed.global_step == 2 * STEPS_PER_EPOCH
    assert_same_weights(checkpoint_weights(tmp_path / "whole" / "last"), checkpoint_weights(out / "last"))


def test_train_cli_exits_3_on_divergence(tmp_path, monkeypatch, capsys):
    data = write_tiny_data(tmp_path / "data")
    _nan_at_step(monkeypatch, 2)
    code = train_main()(tiny_overrides(data, tmp_path / "run", val_every=0))
    assert code == 3
    err = capsys.readouterr().err
    assert "training diverged" in err and "step 2" in err and "last good checkpoint" in err


# --------------------------------------------------------------------------------------- Ctrl-C
def _sigint_at_batch(monkeypatch, batch: int, times: int = 1) -> None:
    """``times`` SIGINTs arrive in the middle of the ``batch``-th training forward (counted from 1)."""
    original, calls = D3DP.forward, []

    def forward(self, x2d, y3d):
        calls.append(1)
        if len(calls) == batch:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, x2d, y3d)
    monkeypatch.setattr(D3DP, "forward", forward)


@pytest.mark.parametrize("grad_accum,batch,stop_step", [(1, 3, 3), (2, 3, 2)], ids=["step", "mid-accumulation"])
def test_ctrl_c_finishes_the_optimizer_step_saves_and_resumes_exactly(tmp_path, monkeypatch, grad_accum,
                                                                     batch, stop_step):
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "B"
    fit(data, tmp_path / "A", epochs=2, val_every=0, grad_accum=grad_accum)
    _sigint_at_batch(monkeypatch, batch)
    stopped = Trainer(load_experiment(None, tiny_overrides(data, out, epochs=2, val_every=0, grad_accum=grad_accum)))
    state = stopped.fit()
    assert stopped.interrupts.requested and state.global_step == stop_step  # not one batch off
    assert json.loads((out / "state" / TRAINER_STATE).read_text())["global_step"] == stop_step
    monkeypatch.undo()
    fit(data, out, resume=True, epochs=2, val_every=0, grad_accum=grad_accum)
    assert_same_weights(checkpoint_weights(tmp_path / "A" / "last"), checkpoint_weights(out / "last"))


def test_second_ctrl_c_stops_at_once_and_keeps_the_last_save(tmp_path, monkeypatch):
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "run"
    _sigint_at_batch(monkeypatch, 4, times=2)  # both during step 4, before it has updated anything
    with pytest.raises(KeyboardInterrupt):
        fit(data, out, epochs=2, val_every=0, state_every_steps=1)
    assert json.loads((out / "state" / TRAINER_STATE).read_text())["global_step"] == 3
    assert not (out / "last").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back


def test_train_cli_exits_130_after_ctrl_c_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    data = write_tiny_data(tmp_path / "data")
    _sigint_at_batch(monkeypatch, 2)
    assert train_main()(tiny_overrides(data, tmp_path / "run", val_every=0)) == 130
    assert "--resume" in capsys.readouterr().err


def test_nan_loss_is_reported_at_its_step_when_losses_are_read_back_later(tmp_path, monkeypatch):
    """Losses stay on the device between log steps (no sync per step); the report still names the
    step where the loss first became NaN, and nothing after it is saved."""
    data, out = write_tiny_data(tmp_path / "data"), tmp_path / "run"
    _nan_at_step(monkeypatch, 2)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 2\b"):
        fit(data, out, epochs=2, val_every=0, log_every=100)
    assert not (out / "state").exists() and not (out / "last").exists()


# ---------------------------------------------------------------------------------- 2 processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two(data: Path, out: Path, resume: bool = False, env: dict | None = None, **train) -> None:
    launcher = ([shutil.which("accelerate")] if shutil.which("accelerate")
                else [sys.executable, "-m", "accelerate.commands.launch"])
    cmd = launcher + ["launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                      "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                      str(ROOT / "train.py"), *tiny_overrides(data, out, cpu="true", **train)]
    if resume:
        cmd.append("--resume")
    if launcher[0] == sys.executable:
        cmd.remove("launch")
    proc = subprocess.run(cmd, cwd=ROOT, env={**_subprocess_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# Imported at start-up by every Python process of the launch (it is first on PYTHONPATH): in the
# process of rank 1 only, the trainer's budget checks after the first one see the clock an hour ahead.
_RANK1_CLOCK_AHEAD = """
import os, sys, time
if os.environ.get("RANK") == "1":
    _monotonic, _checks = time.monotonic, []
    def _ahead():
        if sys._getframe(1).f_code.co_name != "_should_stop":
            return _monotonic()
        _checks.append(1)
        return _monotonic() + (3600.0 if len(_checks) > 1 else 0.0)
    time.monotonic = _ahead
"""


def test_two_processes_stop_together_on_a_wall_time_budget_and_resume_exactly(tmp_path):
    """Two CPU processes through ``accelerate launch``. train.max_minutes runs out in one process only:
    both must stop after the same step (decided together at a log step), or DDP would wait forever for
    the process that stopped. Resumed from there (mid-epoch), the run ends with the weights of an
    uninterrupted 2-process run.

    ``--cpu`` with ``--num_processes 2`` makes accelerate (1.x) start ONE process unless mpirun is
    configured; ``--multi_gpu`` goes through torchrun and, with train.cpu=true, gives 2 gloo processes."""
    data, hook = write_tiny_data(tmp_path / "data"), tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_RANK1_CLOCK_AHEAD)
    settings = dict(epochs=2, max_minutes=30, log_every=3)
    _launch_two(data, tmp_path / "whole", **settings)
    model, sections = load_checkpoint(tmp_path / "whole" / "last")
    # 4 batches per epoch shared by 2 processes: 2 optimizer steps per epoch, not 4.
    assert sections["meta"]["global_step"] == 2 * (STEPS_PER_EPOCH // 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    state = tmp_path / "whole" / "state"
    assert json.loads((state / TRAINER_STATE).read_text())["global_step"] == 2 * (STEPS_PER_EPOCH // 2)
    assert (state / "random_states_0.pkl").is_file() and (state / "random_states_1.pkl").is_file()

    out = tmp_path / "stopped"
    _launch_two(data, out, env={"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"}, **settings)
    stopped = json.loads((out / "state" / TRAINER_STATE).read_text())
    # Rank 1 runs out after step 1; 2 steps per epoch; both stop together at the next log step, 3.
    assert (stopped["epoch"], stopped["step_in_epoch"], stopped["global_step"]) == (1, 1, 3)
    assert (out / "state" / "random_states_1.pkl").is_file()
    _launch_two(data, out, resume=True, **settings)
    assert_same_weights(checkpoint_weights(tmp_path / "whole" / "last"), checkpoint_weights(out / "last"))


# --------------------------------------------------------------------------------- determinism
def test_sampling_with_the_same_generator_seed_is_identical():
    model = _tiny_model(0).eval()
    x2d = torch.randn(2, 9, 17, 2, generator=torch.Generator().manual_seed(1))
    draw = lambda seed: model.sample(x2d, num_hypotheses=3, num_steps=2,  # noqa: E731
                                     generator=torch.Generator().manual_seed(seed))
    first = draw(5)
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(first, draw(5))
    assert not torch.equal(first, draw(6))


def test_training_with_the_same_seed_gives_identical_weights(tmp_path):
    data = write_tiny_data(tmp_path / "data")
    fit(data, tmp_path / "a", epochs=1)
    fit(data, tmp_path / "b", epochs=1)
    fit(data, tmp_path / "c", epochs=1, seed=2)
    a = checkpoint_weights(tmp_path / "a" / "last")
    assert_same_weights(a, checkpoint_weights(tmp_path / "b" / "last"))
    c = checkpoint_weights(tmp_path / "c" / "last")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the seed is actually used
