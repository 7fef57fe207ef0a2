"""Camera maths (docs/method.md §5.3, §6.2): pure functions on numpy arrays or torch tensors.

Shape legend: N any leading axes, F frames, J joints. Quaternions are (w, x, y, z) camera->world.
Intrinsic 9-vectors are [f_x, f_y, c_x, c_y, k1, k2, k3, p1, p2] in normalised units. Camera axes
follow VideoPose3D: x right, y down, z forward. A camera dict is Human3.6M's metadata layout (pixels,
orientation quaternion, translation in mm), as the custom datasets store it (data/custom.py).
"""
from __future__ import annotations

import numpy as np
import torch


def _check_last(x, size: int, name: str) -> None:
    if x.shape[-1] != size:
        raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")


def _check_points_2d(x, w: float, h: float) -> None:
    _check_last(x, 2, "x")
    if w <= 0 or h <= 0:
        raise ValueError(f"image width and height must be positive, got w={w}, h={h}")


def normalize_screen_coordinates(x, w: float, h: float):
    """Pixels -> normalised coordinates: u/w*2-1, v/w*2-h/w (both axes divided by w). x: (..., 2)."""
    _check_points_2d(x, w, h)
    # VideoPose3D subtracts a float64 offset and stores back into float32 arrays; we do the same.
    if isinstance(x, np.ndarray):
        return (x / w * 2 - np.array([1, h / w])).astype(x.dtype)
    return (x / w * 2).double().sub(x.new_tensor([1, h / w], dtype=torch.float64)).to(x.dtype)


def image_coordinates(x, w: float, h: float):
    """Inverse of normalize_screen_coordinates. x: (..., 2) -> pixels."""
    _check_points_2d(x, w, h)
    if isinstance(x, np.ndarray):
        return ((x + np.array([1, h / w])) * w / 2).astype(x.dtype)
    return ((x.double() + x.new_tensor([1, h / w], dtype=torch.float64)) * w / 2).to(x.dtype)


def normalized_intrinsics(fx, fy, cx, cy, k, p, w: float, h: float) -> np.ndarray:
    """Pixel intrinsics -> the normalised 9-vector of docs/method.md §5.3 (all values cast to float32 first)."""
    f = np.array([fx, fy], dtype=np.float32) / np.float32(w) * 2
    c = normalize_screen_coordinates(np.array([cx, cy], dtype=np.float32), w, h)
    return np.concatenate([f, c, np.asarray(k, np.float32), np.asarray(p, np.float32)]).astype(np.float32)


def _cross(a, b):
    if isinstance(a, torch.Tensor):
        return torch.cross(a, b, dim=-1)
    return np.cross(a, b)


def qrot(q, v):
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4) = (w, x, y, z); q broadcasts."""
    _check_last(q, 4, "q")
    _check_last(v, 3, "v")
    if isinstance(v, np.ndarray):
        q = np.broadcast_to(q, v.shape[:-1] + (4,))
    else:
        q = q.expand(*v.shape[:-1], 4)
    qvec = q[..., 1:]
    uv = _cross(qvec, v)
    uuv = _cross(qvec, uv)
    return v + 2 * (q[..., :1] * uv + uuv)


def qinverse(q):
    """Inverse of a unit quaternion (w, -x, -y, -z)."""
    _check_last(q, 4, "q")
    sign = np.array([1, -1, -1, -1], dtype=q.dtype) if isinstance(q, np.ndarray) else q.new_tensor([1, -1, -1, -1])
    return q * sign


def world_to_camera(x, R, t):
    """World -> camera coordinates: qrot(q^-1, X - t). x: (..., 3), R: (4,), t: (3,) in x's units."""
    return qrot(qinverse(R), x - t)


def camera_to_world(x, R, t):
    """Camera -> world coordinates: qrot(q, X) + t. x: (..., 3)."""
    return qrot(R, x) + t


def project_to_2d(x: torch.Tensor, camera_params: torch.Tensor) -> torch.Tensor:
    """Project camera-space points with the VideoPose3D distortion model (docs/method.md §5.3).

    x: (N..., 3) camera coordinates; camera_params: (N..., 9) broadcastable against x[..., :1]
    after inserting joint axes. Returns (N..., 2) normalised screen coordinates.
    """
    _check_last(x, 3, "x")
    _check_last(camera_params, 9, "camera_params")
    cam = camera_params
    while cam.dim() < x.dim():
        cam = cam.unsqueeze(-2)
    f, c, k, p = cam[..., :2], cam[..., 2:4], cam[..., 4:7], cam[..., 7:9]
    xx = torch.clamp(x[..., :2] / x[..., 2:], min=-1, max=1)
    r2 = torch.sum(xx[..., :2] ** 2, dim=-1, keepdim=True)
    radial = 1 + torch.sum(k * torch.cat((r2, r2 ** 2, r2 ** 3), dim=-1), dim=-1, keepdim=True)
    tan = torch.sum(p * xx, dim=-1, keepdim=True)
    xxx = xx * (radial + tan) + p * r2
    return f * xxx + c


def project_to_2d_linear(x: torch.Tensor, camera_params: torch.Tensor) -> torch.Tensor:
    """Pinhole projection without distortion (same clamp as project_to_2d). Shapes as project_to_2d."""
    _check_last(x, 3, "x")
    if camera_params.shape[-1] < 4:
        raise ValueError(f"camera_params needs at least [fx, fy, cx, cy], got shape {tuple(camera_params.shape)}")
    cam = camera_params
    while cam.dim() < x.dim():
        cam = cam.unsqueeze(-2)
    xx = torch.clamp(x[..., :2] / x[..., 2:], min=-1, max=1)
    return cam[..., :2] * xx + cam[..., 2:4]


# --- placing and projecting a camera given as Human3.6M-style metadata ---------------------------

def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> unit quaternion (4,) (w, x, y, z) with w >= 0 (Shepperd's method)."""
    m = np.asarray(R, np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"R must be a (3, 3) rotation matrix, got shape {m.shape}")
    trace = np.trace(m)
    k = int(np.argmax([trace, m[0, 0], m[1, 1], m[2, 2]]))
    if k == 0:
        s = 2 * np.sqrt(1 + trace)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i, j, h = k - 1, k % 3, (k + 1) % 3  # i: axis with the largest diagonal entry
        s = 2 * np.sqrt(1 + m[i, i] - m[j, j] - m[h, h])
        q = [0.0] * 4
        q[0] = (m[h, j] - m[j, h]) / s
        q[1 + i], q[1 + j], q[1 + h] = s / 4, (m[j, i] + m[i, j]) / s, (m[h, i] + m[i, h]) / s
    q = np.array(q)
    return q * np.sign(q[0]) if q[0] != 0 else q


def look_at_quaternion(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera->world quaternion (4,) (w, x, y, z) of a camera at ``centre`` (3,) looking at ``target`` (3,).

    World Z is up, so the horizon is level: camera x (right) is horizontal, y points down."""
    centre, target = np.asarray(centre, np.float64), np.asarray(target, np.float64)
    if centre.shape != (3,) or target.shape != (3,):
        raise ValueError(f"centre and target must be 3D points of shape (3,), got {centre.shape} and {target.shape}")
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:
        raise ValueError("camera looks straight up or down; the horizon is undefined")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return matrix_to_quaternion(np.stack([right, down, forward], axis=1))  # columns = camera axes


def project_camera(positions: np.ndarray, camera: dict) -> np.ndarray:
    """World metres (F, J, 3) -> pixels (F, J, 2) float32 with the docs/method.md §5.3 distortion model.

    camera: res_w, res_h, focal_length, center (pixels), radial_distortion (3), tangential_distortion (2),
    orientation (camera->world quaternion), translation (camera centre, world mm) and id (for errors).
    """
    _check_last(positions, 3, "positions")
    w, h = camera["res_w"], camera["res_h"]
    intrinsics = normalized_intrinsics(*camera["focal_length"], *camera["center"],
                                       camera["radial_distortion"], camera["tangential_distortion"], w, h)
    xyz = world_to_camera(positions.astype(np.float64), np.array(camera["orientation"]),
                          np.array(camera["translation"]) / 1000.0)
    if np.any(xyz[..., 2] <= 0):
        raise ValueError(f"camera {camera['id']}: some joints are behind the camera; increase margin_m")
    uv = project_to_2d(torch.from_numpy(xyz), torch.from_numpy(intrinsics).double()).numpy()
    return image_coordinates(uv, w, h).astype(np.float32)
