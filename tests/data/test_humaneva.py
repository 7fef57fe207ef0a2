"""HumanEva-I in VideoPose3D format (docs/method.md §8)."""
import numpy as np
import pytest

from d3dp_ktp.data import humaneva
from tests.data.fixtures import rotation_matrix, write_humaneva


def test_fifteen_joints_three_cameras_no_intrinsics(tmp_path):
    raw = write_humaneva(tmp_path, np.random.RandomState(2))
    ds = humaneva.load_humaneva(tmp_path, "gt", ["Train/S1", "Validate/S3"], actions="Walk,Jog")
    assert ds.skeleton.num_joints == 15 and ds.num_keypoints == 15 and ds.keypoints_layout == "humaneva15"
    assert set(ds.actions()) == {"Walking 1 chunk0", "Jog 1 chunk0"}
    assert sorted(ds.action_groups()) == ["Jog", "Walking"]
    assert len(ds) == 3 * 3
    for video in ds:
        assert video.camera is None and (video.res_w, video.res_h) == (640, 480)
        assert video.positions_3d.shape[1:] == (15, 3)
    # Validate/S3 uses S1's calibration (docs/method.md §8); check camera C2 against a hand rotation.
    video = ds["Validate/S3"]["Walking 1 chunk0"][1]
    q, t_mm = humaneva.EXTRINSICS["S1"][1]
    cam_abs = (raw["Validate/S3"]["Walking 1 chunk0"] - np.array(t_mm) / 1000) @ rotation_matrix(q)
    np.testing.assert_allclose(video.positions_3d[:, 0], cam_abs[:, 0], atol=2e-5)
    np.testing.assert_allclose(video.positions_3d[:, 5], cam_abs[:, 5] - cam_abs[:, 0], atol=2e-5)


def test_unknown_person_is_an_error():
    with pytest.raises(ValueError, match="S4"):
        humaneva.humaneva_cameras("Train/S4")
    np.testing.assert_allclose(humaneva.humaneva_cameras("Unlabeled/Train/S2")[2].translation,
                               [-0.7814915, 3.8388853, 1.4449929], rtol=1e-6)
