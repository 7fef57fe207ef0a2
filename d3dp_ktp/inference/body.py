"""Post-processing of a lifted pose sequence: consistent bone lengths, smoothing, jitter, the floor.

All functions are pure (NumPy in, NumPy out). Shape legend: F frames, J joints, N any number of
poses (frames, hypotheses, ...), B bones (= joints with a parent).

* **Consistent bodies** (our choice, docs/method.md §10). Joint-wise aggregation (JPMA) takes every
  joint from the hypothesis that reprojects best, so a bone's two ends may come from different
  hypotheses and its length changes from frame to frame. `robust_bone_lengths` takes one length
  per bone for the whole sequence (the median over all given poses; by default the left and right
  bone of a pair share the mean of their medians, as a real body is near-symmetric), and
  `apply_bone_lengths` rebuilds each pose from the root outwards along the kinematic tree: every
  child joint keeps its direction from its parent, only the distance changes.
* **Smoothing**: a Savitzky-Golay filter (`scipy.signal.savgol_filter`) along time: a local
  least-squares polynomial of degree ``order`` over a window of ``window`` frames (odd). It keeps
  polynomials up to that degree exactly (a smooth motion passes unchanged) and removes frame-to-frame
  jitter. `jitter` is the mean joint acceleration |p[t+1] - 2 p[t] + p[t-1]| * fps^2 in m/s^2.
* **Floor** (our choice). The camera is unknown, so "up" and the floor come from the feet: the lower
  ankle of every frame is a candidate contact point; the plane through the lowest half of them
  (least squares) gives the floor normal, refined twice. When the contact points do not span a plane
  (feet still, or moving along a line) the normal is the camera's up (-y) made perpendicular to
  what they do span. The floor lies ``ankle_height`` below the contact points' median height.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from d3dp_ktp.skeleton import Skeleton

CAMERA_UP = np.array([0.0, -1.0, 0.0])  # camera space is y-down
ANKLE_HEIGHT = 0.08   # m, ankle joint above the sole (adult average, our choice)
MIN_SPREAD = 0.05     # m, RMS extent below which contact points do not fix a direction


@dataclass(frozen=True)
class BodyConfig:
    consistent: bool = True       # one set of bone lengths for the whole sequence (False: raw JPMA output)
    symmetric: bool = True        # left and right bones of a pair get the same length
    smooth: bool = False          # Savitzky-Golay filter over time
    smooth_seconds: float = 0.2   # filter window in seconds (rounded to an odd number of frames)
    smooth_order: int = 2         # polynomial degree of the filter
    world: bool = False           # gravity-aligned frame with the floor at y = 0
    ankle_height: float = ANKLE_HEIGHT


def _check_poses(poses: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim < 2 or poses.shape[-2:] != (skeleton.num_joints, 3):
        raise ValueError(f"poses must have shape (..., {skeleton.num_joints}, 3), got {poses.shape}")
    return poses


def bone_lengths(poses: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Length of the bone ending at each joint, (N..., J, 3) -> (N..., J); the root's entry is 0."""
    poses = _check_poses(poses, skeleton)
    parents = np.array([max(p, 0) for p in skeleton.parents])
    return np.linalg.norm(poses - poses[..., parents, :], axis=-1)


def limb_variation(poses: np.ndarray, skeleton: Skeleton) -> dict[str, float]:
    """Std/mean of each bone's length over frames, (F, J, 3) -> {child joint name: ratio}."""
    lengths = bone_lengths(poses, skeleton).reshape(-1, skeleton.num_joints)
    mean = lengths.mean(0)
    return {skeleton.joint_names[j]: float(lengths[:, j].std() / max(mean[j], 1e-12))
            for j, p in enumerate(skeleton.parents) if p >= 0}


def robust_bone_lengths(poses: np.ndarray, skeleton: Skeleton, symmetric: bool = True) -> np.ndarray:
    """One length per bone, (N..., J, 3) -> (J,): the median over all poses (root 0).

    symmetric: the bones ending at joints_left[i] and joints_right[i] share the mean of their medians.
    """
    lengths = np.median(bone_lengths(poses, skeleton).reshape(-1, skeleton.num_joints), axis=0)
    if symmetric:
        left, right = list(skeleton.joints_left), list(skeleton.joints_right)
        lengths[left] = lengths[right] = (lengths[left] + lengths[right]) / 2
    return lengths


def tree_order(skeleton: Skeleton) -> list[int]:
    """Joints ordered so that every parent comes before its children (breadth first from the root)."""
    order, frontier = [], [skeleton.root]
    while frontier:
        order += frontier
        frontier = [j for j, p in enumerate(skeleton.parents) if p in frontier]
    if len(order) != skeleton.num_joints:
        raise ValueError(f"skeleton '{skeleton.name}' is not a tree rooted at joint {skeleton.root}")
    return order


def foot_joints(skeleton: Skeleton) -> tuple[int, ...]:
    """The leaf joints of the chains that leave the root on the left or right side (the ankles)."""
    sided = set(skeleton.joints_left) | set(skeleton.joints_right)
    feet = []
    for j in range(skeleton.num_joints):
        if j in skeleton.parents or j == skeleton.root:
            continue
        top = j
        while skeleton.parents[top] != skeleton.root:
            top = skeleton.parents[top]
        if top in sided:
            feet.append(j)
    if not feet:
        raise ValueError(f"skeleton '{skeleton.name}' has no leg chains to find the feet in")
    return tuple(feet)


def apply_bone_lengths(poses: np.ndarray, skeleton: Skeleton, lengths: np.ndarray) -> np.ndarray:
    """Rebuild poses (N..., J, 3) with bone lengths (J,): from the root outwards, each child keeps its
    unit direction from its parent. The root stays where it is. Returns (N..., J, 3) float64."""
    poses = _check_poses(poses, skeleton)
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.shape != (skeleton.num_joints,):
        raise ValueError(f"lengths must have shape ({skeleton.num_joints},), got {lengths.shape}")
    out = poses.copy()
    for j in tree_order(skeleton)[1:]:
        p = skeleton.parents[j]
        bone = poses[..., j, :] - poses[..., p, :]
        norm = np.linalg.norm(bone, axis=-1, keepdims=True)
        # a zero-length bone has no direction: its child stays on the parent
        direction = np.divide(bone, norm, out=np.zeros_like(bone), where=norm > 1e-12)
        out[..., j, :] = out[..., p, :] + lengths[j] * direction
    return out


# ----------------------------------------------------------------------------- time

def smoothing_window(fps: float, seconds: float, order: int, num_frames: int) -> int:
    """Odd Savitzky-Golay window of about ``seconds``, at least order + 2 (or 0: too few frames)."""
    window = int(round(fps * seconds)) // 2 * 2 + 1
    window = max(window, order + 3 - order % 2)  # the smallest odd window longer than order + 1
    if window > num_frames:
        window = num_frames if num_frames % 2 else num_frames - 1
    return window if window > order else 0


def smooth(x: np.ndarray, fps: float, seconds: float = 0.2, order: int = 2) -> np.ndarray:
    """Savitzky-Golay filter of (F, ...) along time; sequences too short for a window pass unchanged."""
    x = np.asarray(x, dtype=np.float64)
    if fps <= 0 or seconds <= 0 or order < 0:
        raise ValueError(f"smoothing needs fps > 0, seconds > 0 and order >= 0, got {fps}, {seconds}, {order}")
    from scipy.signal import savgol_filter  # here: importing scipy.signal takes seconds, most runs never smooth

    window = smoothing_window(fps, seconds, order, len(x))
    return savgol_filter(x, window, order, axis=0) if window else x.copy()


def jitter(poses: np.ndarray, fps: float) -> float:
    """Mean joint acceleration |p[t+1] - 2 p[t] + p[t-1]| * fps^2 (m/s^2) of (F, J, 3); 0 for F < 3."""
    poses = np.asarray(poses, dtype=np.float64)
    if len(poses) < 3:
        return 0.0
    return float(np.linalg.norm(poses[2:] - 2 * poses[1:-1] + poses[:-2], axis=-1).mean() * fps ** 2)


# ----------------------------------------------------------------------------- floor and world frame

@dataclass(frozen=True)
class Floor:
    normal: np.ndarray   # (3,) unit "up" in camera space (away from the floor)
    offset: float        # the floor is {p : normal . p = offset} (metres)
    contact_rms: float   # RMS distance of the contact points from their plane (metres)


def _fit_normal(points: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Unit normal of the plane through points (N, 3), oriented like prior; rank-deficient spreads
    fall back to the prior made perpendicular to the directions the points do span."""
    centred = points - points.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    s = s / np.sqrt(len(points))
    if s[0] < MIN_SPREAD:
        normal = prior
    elif s[1] < MIN_SPREAD:
        normal = prior - (prior @ vt[0]) * vt[0]
    else:
        normal = vt[2]
    normal = normal / np.linalg.norm(normal)
    return normal if normal @ prior >= 0 else -normal


def estimate_floor(joints: np.ndarray, feet: tuple[int, ...], ankle_height: float = ANKLE_HEIGHT,
                   prior_up: np.ndarray = CAMERA_UP, iterations: int = 3) -> Floor:
    """The floor under absolute camera-space joints (F, J, 3) from the feet joints ``feet``."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3 or not np.isfinite(joints).all():
        raise ValueError(f"joints must be finite with shape (F, J, 3), got {joints.shape}")
    foot = joints[:, list(feet)]                                      # (F, n, 3)
    up = np.asarray(prior_up, dtype=np.float64) / np.linalg.norm(prior_up)
    for _ in range(iterations):
        low = foot[np.arange(len(foot)), np.argmin(foot @ up, axis=1)]  # (F, 3) the lower foot
        height = low @ up
        contact = low[height <= np.median(height)]                   # the lowest half: on the floor
        up = _fit_normal(contact, up)
    height = contact @ up
    rms = float(np.sqrt(np.mean((height - height.mean()) ** 2)))
    return Floor(up, float(np.median(height) - ankle_height), rms)


def world_from_camera(floor: Floor, origin: np.ndarray) -> np.ndarray:
    """(4, 4) rigid transform camera -> world: Y = floor normal (up), Z = the camera's backward axis
    (-z) laid on the floor (a person facing the camera faces +Z), X = Y x Z; the world origin is the
    point of the floor under ``origin`` (3,) camera space (e.g. the first frame's root)."""
    y = floor.normal
    back = np.array([0.0, 0.0, -1.0])
    z = back - (back @ y) * y
    if np.linalg.norm(z) < 1e-6:  # camera looking straight down: take the image's -y as "back"
        z = CAMERA_UP - (CAMERA_UP @ y) * y
    z = z / np.linalg.norm(z)
    rot = np.stack([np.cross(y, z), y, z])                    # rows: world axes in camera space
    foot_point = origin - (origin @ y - floor.offset) * y     # origin dropped onto the floor
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = -rot @ foot_point
    return out


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to points (..., 3)."""
    return np.asarray(points) @ matrix[:3, :3].T + matrix[:3, 3]


def camera_in_world(matrix: np.ndarray) -> tuple[float, float]:
    """(camera height above the floor in m, pitch in degrees, positive = looking down) of a
    `world_from_camera` transform."""
    height = float(matrix[1, 3])
    optical_axis = matrix[:3, :3] @ np.array([0.0, 0.0, 1.0])
    return height, float(np.degrees(np.arcsin(np.clip(-optical_axis[1], -1, 1))))
