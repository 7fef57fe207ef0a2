"""Exports of a pose sequence for other tools: BVH (animation packages) and CSV (spreadsheets).

Shape legend: F frames, J joints of the skeleton, n BVH joints (J plus helpers).

BVH conventions (the common reading of the format, as Blender's and MotionBuilder's importers and
`d3dp_ktp.data.bvh` read it):

* Axes: Y up, right-handed; at rest the body faces +Z and its left side is +X. Units: centimetres
  (``BvhConfig.units``), stated in the comment lines after ``HIERARCHY``.
* Every joint of the skeleton is a BVH joint with the same name (``joint_names``). Rest pose
  (all rotations zero) is a T-pose: bones from the root to a left/right joint point along +X/-X,
  the chains below them (legs) along -Y; the centre chain (spine, neck, head) along +Y; a left/right
  bone branching off the centre above the root (shoulder) along +X/-X, and its chain (arm) too.
  OFFSETs are the bone lengths along those directions, so the rest skeleton has the output's lengths.
* A joint with several children (Hip, Thorax) has one rotation but must point three bones whose
  angles to each other change from frame to frame; a single rotation cannot do that (on the demo
  the shoulders would be off by 17 mm on average, 66 mm at worst). So every child but the first
  centre one hangs from a zero-OFFSET helper joint named ``<parent>_<child>`` (e.g.
  ``Thorax_LShoulder``, the collar bone), as the CMU BVH rigs do with ``LHipJoint``.
* Channels: the root has ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, every
  other joint ``Zrotation Xrotation Yrotation`` (Euler degrees, intrinsic, so R = Rz Rx Ry);
  End Sites have none. The root's OFFSET is zero, so its position channels are its position.
* Rotations are solved from the positions: a joint's world rotation turns its rest bone direction
  exactly onto the pose's; a branching joint also turns its left-right (or second child) direction
  as close as it can, which fixes the twist; other joints take the smallest rotation (no twist)
  relative to their parent. Angles are unwrapped over time, so curves have no 360-degree jumps.
  The BVH's forward kinematics reproduce the positions exactly when the bone lengths are constant
  (the default consistent body); otherwise they reproduce the positions with the median lengths.
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from d3dp_ktp.atomic import atomic_file
from d3dp_ktp.inference.body import robust_bone_lengths, tree_order
from d3dp_ktp.skeleton import Skeleton

UNITS = {"cm": 100.0, "m": 1.0}
X, Y, Z = np.eye(3)


@dataclass(frozen=True)
class BvhConfig:
    units: str = "cm"             # 'cm' (MotionBuilder, Maya, CMU files) or 'm' (Blender's default scale)
    end_site_fraction: float = 0.25  # End Site length as a fraction of the leaf bone's length
    comment: bool = True          # the '#' header lines with axes and units (Blender skips them)


@dataclass(frozen=True)
class BvhRig:
    """The BVH hierarchy built for a skeleton: helper joints added, rest directions chosen."""
    names: tuple[str, ...]        # (n,) BVH joint names, parents before children
    parents: tuple[int, ...]      # (n,) index into names, -1 for the root
    source: tuple[int, ...]       # (n,) skeleton joint placed at this BVH joint (helpers: their parent's)
    rest: np.ndarray              # (n, 3) unit rest direction of the bone ending at the joint (helpers: 0)
    end_site: np.ndarray          # (n, 3) unit End Site direction of leaves, 0 elsewhere


def _side(skeleton: Skeleton, j: int) -> float:
    return 1.0 if j in skeleton.joints_left else -1.0 if j in skeleton.joints_right else 0.0


def _rest_direction(skeleton: Skeleton, j: int) -> np.ndarray:
    """T-pose direction of the bone ending at joint j (see the module docstring)."""
    chain = [j]
    while skeleton.parents[chain[-1]] != skeleton.root:
        chain.append(skeleton.parents[chain[-1]])
    top = chain[-1]  # the chain's bone that leaves the root
    if _side(skeleton, top):  # a leg: lateral at the pelvis, down below it
        return _side(skeleton, j) * X if j == top else -Y
    lateral = [k for k in chain if _side(skeleton, k)]
    return _side(skeleton, lateral[-1]) * X if lateral else Y


def build_rig(skeleton: Skeleton) -> BvhRig:
    """The BVH joints for ``skeleton``: its joints in tree order plus zero-OFFSET helpers before
    every child of a branching joint except its first centre (or first) child."""
    names, parents, source, rest, end = [], [], [], [], []
    index: dict[int, int] = {}
    children = {j: [c for c in tree_order(skeleton) if skeleton.parents[c] == j] for j in range(skeleton.num_joints)}

    def add(name, parent, src, direction, end_dir=np.zeros(3)):
        names.append(name), parents.append(parent), source.append(src), rest.append(direction), end.append(end_dir)
        return len(names) - 1

    def visit(j: int, parent_node: int) -> None:
        direction = np.zeros(3) if parent_node < 0 else _rest_direction(skeleton, j)
        leaf_dir = Z if not children[j] and np.allclose(direction, -Y) else direction  # feet point forward
        index[j] = add(skeleton.joint_names[j], parent_node, j, direction, leaf_dir if not children[j] else np.zeros(3))
        kids = children[j]
        primary = next((c for c in kids if not _side(skeleton, c)), kids[0] if kids else None)
        for c in kids:
            node = index[j]
            if c != primary:
                node = add(f"{skeleton.joint_names[j]}_{skeleton.joint_names[c]}", index[j], j, np.zeros(3))
            visit(c, node)

    visit(skeleton.root, -1)
    return BvhRig(tuple(names), tuple(parents), tuple(source), np.array(rest), np.array(end))


# ----------------------------------------------------------------------------- rotations

def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-12)


def swing(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smallest rotations (F, 3, 3) turning unit u (3,) onto unit vectors v (F, 3)."""
    from scipy.spatial.transform import Rotation  # here: a second of imports that runs without --bvh skip

    axis = np.cross(u, v)
    sin, cos = np.linalg.norm(axis, axis=-1), v @ u
    perpendicular = np.cross(u, X if abs(u[0]) < 0.9 else Y)  # for v = -u any axis normal to u works
    axis = np.where((sin < 1e-9)[:, None], perpendicular, axis)
    return Rotation.from_rotvec(_unit(axis) * np.arctan2(sin, cos)[:, None]).as_matrix()


def frame_rotation(u0: np.ndarray, u1: np.ndarray, d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """Rotations (F, 3, 3) turning rest u0 (3,) exactly onto d0 (F, 3) and rest u1 (3,) as near as
    possible onto d1 (F, 3) (the parts normal to u0 / d0 are aligned)."""
    def basis(a, b):
        a = _unit(a)
        b = _unit(b - (b * a).sum(-1, keepdims=True) * a)
        return np.stack([a, b, np.cross(a, b)], axis=-1)  # columns

    rest = basis(np.broadcast_to(u0, d0.shape), np.broadcast_to(u1, d1.shape))
    degenerate = np.linalg.norm(np.cross(_unit(d0), _unit(d1)), axis=-1) < 1e-6
    out = basis(d0, d1) @ np.swapaxes(rest, -1, -2)
    if degenerate.any():  # second direction parallel to the first: no twist information
        out[degenerate] = swing(_unit(u0), _unit(d0[degenerate]))
    return out


def _branch_reference(skeleton: Skeleton, j: int, primary: int, positions: np.ndarray):
    """(rest u1 (3,), pose d1 (F, 3)) fixing a branching joint's twist: left minus right children
    when it has both, else its second child; None for a joint with one child."""
    kids = [c for c in range(skeleton.num_joints) if skeleton.parents[c] == j and c != primary]
    left = [c for c in kids if _side(skeleton, c) > 0]
    right = [c for c in kids if _side(skeleton, c) < 0]
    if left and right:
        return X, positions[:, left[0]] - positions[:, right[0]]
    return (_rest_direction(skeleton, kids[0]), positions[:, kids[0]] - positions[:, j]) if kids else None


def solve_rotations(skeleton: Skeleton, rig: BvhRig, positions: np.ndarray) -> np.ndarray:
    """Local rotations (F, n, 3, 3) of the rig's joints that place positions (F, J, 3) (see the module
    docstring); leaves get the identity."""
    F, n = len(positions), len(rig.names)
    world = np.zeros((F, n, 3, 3))
    local = np.zeros_like(world)
    for k, (parent, src) in enumerate(zip(rig.parents, rig.source)):
        parent_world = world[:, parent] if parent >= 0 else np.broadcast_to(np.eye(3), (F, 3, 3))
        kids = [c for c in range(n) if rig.parents[c] == k]
        # the child that carries a bone from this joint (helpers carry none; the primary child is first)
        bone = next((c for c in kids if rig.rest[c].any()), None)
        if bone is None:
            rot = np.broadcast_to(np.eye(3), (F, 3, 3))
        else:
            d = positions[:, rig.source[bone]] - positions[:, src]
            reference = _branch_reference(skeleton, src, rig.source[bone], positions) if len(kids) > 1 else None
            if reference is None:
                rot = swing(rig.rest[bone], _unit(np.einsum("fba,fb->fa", parent_world, d)))
            else:
                rot = np.swapaxes(parent_world, -1, -2) @ frame_rotation(rig.rest[bone], reference[0], d, reference[1])
        local[:, k] = rot
        world[:, k] = parent_world @ rot
    return local


def _euler_zxy(local: np.ndarray) -> np.ndarray:
    """(F, n, 3, 3) -> (F, n, 3) intrinsic Z-X-Y Euler degrees, unwrapped over frames."""
    F, n = local.shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gimbal lock: scipy still returns an exact decomposition
        angles = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(F, n, 3)
    return np.unwrap(angles, period=360.0, axis=0)


# ----------------------------------------------------------------------------- writing

def camera_to_bvh_axes(points: np.ndarray) -> np.ndarray:
    """Camera space (x right, y down, z forward) -> BVH axes (X right, Y up, Z towards the camera):
    a half turn about x, so a person facing the camera faces +Z. (..., 3) -> (..., 3)."""
    return np.asarray(points) * np.array([1.0, -1.0, -1.0])


def _numbers(values) -> str:
    return " ".join(f"{v:.6f}" if abs(v) >= 5e-7 else "0.000000" for v in values)  # no "-0.000000"


def _hierarchy(rig: BvhRig, offsets: np.ndarray, end_sites: np.ndarray) -> list[str]:
    lines: list[str] = []

    def node(k: int, depth: int) -> None:
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if rig.parents[k] < 0 else 'JOINT'} {rig.names[k]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {_numbers(offsets[k])}")
        channels = ("Xposition Yposition Zposition " if rig.parents[k] < 0 else "") + "Zrotation Xrotation Yrotation"
        lines.append(f"{pad}\tCHANNELS {len(channels.split())} {channels}")
        kids = [c for c in range(len(rig.names)) if rig.parents[c] == k]
        for c in kids:
            node(c, depth + 1)
        if not kids:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{",
                          f"{pad}\t\tOFFSET {_numbers(end_sites[k])}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    node(0, 0)
    return lines


def bvh_text(positions: np.ndarray, skeleton: Skeleton, fps: float, cfg: BvhConfig = BvhConfig(),
             comment: tuple[str, ...] = ()) -> str:
    """BVH text of joint positions (F, J, 3) in metres, already in BVH axes (Y up; see
    `camera_to_bvh_axes`). ``comment`` lines are added to the header (with cfg.comment)."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (skeleton.num_joints, 3) or not len(positions):
        raise ValueError(f"positions must have shape (F >= 1, {skeleton.num_joints}, 3), got {positions.shape}")
    if not np.isfinite(positions).all() or not fps > 0:
        raise ValueError(f"BVH export needs finite positions and fps > 0 (fps={fps})")
    if cfg.units not in UNITS:
        raise ValueError(f"BVH units must be one of {', '.join(UNITS)}, got '{cfg.units}'")
    scale = UNITS[cfg.units]
    rig = build_rig(skeleton)
    lengths = robust_bone_lengths(positions, skeleton, symmetric=False) * scale
    src_len = lengths[list(rig.source)]
    offsets = rig.rest * src_len[:, None]
    end_sites = rig.end_site * (cfg.end_site_fraction * src_len)[:, None]
    angles = _euler_zxy(solve_rotations(skeleton, rig, positions))          # (F, n, 3)
    motion = np.concatenate([positions[:, skeleton.root] * scale, angles.reshape(len(positions), -1)], axis=1)
    head = ["HIERARCHY"]
    if cfg.comment:
        head += [f"# {line}" for line in (f"units: {'centimetres' if cfg.units == 'cm' else 'metres'}; "
                                          "axes: Y up, right-handed, rest pose faces +Z with its left on +X",
                                          "rotations: Euler degrees, intrinsic Z-X-Y (R = Rz Rx Ry)", *comment)]
    motion[np.abs(motion) < 5e-7] = 0.0  # no "-0.000000"
    body = io.StringIO()
    np.savetxt(body, motion, fmt="%.6f")
    return "\n".join(head + _hierarchy(rig, offsets, end_sites) +
                     ["MOTION", f"Frames: {len(positions)}", f"Frame Time: {1.0 / fps:.8f}"]) + "\n" + body.getvalue()


def write_bvh(path: str | Path, positions: np.ndarray, skeleton: Skeleton, fps: float,
              cfg: BvhConfig = BvhConfig(), comment: tuple[str, ...] = ()) -> Path:
    """Write `bvh_text` to ``path`` atomically."""
    text = bvh_text(positions, skeleton, fps, cfg, comment)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="ascii")
    return Path(path)


def write_joints_csv(path: str | Path, positions: np.ndarray, joint_names, fps: float) -> Path:
    """One row per frame: frame, time_s, then <joint>_x, <joint>_y, <joint>_z in metres; (F, J, 3)."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (len(joint_names), 3):
        raise ValueError(f"positions must have shape (F, {len(joint_names)}, 3), got {positions.shape}")
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["frame", "time_s"] + [f"{n}_{a}" for n in joint_names for a in "xyz"])
        for f, pose in enumerate(positions):
            out.writerow([f, f"{f / fps:.6f}"] + [f"{v:.6f}" for v in pose.reshape(-1)])
    return Path(path)
