"""2D keypoint layouts of the common detectors and their one mapping to the 17 Human3.6M joints.

No torch here: `sample.py` reads and checks its input before the model library is imported.

Shape legend: J source keypoints, 17 target joints; ``...`` any leading axes (frames, people).

Layouts (``--layout`` names; the number of keypoints picks one when the file does not say):

* ``h36m`` (17): Human3.6M order (the model's input order).
* ``coco`` (17): COCO keypoints: AlphaPose/MMPose/Detectron2/YOLO COCO models, VideoPose3D's custom npz.
* ``halpe26`` (26): AlphaPose's default Halpe body model: COCO-17, then Head(top) 17, Neck 18, Hip
  (pelvis) 19 and six foot points.
* ``halpe136`` (136): AlphaPose's Halpe full body: the 26 body points above, then face and hands.
* ``wholebody133`` (133): COCO-WholeBody (MMPose RTMW/DWPose, rtmlib Wholebody): COCO-17, then feet, face, hands.
* ``body25`` (25): OpenPose's default BODY_25: Nose, Neck, R arm, L arm, MidHip, R leg, L leg, eyes,
  ears, six foot points.
* ``coco18`` (18): OpenPose's COCO model: Nose, Neck, R arm, L arm, R leg, L leg, eyes, ears.

Each target joint is the first *alternative* whose sources are all present: a weighted mean of
source keypoints (a midpoint = two sources of weight 0.5). Its confidence is the smallest source
confidence. The derived joints follow the field: Halpe's own Head/Neck/Hip as MotionBERT's
``halpe2h36m`` uses them (thorax = neck, spine = mid(neck, hip)); OpenPose's Neck/MidHip likewise;
for COCO, which has neither, pelvis = mid-hips, thorax = mid-shoulders, spine = mid(pelvis, thorax)
and head = mid-eyes (mid-ears when an eye is missing). `mapping_table()` renders the table that
docs/inputs.md shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

H36M_NAMES = ("Hip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax",
              "Neck", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist")
COCO_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
              "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
              "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
_FEET = ("left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe", "left_heel", "right_heel")
HALPE26_NAMES = COCO_NAMES + ("head", "neck", "hip") + _FEET
BODY25_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
COCO18_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")

Source = tuple[tuple[int, float], ...]   # (keypoint index, weight) pairs, weights sum to 1


def _one(i: int) -> tuple[Source, ...]:
    return (((i, 1.0),),)


def _mid(a: int, b: int) -> Source:
    return ((a, 0.5), (b, 0.5))


# COCO-17 indices of the joints COCO-derived layouts share.
_COCO_TO_H36M: tuple[tuple[Source, ...], ...] = (
    (_mid(11, 12),), _one(12), _one(14), _one(16), _one(11), _one(13), _one(15),
    (((5, .25), (6, .25), (11, .25), (12, .25)),),          # spine = mid(pelvis, thorax)
    (_mid(5, 6),), _one(0), (_mid(1, 2), _mid(3, 4)),        # head: eyes, else ears
    _one(5), _one(7), _one(9), _one(6), _one(8), _one(10))
_HALPE_TO_H36M = ((((19, 1.0),), _mid(11, 12)),) + _COCO_TO_H36M[1:7] + (
    (_mid(18, 19), _COCO_TO_H36M[7][0]), (((18, 1.0),), _mid(5, 6)), _one(0),
    (((17, 1.0),), _mid(1, 2), _mid(3, 4))) + _COCO_TO_H36M[11:]
_BODY25_TO_H36M = (
    (((8, 1.0),), _mid(9, 12)), _one(9), _one(10), _one(11), _one(12), _one(13), _one(14),
    (_mid(1, 8),), (((1, 1.0),), _mid(2, 5)), _one(0), (_mid(15, 16), _mid(17, 18)),
    _one(5), _one(6), _one(7), _one(2), _one(3), _one(4))
_COCO18_TO_H36M = (
    (_mid(8, 11),), _one(8), _one(9), _one(10), _one(11), _one(12), _one(13),
    (((1, .5), (8, .25), (11, .25)),), (((1, 1.0),), _mid(2, 5)), _one(0), (_mid(14, 15), _mid(16, 17)),
    _one(5), _one(6), _one(7), _one(2), _one(3), _one(4))


@dataclass(frozen=True)
class Layout:
    name: str
    joint_names: tuple[str, ...]
    to_h36m: tuple[tuple[Source, ...], ...]        # per H36M joint: alternatives, first complete one wins
    to_coco: tuple[int, ...] | None                 # source index of each COCO-17 keypoint (None: cannot)
    produced_by: str                                # who writes it (for messages and --help)

    @property
    def num_keypoints(self) -> int:
        return len(self.joint_names)


_BODY25_TO_COCO = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)
_COCO18_TO_COCO = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
_FIRST17 = tuple(range(17))

LAYOUTS: dict[str, Layout] = {
    "h36m": Layout("h36m", H36M_NAMES, tuple(_one(j) for j in range(17)), None, "Human3.6M order"),
    "coco": Layout("coco", COCO_NAMES, _COCO_TO_H36M, _FIRST17, "COCO-17 models (AlphaPose, MMPose, Detectron2)"),
    "halpe26": Layout("halpe26", HALPE26_NAMES, _HALPE_TO_H36M, _FIRST17, "AlphaPose Halpe-26 (its default)"),
    "halpe136": Layout("halpe136", HALPE26_NAMES + tuple(f"face_hand_{i}" for i in range(110)), _HALPE_TO_H36M,
                       _FIRST17, "AlphaPose Halpe-136 full body"),
    "wholebody133": Layout("wholebody133", COCO_NAMES + _FEET + tuple(f"face_hand_{i}" for i in range(110)),
                           _COCO_TO_H36M, _FIRST17, "COCO-WholeBody (MMPose RTMW/DWPose, rtmlib)"),
    "body25": Layout("body25", BODY25_NAMES, _BODY25_TO_H36M, _BODY25_TO_COCO, "OpenPose BODY_25 (its default)"),
    "coco18": Layout("coco18", COCO18_NAMES, _COCO18_TO_H36M, _COCO18_TO_COCO, "OpenPose COCO-18"),
}
MODEL_LAYOUTS = ("h36m", "coco")     # the orders a model reads


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout '{name}'; use one of: {', '.join(LAYOUTS)} "
                         "(coco = the 17 COCO keypoints of most 2D detectors)")
    return LAYOUTS[name]


def layouts_with(num_keypoints: int) -> list[str]:
    """Names of the layouts with this many keypoints (17 -> h36m and coco)."""
    return [n for n, lay in LAYOUTS.items() if lay.num_keypoints == num_keypoints]


def _gather(xy: np.ndarray, scores: np.ndarray, alternatives: tuple[Source, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One target joint: (..., 2), (...) from xy (..., J, 2) with NaN = missing and scores (..., J)."""
    out = np.full(xy.shape[:-2] + (2,), np.nan)
    conf = np.full(xy.shape[:-2], np.nan)
    for source in reversed(alternatives):  # earlier alternatives overwrite later ones where complete
        idx = [i for i, _ in source]
        w = np.array([w for _, w in source])
        value = np.einsum("...jc,j->...c", xy[..., idx, :], w)
        ok = np.isfinite(value).all(axis=-1)
        out = np.where(ok[..., None], value, out)
        conf = np.where(ok, scores[..., idx].min(axis=-1), conf)
    return out, conf


def convert_layout(xy: np.ndarray, scores: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """2D keypoints xy (..., J, 2) (NaN = missing) and scores (..., J) from layout ``src`` to ``dst``
    (h36m or coco) by the table in the module docstring; a missing source makes the joint missing."""
    if src == dst:
        return xy, scores
    lay = get_layout(src)
    if xy.shape[-2] != lay.num_keypoints:
        raise ValueError(f"layout '{src}' has {lay.num_keypoints} keypoints, got {xy.shape[-2]}")
    if dst == "h36m":
        parts = [_gather(xy, scores, alts) for alts in lay.to_h36m]
        return np.stack([p for p, _ in parts], axis=-2), np.stack([c for _, c in parts], axis=-1)
    if dst == "coco" and lay.to_coco is not None:
        idx = list(lay.to_coco)
        return xy[..., idx, :], scores[..., idx]
    raise ValueError(f"keypoints in layout '{src}' cannot be converted to '{dst}', the layout this model "
                     f"reads; give '{dst}' keypoints or use a checkpoint trained on '{src}' input")


def _describe(source: Source, names: tuple[str, ...]) -> str:
    if len(source) == 1:
        return f"{names[source[0][0]]} {source[0][0]}"
    if len(source) == 2 and source[0][1] == source[1][1]:
        return f"mid({names[source[0][0]]} {source[0][0]}, {names[source[1][0]]} {source[1][0]})"
    return " + ".join(f"{w:g}·{names[i]} {i}" for i, w in source)


def mapping_table() -> str:
    """The Markdown table of every layout's mapping to the 17 H36M joints ("a; else b" = fallback)."""
    shown = ("coco", "halpe26", "body25", "coco18")
    lines = ["| H36M joint | " + " | ".join(f"{n} ({LAYOUTS[n].num_keypoints})" for n in shown) + " |",
             "|---" * (len(shown) + 1) + "|"]
    for j, joint in enumerate(H36M_NAMES):
        cells = ["; else ".join(_describe(s, LAYOUTS[n].joint_names) for s in LAYOUTS[n].to_h36m[j]) for n in shown]
        lines.append(f"| {j} {joint} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
