"""Input validation at the public entry points: a ValueError (or FileNotFoundError) naming the argument."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from d3dp_ktp.camera import normalize_screen_coordinates
from d3dp_ktp.checkpoints import load_checkpoint, save_checkpoint
from d3dp_ktp.diffusion import DiffusionConfig
from d3dp_ktp.experiment import load_experiment
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig
from tests.training import tiny_overrides, train_main

T, J = 9, 17


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_diffusion(ModelConfig(num_frames=T, channels=32, num_heads=4, depth=1), DiffusionConfig()).eval()


def _x2d(*shape, fill=None):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    if fill is not None:
        x[..., 0, 0] = fill
    return x


# ------------------------------------------------------------------------------- D3DP.sample
@pytest.mark.parametrize("x2d,match", [
    (_x2d(T, J, 2), r"x2d must be a tensor of shape \(B, T, J, 2\)"),             # rank 3
    (_x2d(1, 1, T, J, 2), r"x2d must be a tensor of shape \(B, T, J, 2\)"),       # rank 5
    (_x2d(1, T, J, 3), r"x2d must be a tensor of shape \(B, T, J, 2\)"),          # 3D instead of 2D
    (np.zeros((1, T, J, 2), np.float32), r"x2d must be a tensor"),                # not a tensor
    (_x2d(1, T, J + 1, 2), r"x2d has 18 joints but the model was built for 17"),
    (_x2d(1, T, J - 1, 2), r"x2d has 16 joints but the model was built for 17"),
    (_x2d(1, T, J, 2, fill=float("nan")), r"x2d contains NaN or inf"),
    (_x2d(1, T, J, 2, fill=float("inf")), r"x2d contains NaN or inf"),
    (_x2d(1, 0, J, 2), r"x2d is empty"),
    (_x2d(0, T, J, 2), r"x2d is empty"),
    (_x2d(1, T - 1, J, 2), r"x2d has 8 frames but the model was built for T=9"),
    (_x2d(1, T + 1, J, 2), r"x2d has 10 frames but the model was built for T=9"),
], ids=["rank3", "rank5", "channels", "numpy", "J+1", "J-1", "nan", "inf", "T=0", "B=0", "T-1", "T+1"])
def test_sample_rejects_bad_x2d(model, x2d, match):
    with pytest.raises(ValueError, match=match):
        model.sample(x2d, num_hypotheses=1, num_steps=1)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_hypotheses": 0}, r"num_hypotheses \(H\) must be an integer >= 1, got 0"),
    ({"num_hypotheses": 1.5}, r"num_hypotheses \(H\) must be an integer >= 1, got 1.5"),
    ({"num_steps": 0}, r"num_steps \(K\) must be an integer in \[1, 1000\], got 0"),
    ({"num_steps": 1001}, r"num_steps \(K\) must be an integer in \[1, 1000\], got 1001"),
    ({"eta": -0.5}, r"eta must be >= 0.*got -0.5"),
    ({"eta": float("nan")}, r"eta must be >= 0.*got nan"),
], ids=["H=0", "H=1.5", "K=0", "K=1001", "eta<0", "eta=nan"])
def test_sample_rejects_bad_sampling_arguments(model, kwargs, match):
    args = {"num_hypotheses": 1, "num_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        model.sample(_x2d(1, T, J, 2), **args)


def test_sample_rejects_latents_of_the_wrong_shape(model):
    with pytest.raises(ValueError, match=r"latents must have shape \(B, H, T, J, 3\) = \(1, 2, 9, 17, 3\)"):
        model.sample(_x2d(1, T, J, 2), num_hypotheses=2, num_steps=1, latents=torch.zeros(1, 1, T, J, 3))


# ----------------------------------------------------------------------- denoiser and loss
@pytest.mark.parametrize("x2d_shape,xt_shape,t_shape,match", [
    ((1, T, J - 1, 2), (1, T, J - 1, 3), (1,), r"x2d has 16 joints but the model was built for 17 joints"),
    ((1, T - 2, J, 2), (1, T - 2, J, 3), (1,), r"x2d has 7 frames but the model was built for T=9"),
    ((1, T, J, 2), (1, T, J - 1, 3), (1,), r"x_t has 16 joints"),
    ((1, T, J, 2), (1, T, J, 2), (1,), r"x_t must have shape \(B, T, J, 3\)"),
    ((2, T, J, 2), (1, T, J, 3), (1,), r"x2d \(2, 9, 17, 2\) and x_t \(1, 9, 17, 3\) disagree"),
    ((1, T, J, 2), (1, T, J, 3), (2,), r"t must have shape \(B,\) = \(1,\)"),
], ids=["joints", "frames", "x_t-joints", "x_t-channels", "batch", "t"])
def test_denoiser_forward_rejects_bad_shapes(model, x2d_shape, xt_shape, t_shape, match):
    with pytest.raises(ValueError, match=match):
        model.pose_estimator(torch.zeros(x2d_shape), torch.zeros(xt_shape), torch.zeros(t_shape, dtype=torch.long))


def test_loss_rejects_y3d_that_does_not_match_x2d(model):
    with pytest.raises(ValueError, match=r"y3d must have shape \(2, 9, 17, 3\) to match x2d"):
        model.loss(torch.zeros(2, T, J, 2), torch.zeros(2, T, J - 1, 3))


# ------------------------------------------------------------------------------------ camera
@pytest.mark.parametrize("w,h,match", [(0, 480, "w=0"), (640, 0, "h=0"), (-1, 480, "w=-1")])
def test_normalize_screen_coordinates_rejects_empty_images(w, h, match):
    with pytest.raises(ValueError, match=f"image width and height must be positive.*{match}"):
        normalize_screen_coordinates(np.zeros((3, 2), np.float32), w, h)


def test_normalize_screen_coordinates_rejects_non_2d_points():
    with pytest.raises(ValueError, match=r"x must have last dimension 2, got shape \(3, 3\)"):
        normalize_screen_coordinates(np.zeros((3, 3), np.float32), 640, 480)


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("override,match", [
    ("model.chanels=64", r"unknown config key 'model.chanels' for ModelConfig; valid keys: .*channels"),
    ("modle.channels=64", r"unknown config key 'modle' for ExperimentConfig; valid keys: model, diffusion"),
    ("train.epochs=many", r"train.epochs: expected an integer, got 'many'"),
    ("train.epochs=1.5", r"train.epochs: expected an integer, got 1.5"),
    ("train.lr=fast", r"train.lr: expected a number, got 'fast'"),
    ("train.progress=3", r"train.progress: expected true/false, got 3"),
    ("data.subjects_train=S1", r"data.subjects_train: expected a list, got 'S1'"),
    ("train.lr=[1,", r"override 'train.lr=\[1,': the value is not valid YAML"),
    ("train.epochs", r"override 'train.epochs' must look like section.key=value"),
], ids=["key", "section", "int", "int-float", "float", "bool", "tuple", "bad-yaml", "no-equals"])
def test_overrides_reject_unknown_keys_and_wrong_types(override, match):
    with pytest.raises(ValueError, match=match):
        load_experiment(None, [override])


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads 1e-4 as a string; train.lr=1e-4 must still work."""
    assert load_experiment(None, ["train.lr=1e-4", "train.eps=-2E+3"]).train.lr == 1e-4
    with pytest.raises(ValueError, match="train.epochs: expected an integer, got '1e3'"):
        load_experiment(None, ["train.epochs=1e3"])


@pytest.mark.parametrize("text,match", [
    ("model:\n  chanels: 64\n", r"unknown config key 'model.chanels'"),
    ("train:\n  lr: fast\n", r"train.lr: expected a number, got 'fast'"),
    ("trian:\n  lr: 0.1\n", r"unknown config key 'trian'"),
    ("- model\n- train\n", r"must hold a mapping of sections, got list"),
    ("model: {channels: 64\n", r"is not valid YAML"),
], ids=["key", "type", "section", "list", "syntax"])
def test_yaml_file_rejects_unknown_keys_and_wrong_types(tmp_path, text, match):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_experiment(path)
    if "YAML" in match or "mapping" in match:
        assert str(path) in str(info.value)


def test_missing_yaml_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"config file not found: {tmp_path / 'nope.yaml'}"):
        load_experiment(tmp_path / "nope.yaml")


@pytest.mark.parametrize("where", ["document", "value", "override"])
def test_python_object_tags_are_refused_and_never_run(tmp_path, where):
    marker = tmp_path / "marker"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    path = tmp_path / "evil.yaml"
    path.write_text({"document": tag, "value": f"model: {tag}", "override": ""}[where] + "\n")
    overrides = [f"model.channels={tag}"] if where == "override" else []
    with pytest.raises(ValueError, match="python/object/apply:os.system"):
        load_experiment(path, overrides)
    assert not marker.exists()


# ------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("keep", [0.5, 0.01, 0.0], ids=["half", "header", "empty"])
def test_truncated_weights_name_the_file(tmp_path, model, keep):
    folder = save_checkpoint(model, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match=f"cannot read weights {weights}.*truncated or corrupted"):
        load_checkpoint(folder)


def test_checkpoint_with_corrupted_config_names_the_file(tmp_path, model):
    folder = save_checkpoint(model, tmp_path / "ckpt")
    (folder / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match=f"checkpoint config {folder / 'config.yaml'} is corrupted"):
        load_checkpoint(folder)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {tmp_path / 'nothing'}"):
        load_checkpoint(tmp_path / "nothing")


# ----------------------------------------------------------------------------------- train.py
def test_train_cli_with_a_missing_data_folder_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_data"
    code = train_main()(tiny_overrides(missing, tmp_path / "run"))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert not (tmp_path / "run" / "state").exists()


@pytest.mark.parametrize("args,match", [
    (["model.chanels=64"], "unknown config key 'model.chanels'"),
    (["train.lr=[1,"], "not valid YAML"),
    (["missing.yaml"], "config file not found: missing.yaml"),
    (["data.num_frames=27"], r"data.num_frames \(27\) must equal model.num_frames \(9\)"),
], ids=["key", "yaml", "file", "frames"])
def test_train_cli_reports_config_errors_with_exit_2(tmp_path, capsys, args, match):
    tiny = tiny_overrides(tmp_path / "data", tmp_path / "run")
    argv = tiny + args if "=" in args[0] else args + tiny  # a config file comes first
    assert train_main()(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(match, err), err
