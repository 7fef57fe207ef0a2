"""Checkpoint weight averaging: the mean of the weights, one architecture only, nothing overwritten."""
import torch

from d3dp_ktp.checkpoints import load_checkpoint, save_checkpoint
from d3dp_ktp.diffusion import DiffusionConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig
from d3dp_ktp.training.average import main


def _checkpoint(path, seed: int, channels: int = 32):
    torch.manual_seed(seed)
    model = build_diffusion(ModelConfig(channels=channels, num_heads=4, depth=1, num_frames=9), DiffusionConfig())
    return save_checkpoint(model, path, {"data": {"name": f"run{seed}"}})


def test_average_is_the_mean_of_the_weights(tmp_path, capsys):
    paths = [_checkpoint(tmp_path / f"epoch_{i}", seed=i) for i in range(3)]
    assert main([*map(str, paths), "--out", str(tmp_path / "avg")]) == 0
    avg, cfg = load_checkpoint(tmp_path / "avg")
    states = [load_checkpoint(p)[0].state_dict() for p in paths]
    for key, value in avg.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, sum(s[key] for s in states) / 3, rtol=1e-6, atol=1e-7)
        else:  # integer buffers (indices) are the same in every checkpoint: kept
            assert torch.equal(value, states[-1][key])
    assert cfg["meta"]["averaged"] == [str(p) for p in paths] and cfg["data"] == {"name": "run2"}
    assert "the mean of 3 checkpoints" in capsys.readouterr().out


def test_average_refuses_other_architectures_and_existing_folders(tmp_path, capsys):
    a, b = _checkpoint(tmp_path / "a", 0), _checkpoint(tmp_path / "b", 1, channels=64)
    assert main([str(a), str(b), "--out", str(tmp_path / "avg")]) == 2
    assert "only checkpoints of one architecture" in capsys.readouterr().err
    assert not (tmp_path / "avg").exists()
    assert main([str(a), str(a), "--out", str(a)]) == 2
    assert "exists" in capsys.readouterr().err
    before = (a / "model.safetensors").read_bytes()
    assert main([str(a), str(a), "--out", str(a), "--force"]) == 2  # never the folder being read
    assert "one of the checkpoints" in capsys.readouterr().err and (a / "model.safetensors").read_bytes() == before
