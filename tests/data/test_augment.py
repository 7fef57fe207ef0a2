"""Training augmentation: 2D stays the projection of the augmented 3D, bone directions are kept,
off means bit-identical chunks, and the draws are seeded by (seed, epoch, chunk) for exact resume."""
import dataclasses

import numpy as np
import pytest

from d3dp_ktp.data import augment as A
from d3dp_ktp.data.config import AugmentConfig, DataConfig
from d3dp_ktp.data.custom import camera_info, custom_camera
from d3dp_ktp.data.dataset import Video, camera_space
from d3dp_ktp.data.windows import ChunkBatchSampler, ChunkDataset
from d3dp_ktp.skeleton import H36M

# A standing H36M-17 figure, world metres, Z up, facing -Y.
STAND = np.array([[0, 0, .95], [-.1, 0, .95], [-.1, 0, .5], [-.1, 0, .08], [.1, 0, .95], [.1, 0, .5], [.1, 0, .08],
                  [0, 0, 1.2], [0, 0, 1.45], [0, -.05, 1.56], [0, 0, 1.7], [.18, 0, 1.43], [.2, 0, 1.15],
                  [.22, 0, .9], [-.18, 0, 1.43], [-.2, 0, 1.15], [-.22, 0, .9]])
CAMERA = camera_info(custom_camera("c0", 1000, 1002, (1145.0, 1144.0), (512.0, 515.0),
                                   (np.sqrt(0.5), -np.sqrt(0.5), 0.0, 0.0), (0.0, -4500.0, 1500.0), (-0.2, 0.24, -0.003),
                                   (-0.001, -0.0014)), "test")


def walking(frames: int, seed: int = 0) -> np.ndarray:
    """(F, 17, 3) world: STAND drifting along +X with random limb sway."""
    rng = np.random.default_rng(seed)
    sway = np.cumsum(rng.normal(0, 0.01, (frames, 17, 3)), axis=0)
    sway[:, 0] = 0
    return STAND + sway + np.linspace(0, 1, frames)[:, None, None] * [1.0, 0, 0]


def camera_orientation_matrix(cam) -> np.ndarray:
    from d3dp_ktp.camera import qrot
    return qrot(np.broadcast_to(cam.orientation.astype(np.float64), (3, 4)), np.eye(3)).T


def make_video(frames=60, seed=0) -> Video:
    world = walking(frames, seed)
    y3d = camera_space(world, CAMERA, 0)
    cam_xyz = y3d.astype(np.float64).copy()
    cam_xyz[:, 1:] += cam_xyz[:, :1]
    x2d = A.project(cam_xyz, CAMERA.intrinsics).astype(np.float32)
    return Video("S1", f"walk {seed}", 0, x2d, y3d, CAMERA)


def absolute(y3d) -> np.ndarray:
    out = np.array(y3d, np.float64)
    out[:, 1:] += out[:, :1]
    return out


def bone_directions(pos) -> np.ndarray:
    parents = np.maximum(np.array(H36M.parents), 0)
    bones = (pos - pos[:, parents])[:, 1:]
    return bones / np.linalg.norm(bones, axis=-1, keepdims=True)


ON = {"body": dict(body=True), "camera": dict(camera=True), "body+camera": dict(body=True, camera=True),
      "speed+body": dict(speed=True, body=True)}


@pytest.mark.parametrize("which", sorted(ON))
def test_augmented_2d_is_the_projection_of_the_augmented_3d(which):
    video = make_video()
    cfg = AugmentConfig(**ON[which])
    R, t = camera_orientation_matrix(CAMERA), CAMERA.translation.astype(np.float64)
    x2d, y3d, cam = A.augment_chunk(video.keypoints_2d[:27], video.positions_3d[:27], CAMERA.intrinsics, R, t,
                                    np.random.default_rng(5), cfg)
    np.testing.assert_allclose(A.project(absolute(y3d), cam), x2d, atol=1e-5)
    assert not np.allclose(x2d, video.keypoints_2d[:27], atol=1e-3)  # something changed
    if cfg.camera:
        assert not np.allclose(cam, CAMERA.intrinsics)
        assert np.all(absolute(y3d)[..., 2] > 0.3)  # every joint in front of the new camera
    else:
        np.testing.assert_array_equal(cam, CAMERA.intrinsics)
    original = bone_directions(absolute(video.positions_3d[:27]))
    new = bone_directions(absolute(y3d))
    if not cfg.camera:  # same camera: bone directions identical
        np.testing.assert_allclose(new, original, atol=1e-5)
    else:  # a rigid change of camera: the angles between all pairs of bones are kept
        np.testing.assert_allclose(np.einsum("tbc,tdc->tbd", new, new),
                                   np.einsum("tbc,tdc->tbd", original, original), atol=1e-5)


def test_body_shape_keeps_directions_and_reaches_the_drawn_height():
    pos = walking(30)
    lengths = A.bone_lengths(pos)
    rng = np.random.default_rng(0)
    for _ in range(20):
        scales = A.sample_body_scales(rng, lengths, (1.4, 2.0), 0.1)
        new = A.rescale_bones(pos, scales)
        np.testing.assert_allclose(bone_directions(new), bone_directions(pos), atol=1e-9)
        np.testing.assert_array_equal(new[:, 0], pos[:, 0])  # the root stays put
        assert 1.4 - 1e-9 <= A.stature(A.bone_lengths(new)) <= 2.0 + 1e-9
        np.testing.assert_allclose(scales[1], scales[4])  # left and right stay symmetric
        assert 0.8 < (scales[2] / scales[3]) < 1.25  # thigh/shank proportion within e^+-0.2
    with pytest.raises(ValueError, match="rescale_bones needs"):
        A.rescale_bones(pos[:, :16], scales)


def test_body_shape_keeps_the_feet_on_the_floor():
    """A rescaled body stands on the floor it stood on (the root moves), unless body_floor is off."""
    video = make_video(27)
    R = camera_orientation_matrix(CAMERA)  # camera -> world
    to_world = lambda y3d: absolute(y3d) @ R.T  # noqa: E731  (heights only: the centre is not needed)
    floor = to_world(video.positions_3d)[:, [3, 6], 2].min()
    for seed in range(10):
        for keep in (True, False):
            draw = AugmentConfig(body=True, body_floor=keep)
            _, y3d, _ = A.augment_chunk(video.keypoints_2d, video.positions_3d, CAMERA.intrinsics, R, None,
                                        np.random.default_rng(seed), draw)
            world = to_world(y3d)
            height = A.stature(A.bone_lengths(world))
            sole = lambda h: h * 0.045 / 1.045  # noqa: E731  (ankle to sole, a share of the stature)
            expected = floor + sole(height) - sole(A.stature(A.bone_lengths(to_world(video.positions_3d))))
            if keep:
                np.testing.assert_allclose(world[:, [3, 6], 2].min(), expected, atol=1e-6)
            else:  # the root stays where it was: a short body floats, a tall one sinks
                np.testing.assert_allclose(world[:, 0], to_world(video.positions_3d)[:, 0], atol=1e-6)
                assert abs(world[:, [3, 6], 2].min() - expected) > 1e-3


def test_virtual_camera_frames_the_person():
    world = walking(27)
    rng = np.random.default_rng(1)
    cfg = AugmentConfig(camera=True)
    for _ in range(30):
        R, centre, intr, w, h = A.sample_camera(rng, world, cfg)
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
        xyz = A.world_to_camera_matrix(world, R, centre)
        assert xyz[..., 2].min() > 0.3
        uv = A.project(xyz, intr)  # normalised: u in [-1, 1] inside the image
        assert np.mean(np.abs(uv[..., 0]) <= 1.0) > 0.9
        assert (w, h) in cfg.camera_image_sizes


def test_detector_noise_corrupts_like_a_detector():
    clean = A.project(absolute(make_video().positions_3d[:27]), CAMERA.intrinsics)
    quiet = AugmentConfig(noise=True, noise_std=0.0, noise_jitter_frames=0.0, noise_outlier_prob=0.0,
                          noise_swap_prob=0.0, noise_dropout_prob=0.0)
    np.testing.assert_array_equal(A.detector_noise_2d(clean, np.random.default_rng(0), quiet), clean)
    swap = A.detector_noise_2d(clean, np.random.default_rng(0), dataclasses.replace(quiet, noise_swap_prob=1.0))
    swapped = ~np.all(np.isclose(swap, clean), axis=-1)  # (T, J) changed points
    assert swapped.any() and set(np.flatnonzero(swapped.any(0))) in ({11, 12, 13, 14, 15, 16}, {1, 2, 3, 4, 5, 6})
    drop = A.detector_noise_2d(clean, np.random.default_rng(0), dataclasses.replace(quiet, noise_dropout_prob=0.2))
    held = np.all(drop[1:] == drop[:-1], axis=-1) & ~np.all(clean[1:] == clean[:-1], axis=-1)
    assert held.any()  # a dropped joint holds its last position
    noisy = A.detector_noise_2d(clean, np.random.default_rng(0), AugmentConfig(noise=True))
    size = np.ptp(clean[..., 1], axis=-1).max()
    assert 0.003 * size < np.median(np.linalg.norm(noisy - clean, axis=-1)) < 0.1 * size


def _chunks(augment=None, seed=1234):
    videos = [make_video(60, s) for s in range(2)]
    return ChunkDataset(videos, 27, H36M.joints_left, H36M.joints_right, H36M.joints_left, H36M.joints_right,
                        "paired", augment, seed)


def test_augmentation_off_is_bit_identical():
    plain, off = _chunks(), _chunks(AugmentConfig())
    assert off.augment is None and DataConfig().augment == AugmentConfig()
    for i in range(len(plain)):
        for a, b in zip(plain[i], off[i]):
            assert a.numpy().tobytes() == b.numpy().tobytes()
    assert list(ChunkBatchSampler(plain, 4, seed=3)) == list(ChunkBatchSampler(off, 4, seed=3))


def test_augmented_chunks_are_seeded_per_epoch_and_resume_exactly():
    cfg = AugmentConfig(body=True, camera=True, noise=True)
    ds = _chunks(cfg)
    sampler = ChunkBatchSampler(ds, 4, seed=3)
    first = list(sampler)
    state = sampler.state_dict()
    second = list(sampler)
    assert all(len(ds) <= i < 2 * len(ds) for b in first for i in b)  # epoch 1 keys
    assert all(2 * len(ds) <= i < 3 * len(ds) for b in second for i in b)
    resumed = ChunkBatchSampler(ds, 4, seed=3)
    resumed.load_state_dict(state)
    assert list(resumed) == second
    index = second[0][0]
    again = _chunks(cfg)[index]  # a fresh dataset (a resumed run) draws the same chunk
    assert all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(ds[index], again))
    row = index % len(ds)
    assert not np.allclose(ds[row + len(ds)][0].numpy(), ds[row + 2 * len(ds)][0].numpy())  # epochs differ
    flipped = next(r for r in range(len(ds)) if ds.pairs[r, 3] == 1)
    x2d, y3d, cam = (t.numpy().astype(np.float64) for t in _chunks(AugmentConfig(body=True, camera=True))[flipped])
    np.testing.assert_allclose(A.project(absolute(y3d), cam), x2d, atol=1e-5)  # the flip keeps them consistent


def test_augment_prob_keeps_a_share_of_the_chunks_as_recorded():
    plain = _chunks()
    half = _chunks(AugmentConfig(body=True, noise=True, prob=0.5))
    rows = range(len(plain))
    kept = [all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(plain[r], half[r + len(plain)]))
            for r in rows]
    assert 0 < sum(kept) < len(kept)  # some chunks untouched, some augmented
    never = _chunks(AugmentConfig(body=True, noise=True, prob=0.0))
    assert all(all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(plain[r], never[r + len(plain)]))
               for r in rows)
    with pytest.raises(ValueError, match="prob"):
        AugmentConfig(prob=1.5)


def test_augment_config_is_validated():
    with pytest.raises(ValueError, match="body_height_m"):
        AugmentConfig(body_height_m=(2.0, 1.4))
    with pytest.raises(ValueError, match="noise_swap_prob"):
        AugmentConfig(noise_swap_prob=2.0)
    video = make_video()
    bad = Video("S1", "x", 0, video.keypoints_2d[:, :16], video.positions_3d, CAMERA)
    with pytest.raises(ValueError, match="17-joint H36M 2D and 3D"):
        ChunkDataset([bad], 27, [], [], [], [], "none", AugmentConfig(body=True))


def test_speed_replays_a_chunk_faster_or_slower():
    from d3dp_ktp.data.windows import chunk_times, resample_frames
    seq = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.testing.assert_array_equal(resample_frames(seq, np.arange(20.0)), seq)
    np.testing.assert_allclose(resample_frames(seq, np.array([0.5, 18.25, 19.0])), [[1, 2], [36.5, 37.5], [38, 39]])
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = chunk_times(100, 127, 400, rng, (0.7, 1.6))
        step = np.diff(t)
        assert np.allclose(step, step[0]) and 0.7 <= step[0] <= 1.6  # one speed per chunk
        assert 100 - 13.5 <= t.mean() <= 113 + 13.5  # centre shifted by at most half a chunk
    assert chunk_times(0, 27, 10, rng, (1.6, 1.6)).max() == 9  # clipped to the video
    videos = [make_video(200, 0)]
    plain = ChunkDataset(videos, 27, [], [], [], [], "none")
    fast = ChunkDataset(videos, 27, [], [], [], [], "none", AugmentConfig(speed=True, speed_range=(1.5, 1.5)))
    row = 3  # a chunk in the middle: frames 81-107, nowhere near the ends after the shift
    speed = lambda y3d: np.median(np.linalg.norm(np.diff(y3d[:, 0], axis=0), axis=-1))  # noqa: E731  (root)
    np.testing.assert_allclose(speed(fast[row + len(fast)][1].numpy()), 1.5 * speed(plain[row][1].numpy()), rtol=1e-3)
    with pytest.raises(ValueError, match="speed_range"):
        AugmentConfig(speed_range=(1.5, 0.5))
