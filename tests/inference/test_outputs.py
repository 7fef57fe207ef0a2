"""The post-processing chain of d3dp_ktp/inference/outputs.py on a generated lifting result."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from d3dp_ktp.inference import body, outputs
from d3dp_ktp.inference.pipeline import LiftResult
from d3dp_ktp.skeleton import H36M

from .test_body import to_camera, walking


def fake_result(frames: int = 90, noise: float = 0.015, hypotheses: bool = False) -> tuple[LiftResult, np.ndarray]:
    """A JPMA-like result of a body walking in front of a camera 1.6 m high, pitched 10 degrees down."""
    cam = to_camera(walking(frames), 1.6, 10.0)
    rng = np.random.RandomState(0)
    root = cam[:, 0].copy()
    rel = cam - root[:, None] + rng.normal(0, noise, cam.shape)
    rel[:, 0] = 0
    hyps = None
    if hypotheses:
        hyps = (rel + rng.normal(0, noise, (1, 3) + rel.shape))  # (K=1, H=3, F, J, 3)
        hyps[..., 0, :] = 0
    result = LiftResult(rel.astype(np.float32), np.full((frames, 17), 0.02, np.float32), root.astype(np.float32),
                        hyps, num_windows=1, window=frames)
    return result, cam


@pytest.mark.parametrize("hypotheses", [False, True])
def test_postprocess_default_fixes_bones_and_keeps_the_camera_space(hypotheses):
    result, cam = fake_result(hypotheses=hypotheses)
    p = outputs.postprocess(result, H36M, body.BodyConfig(), 30.0)
    assert p.stats["limb_variation_before"]["max"] > 0.03 and p.stats["limb_variation_after"]["max"] < 1e-6
    np.testing.assert_allclose(p.absolute[:, 0], cam[:, 0], atol=1e-6)  # the trajectory is kept
    assert abs(p.stats["floor"]["camera_height_m"] - 1.6) < 0.03 and abs(p.stats["floor"]["camera_pitch_deg"] - 10) < 1
    np.testing.assert_allclose(p.display[:, 0, [0, 2]], 0, atol=1e-9)  # pictures: in place without --world
    assert "smoothing" not in p.stats


def test_postprocess_smooth_world_and_raw():
    result, _ = fake_result()
    p = outputs.postprocess(result, H36M, body.BodyConfig(smooth=True, world=True), 30.0)
    before, after = p.stats["jitter_before"], p.stats["jitter_after"]
    assert after["pose_m_s2"] < 0.5 * before["pose_m_s2"]
    assert p.stats["smoothing"] == {"filter": "savitzky-golay", "order": 2, "window_frames": 7}
    np.testing.assert_array_equal(p.display, p.world)  # --world: the pictures move along the trajectory
    np.testing.assert_allclose(p.world[0, 0, [0, 2]], 0, atol=1e-9)
    assert np.median(p.world[:, [3, 6], 1].min(1)) == pytest.approx(body.ANKLE_HEIGHT, abs=0.02)
    raw = outputs.postprocess(result, H36M, body.BodyConfig(consistent=False), 30.0)
    np.testing.assert_allclose(raw.poses, result.poses_3d, atol=1e-6)
    assert raw.bone_lengths is None


def test_resolve_fps_order():
    assert outputs.resolve_fps(Fraction(30000, 1001), 50, 24.0) == (24.0, "--fps")
    assert outputs.resolve_fps(Fraction(30000, 1001), 50, None) == (Fraction(30000, 1001), "the video")
    assert outputs.resolve_fps(None, 50, None) == (50.0, "the input file")
    assert outputs.resolve_fps(None, None, None)[0] == outputs.DEFAULT_FPS
    with pytest.raises(ValueError, match="--fps must be positive"):
        outputs.resolve_fps(None, None, 0.0)
