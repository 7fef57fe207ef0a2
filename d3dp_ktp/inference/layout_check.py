"""No silent garbage: do the keypoints look like the layout they are read as, and are they pixels?

Shape legend: F frames, J keypoints, C values per keypoint (x, y[, score]).

The two 17-keypoint layouts cannot be told apart by their count, and a wrong one lifts to
confident nonsense. Per frame (our choice of tests, all relative to the body's own torso, so any
image size, distance or in-plane rotation passes):

* **COCO**: at least three of the five face points (nose, eyes, ears) are present, they lie within
  0.45 torso lengths of their centroid, and the centroid is above the shoulders along the body's
  hip -> shoulder axis.
* **H36M**: the pelvis (0) is within 0.35 torso lengths (pelvis -> thorax) of the hips' midpoint,
  the thorax (8) as close to the shoulders' midpoint, the head (10) is above the thorax, and a
  thigh (hip -> knee) is longer than 0.3 torso lengths.

A layout "fits" the frames where its test passes. Data read as L whose frames fit L in fewer than
half of the frames but fit the other layout in more than half are refused with a message that
names the other layout; data that fit L in under 10% of the frames are refused as not a body in L's
order. **Left/right**: in the H36M mapping, the left shoulder and the left hip must lie on the same
side of the body axis in at least 30% of the frames where both pairs are apart (a person is not
twisted by 180 degrees for long). `--force` skips these checks.

**Pixels**: coordinates that all lie in [0, 1] are normalised; they are converted to pixels with
the image size when it is known, otherwise refused, as are coordinates within [-1, 1].
"""
from __future__ import annotations

import warnings

import numpy as np

from d3dp_ktp.inference.layouts import convert_layout

FACE_SPREAD, JOINT_NEAR, THIGH_MIN = 0.45, 0.35, 0.3
FIT, MISFIT, LEFT_RIGHT_MIN = 0.5, 0.1, 0.3


def _xy(kp: np.ndarray, min_score: float = 0.0) -> np.ndarray:
    """(F, J, C) -> (F, J, 2) with NaN where missing (non-finite, or score <= 0 / below min_score)."""
    xy = kp[..., :2].astype(np.float64).copy()
    if kp.shape[-1] == 3:
        xy[(kp[..., 2] <= 0) | (kp[..., 2] < min_score) | ~np.isfinite(kp[..., 2])] = np.nan
    return xy


def _axis(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Torso length (F,) and unit up vector (F, 2) from 'low' (hips) to 'high' (shoulders)."""
    v = high - low
    length = np.linalg.norm(v, axis=-1)
    return length, v / np.where(length > 0, length, np.nan)[..., None]


def coco_fit(xy: np.ndarray) -> np.ndarray:
    """Per frame: True/False where the COCO test can be made, NaN where not. xy (F, 17, 2)."""
    sh, hp = xy[:, [5, 6]].mean(1), xy[:, [11, 12]].mean(1)
    torso, up = _axis(hp, sh)
    face = xy[:, :5]
    enough = np.isfinite(face).all(-1).sum(-1) >= 3
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without a face: all-NaN means, expected
        centre = np.nanmean(face, axis=1)
        spread = np.nanmax(np.linalg.norm(face - centre[:, None], axis=-1), axis=1)
        ok = (spread < FACE_SPREAD * torso) & (((centre - sh) * up).sum(-1) > 0)
    usable = enough & np.isfinite(torso) & (torso > 0)
    return np.where(usable, ok, np.nan)


def h36m_fit(xy: np.ndarray) -> np.ndarray:
    """Per frame: True/False where the H36M test can be made, NaN where not. xy (F, 17, 2)."""
    torso, up = _axis(xy[:, 0], xy[:, 8])
    near = lambda a, b: np.linalg.norm(a - b, axis=-1) < JOINT_NEAR * torso  # noqa: E731
    thigh = np.fmax(np.linalg.norm(xy[:, 1] - xy[:, 2], axis=-1), np.linalg.norm(xy[:, 4] - xy[:, 5], axis=-1))
    with np.errstate(invalid="ignore"):
        ok = (near(xy[:, 0], xy[:, [1, 4]].mean(1)) & near(xy[:, 8], xy[:, [11, 14]].mean(1))
              & (((xy[:, 10] - xy[:, 8]) * up).sum(-1) > 0) & (thigh > THIGH_MIN * torso))
    usable = np.isfinite(xy[:, [0, 1, 4, 8, 10, 11, 14]]).all((-1, -2)) & np.isfinite(thigh) & (torso > 0)
    return np.where(usable, ok, np.nan)


def fit_fractions(kp: np.ndarray, min_score: float = 0.0) -> dict[str, tuple[float, int]]:
    """{layout: (fraction of testable frames that fit, number of testable frames)} for h36m and coco."""
    xy = _xy(kp, min_score)
    out = {}
    for name, test in (("coco", coco_fit), ("h36m", h36m_fit)):
        r = test(xy)
        n = int(np.isfinite(r).sum())
        out[name] = (float(np.nansum(r) / n) if n else float("nan"), n)
    return out


def guess_layout(kp: np.ndarray, min_score: float = 0.0) -> str | None:
    """'coco' or 'h36m' when the 17 keypoints clearly fit one of them, else None."""
    fits = fit_fractions(kp, min_score)
    (c, nc), (h, nh) = fits["coco"], fits["h36m"]
    c, h = (c if nc else 0.0), (h if nh else 0.0)
    if c >= FIT and c > h:
        return "coco"
    if h >= FIT and h > c:
        return "h36m"
    return None


def check_layout_fits(kp: np.ndarray, layout: str, source: str, min_score: float = 0.0) -> None:
    """Raise ValueError when 17 keypoints read as ``layout`` look like the other 17-keypoint layout or
    like no body at all; ``source`` says who chose the layout (for the message)."""
    if kp.shape[1] != 17 or layout not in ("coco", "h36m"):
        return
    fits = fit_fractions(kp, min_score)
    other = "h36m" if layout == "coco" else "coco"
    (mine, n_mine), (theirs, n_theirs) = fits[layout], fits[other]
    if not n_mine:
        return  # nothing testable (e.g. no face points ever): no evidence either way
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    if mine < FIT and n_theirs and theirs > FIT:
        raise ValueError(f"the keypoints are read as '{layout}' ({source}) but they look like '{other}': "
                         f"{pct(theirs)} of the frames fit the {other} order, {pct(mine)} the {layout} order; "
                         f"pass --layout {other} (or --force to lift them as '{layout}' anyway)")
    if mine < MISFIT:
        raise ValueError(f"the keypoints are read as '{layout}' ({source}) but only {pct(mine)} of {n_mine} frames "
                         f"look like a body in that order (nor do they fit '{other}': {pct(theirs) if n_theirs else 'n/a'});"
                         f" check the file and --layout, or pass --force to lift them anyway")


def check_left_right(kp: np.ndarray, layout: str, source: str, min_score: float = 0.0) -> None:
    """Raise ValueError when the left shoulder and the left hip lie on opposite sides of the body in
    most frames (a layout whose arms or legs are mirrored)."""
    xy = _xy(kp, min_score)
    h36m, _ = convert_layout(xy, np.ones(xy.shape[:2]), layout, "h36m")
    torso, up = _axis(h36m[:, 0], h36m[:, 8])
    cross = lambda v: up[:, 0] * v[:, 1] - up[:, 1] * v[:, 0]  # noqa: E731
    sh, hp = h36m[:, 11] - h36m[:, 14], h36m[:, 4] - h36m[:, 1]
    with np.errstate(invalid="ignore"):
        apart = (np.abs(cross(sh)) > 0.2 * torso) & (np.abs(cross(hp)) > 0.1 * torso)
        same = np.sign(cross(sh)) == np.sign(cross(hp))
    n = int(apart.sum())
    if n >= 5 and same[apart].mean() < LEFT_RIGHT_MIN:
        raise ValueError(f"the keypoints read as '{layout}' ({source}) have the left shoulder and the left hip on "
                         f"opposite sides of the body in {100 * (1 - same[apart].mean()):.0f}% of {n} frames: left "
                         "and right are mirrored between arms and legs, so this is not that keypoint order; fix "
                         "--layout, or pass --force to lift them anyway")


def to_pixels(kp: np.ndarray, width: float | None, height: float | None, where: str,
              min_score: float = 0.0) -> tuple[np.ndarray, str | None]:
    """Keypoints (F, J, C) in pixels, and a note when they were converted from 0-1 coordinates.

    Raises ValueError for normalised coordinates that cannot be converted (no image size, or -1..1)."""
    vals = _xy(kp, min_score)
    vals = vals[np.isfinite(vals)]
    if not vals.size or np.abs(vals).max() > 1.5:
        return kp, None
    if vals.min() >= -0.05 and vals.max() <= 1.05:
        if not width or not height:
            raise ValueError(f"{where}: every coordinate is between 0 and 1, so the keypoints are normalised to the "
                             "image size; pass --width and --height (the video's size in pixels) to convert them")
        out = kp.copy()
        out[..., 0] *= width
        out[..., 1] *= height
        return out, f"coordinates are in 0-1: converted to pixels with the image size {width:g} x {height:g}"
    raise ValueError(f"{where}: every coordinate is between -1 and 1, so the keypoints are normalised (e.g. OpenPose "
                     "--keypoint_scale 3 or 4); write them in pixels (OpenPose's default --keypoint_scale 0)")

