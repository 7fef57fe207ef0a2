"""The ONNX Runtime sampling backend: export checks, same results as torch, the cache, clear errors."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from d3dp_ktp.checkpoints import load_checkpoint, save_checkpoint
from d3dp_ktp.inference import onnx_backend as ob
from d3dp_ktp.inference.io import read_keypoints
from d3dp_ktp.sampling import SamplingConfig
from d3dp_ktp.inference.pipeline import LiftConfig, default_camera, lift, lift_keypoints

from .conftest import HEIGHT, TINY_T, WIDTH, tiny_model

_SKIP = "the ONNX backend's optional dependencies are missing: " + ob.INSTALL_HINT
onnx = pytest.importorskip("onnx", reason=_SKIP)
ort = pytest.importorskip("onnxruntime", reason=_SKIP)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The user cache directory, redirected into tmp so no test writes to ~/.cache."""
    folder = tmp_path / "user_cache"
    monkeypatch.setenv(ob.CACHE_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny checkpoint whose ONNX export is already cached beside it (exported once per module)."""
    path = save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("onnx") / "ckpt")
    ob.onnx_model(load_checkpoint(path)[0], path, verbose=False)
    return path


def _inputs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, TINY_T, 17, 2, generator=g) * 2 - 1, torch.randn(n, TINY_T, 17, 3, generator=g),
            torch.randint(0, 1000, (n,), generator=g))


def test_export_passes_the_checker_and_matches_torch_for_any_batch(tmp_path):
    model = tiny_model(seed=1)
    path = ob.export_denoiser(model.pose_estimator, tmp_path / "d.onnx")
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"   # dynamic batch axis
    session = ob.make_session(path)
    for n, seed in ((1, 5), (7, 6)):   # neither is the traced batch of 2
        x2d, x_t, t = _inputs(n, seed)
        got = session.run(None, {"x2d": x2d.numpy(), "x_t": x_t.numpy(), "t": t.numpy()})[0]
        with torch.no_grad():
            want = model.pose_estimator(x2d, x_t, t).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert list(tmp_path.iterdir()) == [path]   # the temporary file was renamed, nothing left over


def test_sampling_equals_torch_with_the_same_noise(checkpoint, cache_dir):
    model, _ = load_checkpoint(checkpoint)
    fast = ob.onnx_model(model, checkpoint)
    assert isinstance(fast.pose_estimator, ob.OnnxDenoiser) and fast is not model
    assert not isinstance(model.pose_estimator, ob.OnnxDenoiser)   # the torch model is left as it was
    g = torch.Generator().manual_seed(0)
    x2d = torch.rand(2, TINY_T, 17, 2, generator=g) * 2 - 1
    latents = torch.randn(2, 3, TINY_T, 17, 3, generator=g)
    step_noise = torch.randn(3, 2, 3, TINY_T, 17, 3, generator=g)
    for flip in (True, False):
        kwargs = dict(num_hypotheses=3, num_steps=4, flip=flip, latents=latents, step_noise=step_noise)
        want, got = model.sample(x2d, **kwargs), fast.sample(x2d, **kwargs)
        assert got.shape == want.shape == (2, 4, 3, TINY_T, 17, 3)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_lift_within_a_micrometre_of_torch(checkpoint, cache_dir):
    model, _ = load_checkpoint(checkpoint)
    rng = np.random.RandomState(0)
    x2d = rng.uniform(-0.5, 0.5, (20, 17, 2)).astype(np.float32)   # 20 frames: 3 windows of T=9
    cfg = LiftConfig(SamplingConfig(num_hypotheses=2, num_steps=2, seed=4), batch_size=2)
    camera = default_camera(WIDTH, HEIGHT)
    want = lift(model, x2d, cfg, ref2d=x2d, camera=camera)
    got = lift(ob.onnx_model(model, checkpoint), x2d, cfg, ref2d=x2d, camera=camera)
    error = np.linalg.norm(got.poses_3d - want.poses_3d, axis=-1).mean()
    assert error < 1e-6   # metres; the target is 1 mm, the difference is float rounding
    np.testing.assert_allclose(got.uncertainty, want.uncertainty, atol=1e-5)


def test_export_is_cached_beside_the_checkpoint_and_keyed_by_the_weights(checkpoint, cache_dir, monkeypatch):
    model, _ = load_checkpoint(checkpoint)
    monkeypatch.setattr(ob, "export_denoiser", lambda *a, **k: pytest.fail("exported again"))
    first = ob.onnx_model(model, checkpoint).pose_estimator.path    # the fixture's export, reused
    assert first.parent == checkpoint / "onnx" and first.name.startswith("denoiser-")
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left
    assert load_checkpoint(checkpoint)[0] is not None                      # the folder still loads
    with torch.no_grad():
        model.pose_estimator.head[1].bias.add_(0.01)                       # other weights -> other key
    assert ob.cache_key(model.pose_estimator, ob.OnnxConfig()) not in first.name
    assert ob.cache_key(model.pose_estimator, ob.OnnxConfig(opset=18)) != \
        ob.cache_key(model.pose_estimator, ob.OnnxConfig())
    assert not cache_dir.exists()


def test_a_damaged_cached_file_is_exported_again(tmp_path, cache_dir, capsys):
    model = tiny_model(seed=4)
    path = ob.onnx_model(model, tmp_path).pose_estimator.path
    path.write_bytes(path.read_bytes()[:100])                  # truncated, as by a full disk elsewhere
    fast = ob.onnx_model(model, tmp_path)
    assert "cannot be read" in capsys.readouterr().err and fast.pose_estimator.path == path
    x2d, x_t, t = _inputs(2, 0)
    with torch.no_grad():
        torch.testing.assert_close(fast.pose_estimator(x2d, x_t, t), model.pose_estimator(x2d, x_t, t),
                                   atol=1e-5, rtol=0)


def test_unwritable_checkpoint_folder_falls_back_to_the_user_cache(tmp_path, cache_dir, capsys):
    # A file where the onnx/ folder would go: mkdir fails even for root (a chmod'ed folder would not).
    folder = tmp_path / "installed"
    folder.mkdir()
    (folder / "onnx").write_text("not a folder")
    model = tiny_model(seed=2)
    fast = ob.onnx_model(model, folder / "weights.bin")
    assert fast.pose_estimator.path.parent == cache_dir
    err = capsys.readouterr().err
    assert f"is not writable; the ONNX export is cached in {cache_dir}" in err and "exporting the denoiser" in err


def test_export_leaves_the_training_mode_and_device_alone(tmp_path):
    model = tiny_model(seed=1).train()
    ob.export_denoiser(model.pose_estimator, tmp_path / "d.onnx")
    assert model.pose_estimator.training


def test_missing_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # makes `import onnxruntime` raise ImportError
    with pytest.raises(ValueError, match=r"needs the package 'onnxruntime'.*pip install .*onnxruntime"):
        ob.check_backend("onnx")
    ob.check_backend("torch")
    with pytest.raises(ValueError, match="backend must be one of torch, onnx"):
        ob.check_backend("tensorrt")


def test_half_precision_and_gpu_tensors_are_refused(checkpoint, cache_dir):
    fast = ob.onnx_model(load_checkpoint(checkpoint)[0], checkpoint)
    x2d = torch.zeros(1, TINY_T, 17, 2)
    with pytest.raises(ValueError, match="ONNX backend runs in fp32"):
        fast.sample(x2d, num_hypotheses=1, num_steps=1, dtype="bf16")
    with pytest.raises(ValueError, match="ONNX backend runs on the CPU"):
        fast.pose_estimator(x2d.to("meta"), torch.zeros(1, TINY_T, 17, 3, device="meta"), torch.zeros(1))


def test_bad_settings_and_models():
    with pytest.raises(ValueError, match="opset must be between 13 and 21"):
        ob.OnnxConfig(opset=9).validate()
    with pytest.raises(ValueError, match="graph_optimization must be one of"):
        ob.OnnxConfig(graph_optimization="max").validate()
    with pytest.raises(ValueError, match="samples D3DP diffusion models"):
        ob.onnx_model(torch.nn.Linear(2, 2))


def test_sample_cli_onnx_backend_matches_the_torch_lift(monkeypatch, demo_dir, tmp_path, cache_dir, capsys):
    from .test_sample_cli import load_sample_module

    monkeypatch.setenv("D3DP_KTP_DEMO_DIR", str(demo_dir))
    monkeypatch.chdir(tmp_path)
    main = load_sample_module().main
    assert main(["--backend", "onnx", "--raw", "--no-video", "--out", "onnx", "-H", "2", "-K", "2"]) == 0
    assert (demo_dir / "checkpoint" / "onnx").is_dir()
    model, _ = load_checkpoint(demo_dir / "checkpoint")
    kf = read_keypoints(demo_dir / "demo_input.npz")
    want, _ = lift_keypoints(model, kf, LiftConfig(model.sampling.override(num_hypotheses=2, num_steps=2)))   # the torch backend
    with np.load(tmp_path / "onnx" / "poses_3d.npz") as npz:
        got, settings = npz["poses_3d"], json.loads(str(npz["settings"]))
    assert settings["backend"] == "onnx"
    assert np.linalg.norm(got - want.poses_3d, axis=-1).mean() < 1e-6
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    capsys.readouterr()
    assert main(["--backend", "onnx", "--no-video", "--out", "x"]) == 2
    assert "error: --backend onnx needs onnxruntime" in capsys.readouterr().err
