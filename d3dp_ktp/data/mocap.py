"""Mocap (BVH, any rig) -> 17-joint Human3.6M poses, virtual cameras and VideoPose3D-style npz files.

Rigs other than the two CMU ones below are mapped by ``d3dp_ktp/data/rigs.py`` (joint-name
heuristics or a YAML rig map); units, translations, floor and subjects: docs/mocap.md.

The data was obtained from mocap.cs.cmu.edu. The database was created with funding from
NSF EIA-0196217.

Pipeline (one BVH trial): parse + FK (``bvh.py``) -> rig joints mixed into the 17 H36M joints
(tables below) -> metres, Y-up -> Z-up world, centred on the origin -> linear resampling to
``fps`` -> per subject, ``num_cameras`` virtual cameras with Human3.6M intrinsics around the
origin -> 2D pixels by the docs/method.md §5.3 distortion model -> optional detector-like 2D noise.

Shape legend: F frames, n rig joints, J = 17 H36M joints, C cameras.

Joint maps (each H36M joint is an affine mix of rig joints, weights summing to 1; ``HeadTop`` is
a virtual End Site that moves rigidly with the head joint, OFFSET in the head's own frame, whose
+Y axis runs up the skull and +Z out of the face in both rigs):

=====  ============  ================================  ======================  ==================================
 idx   H36M joint    cmu_iclone (CC_Base_*, cm)        cmu_salsa (DAZ, m)      approximation
=====  ============  ================================  ======================  ==================================
  0    Hip (root)    .5 L_Thigh + .5 R_Thigh           .5 lThigh + .5 rThigh   pelvis = mid of hip joint centres
  1    RHip          R_Thigh                           rThigh                  rig hip centres are narrower than
  4    LHip          L_Thigh                           lThigh                  H36M's (~0.19 / 0.18 m vs ~0.26 m)
  2/5  R/LKnee       R/L_Calf                          r/lShin
  3/6  R/LAnkle      R/L_Foot                          r/lFoot
  7    Spine         .2 Spine01 + .8 Spine02           .5 abdomen + .5 chest   ~47% of the way hip -> thorax
  8    Thorax        NeckTwist01                       neck                    base of the neck
  9    Neck/Nose     .5 Head + .25 L_Eye + .25 R_Eye   .5 head + .25 leftEye   between skull base and eyes,
                                                       + .25 rightEye          ~0.11 m above the thorax
  10   Head          HeadTop = Head + (0, 19, 1) cm    head + (0, .14, .01) m  top of the skull, ~0.1 m above
                                                                               the eyes
 11-13 LShoulder..   L_Upperarm, L_Forearm, L_Hand     lShldr, lForeArm, lHand
 14-16 RShoulder..   R_Upperarm, R_Forearm, R_Hand     rShldr, rForeArm, rHand
=====  ============  ================================  ======================  ==================================

Units and size: iClone files are centimetres (character ~1.85 m tall). The salsa ``_scaled``
files are metres but the DAZ figure is only ~1.27 m tall (thigh 0.29 m, eyes at 1.19 m), so
``figure_scale`` = 1.34 rescales it to an adult of ~1.70 m (thigh 0.39 m, shank 0.48 m).
Both rigs' exports stand on the plane y = 0 (iClone foot joints rest 2-9 cm above it, salsa toe
tips touch it), so that plane is kept as the floor z = 0; each trial is centred so the root's mean ground position is the origin.

Cleaning: the first frame(s) are a reference pose (salsa: a T-pose blending into the motion over
4 frames at 120 fps; iClone 007_*: frame 0 stands 3 m away) and are dropped (``skip_frames``).
Retargeting pops (iClone subject 5: a knee flips sideways for 1-4 frames) and marker swaps
(salsa 60_*: an ankle or wrist jumps away and back) show up as a joint leaving and returning
faster than ``glitch_speed`` (15 m/s; real joint speeds in these files stay below ~12 m/s);
such out-and-back segments of up to ``glitch_seconds`` (0.25 s) are replaced by linear interpolation
of the whole pose. Fast motion that does not come back (a kick) is left alone.
"""
from __future__ import annotations

import csv
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from d3dp_ktp.data.augment import bone_lengths, stature
from d3dp_ktp.data.custom import write_custom_2d, write_custom_3d
from d3dp_ktp.camera import look_at_quaternion, project_camera
from d3dp_ktp.data.bvh import BvhMotion, add_sites, forward_kinematics, load_bvh, translation_modes
from d3dp_ktp.data.rigs import UNITS, RigMap, guess_rig_map
from d3dp_ktp.skeleton import H36M


def _rig(name, to_metres, figure_scale, skip_frames, head_top, hip, legs, spine, thorax, nose, arms) -> RigMap:
    """Assemble a RigMap in H36M joint order; ``legs`` names joints 1-6, ``arms`` joints 11-16."""
    single = lambda names: tuple(((n, 1.0),) for n in names)  # noqa: E731
    joints = (hip,) + single(legs) + (spine, thorax, nose, (("HeadTop", 1.0),)) + single(arms)
    assert len(joints) == H36M.num_joints
    return RigMap(name, to_metres, figure_scale, skip_frames, (("HeadTop",) + head_top,), joints, floor="file")


CMU_ICLONE = _rig(
    "cmu_iclone", to_metres=0.01, figure_scale=1.0, skip_frames=1,
    head_top=("CC_Base_Head", (0.0, 19.0, 1.0)),
    hip=(("CC_Base_L_Thigh", 0.5), ("CC_Base_R_Thigh", 0.5)),
    legs=("CC_Base_R_Thigh", "CC_Base_R_Calf", "CC_Base_R_Foot",
          "CC_Base_L_Thigh", "CC_Base_L_Calf", "CC_Base_L_Foot"),
    spine=(("CC_Base_Spine01", 0.2), ("CC_Base_Spine02", 0.8)),
    thorax=(("CC_Base_NeckTwist01", 1.0),),
    nose=(("CC_Base_Head", 0.5), ("CC_Base_L_Eye", 0.25), ("CC_Base_R_Eye", 0.25)),
    arms=("CC_Base_L_Upperarm", "CC_Base_L_Forearm", "CC_Base_L_Hand",
          "CC_Base_R_Upperarm", "CC_Base_R_Forearm", "CC_Base_R_Hand"),
)

CMU_SALSA = _rig(
    "cmu_salsa", to_metres=1.0, figure_scale=1.34, skip_frames=4,
    head_top=("head", (0.0, 0.14, 0.01)),
    hip=(("lThigh", 0.5), ("rThigh", 0.5)),
    legs=("rThigh", "rShin", "rFoot", "lThigh", "lShin", "lFoot"),
    spine=(("abdomen", 0.5), ("chest", 0.5)),
    thorax=(("neck", 1.0),),
    nose=(("head", 0.5), ("leftEye", 0.25), ("rightEye", 0.25)),
    arms=("lShldr", "lForeArm", "lHand", "rShldr", "rForeArm", "rHand"),
)

RIGS = (CMU_ICLONE, CMU_SALSA)

# Statures of the training bodies with body-shape augmentation (data.augment.body_height_m).
ADULT_HEIGHT_M = (1.4, 2.0)

# Subject split of the data README (held-out evaluation is by subject).
SPLITS = {"train": ("cmu01", "cmu02", "cmu03", "cmu05", "cmu06", "cmu60"), "validate": ("cmu07", "cmu61")}

# docs/method.md §6.2 Human3.6M pixel intrinsics per camera index:
# (id, res_w, res_h, (f_x, f_y), (c_x, c_y), (k1, k2, k3), (p1, p2)).
H36M_INTRINSICS = (
    ("54138969", 1000, 1002, (1145.0494384765625, 1143.7811279296875), (512.54150390625, 515.4514770507812),
     (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
     (-0.0009756988729350269, -0.00142447161488235)),
    ("55011271", 1000, 1000, (1149.6756591796875, 1147.5916748046875), (508.8486328125, 508.0649108886719),
     (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
     (-0.0016190266469493508, -0.0027408944442868233)),
    ("58860488", 1000, 1000, (1149.1407470703125, 1148.7989501953125), (519.8158569335938, 501.40264892578125),
     (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
     (0.0014843869721516967, -0.0007599993259645998)),
    ("60457274", 1000, 1002, (1145.5113525390625, 1144.77392578125), (514.9682006835938, 501.88201904296875),
     (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
     (-0.0005872055771760643, -0.0018133620033040643)),
)

# Detector-like noise: per-joint multiplier of noise_px. Hips, pelvis and spine are poorly
# localised by 2D detectors (no visible landmark), wrists and ankles move fast; head and shoulders are easy.
NOISE_JOINT_SCALE = np.array([1.4, 1.5, 1.2, 1.2, 1.5, 1.2, 1.2, 1.4, 1.0, 0.8, 1.0,
                              1.0, 1.1, 1.3, 1.0, 1.1, 1.3], dtype=np.float64)


@dataclass(frozen=True)
class MocapConfig:
    """Options of the BVH -> npz conversion."""
    fps: float = 50.0  # output frame rate (Human3.6M's)
    num_cameras: int = 4  # virtual cameras per subject; intrinsics cycle through the 4 H36M cameras
    noise_px: float = 3.0  # std of the 2D jitter in pixels (times NOISE_JOINT_SCALE); 0 = no noisy file
    outlier_prob: float = 0.002  # chance per joint and frame of a detector failure
    outlier_px: float = 30.0  # std in pixels of the displacement of such a failure
    seed: int = 0  # cameras and noise are seeded per (seed, subject[, action, camera])
    max_seconds_per_file: float | None = None  # keep only the start of each trial
    distance_m: tuple[float, float] = (3.5, 6.0)  # camera distance from the subject's mean position
    height_m: tuple[float, float] = (1.2, 1.8)  # camera height above the floor
    glitch_speed: float = 15.0  # m/s; a joint jumping out and back faster than this is repaired
    glitch_seconds: float = 0.25  # longest out-and-back segment that counts as a glitch
    margin_m: float = 3.0  # cameras stay this far beyond the subject's farthest excursion (walks stay in view)
    units: str | None = None  # file units (m, cm, mm, inch, cmu) for every file; None: the rig's, else detected

    def __post_init__(self):
        if self.units is not None and self.units not in UNITS:
            raise ValueError(f"units must be one of {', '.join(UNITS)}, got '{self.units}'")
        if self.fps <= 0 or self.num_cameras < 1 or self.noise_px < 0:
            raise ValueError(f"need fps > 0, num_cameras >= 1 and noise_px >= 0, got {self}")
        if not 0 <= self.outlier_prob <= 1:
            raise ValueError(f"outlier_prob must be in [0, 1], got {self.outlier_prob}")
        if self.max_seconds_per_file is not None and self.max_seconds_per_file <= 0:
            raise ValueError(f"max_seconds_per_file must be positive, got {self.max_seconds_per_file}")


@dataclass(frozen=True)
class Trial:
    """One converted BVH trial: (F, 17, 3) float32 world metres (Z up) at ``fps``."""
    subject: str
    action: str
    positions: np.ndarray
    fps: float
    repaired_frames: int = 0  # native-rate frames replaced by repair_glitches
    info: str = ""  # one line: rig, units, height and thigh length, translation readings


# --- rig -> H36M -----------------------------------------------------------------------------

def detect_rig(joint_names, where: str = "") -> RigMap:
    """The RigMap whose joints all exist in ``joint_names``; ValueError names what is missing."""
    names = set(joint_names)
    for rig in RIGS:
        if rig.required_joints() <= names:
            return rig
    missing = {rig.name: sorted(rig.required_joints() - names)[:5] for rig in RIGS}
    raise ValueError(f"{where}: unknown BVH rig (root '{joint_names[0]}'); known rigs and the joints "
                     f"this file lacks for them: {missing}")


def mix_matrix(rig: RigMap, joint_names) -> np.ndarray:
    """(17, n) weights W so that h36m = W @ rig joints."""
    weights = np.zeros((H36M.num_joints, len(joint_names)))
    for j, mix in enumerate(rig.joints):
        for name, w in mix:
            weights[j, joint_names.index(name)] += w
    assert np.allclose(weights.sum(1), 1.0), "mixes must be affine (weights sum to 1)"
    return weights


def yup_to_zup(x: np.ndarray) -> np.ndarray:
    """BVH Y-up -> Z-up world by a proper rotation (+90 deg about X): (x, y, z) -> (x, -z, y).

    A rotation, not an axis swap, so left and right are preserved. x: (..., 3)."""
    return np.stack([x[..., 0], -x[..., 2], x[..., 1]], axis=-1)


def resample_linear(x: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample (F, ...) along time by linear interpolation; keeps t = 0 and stays inside the input."""
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"frame rates must be positive, got {fps_in} -> {fps_out}")
    num_out = int(np.floor((x.shape[0] - 1) * fps_out / fps_in + 1e-6)) + 1
    t = np.arange(num_out) * (fps_in / fps_out)  # output times in input-frame units
    i0 = np.minimum(np.floor(t).astype(int), x.shape[0] - 1)
    i1 = np.minimum(i0 + 1, x.shape[0] - 1)
    a = (t - i0).reshape((-1,) + (1,) * (x.ndim - 1))
    return (1 - a) * x[i0] + a * x[i1]


def repair_glitches(poses: np.ndarray, fps: float, max_speed: float, max_seconds: float):
    """Interpolate over out-and-back jumps (see the module docstring); returns (poses, frames fixed).

    poses: (F, J, 3) metres. A jump is a transition where some joint moves faster than
    ``max_speed``; a glitch is the frames between a jump and a later one (at most ``max_seconds``
    apart) across which the pose could have moved without exceeding ``max_speed``."""
    speed = np.linalg.norm(np.diff(poses, axis=0), axis=-1).max(-1) * fps  # (F-1,) fastest joint
    jumps = np.flatnonzero(speed > max_speed)
    max_gap = max(1, int(round(max_seconds * fps)))
    out, fixed, i = poses.copy(), 0, 0
    while i < len(jumps):
        start = jumps[i]  # last good frame before the glitch
        for k in range(i + 1, len(jumps)):
            end = jumps[k] + 1  # first good frame after it
            if end - start - 1 > max_gap:
                break
            if np.linalg.norm(poses[end] - poses[start], axis=-1).max() * fps / (end - start) <= max_speed:
                a = (np.arange(1, end - start) / (end - start))[:, None, None]
                out[start + 1:end] = (1 - a) * poses[start] + a * poses[end]
                fixed, i = fixed + end - start - 1, k
                break
        i += 1
    return out, fixed


def native_fps(frame_time: float) -> float:
    """1 / frame_time, snapped to an integer within 0.1%: files print 1/120 s as 0.008333, and the
    unsnapped 120.005 fps would drop the last output frame of an exact-length trial."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) < 1e-3 * fps else fps


def parse_trial_name(path) -> tuple[str, str]:
    """'005_12.bvh' / '60_01_scaled.bvh' -> ('cmu05', '05_12') / ('cmu60', '60_01')."""
    match = re.match(r"^(\d+)_(\d+)", Path(path).name)
    if not match:
        raise ValueError(f"cannot read subject and trial from '{Path(path).name}'; expected CMU names "
                         "like 'SSS_TT.bvh' or 'SS_TT_scaled.bvh'")
    subject, trial = int(match.group(1)), int(match.group(2))
    return f"cmu{subject:02d}", f"{subject:02d}_{trial:02d}"


def trial_names(path, subject: str | None = None, subject_map=None) -> tuple[str, str]:
    """(subject, action) of a BVH file: ``subject_map`` (file name or stem -> (subject, action or None))
    first, then CMU names (``parse_trial_name``), else the folder name and the file stem; ``subject``
    overrides the subject of the last two."""
    path = Path(path)
    for key in (path.name, path.stem):
        if subject_map and key in subject_map:
            mapped, action = subject_map[key]
            return mapped, action or path.stem
    try:
        cmu_subject, action = parse_trial_name(path)
    except ValueError:
        cmu_subject, action = path.absolute().parent.name or "subject", path.stem
    return subject or cmu_subject, action


def read_subject_csv(path) -> dict[str, tuple[str, str | None]]:
    """CSV rows ``file,subject[,action]`` (a header row starting with 'file' is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"subject CSV not found: {path}")
    out = {}
    for n, row in enumerate(csv.reader(path.read_text().splitlines()), 1):
        row = [c.strip() for c in row]
        if not row or not row[0] or (n == 1 and row[0].lower() == "file"):
            continue
        if len(row) < 2 or not row[1]:
            raise ValueError(f"{path} line {n}: expected 'file,subject[,action]', got {','.join(row)!r}")
        out[row[0]] = (row[1], row[2] if len(row) > 2 and row[2] else None)
    return out


def choose_rig(motion: BvhMotion, where: str, builtin: bool = True) -> RigMap:
    """A built-in rig whose joints all exist (unless ``builtin`` is False), else the guess from joint
    names (``rigs.guess_rig_map``)."""
    names = set(motion.joint_names)
    for rig in RIGS if builtin else ():
        if rig.required_joints() <= names:
            return rig
    try:
        return guess_rig_map(motion, name="guessed")
    except ValueError as err:
        raise ValueError(f"{where}: unknown BVH rig (root '{motion.joint_names[0]}'): {err}") from None


def detect_units(poses: np.ndarray, where: str) -> tuple[str, float]:
    """(unit, metres per unit) that makes the (F, 17, 3) body's estimated height 1.0-2.5 m, nearest 1.7 m."""
    height = stature(bone_lengths(poses))
    fits = [(abs(np.log(height * f / 1.7)), u, f) for u, f in UNITS.items() if 1.0 <= height * f <= 2.5]
    if not fits:
        seen = ", ".join(f"{height * f:.3g} m in {u}" for u, f in UNITS.items())
        raise ValueError(f"{where}: cannot tell the units from the body's height ({seen}); pass --units")
    _, unit, factor = min(fits)
    return unit, factor


def up_to_zup(x: np.ndarray, up: tuple[int, float]) -> np.ndarray:
    """Rotate (..., 3) so that the file's up axis (index, sign) becomes +Z; Y up is :func:`yup_to_zup`."""
    axis, sign = up
    if (axis, sign) == (1, 1.0):
        return yup_to_zup(x)
    rotations = {(2, 1.0): np.eye(3), (2, -1.0): np.diag([1.0, -1.0, -1.0]),
                 (1, -1.0): np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
                 (0, 1.0): np.array([[0, -1.0, 0], [0, 0, -1], [1, 0, 0]]),
                 (0, -1.0): np.array([[0, 1.0, 0], [0, 0, -1], [-1, 0, 0]])}
    return x @ rotations[axis, sign].T


def up_axis(poses: np.ndarray) -> tuple[int, float]:
    """(axis, sign) of the file's up direction: the median ankle -> head-top direction, (F, 17, 3)."""
    direction = np.median(poses[:, 10] - 0.5 * (poses[:, 3] + poses[:, 6]), axis=0)
    axis = int(np.argmax(np.abs(direction)))
    return axis, float(np.sign(direction[axis]) or 1.0)


def load_trial(path, cfg: MocapConfig = MocapConfig(), rig: RigMap | None = None, subject: str | None = None,
               subject_map=None, builtin_rigs: bool = True) -> Trial:
    """BVH file -> Trial in the 17-joint layout: metres, Z up, floor z = 0, root centred, cfg.fps.

    ``rig``: a rig map (``--rig-map``); None picks a built-in rig (if ``builtin_rigs``) or guesses one
    from the joint names."""
    motion = load_bvh(path)
    rig = rig or choose_rig(motion, str(path), builtin_rigs)
    missing = sorted(rig.required_joints() - set(motion.joint_names))
    if missing:
        raise ValueError(f"{path}: rig map '{rig.name}' names joints this file lacks: {missing}")
    modes = translation_modes(motion)
    motion = add_sites(motion, {name: (parent, offset) for name, parent, offset in rig.sites})
    rig_xyz = forward_kinematics(motion, modes + (None,) * len(rig.sites))  # (F, n, 3) file units
    poses = np.einsum("jn,fnc->fjc", mix_matrix(rig, motion.joint_names), rig_xyz)
    skip = rig.skip_frames
    if len(poses) - skip < 2:
        raise ValueError(f"{path}: needs at least {skip + 2} frames, got {motion.num_frames}")
    up = (1, 1.0) if rig.floor == "file" else up_axis(poses)
    unit, to_metres = (cfg.units, UNITS[cfg.units]) if cfg.units else (
        ("rig map", rig.to_metres) if rig.to_metres is not None else detect_units(poses, str(path)))
    poses = up_to_zup(poses[skip:], up) * (to_metres * rig.figure_scale)
    if rig.floor == "feet":  # the lowest ankle, over most frames, stands at the ankle's usual height
        ankle = np.minimum(poses[:, 3, 2], poses[:, 6, 2])
        poses[..., 2] -= np.percentile(ankle, 5) - 0.045 * stature(bone_lengths(poses))
    poses[..., :2] -= poses[:, H36M.root, :2].mean(0)  # scaling about y = 0 keeps the floor at z = 0
    fps = native_fps(motion.frame_time)
    poses, repaired = repair_glitches(poses, fps, cfg.glitch_speed, cfg.glitch_seconds)
    poses = resample_linear(poses, fps, cfg.fps)
    if cfg.max_seconds_per_file is not None:
        poses = poses[: int(round(cfg.max_seconds_per_file * cfg.fps))]
    subject, action = trial_names(path, subject, subject_map)
    lengths = bone_lengths(poses)
    added = [n for n, m in zip(motion.joint_names, modes) if m == "add"]
    info = (f"{Path(path).name}: rig {rig.name}, units {unit}, height {stature(lengths):.2f} m, thigh "
            f"{0.5 * (lengths[2] + lengths[5]):.3f} m" + (f", {skip} reference frame(s) dropped" if skip else "")
            + (f"; position channels read as displacements from OFFSET on {', '.join(added)}" if added else "")
            + _height_note(stature(lengths), unit))
    return Trial(subject, action, poses.astype(np.float32), cfg.fps, repaired, info)


def _height_note(height_m: float, unit: str) -> str:
    """A warning for a stature outside ADULT_HEIGHT_M: a child, or a figure exported at the wrong scale."""
    low, high = ADULT_HEIGHT_M
    if low <= height_m <= high:
        return ""
    return (f"; WARNING: {height_m:.2f} m is outside the adult {low}-{high} m the bundled model was trained on "
            f"(units: {unit}); wrong units: pass --units; an adult exported at another scale (a '_scaled' "
            "figure): set figure_scale in the map --list-joints prints and pass --rig-map")


# --- virtual cameras -------------------------------------------------------------------------

def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on which other files are processed)."""
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


def make_cameras(subject: str, target: np.ndarray, reach_m: float, cfg: MocapConfig) -> list[dict]:
    """``cfg.num_cameras`` camera dicts around ``target`` (world metres), evenly spread in azimuth.

    ``reach_m`` is the subject's farthest horizontal excursion from the target; cameras stay at
    least ``cfg.margin_m`` beyond it so that nobody walks behind (or into) a camera."""
    rng = _rng(cfg.seed, "cameras", subject)
    base = rng.uniform(0, 2 * np.pi)
    cameras = []
    for i in range(cfg.num_cameras):
        cam_id, res_w, res_h, f, c, k, p = H36M_INTRINSICS[i % len(H36M_INTRINSICS)]
        azimuth = base + 2 * np.pi * i / cfg.num_cameras + rng.uniform(-0.25, 0.25) * np.pi / cfg.num_cameras
        distance = max(rng.uniform(*cfg.distance_m), reach_m + cfg.margin_m)
        centre = np.array([target[0] + distance * np.cos(azimuth), target[1] + distance * np.sin(azimuth),
                           rng.uniform(*cfg.height_m)])
        cameras.append({
            "id": f"virtual{i}-{cam_id}", "res_w": res_w, "res_h": res_h,
            "focal_length": list(f), "center": list(c), "radial_distortion": list(k),
            "tangential_distortion": list(p),
            "orientation": look_at_quaternion(centre, target).tolist(),
            "translation": (centre * 1000.0).tolist(),  # millimetres, as in Human3.6M
        })
    return cameras


def detector_noise(keypoints: np.ndarray, rng: np.random.Generator, cfg: MocapConfig) -> np.ndarray:
    """Add seeded Gaussian jitter (per-joint scale) and rare large outliers to (F, 17, 2) pixels."""
    sigma = cfg.noise_px * NOISE_JOINT_SCALE[None, :, None]
    noisy = keypoints + rng.normal(size=keypoints.shape) * sigma
    outlier = rng.random(keypoints.shape[:2]) < cfg.outlier_prob
    noisy[outlier] += rng.normal(size=(int(outlier.sum()), 2)) * cfg.outlier_px
    return noisy.astype(np.float32)


# --- whole dataset ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MocapDataset:
    """Everything the two npz files hold. ``positions_2d`` maps keypoint name ('gt', 'noisy') to
    subject -> action -> [C x (F, 17, 2) pixels]; ``positions_3d`` subject -> action -> (F, 17, 3)."""
    positions_3d: dict
    cameras: dict
    positions_2d: dict
    fps: float
    repaired_frames: dict  # subject -> native-rate frames replaced by repair_glitches
    trial_info: tuple[str, ...] = ()  # per converted file: rig, units, height, thigh (Trial.info)


def find_bvh_files(bvh_dirs) -> list[Path]:
    """All ``*.bvh`` files inside the given folders and their subfolders (a subfolder per performer
    names the subject of non-CMU file names), sorted; errors name the bad folder."""
    files = []
    for folder in map(Path, bvh_dirs):
        if not folder.is_dir():
            raise FileNotFoundError(f"BVH folder not found: {folder}")
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".bvh" and p.is_file())
        if not found:
            raise FileNotFoundError(f"no .bvh files in {folder}; pass folders that contain BVH files")
        files += found
    if not files:
        raise ValueError("no BVH folders given; pass at least one --bvh-dir")
    return files


def _subject_cameras(subject: str, actions: dict, cfg: MocapConfig) -> list[dict]:
    """Cameras aimed at the subject's mean joint position over all its trials."""
    all_xyz = np.concatenate([a.reshape(-1, 3) for a in actions.values()]).astype(np.float64)
    target = all_xyz.mean(0)
    reach = float(np.linalg.norm(all_xyz[:, :2] - target[:2], axis=-1).max())
    return make_cameras(subject, target, reach, cfg)


def build_dataset(bvh_files, cfg: MocapConfig = MocapConfig(), rig: RigMap | None = None,
                  subject: str | None = None, subject_map=None, builtin_rigs: bool = True) -> MocapDataset:
    """Convert BVH files into 3D poses, per-subject cameras and clean (+ noisy) 2D keypoints.

    ``rig``/``subject``/``subject_map``: see :func:`load_trial` and :func:`trial_names`."""
    positions_3d: dict = {}
    repaired: dict = {}
    info = []
    for path in bvh_files:
        trial = load_trial(path, cfg, rig, subject, subject_map, builtin_rigs)
        info.append(trial.info)
        if trial.action in positions_3d.get(trial.subject, {}):
            raise ValueError(f"{path}: trial {trial.action} of {trial.subject} appears twice")
        positions_3d.setdefault(trial.subject, {})[trial.action] = trial.positions
        repaired[trial.subject] = repaired.get(trial.subject, 0) + trial.repaired_frames
    positions_3d = {s: dict(sorted(a.items())) for s, a in sorted(positions_3d.items())}
    cameras = {s: _subject_cameras(s, actions, cfg) for s, actions in positions_3d.items()}
    gt = {s: {a: [project_camera(x, cam) for cam in cameras[s]] for a, x in actions.items()}
          for s, actions in positions_3d.items()}
    positions_2d = {"gt": gt}
    if cfg.noise_px > 0:
        positions_2d["noisy"] = {
            s: {a: [detector_noise(kp, _rng(cfg.seed, "noise", s, a, c), cfg) for c, kp in enumerate(views)]
                for a, views in actions.items()} for s, actions in gt.items()}
    return MocapDataset(positions_3d, cameras, positions_2d, cfg.fps, repaired, tuple(info))


def write_dataset(dataset: MocapDataset, out_dir, name: str) -> list[Path]:
    """Write the 3D file and one 2D file per keypoint set; returns the paths."""
    paths = [write_custom_3d(out_dir, name, dataset.positions_3d, dataset.cameras, dataset.fps)]
    for kp, positions_2d in dataset.positions_2d.items():
        paths.append(write_custom_2d(out_dir, name, kp, positions_2d))
    return paths


# --- sanity checks ---------------------------------------------------------------------------

BONES = {"thigh": (1, 2), "shank": (2, 3), "hip_width": (1, 4), "upper_arm": (14, 15),
         "forearm": (15, 16), "shoulder_width": (11, 14), "hip_to_thorax": (0, 8), "thorax_to_head": (8, 10)}


def sanity_stats(positions: np.ndarray) -> dict[str, float]:
    """Plausibility numbers for (F, 17, 3) Z-up world poses.

    Median bone lengths (m); ``upright``: share of frames with the head above the pelvis;
    ``left_is_left``: share of frames where the H36M left hip lies on the subject's left, the
    facing direction being the horizontal direction from the thorax to the nose-level joint 9."""
    stats = {k: float(np.median(np.linalg.norm(positions[:, a] - positions[:, b], axis=-1)))
             for k, (a, b) in BONES.items()}
    stats["upright"] = float(np.mean(positions[:, 10, 2] > positions[:, 0, 2]))
    facing = positions[:, 9] - positions[:, 8]
    facing[:, 2] = 0
    left = np.cross([0.0, 0.0, 1.0], facing)  # up x forward = left in a right-handed world
    stats["left_is_left"] = float(np.mean(np.sum((positions[:, 4] - positions[:, 1]) * left, -1) > 0))
    return stats


def inside_image_fraction(keypoints: np.ndarray, camera: dict) -> float:
    """Share of (F, J, 2) pixel keypoints inside the camera's image."""
    u, v = keypoints[..., 0], keypoints[..., 1]
    return float(np.mean((u >= 0) & (u < camera["res_w"]) & (v >= 0) & (v < camera["res_h"])))
