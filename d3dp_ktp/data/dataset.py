"""The common in-memory pose dataset (VideoPose3D style) and the preprocessing all loaders share.

A *video* is one (subject, action, camera) triple (docs/method.md §6.3 step 5). Every loader turns its file
format into the same representation, with units and normalisation applied once, here:

* ``keypoints_2d``: (F, J2, 2) float32 normalised screen coordinates (u/w*2-1, v/w*2-h/w).
* ``positions_3d``: (F, J, 3) float32 camera-space metres. Joints other than the root are
  root-relative; the root column holds the absolute root trajectory (VideoPose3D convention).
* ``camera``: the (9,) normalised intrinsics [f_x, f_y, c_x, c_y, k1, k2, k3, p1, p2] or None.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence, Union

import numpy as np

from d3dp_ktp.camera import normalize_screen_coordinates, world_to_camera
from d3dp_ktp.skeleton import SKELETONS, Skeleton

ActionFilter = Union[str, Sequence[str], None]  # "*" = all, or prefixes ("Walk,Jog")


@dataclass(frozen=True, eq=False)
class CameraInfo:
    """One camera. Intrinsics are normalised by ``res_w`` (docs/method.md §5.3); extrinsics may be absent."""
    id: str
    res_w: int
    res_h: int
    intrinsics: np.ndarray | None = None   # (9,) float32, normalised units
    orientation: np.ndarray | None = None  # (4,) float32 camera->world quaternion (w, x, y, z)
    translation: np.ndarray | None = None  # (3,) float32 camera centre in world metres

    @property
    def has_extrinsics(self) -> bool:
        return self.orientation is not None and self.translation is not None


@dataclass(eq=False)
class Video:
    """One (subject, action, camera) sequence; see the module docstring for units."""
    subject: str
    action: str
    camera_index: int
    keypoints_2d: np.ndarray               # (F, J2, 2)
    positions_3d: np.ndarray | None        # (F, J, 3), root column = absolute trajectory
    cam: CameraInfo
    valid: np.ndarray | None = None        # (F,) bool, 3DHP test only
    activity: np.ndarray | None = None     # (F,) int 1..7, 3DHP annot_data.mat only
    fps: float | None = None

    def __post_init__(self):
        kp = self.keypoints_2d
        if kp.ndim != 3 or kp.shape[-1] != 2:
            raise ValueError(f"{self.key}: keypoints_2d must be (F, J, 2), got {kp.shape}")
        frames = kp.shape[0]
        if frames < 1:
            raise ValueError(f"{self.key}: a video needs at least one frame")
        if self.positions_3d is not None and (self.positions_3d.ndim != 3 or self.positions_3d.shape[0] != frames
                                              or self.positions_3d.shape[-1] != 3):
            raise ValueError(f"{self.key}: positions_3d must be ({frames}, J, 3), got {self.positions_3d.shape}")
        for name in ("valid", "activity"):
            extra = getattr(self, name)
            if extra is not None and extra.shape != (frames,):
                raise ValueError(f"{self.key}: {name} must be ({frames},), got {extra.shape}")

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.subject, self.action, self.camera_index)

    @property
    def num_frames(self) -> int:
        return self.keypoints_2d.shape[0]

    @property
    def camera(self) -> np.ndarray | None:
        return self.cam.intrinsics

    @property
    def res_w(self) -> int:
        return self.cam.res_w

    @property
    def res_h(self) -> int:
        return self.cam.res_h

    @property
    def action_group(self) -> str:
        return action_group(self.action)


@dataclass(eq=False)
class PoseDataset:
    """Videos plus the layouts needed to flip them: the 3D skeleton and the 2D keypoint symmetry."""
    name: str
    skeleton: Skeleton
    keypoints_layout: str
    keypoints_symmetry: tuple[tuple[int, ...], tuple[int, ...]]
    videos: tuple[Video, ...]
    fps: float | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[Video]:
        return iter(self.videos)

    def __getitem__(self, subject: str) -> dict[str, list[Video]]:
        """VideoPose3D-style access: ``dataset[subject][action]`` -> the videos of every camera."""
        if subject not in self.subjects:
            raise KeyError(f"subject '{subject}' not in dataset; subjects: {', '.join(self.subjects)}")
        out: dict[str, list[Video]] = {}
        for v in self.videos:
            if v.subject == subject:
                out.setdefault(v.action, []).append(v)
        return out

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.subject for v in self.videos))

    def actions(self, subject: str | None = None) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.action for v in self.videos if subject in (None, v.subject)))

    @property
    def kps_left(self) -> tuple[int, ...]:
        return self.keypoints_symmetry[0]

    @property
    def kps_right(self) -> tuple[int, ...]:
        return self.keypoints_symmetry[1]

    @property
    def num_keypoints(self) -> int:
        return self.videos[0].keypoints_2d.shape[1] if self.videos else 0

    @property
    def has_3d(self) -> bool:
        return all(v.positions_3d is not None for v in self.videos)

    def select(self, subjects: Sequence[str] | None = None, actions: ActionFilter = "*") -> "PoseDataset":
        """Keep the given subjects (all if None; unknown ones are a ValueError) and matching actions."""
        if subjects is not None:
            check_subjects(subjects, self.subjects, self.name)
        filters = parse_action_filter(actions)
        order = {s: i for i, s in enumerate(subjects)} if subjects is not None else None
        kept = [v for v in self.videos
                if (order is None or v.subject in order) and action_matches(v.action, filters)]
        if order is not None:
            kept.sort(key=lambda v: order[v.subject])  # stable: action/camera order is kept
        if not kept:
            raise ValueError(f"{self.name}: no video matches subjects={subjects} actions={actions!r}; "
                             f"available actions: {', '.join(self.actions())}")
        return replace(self, videos=tuple(kept))

    def action_groups(self) -> dict[str, list[Video]]:
        """Videos pooled by action group (text before the first space, docs/method.md §6.4)."""
        groups: dict[str, list[Video]] = {}
        for v in self.videos:
            groups.setdefault(v.action_group, []).append(v)
        return groups


# --- subject / action selection (docs/method.md §6.4) ---------------------------------------------------

def action_group(action: str) -> str:
    """'Directions 1' -> 'Directions' (evaluation pools actions by the text before the first space)."""
    return action.split(" ")[0]


def parse_action_filter(actions: ActionFilter) -> tuple[str, ...] | None:
    """'*' or None -> None (all); 'Walk,Jog' or ('Walk', 'Jog') -> prefixes."""
    if actions is None:
        return None
    if isinstance(actions, str):
        actions = actions.split(",")
    prefixes = tuple(a.strip() for a in actions if a.strip())
    if not prefixes or "*" in prefixes:
        return None
    return prefixes


def action_matches(action: str, prefixes: tuple[str, ...] | None) -> bool:
    """The official ``-a`` filter is a prefix match ('Walk' keeps 'Walking 1' and 'WalkDog')."""
    return prefixes is None or any(action.startswith(p) for p in prefixes)


def check_subjects(requested: Sequence[str], available: Sequence[str], where: str) -> None:
    missing = [s for s in requested if s not in available]
    if missing:
        raise ValueError(f"{where}: subjects {missing} are not in the data; available subjects: "
                         f"{', '.join(available)}. Pass --subjects (scripts) or set data.subjects_train/subjects_test (configs).")


# --- shared preprocessing (docs/method.md §6.3) ---------------------------------------------------------

def root_relative(positions: np.ndarray, root: int) -> np.ndarray:
    """(F, J, 3) -> joints != root minus root; the root column keeps the absolute trajectory."""
    out = np.array(positions, dtype=np.float32, copy=True)
    others = [j for j in range(out.shape[1]) if j != root]
    out[:, others] -= out[:, root:root + 1]
    return out


def camera_space(world: np.ndarray, cam: CameraInfo, root: int) -> np.ndarray:
    """World metres (F, J, 3) -> camera-space, root-relative with absolute trajectory (docs/method.md §6.3 step 2)."""
    if not cam.has_extrinsics:
        raise ValueError(f"camera {cam.id} has no extrinsics, so world 3D cannot be moved into it")
    return root_relative(world_to_camera(world.astype(np.float32), cam.orientation, cam.translation), root)


def normalize_2d(pixels: np.ndarray, cam: CameraInfo) -> np.ndarray:
    """(F, J, >=2) pixels -> (F, J, 2) float32 normalised; extra channels (scores) are dropped."""
    return normalize_screen_coordinates(np.asarray(pixels[..., :2], dtype=np.float32), cam.res_w, cam.res_h)


def validate_symmetry(symmetry, num_keypoints: int, where: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    try:
        left, right = (tuple(int(j) for j in side) for side in symmetry)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoints_symmetry must be [left_list, right_list], got {symmetry!r}") from None
    if len(left) != len(right) or any(not 0 <= j < num_keypoints for j in left + right):
        raise ValueError(f"{where}: keypoints_symmetry {symmetry!r} does not fit {num_keypoints} keypoints")
    return left, right


def read_keypoint_metadata(npz: dict, path, default_layout: str):
    """(layout_name, symmetry) from a 2D file's ``metadata``; files without ``layout_name`` use the default."""
    if "metadata" not in npz or "positions_2d" not in npz:
        raise ValueError(f"{path} must contain 'positions_2d' and 'metadata' (VideoPose3D 2D format)")
    meta = npz["metadata"]
    if "keypoints_symmetry" not in meta:
        raise ValueError(f"{path}: metadata lacks 'keypoints_symmetry' (the [left, right] keypoint lists)")
    return meta.get("layout_name", default_layout), meta["keypoints_symmetry"]


@dataclass(frozen=True)
class Sources:
    """Raw VideoPose3D-format content: world 3D, pixel 2D and per-subject cameras."""
    positions_3d: Mapping[str, Mapping[str, np.ndarray]]       # subject -> action -> (F, J, 3) world m
    positions_2d: Mapping[str, Mapping[str, Sequence[np.ndarray]]]  # subject -> action -> [cam](F, J2, 2+) px
    cameras: Mapping[str, Sequence[CameraInfo]]                 # subject -> cameras (index = 2D list index)
    num_joints: int                                             # J of the 3D layout
    file_3d: str
    file_2d: str


def assemble_videos(src: Sources, subjects: Sequence[str], actions: ActionFilter, root: int,
                    fps: float | None) -> list[Video]:
    """docs/method.md §6.3: move 3D into each camera, check/truncate 2D to the 3D length, normalise 2D.

    Subjects with 3D must appear in the 2D file with every action and camera; subjects present only
    in the 2D file (e.g. H36M S2-S4 in the CPN file) give videos with ``positions_3d=None``.
    """
    check_subjects(subjects, sorted(set(src.positions_3d) | set(src.positions_2d)), src.file_3d)
    filters = parse_action_filter(actions)
    videos = []
    for subject in subjects:
        if subject not in src.cameras:
            raise ValueError(f"no cameras are defined for subject '{subject}'")
        if subject in src.positions_3d:
            videos += _subject_videos_3d(src, subject, filters, root, fps)
        else:
            videos += _subject_videos_2d_only(src, subject, filters, fps)
    return videos


def finish_dataset(name: str, skeleton: Skeleton, layout: str, symmetry, videos: Sequence[Video],
                   fps: float | None, file_2d: str) -> PoseDataset:
    """Validate the 2D layout against the loaded keypoints and build the PoseDataset."""
    if not videos:
        raise ValueError(f"{name}: no videos were selected from {file_2d}; check subjects and actions")
    num_kp = videos[0].keypoints_2d.shape[1]
    if any(v.keypoints_2d.shape[1] != num_kp for v in videos):
        raise ValueError(f"{file_2d}: videos have different keypoint counts")
    if layout in SKELETONS and SKELETONS[layout].num_joints != num_kp:
        raise ValueError(f"{file_2d}: layout '{layout}' has {SKELETONS[layout].num_joints} keypoints, "
                         f"the arrays have {num_kp}")
    return PoseDataset(name, skeleton, layout, validate_symmetry(symmetry, num_kp, file_2d), tuple(videos), fps)


def _subject_videos_3d(src: Sources, subject: str, filters, root: int, fps) -> list[Video]:
    if subject not in src.positions_2d:
        raise ValueError(f"subject '{subject}' has 3D in {src.file_3d} but no 2D keypoints in {src.file_2d}")
    cams = src.cameras[subject]
    videos = []
    for action, world in src.positions_3d[subject].items():
        if not action_matches(action, filters):
            continue
        if action not in src.positions_2d[subject]:
            raise ValueError(f"{subject}/{action} is in {src.file_3d} but missing from {src.file_2d}")
        kps = src.positions_2d[subject][action]
        if len(kps) != len(cams):
            raise ValueError(f"{subject}/{action}: {src.file_2d} has {len(kps)} cameras, expected {len(cams)}")
        if world.ndim != 3 or world.shape[1:] != (src.num_joints, 3):
            raise ValueError(f"{subject}/{action} in {src.file_3d}: expected (F, {src.num_joints}, 3) positions, "
                             f"got {world.shape}")
        for c, (cam, kp) in enumerate(zip(cams, kps)):
            frames = world.shape[0]
            if kp.shape[0] < frames:
                raise ValueError(f"{subject}/{action} camera {c}: 2D has {kp.shape[0]} frames but 3D has "
                                 f"{frames}; the 2D file {src.file_2d} must cover every 3D frame")
            # Some videos have extra frames at the end; the mocap length is authoritative (docs/method.md §6.3 step 3).
            videos.append(Video(subject, action, c, normalize_2d(kp[:frames], cam), camera_space(world, cam, root),
                                cam, fps=fps))
    return videos


def _subject_videos_2d_only(src: Sources, subject: str, filters, fps) -> list[Video]:
    cams = src.cameras[subject]
    videos = []
    for action, kps in src.positions_2d[subject].items():
        if not action_matches(action, filters):
            continue
        if len(kps) > len(cams):
            raise ValueError(f"{subject}/{action}: {src.file_2d} has {len(kps)} cameras, only {len(cams)} known")
        videos += [Video(subject, action, c, normalize_2d(kp, cams[c]), None, cams[c], fps=fps)
                   for c, kp in enumerate(kps)]
    return videos
