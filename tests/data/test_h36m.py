"""Human3.6M loader on generated VideoPose3D-format files (docs/method.md §6.1-6.4)."""
import numpy as np
import pytest

from d3dp_ktp.camera import camera_to_world
from d3dp_ktp.data import h36m
from d3dp_ktp.skeleton import H36M_KEPT
from tests.data.fixtures import rotation_matrix, write_h36m


@pytest.fixture
def rng():
    return np.random.RandomState(0)


def test_normalized_intrinsics_match_spec():
    expected = [((2.290099, 2.2875624), (0.02508307, 0.02890298)),
                ((2.2993512, 2.2951834), (0.01769722, 0.01612985)),
                ((2.2982814, 2.297598), (0.03963172, 0.00280535)),
                ((2.2910228, 2.289548), (0.02993643, 0.00176403))]
    for cam, (f, c) in zip(h36m.h36m_cameras("S1"), expected):
        assert cam.intrinsics.dtype == np.float32
        np.testing.assert_allclose(cam.intrinsics[:2], f, rtol=1e-6)
        np.testing.assert_allclose(cam.intrinsics[2:4], c, rtol=1e-5)
    k = h36m.h36m_cameras("S9")[0].intrinsics
    np.testing.assert_allclose(k[4:], [-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043,
                                       -0.0009756988729350269, -0.00142447161488235], rtol=1e-6)


def test_extrinsics_in_metres_and_missing_for_2d_only_subjects():
    cam = h36m.h36m_cameras("S11")[3]
    np.testing.assert_allclose(cam.translation, [-1.590738037109375, -3.854168945312500, 1.578017578125], rtol=1e-6)
    assert (cam.res_w, cam.res_h, cam.id) == (1000, 1002, "60457274")
    assert not h36m.h36m_cameras("S2")[0].has_extrinsics


def test_world_to_camera_and_32_to_17_against_hand_rotation(tmp_path, rng):
    raw = write_h36m(tmp_path, rng)
    ds = h36m.load_h36m(tmp_path, "gt", ["S1"])
    video = ds["S1"]["Directions"][2]
    q, t_mm = h36m.EXTRINSICS["S1"][2]
    world17 = raw["S1"]["Directions"][:, list(H36M_KEPT)].astype(np.float64)
    cam_abs = (world17 - np.array(t_mm) / 1000) @ rotation_matrix(q)  # row-vector form of R^T (X - t)
    expected = cam_abs.copy()
    expected[:, 1:] -= cam_abs[:, :1]
    assert video.positions_3d.shape == (12, 17, 3) and video.positions_3d.dtype == np.float32
    np.testing.assert_allclose(video.positions_3d, expected, atol=2e-5)
    # 17 columns are exactly the kept ones: the thorax (32-idx 13) lands at 17-idx 8.
    np.testing.assert_allclose(video.positions_3d[:, 8], cam_abs[:, 8] - cam_abs[:, 0], atol=2e-5)


def test_camera_round_trip_recovers_world(tmp_path, rng):
    raw = write_h36m(tmp_path, rng)
    ds = h36m.load_h36m(tmp_path, "gt", ["S9"])
    for video in ds["S9"]["WalkDog"]:
        cam_abs = video.positions_3d.copy()
        cam_abs[:, 1:] += cam_abs[:, :1]  # undo root-relative (root column holds the trajectory)
        world = camera_to_world(cam_abs, video.cam.orientation, video.cam.translation)
        np.testing.assert_allclose(world, raw["S9"]["WalkDog"][:, list(H36M_KEPT)], atol=3e-5)


def test_2d_trimmed_to_3d_length_and_normalised_with_camera_res(tmp_path, rng):
    write_h36m(tmp_path, rng, extra_frames=4)
    ds = h36m.load_h36m(tmp_path, "gt", ["S1"])
    from d3dp_ktp.data.io import load_npz
    px = load_npz(tmp_path / "data_2d_h36m_gt.npz")["positions_2d"]["S1"]["Walking 1"]
    assert px[2].shape[0] == 7 + 4
    for c, video in enumerate(ds["S1"]["Walking 1"]):
        assert video.num_frames == 7 and video.keypoints_2d.dtype == np.float32
        w, h = h36m.PIXEL_INTRINSICS[c][:2]
        expected = px[c][:7] / w * 2 - np.array([1, h / w])
        np.testing.assert_allclose(video.keypoints_2d, expected, atol=1e-6)
    # Hand values: cam 0 is 1000x1002, so pixel (0, 0) -> (-1, -1.002) and (500, 501) -> (0, 0).
    from d3dp_ktp.data.dataset import normalize_2d
    out = normalize_2d(np.array([[[0.0, 0.0], [500.0, 501.0]]]), ds["S1"]["Walking 1"][0].cam)
    np.testing.assert_allclose(out[0], [[-1, -1.002], [0, 0]], atol=1e-7)


def test_gt_2d_is_projection_of_loaded_3d(tmp_path, rng):
    import torch
    from d3dp_ktp.camera import project_to_2d
    write_h36m(tmp_path, rng)
    video = h36m.load_h36m(tmp_path, "gt", ["S1"])["S1"]["Directions"][1]
    cam_abs = video.positions_3d.copy()
    cam_abs[:, 1:] += cam_abs[:, :1]
    proj = project_to_2d(torch.from_numpy(cam_abs), torch.from_numpy(video.camera)).numpy()
    np.testing.assert_allclose(proj, video.keypoints_2d, atol=1e-5)


def test_metadata_symmetry_and_default_layout(tmp_path, rng):
    write_h36m(tmp_path, rng, with_layout_name=False)
    ds = h36m.load_h36m(tmp_path, "gt", ["S1", "S9"])
    assert ds.keypoints_layout == "h36m"
    assert ds.kps_left == (4, 5, 6, 11, 12, 13) and ds.kps_right == (1, 2, 3, 14, 15, 16)
    assert ds.skeleton.num_joints == 17 and ds.fps == 50.0
    assert len(ds) == 4 * 4 and ds.subjects == ("S1", "S9")


def test_action_prefix_filter_and_groups(tmp_path, rng):
    write_h36m(tmp_path, rng)
    ds = h36m.load_h36m(tmp_path, "gt", ["S1", "S9"], actions="Walk")
    assert set(ds.actions()) == {"Walking 1", "WalkDog"}
    groups = h36m.load_h36m(tmp_path, "gt", ["S1", "S9"]).action_groups()
    assert sorted(groups) == ["Directions", "WalkDog", "Walking"]
    assert len(groups["Directions"]) == 8  # "Directions" (S1) and "Directions 1" (S9), 4 cameras each


def test_2d_only_subject_has_no_3d(tmp_path, rng):
    write_h36m(tmp_path, rng)
    ds = h36m.load_h36m(tmp_path, "gt", ["S2"])
    assert len(ds) == 4 and all(v.positions_3d is None for v in ds)
    assert not ds.has_3d


def test_missing_action_in_2d_is_an_error(tmp_path, rng):
    write_h36m(tmp_path, rng, drop_2d=("S9", "WalkDog"))
    with pytest.raises(ValueError, match="S9/WalkDog.*missing"):
        h36m.load_h36m(tmp_path, "gt", ["S9"])
    h36m.load_h36m(tmp_path, "gt", ["S1"])  # other subjects still load


def test_2d_shorter_than_3d_is_an_error(tmp_path, rng):
    write_h36m(tmp_path, rng, short_2d=("S1", "Directions"))
    with pytest.raises(ValueError, match="camera 1: 2D has 10 frames but 3D has 12"):
        h36m.load_h36m(tmp_path, "gt", ["S1"])


def test_missing_subject_and_missing_file(tmp_path, rng):
    write_h36m(tmp_path, rng)
    with pytest.raises(ValueError, match=r"\['S11'\].*available subjects: S1, S2, S9"):
        h36m.load_h36m(tmp_path, "gt", ["S9", "S11"])
    with pytest.raises(FileNotFoundError, match="data_2d_h36m_cpn_ft_h36m_dbb.npz.*DATASETS.md"):
        h36m.load_h36m(tmp_path, "cpn_ft_h36m_dbb", ["S1"])
