"""The custom format: one writer, one reader, round trips and validation."""
import numpy as np
import pytest
import torch

from d3dp_ktp.camera import camera_to_world, project_to_2d
from d3dp_ktp.data.custom import camera_info, custom_camera, load_custom, write_custom_dataset
from d3dp_ktp.data.io import load_npz
from tests.data.fixtures import custom_cameras, write_custom


def test_round_trip_world_cameras_and_2d(tmp_path):
    world, cams = write_custom(tmp_path, np.random.RandomState(3))
    ds = load_custom(tmp_path, "mocap", "gt", ["B", "A"])
    assert ds.subjects == ("B", "A") and ds.fps == 30.0 and ds.skeleton.name == "h36m"
    assert len(ds) == 3 * 2
    video = ds["A"]["walk 1"][1]
    assert video.keypoints_2d.shape == (9, 17, 2)  # confidence channel dropped
    # Normalised intrinsics from pixels: f/w*2 and c/w*2 - [1, h/w] with the camera's own res.
    np.testing.assert_allclose(video.camera[:4], [1010 / 640, 1001 / 640, 645 / 640 - 1, 357 / 640 - 720 / 1280],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(video.camera[4:], [-0.1, 0.05, 0.0, 0.001, -0.002], rtol=1e-6)
    np.testing.assert_allclose(video.cam.translation, np.array(cams[1]["translation"]) / 1000, rtol=1e-6)
    cam_abs = video.positions_3d.copy()
    cam_abs[:, 1:] += cam_abs[:, :1]
    np.testing.assert_allclose(camera_to_world(cam_abs, video.cam.orientation, video.cam.translation),
                               world["A"]["walk 1"], atol=3e-5)
    proj = project_to_2d(torch.from_numpy(cam_abs), torch.from_numpy(video.camera)).numpy()
    np.testing.assert_allclose(proj, video.keypoints_2d, atol=1e-5)


def test_file_contents_follow_the_format(tmp_path):
    write_custom(tmp_path, np.random.RandomState(4))
    f3 = load_npz(tmp_path / "data_3d_mocap.npz")
    f2 = load_npz(tmp_path / "data_2d_mocap_gt.npz")
    assert f3["metadata"] == {"layout_name": "h36m", "num_joints": 17, "fps": 30.0}
    assert f3["positions_3d"]["A"]["run"].dtype == np.float32
    cam = f3["cameras"]["A"][0]
    assert isinstance(cam["translation"], list) and cam["res_w"] == 1920
    assert f2["metadata"]["keypoints_symmetry"] == [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
    assert f2["positions_2d"]["B"]["walk 2"][0].shape == (6, 17, 3)


def test_writer_and_reader_reject_bad_input(tmp_path):
    cams = custom_cameras()
    bad = dict(cams[0], orientation=[1.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="unit quaternion"):
        camera_info(bad, "test")
    with pytest.raises(ValueError, match="focal_length must be 2"):
        custom_camera("c", 10, 10, focal_length=[1.0], center=[5, 5], orientation=[1, 0, 0, 0],
                      translation_mm=[0, 0, 0])
    world = {"A": {"x": np.zeros((4, 17, 3), np.float32)}}
    with pytest.raises(ValueError, match="one array per camera"):
        write_custom_dataset(tmp_path, "bad", world, {"A": cams}, {"A": {"x": [np.zeros((4, 17, 2))]}})
    with pytest.raises(ValueError, match=r"must be \(F, 17, 3\)"):
        write_custom_dataset(tmp_path, "bad", {"A": {"x": np.zeros((4, 16, 3))}}, {"A": cams},
                             {"A": {"x": [np.zeros((4, 16, 2))] * 2}})
    with pytest.raises(FileNotFoundError, match="data_3d_nothing.npz"):
        load_custom(tmp_path, "nothing", "gt", ["A"])
