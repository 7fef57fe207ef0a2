"""Checkpoints: our folder format (docs/method.md §3.2, house style 5) and import of official .bin files (docs/method.md §6.8)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import d3dp_ktp.checkpoints as checkpoints
from d3dp_ktp.checkpoints import load_checkpoint, save_checkpoint
from d3dp_ktp.convert import main as convert_main
from d3dp_ktp.diffusion import D3DP, DiffusionConfig, SamplingConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig, build_model
from d3dp_ktp.official import load_official, torch_load_untrusted
from tests.reference import TINY, randomize_
from tests.reference import official_ref as ref

REPO = Path(__file__).resolve().parents[1]
KINDS = ["lifter", "d3dp-mixste", "d3dp-ktpformer"]


def make(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "lifter":
        return randomize_(build_model(ModelConfig(**{**TINY, "depth": 2, "diffusion": False})), seed + 1).eval()
    arch = kind.split("-")[1]
    d = build_diffusion(ModelConfig(**{**TINY, "arch": arch, "depth": 3 if arch == "mixste" else 2}),
                        DiffusionConfig(), SamplingConfig(num_hypotheses=2, num_steps=3))
    randomize_(d.pose_estimator, seed + 1)
    return d.eval()


def outputs(model: torch.nn.Module, seed: int = 5) -> torch.Tensor:
    """A deterministic output: the lifter's 3D, or every DDIM step of a D3DP sample with given noise."""
    g = torch.Generator().manual_seed(seed)
    x2d = torch.randn(2, 9, 17, 2, generator=g)
    if not isinstance(model, D3DP):
        with torch.no_grad():
            return model(x2d)
    latents, step_noise = torch.randn(2, 2, 9, 17, 3, generator=g), torch.randn(2, 2, 2, 9, 17, 3, generator=g)
    return model.sample(x2d, 2, 3, latents=latents, step_noise=step_noise)


def write_official(model: torch.nn.Module, path: Path, extra: dict | None = None, drop: tuple = ()) -> Path:
    """An official-format .bin: epoch, lr, the sampler RandomState, AdamW state, DataParallel model_pos."""
    opt = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt.step()  # fills exp_avg / exp_avg_sq / step
    opt.zero_grad()
    model_pos = {"module." + k: v for k, v in model.state_dict().items()}
    if isinstance(model, D3DP):
        model_pos.update({"module." + k: v for k, v in ref.d3dp_buffers().items()})
    model_pos.update({"module." + k: v for k, v in (extra or {}).items()})
    for k in drop:
        del model_pos["module." + k]
    torch.save({"epoch": 80, "lr": 6e-5 * 0.993 ** 80, "random_state": np.random.RandomState(1234),
                "optimizer": opt.state_dict(), "model_pos": model_pos}, path)
    return path


# ------------------------------------------------------------------ our format
@pytest.mark.parametrize("kind", KINDS)
def test_our_format_round_trip(kind, tmp_path):
    model = make(kind)
    path = save_checkpoint(model, tmp_path / "ck", config={"data": {"dataset": "h36m"}}, meta={"epoch": 3})
    assert (path / "model.safetensors").is_file() and (path / "config.yaml").is_file()
    assert not (path / "scheduler_config.json").exists()  # the scheduler is rebuilt from the diffusion section
    loaded, sections = load_checkpoint(path)
    assert not loaded.training
    assert sections["data"] == {"dataset": "h36m"} and sections["meta"] == {"epoch": 3}
    assert sections["model"]["channels"] == 32 and sections["model"]["num_frames"] == 9
    assert ("diffusion" in sections) == ("sampling" in sections) == (kind != "lifter")
    if kind != "lifter":
        assert loaded.sampling == model.sampling and loaded.sampling.num_steps == 3
    saved = yaml.safe_load((path / "config.yaml").read_text())
    assert saved["model"]["arch"] == ("mixste" if "mixste" in kind else "ktpformer")
    torch.testing.assert_close(outputs(loaded), outputs(model), rtol=0, atol=0)
    if kind != "lifter":
        assert all(k.startswith("pose_estimator.") for k in loaded.state_dict())


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    first, second = make("d3dp-ktpformer", seed=1), make("d3dp-ktpformer", seed=2)
    path = tmp_path / "ck"
    save_checkpoint(first, path)
    save_checkpoint(second, path)
    torch.testing.assert_close(outputs(load_checkpoint(path)[0]), outputs(second), rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folders left

    def crash(state, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(first, path)
    torch.testing.assert_close(outputs(load_checkpoint(path)[0]), outputs(second), rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


@pytest.mark.parametrize("damage", ["truncate", "garbage_header", "delete"])
def test_damaged_weights_raise_value_error_naming_the_file(tmp_path, damage):
    path = save_checkpoint(make("lifter"), tmp_path / "ck")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage_header":
        weights.write_bytes(b"\xff" * 8 + b"{not json" + data[17:])
    else:
        weights.unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint(path)


def test_missing_or_mismatched_checkpoint_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope")
    path = save_checkpoint(make("lifter"), tmp_path / "ck")
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["model"]["depth"] = 3
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"STEblocks\.2"):
        load_checkpoint(path)
    (path / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_checkpoint(path)


# ------------------------------------------------------------------ official .bin import
@pytest.mark.parametrize("kind", KINDS)
def test_load_official_recognises_and_reproduces(kind, tmp_path):
    model = make(kind, seed=7)
    path = write_official(model, tmp_path / "epoch_80.bin")  # (its AdamW step moves the weights)
    expected = outputs(model)
    loaded = load_official(path, num_heads=4)
    assert not loaded.training
    assert isinstance(loaded, D3DP) == (kind != "lifter")
    cfg = loaded.pose_estimator.cfg if isinstance(loaded, D3DP) else loaded.cfg
    assert (cfg.num_frames, cfg.num_joints, cfg.channels, cfg.layout) == (9, 17, 32, "h36m")
    assert cfg.depth == (3 if "mixste" in kind else 2)
    assert cfg.arch == ("mixste" if "mixste" in kind else "ktpformer")
    assert cfg.diffusion == (kind != "lifter") and cfg.drop_path_rate == 0.0
    assert all(v.dtype != torch.float64 for v in loaded.state_dict().values())
    torch.testing.assert_close(outputs(loaded), expected, rtol=1e-6, atol=1e-6)


def test_load_official_full_size_lifter_infers_T243(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(diffusion=False)).eval()
    torch.save({"model_pos": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "best_epoch.bin")
    loaded = load_official(tmp_path / "best_epoch.bin")
    assert (loaded.cfg.num_frames, loaded.cfg.channels, loaded.cfg.depth, loaded.cfg.num_heads) == (243, 512, 7, 8)


@pytest.mark.parametrize("kind", ["lifter", "d3dp-mixste"])
def test_unexpected_key_is_named(kind, tmp_path):
    model = make(kind)
    extra = {"pose_estimator.extra_layer.weight" if kind != "lifter" else "extra_layer.weight": torch.zeros(3)}
    path = write_official(model, tmp_path / "x.bin", extra=extra)
    with pytest.raises(ValueError, match="extra_layer.weight"):
        load_official(path, num_heads=4)


@pytest.mark.parametrize("kind,key", [
    ("lifter", "STEblocks.1.norm1.weight"), ("lifter", "head.1.weight"),
    ("lifter", "kpattention.attn.kpa.bn.running_var"),
    ("d3dp-mixste", "pose_estimator.time_mlp.3.bias"), ("d3dp-ktpformer", "pose_estimator.Spatial_norm.weight"),
    ("d3dp-ktpformer", "pose_estimator.tpattention.attn.Temporal_pos_embed"),
])
def test_missing_key_is_named(kind, key, tmp_path):
    path = write_official(make(kind), tmp_path / "x.bin", drop=(key,))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_official(path, num_heads=4)


def test_random_state_pickled_by_numpy_1_is_accepted(tmp_path):
    """Official files were written under NumPy 1.x, whose arrays pickle as numpy.core.multiarray."""
    model = make("lifter")
    new = write_official(model, tmp_path / "np2.bin")
    with zipfile.ZipFile(new) as zin:
        pkl = next(n for n in zin.namelist() if n.endswith("data.pkl"))
        data = zin.read(pkl)
        assert b"cnumpy._core.multiarray\n" in data  # protocol-2 text GLOBAL
        with zipfile.ZipFile(tmp_path / "np1.bin", "w") as zout:
            for info in zin.infolist():
                body = zin.read(info.filename)
                if info.filename == pkl:
                    body = body.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
                zout.writestr(info, body)
    state = torch_load_untrusted(tmp_path / "np1.bin")["random_state"]
    assert state.randint(1 << 30) == np.random.RandomState(1234).randint(1 << 30)
    torch.testing.assert_close(outputs(load_official(tmp_path / "np1.bin", num_heads=4)), outputs(model))


class Payload:
    """Unpickling this runs _write_marker: the kind of code a malicious .bin would carry."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return _write_marker, (self.marker,)


def _write_marker(path: str) -> None:
    Path(path).write_text("pickled code ran")


def test_disallowed_global_is_refused_and_never_runs(tmp_path):
    model = make("lifter")
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.bin"
    torch.save({"epoch": 1, "model_pos": {"module." + k: v for k, v in model.state_dict().items()},
                "extra": Payload(marker)}, path)
    with pytest.raises(ValueError, match="evil.bin"):
        load_official(path, num_heads=4)
    with pytest.raises(ValueError, match="evil.bin"):
        load_checkpoint(path)
    assert not marker.exists()
    # the payload is live: an unrestricted load (never done by the library) would have run it
    control = tmp_path / "control.txt"
    torch.save(Payload(control), tmp_path / "control.bin")
    torch.load(tmp_path / "control.bin", weights_only=False)
    assert control.exists()


def test_non_checkpoint_files_raise(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):  # random bytes fail in many different places inside torch.load
        junk = tmp_path / f"junk{i}.bin"
        junk.write_bytes(rng.integers(0, 256, 256, dtype=np.uint8).tobytes())
        with pytest.raises(ValueError, match=f"junk{i}.bin"):
            load_official(junk)
    zipped = tmp_path / "zipped.bin"  # a valid zip container whose pickle is garbage
    torch.save({"model_pos": {}}, zipped)
    data = bytearray(zipped.read_bytes())
    data[60:120] = rng.integers(0, 256, 60, dtype=np.uint8).tobytes()
    zipped.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="zipped.bin"):
        load_official(zipped)
    empty = tmp_path / "empty.bin"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(ValueError, match="model_pos"):
        load_official(empty)
    other = tmp_path / "other.bin"
    torch.save({"model_pos": {"module.conv.weight": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="neither"):
        load_official(other)
    with pytest.raises(FileNotFoundError):
        load_official(tmp_path / "missing.bin")


# ------------------------------------------------------------------ python -m d3dp_ktp.convert
def test_convert_cli(tmp_path):
    model = make("d3dp-ktpformer", seed=11)
    src = write_official(model, tmp_path / "best_epoch.bin")
    out = tmp_path / "converted"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "d3dp_ktp.convert", str(src), str(out), "--num-heads", "4",
                           "--layout", "h36m"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and str(out) in proc.stdout and "model.safetensors" in proc.stdout
    for name in ("model.safetensors", "config.yaml"):
        assert (out / name).is_file()
    loaded, sections = load_checkpoint(out)
    assert sections["model"]["num_heads"] == 4 and sections["meta"]["converted_from"] == str(src)
    torch.testing.assert_close(outputs(loaded), outputs(model), rtol=1e-6, atol=1e-6)


def test_convert_cli_errors_are_clean(tmp_path, capsys):
    with pytest.raises(SystemExit, match="error: .*missing.bin"):
        convert_main([str(tmp_path / "missing.bin"), str(tmp_path / "out")])
    src = write_official(make("lifter"), tmp_path / "x.bin")
    with pytest.raises(SystemExit, match="divisible"):
        convert_main([str(src), str(tmp_path / "out"), "--num-heads", "5"])
    assert not (tmp_path / "out").exists()
    convert_main([str(src), str(tmp_path / "out"), "--num-heads", "4"])
    assert "lifter" in capsys.readouterr().out
    assert not (tmp_path / "out" / "scheduler_config.json").exists()


def test_convert_stores_the_keypoint_layout_the_file_cannot_tell(tmp_path, capsys):
    src = write_official(make("d3dp-ktpformer", seed=12), tmp_path / "in_the_wild_best_epoch.bin")
    convert_main([str(src), str(tmp_path / "out"), "--num-heads", "4", "--keypoint-layout", "coco"])
    assert "keypoints=coco" in capsys.readouterr().out
    loaded, sections = load_checkpoint(tmp_path / "out")
    assert sections["model"]["keypoint_layout"] == "coco" and loaded.keypoint_skeleton.name == "coco"
