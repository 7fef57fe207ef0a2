"""Training-time augmentations that make a lifter generalise to new bodies, cameras and 2D detectors.

Shape legend: T frames of a training chunk, J joints of the 17-joint Human3.6M layout.

All functions are pure: they take a ``numpy.random.Generator`` and return new arrays. The chunk
sampler (``d3dp_ktp/data/windows.py``) derives that generator from the data seed, the epoch and the
chunk row, so an augmented run resumes exactly and every epoch sees new draws. The order per chunk:

1. **body shape** (:func:`sample_body_scales`, :func:`rescale_bones`): every bone of the chunk's 3D
   pose is rescaled about its parent joint, bone directions (so all joint angles) kept; limb and torso
   proportions vary by ``body_proportion`` and the estimated stature is set to a draw in ``body_height_m``;
   with ``body_floor`` the rescaled body is moved so its feet stay on the floor (:func:`keep_on_floor`).
2. **camera** (:func:`sample_camera`): a new virtual pinhole camera (image size, focal length, height,
   pitch/roll jitter, distance chosen so the person fills a drawn share of the image) looks at the
   chunk; the 3D is moved into it. Without a camera draw the chunk keeps its own camera.
3. **re-projection** (:func:`project`): the 2D input is the projection of the (augmented) 3D, so 2D
   and 3D stay consistent; with body or camera augmentation on, the 2D file's own keypoints are unused.
4. **2D detector noise** (:func:`detector_noise_2d`): per-joint Gaussian noise scaled by a drawn
   confidence, timing jitter (each frame sampled a fraction of a frame early or late), occasional
   outliers, short left/right limb swaps and short dropouts (a lost joint holds its last position).
   Scales are relative to the person's height in the image, so they do not depend on the image size.

Camera-space 3D follows ``dataset.py``: root column absolute, other joints root-relative.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from d3dp_ktp.camera import normalized_intrinsics, project_to_2d
from d3dp_ktp.data.config import AugmentConfig

# H36M-17 bone of each joint (joint -> its parent) grouped for proportion draws; left and right share one.
BONE_GROUPS = {"hip_width": (1, 4), "thigh": (2, 5), "shank": (3, 6), "lower_spine": (7,), "upper_spine": (8,),
               "neck": (9,), "head": (10,), "shoulder_width": (11, 14), "upper_arm": (12, 15), "forearm": (13, 16)}
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_LIMB_PAIRS = {"arm": ((11, 12, 13), (14, 15, 16)), "leg": ((4, 5, 6), (1, 2, 3))}
# Detectors localise the hips and pelvis worst (no visible landmark) and head/shoulders best.
JOINT_NOISE_SCALE = np.array([1.4, 1.5, 1.2, 1.2, 1.5, 1.2, 1.2, 1.4, 1.0, 0.8, 1.0,
                              1.0, 1.1, 1.3, 1.0, 1.1, 1.3])
# Ankle to sole (~4.5% of stature) is not a bone of the layout; added to the chain sum below.
_SOLE_FRACTION = 0.045
_ANKLES = (3, 6)


# --- body shape --------------------------------------------------------------------------------

def bone_lengths(positions: np.ndarray, parents=H36M_PARENTS) -> np.ndarray:
    """(T, J, 3) absolute positions -> (J,) median length of the bone parent(j) -> j (0 for the root)."""
    parent = np.maximum(np.asarray(parents), 0)  # the root is its own parent: length 0
    return np.median(np.linalg.norm(positions - positions[:, parent], axis=-1), axis=0)


def stature(lengths: np.ndarray) -> float:
    """Standing height estimate (m) from (J,) H36M bone lengths: leg + spine + neck + head, plus the sole."""
    leg = 0.5 * (lengths[2] + lengths[3] + lengths[5] + lengths[6])
    return float((leg + lengths[7] + lengths[8] + lengths[9] + lengths[10]) * (1 + _SOLE_FRACTION))


def sample_body_scales(rng: np.random.Generator, lengths: np.ndarray, height_m, proportion: float) -> np.ndarray:
    """(J,) per-bone scale factors: a log-uniform factor in [e^-p, e^p] per bone group (left = right),
    then one overall factor that brings the stature of ``lengths`` (J,) to a uniform draw in ``height_m``."""
    scales = np.ones(len(lengths))
    for joints in BONE_GROUPS.values():
        scales[list(joints)] = math.exp(rng.uniform(-proportion, proportion))
    target = rng.uniform(*height_m)
    return scales * (target / max(stature(lengths * scales), 1e-6))


def rescale_bones(positions: np.ndarray, scales: np.ndarray, parents=H36M_PARENTS) -> np.ndarray:
    """Rescale every bone parent(j) -> j by ``scales[j]`` keeping its direction; the root stays put.

    positions: (T, J, 3) absolute; scales: (J,) -> (T, J, 3). Parents must precede children."""
    if positions.ndim != 3 or positions.shape[1:] != (len(parents), 3) or scales.shape != (len(parents),):
        raise ValueError(f"rescale_bones needs (T, {len(parents)}, 3) positions and ({len(parents)},) scales, "
                         f"got {positions.shape} and {scales.shape}")
    out = np.array(positions, dtype=np.float64, copy=True)
    for j, p in enumerate(parents):
        if p >= 0:
            out[:, j] = out[:, p] + scales[j] * (positions[:, j] - positions[:, p])
    return out


def keep_on_floor(before: np.ndarray, after: np.ndarray, lengths_before: np.ndarray, lengths_after: np.ndarray,
                  up: np.ndarray) -> np.ndarray:
    """Move the rescaled chunk ``after`` (T, J, 3) along ``up`` (3,), the world's up direction in its
    coordinates, so that its lowest ankle stands where the lowest ankle of ``before`` (T, J, 3) stood,
    raised or lowered by the change of the ankle-to-sole height with the stature. A shorter body keeps
    its feet on the floor (the root moves down) instead of floating: the image height of the feet is
    the cue to the distance, and so to the size, that a real recording has."""
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    sole = lambda lengths: stature(lengths) * _SOLE_FRACTION / (1 + _SOLE_FRACTION)  # noqa: E731
    ankles = list(_ANKLES)
    lowest = lambda x: float((x[:, ankles] @ up).min())  # noqa: E731
    shift = lowest(before) + sole(lengths_after) - sole(lengths_before) - lowest(after)
    return after + shift * up


# --- virtual camera ----------------------------------------------------------------------------

def _look_rotation(forward: np.ndarray, up: np.ndarray, roll: float) -> np.ndarray:
    """(3, 3) camera->world rotation whose columns are the camera axes (x right, y down, z forward)."""
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = math.cos(roll), math.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return np.stack([right, down, forward], axis=1)


def sample_camera(rng: np.random.Generator, world: np.ndarray, draw: AugmentConfig):
    """A virtual camera for a (T, J, 3) world pose (metres, Z up, any floor height).

    Returns (R (3, 3) camera->world, centre (3,), intrinsics (9,) normalised, res_w, res_h). The
    camera sits at a uniform azimuth and height above the pose's lowest point, at the distance where
    the person spans a drawn share of the image height, aims at the chunk's mean root with pitch and
    roll jitter, and has a principal point at the image centre and no distortion."""
    w, h = draw.camera_image_sizes[rng.integers(len(draw.camera_image_sizes))]
    focal = rng.uniform(*draw.camera_focal) * max(w, h)
    person = max(float(np.ptp(world[..., 2], axis=-1).max()), 0.5)
    distance = np.clip(focal * person / (rng.uniform(*draw.camera_fill) * h), *draw.camera_distance_m)
    target = world[:, 0].mean(0)
    azimuth = rng.uniform(0, 2 * math.pi)
    height = world[..., 2].min() + rng.uniform(*draw.camera_height_m)
    horizontal = math.sqrt(max(distance ** 2 - (height - target[2]) ** 2, 0.25))
    centre = np.array([target[0] + horizontal * math.cos(azimuth), target[1] + horizontal * math.sin(azimuth),
                       height])
    pitch = math.radians(rng.uniform(-draw.camera_pitch_deg, draw.camera_pitch_deg))
    aim = target + np.array([0.0, 0.0, distance * math.tan(pitch)])
    R = _look_rotation(aim - centre, np.array([0.0, 0.0, 1.0]),
                       math.radians(rng.uniform(-draw.camera_roll_deg, draw.camera_roll_deg)))
    depth = (world - centre) @ R[:, 2]
    if depth.min() < 0.3:  # a fast chunk ran towards the camera: step back so every joint is in front
        centre = centre - R[:, 2] * (0.3 - depth.min() + 0.5)
    intrinsics = normalized_intrinsics(focal, focal, w / 2, h / 2, (0, 0, 0), (0, 0), w, h)
    return R, centre, intrinsics, int(w), int(h)


def world_to_camera_matrix(world: np.ndarray, R: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(..., 3) world -> camera coordinates for camera->world rotation R (3, 3) and centre (3,)."""
    return (world - centre) @ R


def project(camera_xyz: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(T, J, 3) camera-space metres -> (T, J, 2) normalised 2D by docs/method.md distortion model
    (docs/method.md §5.3), computed in float64; intrinsics (9,) normalised."""
    uv = project_to_2d(torch.from_numpy(np.asarray(camera_xyz, np.float64)),
                       torch.from_numpy(np.asarray(intrinsics, np.float64)))
    return uv.numpy()


# --- 2D detector noise -------------------------------------------------------------------------

def _timing_jitter(x2d: np.ndarray, rng: np.random.Generator, frames: float) -> np.ndarray:
    """Each frame read a N(0, frames) fraction of a frame early or late (linear interpolation)."""
    if frames <= 0 or len(x2d) < 2:
        return x2d
    t = np.clip(np.arange(len(x2d)) + rng.normal(0, frames, len(x2d)), 0, len(x2d) - 1)
    i0 = np.minimum(np.floor(t).astype(int), len(x2d) - 2)
    a = (t - i0)[:, None, None]
    return (1 - a) * x2d[i0] + a * x2d[i0 + 1]


def _segments(rng: np.random.Generator, shape, prob: float, max_len: int) -> np.ndarray:
    """(T, n) bool mask of short runs (1..max_len frames) that start with probability ``prob``."""
    starts = rng.random(shape) < prob
    lengths = rng.integers(1, max_len + 1, shape)
    mask = np.zeros(shape, dtype=bool)
    for t, j in zip(*np.nonzero(starts)):
        mask[t:t + lengths[t, j], j] = True
    return mask


def detector_noise_2d(x2d: np.ndarray, rng: np.random.Generator, draw: AugmentConfig) -> np.ndarray:
    """Detector-like corruption of clean (T, J, 2) 2D (any units); returns (T, J, 2).

    Scales are fractions of the person's 2D height (largest per-frame vertical extent)."""
    num_frames, num_joints = x2d.shape[:2]
    size = max(float(np.ptp(x2d[..., 1], axis=-1).max()), 1e-6)
    out = _timing_jitter(np.asarray(x2d, np.float64), rng, draw.noise_jitter_frames)
    confidence = rng.uniform(*draw.noise_confidence, num_joints)
    sigma = draw.noise_std * size * JOINT_NOISE_SCALE[:num_joints] / confidence
    out = out + rng.normal(size=out.shape) * sigma[None, :, None]
    outliers = _segments(rng, (num_frames, num_joints), draw.noise_outlier_prob, 3)
    out[outliers] += rng.normal(size=(int(outliers.sum()), 2)) * draw.noise_outlier_std * size
    if num_joints == 17 and rng.random() < draw.noise_swap_prob:
        left, right = H36M_LIMB_PAIRS[("arm", "leg")[rng.integers(2)]]
        start = rng.integers(num_frames)
        span = slice(start, start + rng.integers(1, max(num_frames // 3, 1) + 1))
        out[span, list(left + right)] = out[span, list(right + left)]
    dropped = _segments(rng, (num_frames, num_joints), draw.noise_dropout_prob, 8)
    for t in range(1, num_frames):  # a lost joint holds its last reported position
        out[t, dropped[t]] = out[t - 1, dropped[t]]
    return out


# --- one training chunk ------------------------------------------------------------------------

def augment_chunk(x2d: np.ndarray, y3d: np.ndarray, camera: np.ndarray, R_cam: np.ndarray | None,
                  t_cam: np.ndarray | None, rng: np.random.Generator, draw: AugmentConfig, root: int = 0):
    """Augment one chunk: x2d (T, J, 2) normalised, y3d (T, J, 3) camera space with the absolute root
    column, camera (9,) intrinsics, R_cam (3, 3)/t_cam (3,) the video camera's camera->world rotation
    and centre (None: the camera frame, y down, stands in for the world). Returns (x2d, y3d, camera)
    in the same conventions; ``x2d`` is the projection of ``y3d`` before noise whenever body or camera
    augmentation is on."""
    if draw.body or draw.camera:
        absolute = np.array(y3d, np.float64)
        others = [j for j in range(absolute.shape[1]) if j != root]
        absolute[:, others] += absolute[:, root:root + 1]
        R_world = R_cam if R_cam is not None else np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
        if draw.body:
            lengths = bone_lengths(absolute)
            scales = sample_body_scales(rng, lengths, draw.body_height_m, draw.body_proportion)
            rescaled = rescale_bones(absolute, scales)
            absolute = keep_on_floor(absolute, rescaled, lengths, lengths * scales, R_world[2]) \
                if draw.body_floor else rescaled
        if draw.camera:
            world = absolute @ R_world.T + (t_cam if t_cam is not None else 0.0)
            R, centre, camera, _, _ = sample_camera(rng, world, draw)
            absolute = world_to_camera_matrix(world, R, centre)
        x2d = project(absolute, camera)
        y3d = absolute.copy()
        y3d[:, others] -= absolute[:, root:root + 1]
    if draw.noise:
        x2d = detector_noise_2d(x2d, rng, draw)
    return x2d.astype(np.float32), np.asarray(y3d, np.float32), np.asarray(camera, np.float32)
