"""MPI-INF-3DHP: D3DP's processed npz files and the official annot_data.mat (docs/method.md §7)."""
import h5py
import numpy as np
import pytest
import torch

from d3dp_ktp.camera import project_to_2d_linear
from d3dp_ktp.data import mpi_inf_3dhp as mpi
from tests.data.fixtures import mpi_test_sequence, write_3dhp_npz, write_annot_mat


@pytest.fixture
def rng():
    return np.random.RandomState(1)


def test_train_mm_to_metres_root_14_and_2048_normalisation(tmp_path, rng):
    train, _ = write_3dhp_npz(tmp_path, rng)
    ds = mpi.load_mpi_inf_3dhp(tmp_path, ["S1"])
    assert [(v.action, v.camera_index) for v in ds] == [("Seq1", 0), ("Seq1", 4), ("Seq2", 0), ("Seq2", 4)]
    video = ds["S1"]["Seq2"][1]
    raw = train["S1 Seq2"][0]["4"]
    mm = raw["data_3d"].astype(np.float64)
    np.testing.assert_allclose(video.positions_3d[:, 14], mm[:, 14] / 1000, rtol=1e-6)
    np.testing.assert_allclose(video.positions_3d[:, 0], (mm[:, 0] - mm[:, 14]) / 1000, atol=1e-6)
    np.testing.assert_allclose(video.keypoints_2d, raw["data_2d"] / 1024 - 1, atol=1e-6)
    assert video.fps == 50 and video.camera is None and (video.res_w, video.res_h) == (2048, 2048)
    assert ds.skeleton.root == 14 and ds.kps_left == (5, 6, 7, 11, 12, 13)


def test_test_sequences_use_their_resolution_intrinsics_and_valid(tmp_path, rng):
    _, test = write_3dhp_npz(tmp_path, rng)
    ds = mpi.load_mpi_inf_3dhp(tmp_path, ["TS5", "TS1"])
    assert ds.subjects == ("TS5", "TS1")
    ts5 = ds["TS5"]["TS5"][0]
    assert (ts5.res_w, ts5.res_h) == (1920, 1080)
    # Pixel (960, 540) is the image centre -> (0, 0); pixel (0, 0) -> (-1, -1080/1920).
    from d3dp_ktp.data.dataset import normalize_2d
    np.testing.assert_allclose(normalize_2d(np.array([[[960.0, 540.0], [0.0, 0.0]]]), ts5.cam)[0],
                               [[0, 0], [-1, -0.5625]], atol=1e-7)
    f, cx, cy = 1683.983460, 939.857540, 560.140743
    np.testing.assert_allclose(ts5.camera, [f / 960, f / 960, cx / 960 - 1, cy / 960 - 0.5625, 0, 0, 0, 0, 0],
                               rtol=1e-6, atol=1e-7)
    ts1 = ds["TS1"]["TS1"][0].camera
    np.testing.assert_allclose(ts1[:4], [1500.172288 / 1024, 1500.172288 / 1024, 1017.387336 / 1024 - 1,
                                         1043.031982 / 1024 - 1], rtol=1e-6, atol=1e-7)
    assert ts5.valid.dtype == bool and ts5.valid.tolist() == [False, False] + [True] * 5
    # The fixture's 2D is the linear projection of its 3D: the loaded camera must reproduce it.
    for video in ds:
        cam_abs = video.positions_3d.copy()
        cam_abs[:, [j for j in range(17) if j != 14]] += cam_abs[:, 14:15]
        proj = project_to_2d_linear(torch.from_numpy(cam_abs), torch.from_numpy(video.camera)).numpy()
        np.testing.assert_allclose(proj, video.keypoints_2d, atol=1e-5)


def test_annot_mat_with_reversed_axes_matches_npz(tmp_path, rng):
    seq = mpi_test_sequence(rng, "TS6", 9)
    path = tmp_path / "test_set" / "TS6" / "annot_data.mat"
    write_annot_mat(path, seq["data_2d"], seq["data_3d"], seq["valid"], seq["activity"])
    with h5py.File(path, "r") as f:
        assert f["annot2"].shape == (9, 1, 17, 2) and f["valid_frame"].shape == (1, 9)  # MATLAB 2x17x1xF, Fx1
    annot = mpi.read_annot_mat(path)
    np.testing.assert_allclose(annot["annot2"], seq["data_2d"], rtol=1e-6)
    np.testing.assert_allclose(annot["annot3"], seq["data_3d"], rtol=1e-6)
    assert annot["activity"].tolist() == seq["activity"].tolist()

    (tmp_path / "npz").mkdir()
    from d3dp_ktp.data.io import save_npz
    save_npz(tmp_path / "npz" / "data_test_3dhp_ori.npz",
             data={"TS6": {k: seq[k] for k in ("data_2d", "data_3d", "valid")}})
    from_mat = mpi.load_mpi_inf_3dhp(tmp_path, ["TS6"], annot_mat_dir=tmp_path / "test_set").videos[0]
    from_npz = mpi.load_mpi_inf_3dhp(tmp_path / "npz", ["TS6"]).videos[0]
    np.testing.assert_allclose(from_mat.positions_3d, from_npz.positions_3d, atol=1e-6)
    np.testing.assert_allclose(from_mat.keypoints_2d, from_npz.keypoints_2d, atol=1e-6)
    assert from_mat.valid.tolist() == from_npz.valid.tolist()
    assert from_mat.activity.tolist() == seq["activity"].tolist() and from_npz.activity is None


def test_errors_name_the_missing_file_and_subject(tmp_path, rng):
    write_3dhp_npz(tmp_path, rng)
    with pytest.raises(ValueError, match=r"\['S7'\]"):
        mpi.load_mpi_inf_3dhp(tmp_path, ["S1", "S7"])
    with pytest.raises(FileNotFoundError, match="TS2/annot_data.mat"):
        mpi.load_mpi_inf_3dhp(tmp_path, ["TS2"], annot_mat_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="data_train_3dhp_ori.npz"):
        mpi.load_mpi_inf_3dhp(tmp_path / "empty", ["S1"])
    with pytest.raises(ValueError, match="TS9"):
        mpi.load_mpi_inf_3dhp(tmp_path, ["TS9"])
