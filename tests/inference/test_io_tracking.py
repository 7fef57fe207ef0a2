"""Several people per frame: tracks by detector ids or by association, the main person, gaps."""
from __future__ import annotations

import json

import numpy as np
import pytest

from d3dp_ktp.inference.formats import read_detections
from d3dp_ktp.inference.inputs import InputOptions, load_input, people_table
from d3dp_ktp.inference.tracking import TrackingConfig, _iou, build_tracks, keypoint_boxes

from . import detector_files as dfiles
from .conftest import HEIGHT, WIDTH


def track_keypoints(scene_person, layout="coco"):
    return dfiles.keypoints_with_scores(scene_person, layout)


def assert_track_is(track, scene_person, layout="coco"):
    present = np.flatnonzero(scene_person["present"])
    np.testing.assert_array_equal(track.frames, present)
    np.testing.assert_allclose(track.keypoints, track_keypoints(scene_person, layout)[present], atol=1e-9)


@pytest.mark.parametrize("hide", [0, 4])
def test_identities_survive_a_crossing_without_detector_ids(tmp_path, hide):
    scene = dfiles.crossing_scene(hide=hide)
    det = read_detections(dfiles.write_alphapose(tmp_path / "a.json", scene, ids=False))
    assert det.ids is None
    a, b = (keypoint_boxes(track_keypoints(p)) for p in scene)
    assert max(_iou(a[f:f + 1], b[f:f + 1])[0, 0] for f in range(40)) > 0.3   # the boxes really overlap
    tracks = build_tracks(det)
    assert len(tracks) == 2
    assert_track_is(tracks[0], scene[0])      # the main person: longest and largest
    assert_track_is(tracks[1], scene[1])      # one track across the occlusion gap


def test_detector_ids_define_the_tracks_and_person_picks_one(tmp_path):
    scene = dfiles.crossing_scene()
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, ids=True)
    det = read_detections(path)
    assert sorted(set(det.ids.tolist())) == [3, 7]
    tracks = build_tracks(det)
    assert [t.id for t in tracks] == [7, 3]
    _, _, people = load_input(path, InputOptions(person=3, width=WIDTH, height=HEIGHT))
    assert people[0].track.id == 3 and people[0].missing == []      # a 4-frame gap is short
    np.testing.assert_array_equal(np.isnan(people[0].keypoints.keypoints).all((1, 2)), ~scene[1]["present"])
    with pytest.raises(ValueError, match=r"no person 5; the person ids are: 7, 3 \(see --list-people\)"):
        load_input(path, InputOptions(person=5, width=WIDTH, height=HEIGHT))


def test_repeated_ids_are_not_identities(tmp_path):
    """AlphaPose without tracking writes the same idx for every person: associate instead."""
    scene = dfiles.crossing_scene()
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, ids=True)
    data = json.loads(path.read_text())
    for k, d in enumerate(data):
        d["idx"] = [0.0] if k % 2 else [[0.0]]     # AlphaPose's merged-box id lists
    path.write_text(json.dumps(data))
    det = read_detections(path)
    assert det.ids is None
    tracks = build_tracks(det)
    assert_track_is(tracks[0], scene[0])
    order = {}                                # per-frame ranks 0, 1, ... are no identities either
    for d in data:
        order.setdefault(d["image_id"], []).append(d)
    for dets in order.values():
        for rank, d in enumerate(dets):
            d["idx"] = rank
    path.write_text(json.dumps(data))
    det = read_detections(path)
    assert det.ids is None
    assert_track_is(build_tracks(det)[0], scene[0])


def test_long_absence_is_reported_and_a_longer_one_splits_the_track(tmp_path):
    scene = dfiles.crossing_scene(60, hide=0)
    scene[1]["present"][40:] = False              # person 3 leaves after 40 frames
    scene[0]["present"][5:17] = False             # 12 frames: bridged (max_gap 15) but reported
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, ids=False)
    _, tracks, people = load_input(path, InputOptions(width=WIDTH, height=HEIGHT))
    assert_track_is(tracks[0], scene[0])
    assert people[0].missing == [(5, 16)]
    assert "missing in frames 5-16 (12 frames); the poses there are interpolated" in " ".join(people[0].notes)
    scene[0]["present"][5:25] = False             # 20 frames: more than max_gap, a new track
    path = dfiles.write_alphapose(tmp_path / "b.json", scene, ids=False)
    tracks = build_tracks(read_detections(path), TrackingConfig())
    assert [t.num_frames for t in tracks] == [40, 35, 5]        # person 3 is now the main person


def test_all_people_and_list_people(tmp_path):
    scene = dfiles.crossing_scene(30)
    scene.append(dfiles.person(np.random.RandomState(9), 30, 11, (0.0, 0.3, 8.0),
                               present=np.arange(30) < 6))   # a passer-by in 6 frames
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, ids=True)
    det, tracks, people = load_input(path, InputOptions(all_people=True, width=WIDTH, height=HEIGHT))
    assert [p.name for p in people] == ["person_7", "person_3"]      # 6 frames < min_frames 10
    table = people_table(det, tracks).splitlines()
    assert "30 frames, 3 people" in table[0] and table[1].split() == ["id", "first", "last", "frames", "box",
                                                                       "height", "px"]
    assert [line.split()[:4] for line in table[2:]] == [["7", "0", "29", "30"], ["3", "0", "29", "26"],
                                                         ["11", "0", "5", "6"]]
    _, _, single = load_input(path, InputOptions(width=WIDTH, height=HEIGHT))
    assert single[0].notes[0].startswith("3 people in a.json; lifting person 7 (frames 0-29, present in 30)")
