"""BVH rig -> 17 Human3.6M joints: rig maps, their YAML form, and the automatic guess from joint names.

A :class:`RigMap` says, for each H36M joint, which BVH joints it mixes (affine weights summing to 1),
plus virtual End Sites (a point fixed in a joint's frame, e.g. the top of the head) and how to read
the file (units, leading reference frames, floor). The two CMU rigs are tables in ``mocap.py``; any
other rig is either guessed (:func:`guess_rig_map`) or read from YAML (:func:`load_rig_map`)::

    name: my_rig
    units: cm            # m | cm | mm | inch | cmu (CMU's 1/0.45 inch) | metres per unit; omit: detect
    skip_frames: 0       # leading reference-pose frames to drop
    floor: feet          # feet: lowest joints define the floor; file: the file's y = 0 plane is the floor
    sites:               # virtual End Sites: OFFSET in the parent's frame, file units
      HeadTop: {parent: Head, offset: [0, 18, 0]}
    joints:              # H36M joint: BVH joint, or {BVH joint: weight, ...} (weights sum to 1)
      Hip: {LeftUpLeg: 0.5, RightUpLeg: 0.5}
      RHip: RightUpLeg
      ...
      Head: HeadTop      # a site, or an End Site by its parsed name '<joint>_End'

The map is keyed by H36M joint because several need a mix of BVH joints (pelvis, spine, nose).

Name heuristics (:func:`parse_joint_name`): the namespace (``mixamorig:``), rig prefixes (``CC_Base_``,
``Bip01``), case and separators are ignored; the side is a ``Left``/``Right``/``L``/``R``/``l``/``r``
word or a ``_L``/``.R`` suffix. What is left names the body part: ``UpLeg``/``UpperLeg``/``Thigh`` (hip
joint; ``Hip`` too, as SMPL and Xsens name it), ``Leg``/``LowerLeg``/``Shin``/``Calf``/``Knee`` (knee),
``Foot``/``Ankle`` (ankle), ``Arm``/``UpperArm``/``Shldr``/``UArm`` (shoulder joint; ``Shoulder`` only
where no such name exists: it is the clavicle in MotionBuilder names, the shoulder joint in SMPL's and
Xsens'), ``ForeArm``/``LowerArm``/``Elbow`` (elbow), ``Hand``/``Wrist`` (wrist), ``Head``, ``Neck*``,
``Eye``. Where one chain names two joints of a distal role (SMPL's ``L_Ankle`` above ``L_Foot``, which
is the ball of the foot; ``L_Wrist`` above ``L_Hand``), the one nearer the root is taken. The
hierarchy then places what names cannot: the thorax is the first ``Neck*`` joint above the head (else
the joint above the arms' branch point), the H36M spine point lies 45.7% of the way from the hip
centre to the thorax, the head top is an End Site 7-17% of the stature above the head (else a virtual
site in the head's own frame, 10.3% of the stature along its up axis, so it nods with the head), and
the nose-level joint mixes head and eyes (else a site up and forward of the head). These constants
make the guess reproduce the two built-in CMU maps, whose joints the bundled model learned: on
their files the guessed joints lie within 1 cm of the built-in ones (spine 0.197/0.803 for 0.2/0.8,
head top 19.1 for 19 cm above the iClone head).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import yaml

from d3dp_ktp.config import read_yaml_file
from d3dp_ktp.data.bvh import BvhMotion, add_sites, forward_kinematics
from d3dp_ktp.skeleton import H36M

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
FLOORS = ("file", "feet")


@dataclass(frozen=True)
class RigMap:
    """How one BVH rig maps onto the 17 H36M joints (see the module docstring)."""
    name: str
    to_metres: float | None  # file units -> metres; None: detect from the body's height
    figure_scale: float  # extra uniform scale to an adult-sized figure (1.0 = keep the rig's size)
    skip_frames: int  # leading frames that are a reference pose, not motion
    sites: tuple[tuple[str, str, tuple[float, float, float]], ...]  # (name, parent, OFFSET in file units)
    joints: tuple[tuple[tuple[str, float], ...], ...]  # per H36M joint: ((rig joint, weight), ...)
    floor: str = "feet"  # 'file': the file's y = 0 is the floor; 'feet': the lowest joints are

    def required_joints(self) -> set[str]:
        """Rig joint names this map reads (virtual sites excluded, their parents included)."""
        site_names = {s[0] for s in self.sites}
        mixed = {n for mix in self.joints for n, _ in mix}
        return (mixed - site_names) | {s[1] for s in self.sites}


# --- YAML ---------------------------------------------------------------------------------------

def rig_map_to_dict(rig: RigMap) -> dict:
    """Plain dict of the YAML form (round trip: ``rig_map_from_dict(rig_map_to_dict(r)) == r``)."""
    joints = {}
    for name, mix in zip(H36M.joint_names, rig.joints):
        joints[name] = mix[0][0] if len(mix) == 1 and mix[0][1] == 1.0 else {n: float(w) for n, w in mix}
    units = next((k for k, v in UNITS.items() if v == rig.to_metres), rig.to_metres)
    out = {"name": rig.name, "units": units, "figure_scale": float(rig.figure_scale),
           "skip_frames": int(rig.skip_frames), "floor": rig.floor,
           "sites": {n: {"parent": p, "offset": [float(v) for v in o]} for n, p, o in rig.sites},
           "joints": joints}
    if units is None:
        del out["units"]
    return out


def rig_map_to_yaml(rig: RigMap) -> str:
    return yaml.safe_dump(rig_map_to_dict(rig), sort_keys=False, default_flow_style=None)


def _units(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and value in UNITS:
        return UNITS[value]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"{where}: units must be one of {', '.join(UNITS)} or metres per file unit, got {value!r}")


def rig_map_from_dict(d: dict, where: str = "rig map") -> RigMap:
    """Validate the YAML form; errors name the key to fix."""
    if not isinstance(d, dict) or "joints" not in d:
        raise ValueError(f"{where}: a rig map needs a 'joints' mapping (H36M joint -> BVH joint)")
    unknown = set(d) - {"name", "units", "figure_scale", "skip_frames", "floor", "sites", "joints"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    joints_in = d["joints"] or {}
    missing = [n for n in H36M.joint_names if n not in joints_in]
    extra = [n for n in joints_in if n not in H36M.joint_names]
    if missing or extra:
        raise ValueError(f"{where}: 'joints' must name every H36M joint ({', '.join(H36M.joint_names)}); "
                         f"missing {missing}, not H36M joints {extra}")
    joints = []
    for name in H36M.joint_names:
        value = joints_in[name]
        mix = ((str(value), 1.0),) if isinstance(value, str) else tuple((str(k), float(w)) for k, w in value.items())
        if not mix or abs(sum(w for _, w in mix) - 1.0) > 1e-6:
            raise ValueError(f"{where}: joints.{name} weights must sum to 1, got {value!r}")
        joints.append(mix)
    sites = []
    for name, site in (d.get("sites") or {}).items():
        offset = tuple(float(v) for v in site.get("offset", ()))
        if "parent" not in site or len(offset) != 3:
            raise ValueError(f"{where}: sites.{name} needs 'parent' and a 3-value 'offset', got {site!r}")
        sites.append((str(name), str(site["parent"]), offset))
    floor = d.get("floor", "feet")
    if floor not in FLOORS:
        raise ValueError(f"{where}: floor must be one of {FLOORS}, got {floor!r}")
    return RigMap(str(d.get("name", "custom")), _units(d.get("units"), where), float(d.get("figure_scale", 1.0)),
                  int(d.get("skip_frames", 0)), tuple(sites), tuple(joints), floor)


def load_rig_map(path) -> RigMap:
    return rig_map_from_dict(read_yaml_file(path, "rig map"), str(path))


# --- joint names ----------------------------------------------------------------------------------

_PREFIX_WORDS = {"cc", "base", "bip01", "bip001", "bip", "mixamorig", "def", "org", "jnt", "bn", "b", "rig"}
_SIDES = {"left": "L", "l": "L", "right": "R", "r": "R"}
LIMB_PARTS = {  # role -> part names, best first
    "thigh": ("upleg", "upperleg", "thigh", "thighbend", "femur", "hip"),
    "knee": ("leg", "lowerleg", "shin", "calf", "knee", "foreleg", "crus"),
    "ankle": ("foot", "ankle"),
    "upper_arm": ("arm", "upperarm", "uparm", "uarm", "shldr", "shldrbend", "humerus", "shoulder"),
    "forearm": ("forearm", "lowerarm", "forearmbend", "elbow", "farm"),
    "hand": ("hand", "wrist"),
    "eye": ("eye",),
}


def _words(name: str) -> list[str]:
    """'mixamorig:LeftUpLeg' -> ['left', 'up', 'leg']; 'CC_Base_L_Thigh' -> ['cc', 'base', 'l', 'thigh']."""
    name = name.split(":")[-1]
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # camelCase and DAZ 'lThigh'
    name = re.sub(r"([A-Z])([A-Z][a-z])", r"\1 \2", name)  # 'LHip' -> 'L Hip'
    return [w for w in re.split(r"[^A-Za-z0-9]+", name.lower()) if w]


def parse_joint_name(name: str) -> tuple[str | None, str]:
    """(side 'L' / 'R' / None, part) of a BVH joint name; the part has no prefix, side or separators."""
    words = [w for w in _words(name) if w not in _PREFIX_WORDS]
    side = None
    for i in (0, len(words) - 1):  # a side word first ('Left', 'l') or last ('_L', '.R')
        if len(words) > 1 and words[i] in _SIDES:
            side = _SIDES[words.pop(i)]
            break
    part = "".join(words)
    if side is None:  # no separators at all: 'leftupleg', 'lthigh'
        for word, s in sorted(_SIDES.items(), key=lambda kv: -len(kv[0])):
            known = {p for parts in LIMB_PARTS.values() for p in parts}
            if part.startswith(word) and part[len(word):] in known:
                return s, part[len(word):]
            if part.endswith(word) and part[:-len(word)] in known:
                return s, part[:-len(word)]
    return side, part


# --- the automatic guess ------------------------------------------------------------------------

# Where a rig names two joints of these roles on one chain, the one nearer the root is the H36M joint.
_PROXIMAL_FIRST = ("ankle", "hand")
_HELPER_BONES = ("twist", "roll", "share", "bend")  # extra bones riggers insert along a limb
# Proportions of a standing adult used where names cannot help (H36M-like, fractions of the stature).
_HEAD_TOP_ABOVE_HEAD = 0.114  # vertex of the skull above the head joint (the stature estimate's share)
# Sites of rigs without a head-top End Site or eyes, in the head's frame, as shares of the stature estimate:
# what the two built-in CMU maps place (head top 19 cm above the iClone head, 14 cm above the DAZ one; nose = head/eyes mix).
_HEAD_TOP_SITE = 0.103  # the two maps give 0.100 and 0.107 of this estimate
_NOSE_SITE = 0.0227  # up and forward each
# The H36M spine point lies this far from the hip centre to the thorax (both built-in maps: 0.456, 0.459).
_SPINE_ALONG = 0.457
_MIN_HEAD_TOP, _MAX_HEAD_TOP = 0.07, 0.17  # an End Site this far above the head joint is the head top


def _ancestors(j: int, parents) -> list[int]:
    out = []
    while parents[j] >= 0:
        j = parents[j]
        out.append(j)
    return out


def _depth(j: int, parents) -> int:
    return len(_ancestors(j, parents))


def _find_limbs(names, parents, parsed) -> dict[tuple[str, str], int]:
    """(side, role) -> joint index by name, then missing links of each chain from the hierarchy."""
    found = {}
    for side in ("L", "R"):
        for role, parts in LIMB_PARTS.items():
            cands = [(parts.index(p), _depth(j, parents), j) for j, (s, p) in enumerate(parsed)
                     if s == side and p in parts]
            if role in _PROXIMAL_FIRST:  # SMPL/Kinect: 'Ankle' above 'Foot' (the toes), 'Wrist' above 'Hand'
                cands = [(depth, rank, j) for rank, depth, j in cands]
            if cands:
                found[side, role] = min(cands)[2]
        for chain in (("thigh", "knee", "ankle"), ("upper_arm", "forearm", "hand")):
            for upper, lower in ((chain[1], chain[2]), (chain[0], chain[1])):  # fill from the extremity up
                if (side, upper) not in found and (side, lower) in found:
                    above = [a for a in _ancestors(found[side, lower], parents)
                             if not any(h in parsed[a][1] for h in _HELPER_BONES)]
                    if above and parsed[above[0]][0] == side:
                        found[side, upper] = above[0]
    return found


def _spine_mix(path: list[int], xyz: np.ndarray, hip_centre: np.ndarray, thorax: int):
    """((joint, weight), ...) on the root->thorax path at the point _SPINE_ALONG of the way from the hip
    centre to the thorax, measured along that axis (median over frames); xyz (F, n, 3), hip_centre (F, 3)."""
    axis = xyz[:, thorax] - hip_centre
    along = {j: float(np.median(np.sum((xyz[:, j] - hip_centre) * axis, -1) / np.sum(axis * axis, -1)))
             for j in path}
    for a, b in zip(path[:-1], path[1:]):
        if along[a] <= _SPINE_ALONG < along[b]:
            w = float(np.round((_SPINE_ALONG - along[a]) / (along[b] - along[a]), 3))
            return ((a, round(1.0 - w, 3)), (b, w)) if 0 < w < 1 else ((a if w <= 0 else b, 1.0),)
    return ((thorax, 1.0),)


def _distance(xyz: np.ndarray, a, b) -> float:
    """Median distance between two points over frames; a, b: joint index or (F, 3) array."""
    pa, pb = (xyz[:, x] if isinstance(x, (int, np.integer)) else x for x in (a, b))
    return float(np.median(np.linalg.norm(pa - pb, axis=-1)))


def guess_rig_map(motion, name: str = "guessed") -> RigMap:
    """Map a parsed BVH (``bvh.BvhMotion``) onto the 17 H36M joints by joint names and hierarchy.

    Names place the limbs and the head; the posed motion (not the rest pose, which some exporters
    leave twisted) places the rest: see the module docstring. Units stay undetected
    (``to_metres=None``), the floor is found from the feet and leading frames in the rest pose (a
    T-pose reference) are skipped. ValueError lists the H36M joints it could not place and the names seen."""
    names, parents = list(motion.joint_names), list(motion.parents)
    parsed = [parse_joint_name(n) for n in names]
    limbs = _find_limbs(names, parents, parsed)
    heads = sorted((_depth(j, parents), j) for j, (s, p) in enumerate(parsed) if s is None and p == "head")
    head = heads[0][1] if heads else None
    missing = [h36m for key, h36m in _LIMB_JOINTS.items() if key not in limbs] + ([] if heads else ["Head"])
    if missing:
        seen = [f"{n} ({s or '-'}, {p})" for n, (s, p) in zip(names, parsed) if not n.endswith("_End")]
        raise ValueError(f"cannot place the H36M joints {missing} by joint names; joints seen (side, part): "
                         f"{', '.join(seen[:60])}{' ...' if len(seen) > 60 else ''}. Write a rig map "
                         "(--list-joints FILE prints a starting point) and pass --rig-map")
    step = max(1, motion.num_frames // 200)  # ~200 frames are plenty for medians
    # one FK pass; three unit probes on the head give its axes (for the head sites, _head_axes)
    probed = add_sites(motion, {f"_probe{a}": (names[head], np.eye(3)[a]) for a in range(3)})
    xyz = forward_kinematics(BvhMotion(probed.joint_names, probed.parents, probed.offsets, probed.channels,
                                       probed.frame_time, probed.motion[::step]))
    xyz, head_axes = xyz[:, :len(names)], xyz[:, len(names):] - xyz[:, head:head + 1]  # (F, n, 3), (F, 3, 3)
    hips = [limbs["L", "thigh"], limbs["R", "thigh"]]
    hip_centre = xyz[:, hips].mean(1)
    path = _ancestors(head, parents)[::-1] + [head]
    necks = [j for j in path if parsed[j][1].startswith("neck")]
    thorax = necks[0] if necks else _thorax_from_branch(path, limbs, parents)
    leg = np.mean([_distance(xyz, limbs[s, "thigh"], limbs[s, "knee"]) + _distance(xyz, limbs[s, "knee"],
                                                                                  limbs[s, "ankle"]) for s in "LR"])
    stature = (leg + _distance(xyz, hip_centre, thorax) + _distance(xyz, thorax, head)) / (1 - _SKULL_AND_SOLE)
    spine = _spine_mix(path[:path.index(thorax) + 1], xyz, hip_centre, thorax)
    up, forward = _head_axes(motion, head_axes, head, hips, xyz[:, thorax] - hip_centre, xyz)
    sites = []
    head_top = _head_top(xyz, parents, parsed, head, thorax, stature)
    if head_top is None:  # no End Site marks the skull's top: a site in the head's own frame
        sites.append(("HeadTop", names[head], _offset(_HEAD_TOP_SITE * stature * up)))
        head_top = (("HeadTop", 1.0),)
    eyes = [limbs.get(("L", "eye")), limbs.get(("R", "eye"))]
    if all(e is not None and head in _ancestors(e, parents) for e in eyes):
        nose = ((head, 0.5), (eyes[0], 0.25), (eyes[1], 0.25))
    else:  # where the built-in maps' head-and-eyes mix lies: up and forward of the head joint
        sites.append(("Nose", names[head], _offset(_NOSE_SITE * stature * (up + forward))))
        nose = (("Nose", 1.0),)
    one = lambda key: ((limbs[key], 1.0),)  # noqa: E731
    mixes = (((hips[0], 0.5), (hips[1], 0.5)), one(("R", "thigh")), one(("R", "knee")), one(("R", "ankle")),
             one(("L", "thigh")), one(("L", "knee")), one(("L", "ankle")), spine, ((thorax, 1.0),), nose,
             head_top, one(("L", "upper_arm")), one(("L", "forearm")), one(("L", "hand")),
             one(("R", "upper_arm")), one(("R", "forearm")), one(("R", "hand")))
    joints = tuple(tuple((j if isinstance(j, str) else names[j], w) for j, w in mix) for mix in mixes)
    return RigMap(name, None, 1.0, rest_frames(motion), tuple(sites), joints, "feet")


_LIMB_JOINTS = {("R", "thigh"): "RHip", ("R", "knee"): "RKnee", ("R", "ankle"): "RAnkle", ("L", "thigh"): "LHip",
                ("L", "knee"): "LKnee", ("L", "ankle"): "LAnkle", ("L", "upper_arm"): "LShoulder",
                ("L", "forearm"): "LElbow", ("L", "hand"): "LWrist", ("R", "upper_arm"): "RShoulder",
                ("R", "forearm"): "RElbow", ("R", "hand"): "RWrist"}
_SKULL_AND_SOLE = _HEAD_TOP_ABOVE_HEAD + 0.045  # stature shares above the head joint and below the ankles


def _combine(mix, other, weight: float):
    """mix + weight * other, both ((joint, w), ...), merged per joint."""
    out: dict = {}
    for j, w in tuple(mix) + tuple((j, weight * w) for j, w in other):
        out[j] = round(out.get(j, 0.0) + w, 4)
    return tuple(out.items())


def _thorax_from_branch(path: list[int], limbs, parents) -> int:
    """The joint just above where both arms leave the root->head path (the branch itself if the head is next)."""
    arms = [set(_ancestors(limbs[s, "upper_arm"], parents)) for s in ("L", "R")]
    branch = max(i for i, j in enumerate(path) if j in arms[0] and j in arms[1])
    return path[branch + 1] if branch + 1 < len(path) - 1 else path[branch]


def _head_top(xyz: np.ndarray, parents, parsed, head: int, thorax: int, stature: float):
    """Mix for the top of the skull: a descendant of the head (End Sites included) lying 7-17% of the
    stature beyond the head along thorax -> head, one named like a head top ('HeadTop_End', 'HeadNub')
    first, else the farthest; None without one."""
    direction = xyz[:, head] - xyz[:, thorax]
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    beyond = {j: float(np.median(np.sum((xyz[:, j] - xyz[:, head]) * direction, -1)))
              for j in range(xyz.shape[1]) if head in _ancestors(j, parents)}
    fits = [j for j, d in beyond.items() if _MIN_HEAD_TOP * stature <= d <= _MAX_HEAD_TOP * stature]
    if fits:
        named = [j for j in fits if parsed[j][1].startswith(("headtop", "headnub", "headend", "top"))]
        return ((min(named) if named else max(fits, key=beyond.get), 1.0),)
    return None


def _head_axes(motion, frames: np.ndarray, head: int, hips: list[int], torso: np.ndarray, xyz: np.ndarray):
    """(up, forward): unit vectors of the head's own frame, for sites that nod and turn with the head.

    Taken from the rest pose (every channel 0), where each joint's frame is the file's: up from the hip
    centre to the head, forward = left x up (left from the right hip to the left one), each snapped
    to the nearest file axis within 25 deg, as the built-in maps' head offsets are. A rest pose that is
    not upright (the torso's median up, seen in the head's frame while moving, lies over 45 deg away)
    gives way to those median directions. ``frames`` (F, 3 axes, 3): the head's axes in the world;
    ``torso`` (F, 3): hip centre -> thorax; ``xyz`` (F, n, 3): the joints, over the same frames."""
    rest = np.zeros_like(motion.offsets)
    for j, p in enumerate(motion.parents):
        rest[j] = motion.offsets[j] + (rest[p] if p >= 0 else 0.0)
    up, left = _unit(rest[head] - rest[hips].mean(0)), _unit(rest[hips[0]] - rest[hips[1]])
    seen_up = _unit(np.median(np.einsum("fac,fc->fa", frames, _unit(torso)), axis=0))
    if float(up @ seen_up) < np.cos(np.radians(45)):
        lateral = xyz[:, hips[0]] - xyz[:, hips[1]]
        up, left = seen_up, _unit(np.median(np.einsum("fac,fc->fa", frames, _unit(lateral)), axis=0))
    up = _snap(up)
    return up, _snap(_unit(np.cross(left, up)))


def _offset(v: np.ndarray) -> tuple[float, float, float]:
    return tuple(round(float(x), 6) for x in v)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _snap(v: np.ndarray, degrees: float = 25.0) -> np.ndarray:
    """The nearest signed file axis when ``v`` (3,) lies within ``degrees`` of it, else ``v``."""
    axis = int(np.argmax(np.abs(v)))
    return np.sign(v[axis]) * np.eye(3)[axis] if abs(v[axis]) >= np.cos(np.radians(degrees)) else v


def rest_frames(motion) -> int:
    """Leading frames in the rest pose (every rotation channel within 0.5 deg of 0): reference frames."""
    rot = [i for i, c in enumerate(c for chans in motion.channels for c in chans) if c.endswith("rotation")]
    if not rot:
        return 0
    still = np.all(np.abs(motion.motion[:, rot]) < 0.5, axis=1)
    return 0 if still.all() else int(np.argmin(still))


def describe_hierarchy(motion, rig: RigMap | None = None) -> str:
    """The joint tree, one line per joint with its channels and (if given) the H36M joints it feeds."""
    feeds: dict[str, list[str]] = {}
    if rig is not None:
        for h36m, mix in zip(H36M.joint_names, rig.joints):
            for n, w in mix:
                feeds.setdefault(n, []).append(h36m if w == 1.0 else f"{h36m} x{w:g}")
        for site, parent, offset in rig.sites:
            feeds.setdefault(parent, []).append(f"(site {site} at {list(offset)})")
    lines = []
    for j, name in enumerate(motion.joint_names):
        depth = _depth(j, motion.parents)
        chans = f"{len(motion.channels[j])} ch" if motion.channels[j] else "end site" if name.endswith("_End") else ""
        arrow = f"  -> {', '.join(feeds[name])}" if name in feeds else ""
        lines.append(f"{'  ' * depth}{name}  [{chans}]{arrow}")
    return "\n".join(lines)
