"""The input half of `sample.py`: file -> people -> checked one-person keypoint sequences (no torch).

1. `read_detections` (any format, docs/inputs.md), 2. `build_tracks` (one track per person),
3. pick the main person, ``person``, or every track of at least ``min_frames`` frames,
4. resolve layout and image size (flags over the file over the format; 17 unlabelled keypoints
   are recognised as COCO or H36M from their content), convert 0-1 coordinates to pixels,
5. refuse keypoints that do not look like their layout (`layout_check`) unless ``force``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from d3dp_ktp.inference.formats import Detections, read_detections
from d3dp_ktp.inference.io import KeypointFile, person_keypoints, pick_track
from d3dp_ktp.inference.layout_check import check_layout_fits, check_left_right, guess_layout, to_pixels
from d3dp_ktp.inference.layouts import get_layout, layouts_with
from d3dp_ktp.inference.tracking import Track, TrackingConfig, build_tracks


@dataclass(frozen=True)
class InputOptions:
    sequence: str | None = None      # --sequence: one sequence of a multi-sequence npz
    layout: str | None = None        # --layout: overrides the file and the format
    width: float | None = None       # --width / --height: override the file
    height: float | None = None
    min_score: float = 0.0           # keypoints below count as missing
    person: int | None = None        # --person: a track id (None = the main person)
    all_people: bool = False         # --all-people: every track of >= tracking.min_frames frames
    force: bool = False              # --force: skip the layout checks
    tracking: TrackingConfig = TrackingConfig()


@dataclass
class PersonInput:
    name: str                        # output subfolder ('' = the output folder itself)
    keypoints: KeypointFile          # one person, pixels, layout/size resolved
    track: Track | None
    missing: list[tuple[int, int]]   # inclusive frame ranges of long absences (interpolated)
    notes: list[str] = field(default_factory=list)


@dataclass
class InputPlan:
    """What `sample.py` checked and read before loading the model: paths, the official-.bin layout
    override and the people to lift."""
    checkpoint: Path
    input_path: Path
    out_dir: Path
    model_layout: dict
    people: list[PersonInput]
    video: Any = None                # --video: a `video.VideoInfo` (size, frame rate), or None
    begin: float = 0.0               # time.perf_counter() when the run started, for the summary


def load_input(path: str | Path, opts: InputOptions = InputOptions()) -> tuple[Detections, list[Track], list[PersonInput]]:
    """(detections, tracks sorted main first, the people to lift); ValueError/FileNotFoundError on bad input."""
    det = read_detections(path, opts.sequence)
    tracks = build_tracks(det, opts.tracking)
    if opts.all_people:
        chosen = [t for t in tracks if t.num_frames >= opts.tracking.min_frames]
        if not chosen:
            raise ValueError(f"{det.path}: no person is present in {opts.tracking.min_frames} frames or more "
                             f"({len(tracks)} track(s), see --list-people); lift one with --person ID")
    else:
        chosen = [pick_track(tracks, opts.person, det.path)]
    people = [_one_person(det, t, opts, f"person_{t.id}" if opts.all_people else "") for t in chosen]
    if len(tracks) > 1 and not opts.all_people:
        t = chosen[0]
        people[0].notes.insert(0, f"{len(tracks)} people in {det.path.name}; lifting person {t.id} (frames "
                                  f"{t.frames[0]}-{t.frames[-1]}, present in {t.num_frames}); --list-people lists "
                                  "them, --person ID picks another, --all-people lifts each")
    return det, tracks, people


def _one_person(det: Detections, track: Track | None, opts: InputOptions, name: str) -> PersonInput:
    if det.num_frames == 0:
        raise ValueError(f"{det.path} has zero frames; it needs at least one frame of 2D keypoints")
    if track is None:
        raise ValueError(f"no keypoint is detected in any of the {det.num_frames} frames of {det.path}; the file "
                         "holds no usable 2D pose (check the detector output or --min-score)")
    kf = person_keypoints(det, track)
    notes: list[str] = []
    kf.width, kf.height = opts.width or kf.width, opts.height or kf.height
    kf.layout, source = _resolve_layout(kf, det, opts, notes)
    kf.keypoints, note = to_pixels(kf.keypoints, kf.width, kf.height, str(det.path), opts.min_score)
    if note:
        notes.append(note)
    if not kf.width or not kf.height:
        raise ValueError(f"{det.path} does not state the image size: pass --width and --height (pixels of the "
                         "video the keypoints come from)")
    if not opts.force and len(kf.keypoints):
        check_layout_fits(kf.keypoints, kf.layout, source, opts.min_score)
        check_left_right(kf.keypoints, kf.layout, source, opts.min_score)
    missing = [] if track is None else track.gaps(det.num_frames, opts.tracking.long_gap)
    if missing:
        where = ", ".join(f"{a}-{b}" for a, b in missing)
        notes.append(f"person {track.id} is missing in frames {where} ({sum(b - a + 1 for a, b in missing)} frames); "
                     "the poses there are interpolated")
    return PersonInput(name, kf, track, missing, notes)


def _resolve_layout(kf: KeypointFile, det: Detections, opts: InputOptions, notes: list[str]) -> tuple[str, str]:
    """(layout, who chose it): --layout, the file/format, the keypoint count, or the keypoints' look."""
    num = kf.keypoints.shape[1]
    if opts.layout:
        layout, source = opts.layout, "--layout"
    elif kf.layout:
        layout, source = kf.layout, det.layout_source
    elif len(layouts_with(num)) == 1:
        layout, source = layouts_with(num)[0], f"the only layout with {num} keypoints"
    elif num == 17 and (guess := guess_layout(kf.keypoints, opts.min_score)):
        layout, source = guess, "recognised from the keypoints"
        notes.append(f"the file does not state its keypoint layout; the keypoints look like '{guess}' "
                     f"(pass --layout to override)")
    else:
        raise ValueError(f"{det.path} does not state its keypoint layout: pass --layout coco (the 17 COCO keypoints "
                         "of most 2D detectors) or --layout h36m (Human3.6M order)" if num == 17 else
                         f"{det.path}: {num} keypoints per person match no known layout (docs/inputs.md); pass --layout")
    lay = get_layout(layout)
    if num and num != lay.num_keypoints:
        fits = layouts_with(num)
        hint = f"pass --layout {' or --layout '.join(fits)}" if fits else "see docs/inputs.md for the layouts"
        raise ValueError(f"{det.path}: expected {lay.num_keypoints} keypoints per frame for layout '{layout}', got "
                         f"{num}; {hint}")
    return layout, source


def people_table(det: Detections, tracks: list[Track]) -> str:
    """The --list-people listing: one line per track, the main person first."""
    count = "1 person" if len(tracks) == 1 else f"{len(tracks)} people (main person first)"
    lines = [f"{det.path}: {det.format}, {det.num_frames} frames, {count}",
             f"{'id':>6} {'first':>6} {'last':>6} {'frames':>7} {'box height px':>14}"]
    for t in tracks:
        height = f"{t.mean_height:.0f}" if np.isfinite(t.mean_height) else "-"
        lines.append(f"{t.id:>6} {int(t.frames[0]):>6} {int(t.frames[-1]):>6} {t.num_frames:>7} {height:>14}")
    return "\n".join(lines)
