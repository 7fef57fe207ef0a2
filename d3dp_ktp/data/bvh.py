"""BVH motion files: a parser and vectorised forward kinematics.

Shape legend: F frames, n joints (End Sites included), C channels of the MOTION section.

Conventions (the common reading of the BVH format, e.g. Blender's and CMU's converters):
* A joint's OFFSET is its position in its parent's frame when all rotations are zero.
* Rotation channels are Euler angles in degrees, composed *intrinsically in the listed order*:
  ``Zrotation Xrotation Yrotation`` gives ``R = Rz @ Rx @ Ry``. Each joint has its own order.
* Position channels on any joint are its local translation and replace its OFFSET (Blender's and
  MotionBuilder's reading; a rig with translations on every joint keeps its size). Some exporters
  instead store the rest translation in the OFFSET and animate a displacement from it (iClone's root:
  OFFSET at hip height, channels near zero); :func:`translation_modes` tells the two apart per joint
  ('replace' or 'add') from which reading keeps the rest-pose bone length (root: the rest height).
* World transform: ``R_j = R_parent @ R_local_j`` and ``p_j = p_parent + R_parent @ t_local_j``.
* An End Site becomes an extra joint named ``<parent>_End`` with no channels.
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass(frozen=True)
class BvhMotion:
    """A parsed BVH file. ``channels[j]`` lists joint j's channel names; ``motion`` is (F, C)."""
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray  # (n, 3) in file units
    channels: tuple[tuple[str, ...], ...]
    frame_time: float  # seconds
    motion: np.ndarray  # (F, C) float64

    @property
    def num_frames(self) -> int:
        return self.motion.shape[0]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


def _parse_hierarchy(tokens: list[str], where: str):
    """Walk the HIERARCHY tokens; returns (names, parents, offsets (n, 3), channels)."""
    names, parents, offsets, channels = [], [], [], []
    stack: list[int] = []
    i = 1 if tokens and tokens[0] == "HIERARCHY" else 0
    while i < len(tokens) and tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            end = tokens.index("{", i + 1) if "{" in tokens[i + 1:] else len(tokens)
            names.append(" ".join(tokens[i + 1:end]))  # names may hold spaces ('Bip01 L Thigh')
            i = end
        elif tok == "End":  # "End Site"
            if not stack:
                raise ValueError(f"{where}: End Site outside any joint")
            names.append(f"{names[stack[-1]]}_End")
            i += 2
        elif tok == "{":
            if len(parents) < len(names):  # the brace after a joint name opens that joint
                parents.append(stack[-1] if stack else -1)
                offsets.append(None)
                channels.append(())
            stack.append(len(names) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            offsets[stack[-1]] = [float(v) for v in tokens[i + 1:i + 4]]
            i += 4
        elif tok == "CHANNELS":
            count = int(tokens[i + 1])
            channels[stack[-1]] = tuple(tokens[i + 2:i + 2 + count])
            i += 2 + count
        else:
            raise ValueError(f"{where}: unexpected token '{tok}' in HIERARCHY")
    if i >= len(tokens) or not names or any(o is None for o in offsets):
        raise ValueError(f"{where}: not a BVH file (needs a HIERARCHY with OFFSETs and a MOTION section)")
    return names, parents, np.asarray(offsets, np.float64), channels


def parse_bvh(text: str, where: str = "<string>") -> BvhMotion:
    """Parse BVH text. ``where`` names the source in error messages. Lines starting with '#' are
    comments (not in the original format, but Blender's importer skips them too)."""
    text = "\n".join(line for line in text.lstrip("\ufeff").splitlines() if not line.lstrip().startswith("#"))
    head, sep, body = text.partition("MOTION")
    if not sep:
        raise ValueError(f"{where}: no MOTION section; is this a BVH file?")
    names, parents, offsets, channels = _parse_hierarchy(head.split() + ["MOTION"], where)
    for chans in channels:
        for c in chans:
            if c[1:] not in ("position", "rotation") or c[0] not in _AXES:
                raise ValueError(f"{where}: unknown channel '{c}'")
    tokens = body.split()
    # "Frames: N" and "Frame Time: dt" come first, then the numbers.
    if len(tokens) < 5 or tokens[0] != "Frames:" or tokens[2:4] != ["Frame", "Time:"]:
        raise ValueError(f"{where}: MOTION must start with 'Frames: N' and 'Frame Time: dt'")
    num_frames, frame_time = int(tokens[1]), float(tokens[4])
    num_channels = sum(len(c) for c in channels)
    values = np.array(tokens[5:], dtype=np.float64)
    if values.size < num_frames * num_channels and values.size % num_channels == 0 and values.size:
        warnings.warn(f"{where}: the header says {num_frames} frames but the file holds "
                      f"{values.size // num_channels}; using those")
        num_frames = values.size // num_channels
    if frame_time <= 0 or values.size < num_frames * num_channels:
        raise ValueError(f"{where}: expected {num_frames} frames x {num_channels} channels with a "
                         f"positive frame time, got {values.size} values and frame time {frame_time}")
    motion = values[:num_frames * num_channels].reshape(num_frames, num_channels)
    return BvhMotion(tuple(names), tuple(parents), offsets, tuple(channels), frame_time, motion)


def load_bvh(path) -> BvhMotion:
    """Read and parse a BVH file; FileNotFoundError names the missing path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BVH file not found: {path}")
    # UTF-8 (a BOM allowed); a joint name in another encoding is kept with replacement characters
    return parse_bvh(path.read_bytes().decode("utf-8-sig", errors="replace"), where=str(path))


def axis_rotation(axis: str, angle_deg: np.ndarray) -> np.ndarray:
    """Right-handed rotation matrices about one axis. angle_deg: (F,) -> (F, 3, 3)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    i = _AXES[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    out = np.zeros(a.shape + (3, 3))
    out[..., i, i] = 1.0
    out[..., j, j] = c
    out[..., k, k] = c
    out[..., j, k] = -s
    out[..., k, j] = s
    return out


def _position_columns(motion: BvhMotion) -> list[dict[int, int]]:
    """Per joint: axis -> MOTION column of its position channels."""
    out, col = [], 0
    for chans in motion.channels:
        out.append({_AXES[c[0]]: col + i for i, c in enumerate(chans) if c.endswith("position")})
        col += len(chans)
    return out


def translation_modes(motion: BvhMotion) -> tuple[str | None, ...]:
    """Per joint: None (no position channels), 'replace' (channels are the local translation) or
    'add' (channels are a displacement added to the OFFSET); see the module docstring.

    Non-root: the reading whose median |translation| is closer (in ratio) to |OFFSET|, the rest bone
    length. Root: 'add' when the channels along the OFFSET's direction are below half of it in the lowest
    5% of frames (the OFFSET holds the rest height, the channels a displacement). A zero OFFSET
    gives 'replace' (both readings agree)."""
    modes = []
    for j, cols in enumerate(_position_columns(motion)):
        if not cols:
            modes.append(None)
            continue
        offset = motion.offsets[j]
        length = float(np.linalg.norm(offset))
        values = np.zeros((motion.num_frames, 3))
        for axis, col in cols.items():
            values[:, axis] = motion.motion[:, col]
        if length < 1e-9:
            modes.append("replace")
        elif motion.parents[j] < 0:
            along = float(np.percentile(values @ (offset / length), 5))  # standing frames: climbs go higher
            modes.append("add" if along < 0.5 * length else "replace")
        else:
            ratio = [abs(np.log(max(float(np.median(np.linalg.norm(t, axis=-1))), 1e-12) / length))
                     for t in (values, values + offset)]
            modes.append("replace" if ratio[0] <= ratio[1] else "add")
    return tuple(modes)


def _local_transforms(motion: BvhMotion, modes):
    """Per-joint local rotation (F, 3, 3) and translation (F, 3) from the channels."""
    num_frames = motion.num_frames
    col = 0
    rotations, translations = [], []
    for offset, chans, mode in zip(motion.offsets, motion.channels, modes):
        rot = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
        trans = np.broadcast_to(offset, (num_frames, 3)).copy()
        for c in chans:
            values = motion.motion[:, col]
            if c.endswith("rotation"):
                rot = rot @ axis_rotation(c[0], values)  # intrinsic: compose in listed order
            elif mode == "add":
                trans[:, _AXES[c[0]]] += values
            else:
                trans[:, _AXES[c[0]]] = values
            col += 1
        rotations.append(rot)
        translations.append(trans)
    return rotations, translations


def forward_kinematics(motion: BvhMotion, translations="auto") -> np.ndarray:
    """World positions of every joint (End Sites included), (F, n, 3) in file units.

    ``translations``: 'auto' (:func:`translation_modes`), 'replace', 'add', or a per-joint tuple."""
    if isinstance(translations, str):
        if translations not in ("auto", "replace", "add"):
            raise ValueError(f"translations must be 'auto', 'replace' or 'add', got '{translations}'")
        translations = (translation_modes(motion) if translations == "auto"
                        else (translations,) * len(motion.joint_names))
    rotations, translations = _local_transforms(motion, translations)
    world_rot: list[np.ndarray] = []
    world_pos: list[np.ndarray] = []
    for j, p in enumerate(motion.parents):
        if p < 0:
            world_rot.append(rotations[j])
            world_pos.append(translations[j])
        else:
            world_rot.append(world_rot[p] @ rotations[j])
            world_pos.append(world_pos[p] + np.einsum("fab,fb->fa", world_rot[p], translations[j]))
    return np.stack(world_pos, axis=1)


def bvh_positions(path):
    """Load a BVH file and run FK: (joint_names, parents, positions (F, n, 3), frame_time)."""
    motion = load_bvh(path)
    return motion.joint_names, motion.parents, forward_kinematics(motion), motion.frame_time


def add_sites(motion: BvhMotion, sites) -> BvhMotion:
    """Append virtual End Sites: ``sites`` maps name -> (parent joint name, OFFSET in the parent's frame).

    A site moves rigidly with its parent, so a point such as the top of the head can be placed
    in the head's own frame. Sites have no channels, so the MOTION columns stay valid.
    """
    names, parents = list(motion.joint_names), list(motion.parents)
    offsets, channels = [motion.offsets], list(motion.channels)
    for name, (parent, offset) in sites.items():
        if parent not in names:
            raise ValueError(f"cannot attach site '{name}': joint '{parent}' is not in the BVH hierarchy")
        if name in names:
            raise ValueError(f"cannot add site '{name}': a joint of that name exists")
        names.append(name)
        parents.append(names.index(parent))
        offsets.append(np.asarray(offset, np.float64).reshape(1, 3))
        channels.append(())
    return BvhMotion(tuple(names), tuple(parents), np.concatenate(offsets), tuple(channels),
                     motion.frame_time, motion.motion)
