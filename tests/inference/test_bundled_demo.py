"""The README's main command: `python sample.py` on the committed demo checkpoint and input."""
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "assets" / "demo"
# The bundled model's MPJPE on the bundled sequence is reported in assets/demo/README.md; the test
# allows a little slack for BLAS differences across machines, not for a worse model.
MAX_MPJPE_MM = float(re.search(r"MPJPE[^0-9]*([0-9.]+) mm", (DEMO / "README.md").read_text()).group(1)) + 1.0


def test_bundled_assets_are_small_and_complete():
    files = [DEMO / "demo_input.npz", DEMO / "checkpoint" / "model.safetensors",
             DEMO / "checkpoint" / "config.yaml"]
    assert all(f.is_file() for f in files)
    sampling = yaml.safe_load((DEMO / "checkpoint" / "config.yaml").read_text())["sampling"]
    assert (sampling["num_hypotheses"], sampling["num_steps"], sampling["seed"]) == (5, 5, 0)  # the demo's defaults
    assert sum(f.stat().st_size for f in files) < 5 * 2 ** 20


def test_sample_py_without_arguments_runs_the_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "D3DP_KTP_DEMO_DIR"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(REPO / "sample.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "outputs" / "demo"
    for name in ("poses_3d.npz", "poses_3d.json", "preview.png", "animation.gif"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(Path("outputs") / "demo" / name) in proc.stdout
    with np.load(out / "poses_3d.npz") as result:
        demo = np.load(DEMO / "demo_input.npz")
        frames = demo["keypoints"].shape[0]
        assert result["poses_3d"].shape == (frames, 17, 3)
        assert result["uncertainty"].shape == (frames, 17)
        assert np.isfinite(result["poses_3d"]).all() and np.isfinite(result["uncertainty"]).all()
        assert np.allclose(result["poses_3d"][:, 0], 0)
    assert len(json.loads((out / "poses_3d.json").read_text())["poses_3d"]) == frames
    mpjpe = float(re.search(r"MPJPE vs ground truth[^:]*: ([0-9.]+) mm", proc.stdout).group(1))
    assert mpjpe < MAX_MPJPE_MM


@pytest.mark.parametrize("frames,H,K", [
    (54, 2, 2),  # two overlapping windows of the T=27 model, blended: ~3 s on one core
    pytest.param(None, 5, 5, marks=pytest.mark.slow),  # the whole demo at the demo's H and K (fp16 on CPU is slow)
], ids=["54f-h2k2", "demo-h5k5"])
def test_half_precision_lifting_stays_close_to_fp32(frames, H, K):
    """The autocast fast paths on the trained demo model: fp16 (10-bit mantissa) within 1 mm of fp32
    on average, bf16 (7-bit) within a few mm. Same seed, so the noise is identical."""
    import torch

    from d3dp_ktp.checkpoints import load_checkpoint
    from d3dp_ktp.inference.io import read_keypoints
    from d3dp_ktp.inference.pipeline import LiftConfig, lift_keypoints

    torch.set_num_threads(1)
    model, _ = load_checkpoint(DEMO / "checkpoint")
    kf = read_keypoints(DEMO / "demo_input.npz")
    kf = dataclasses.replace(kf, keypoints=kf.keypoints[:frames])
    poses = {dtype: lift_keypoints(model, kf, LiftConfig(model.sampling.override(dtype=dtype, num_hypotheses=H,
                                                                               num_steps=K), agg="mean"))[0].poses_3d
             for dtype in ("fp32", "fp16", "bf16")}
    error_mm = {d: 1e3 * np.linalg.norm(poses[d] - poses["fp32"], axis=-1).mean() for d in ("fp16", "bf16")}
    assert error_mm["fp16"] < 1.0 and error_mm["bf16"] < 5.0, error_mm
    assert error_mm["fp16"] > 0  # the half-precision path really ran
