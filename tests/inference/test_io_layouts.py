"""The one keypoint mapping table, and the checks that stop mislabelled layouts (no silent garbage)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from d3dp_ktp.inference.inputs import InputOptions, load_input
from d3dp_ktp.inference.layout_check import check_left_right, fit_fractions, guess_layout
from d3dp_ktp.inference.layouts import LAYOUTS, convert_layout, mapping_table
from d3dp_ktp.skeleton import COCO, H36M

from . import detector_files as dfiles
from .conftest import HEIGHT, WIDTH

REPO = Path(__file__).resolve().parents[2]


def body(layout: str, frames: int = 20, seed: int = 0) -> np.ndarray:
    return dfiles.keypoints_with_scores(dfiles.crossing_scene(frames, seed)[0], layout)


def test_names_match_the_skeletons_and_docs_show_the_table():
    assert LAYOUTS["h36m"].joint_names == H36M.joint_names and LAYOUTS["coco"].joint_names == COCO.joint_names
    assert {n: lay.num_keypoints for n, lay in LAYOUTS.items()} == {
        "h36m": 17, "coco": 17, "halpe26": 26, "halpe136": 136, "wholebody133": 133, "body25": 25, "coco18": 18}
    assert mapping_table() in (REPO / "docs" / "inputs.md").read_text()


@pytest.mark.parametrize("layout", ["body25", "coco18", "halpe26"])
def test_derived_joints_fall_back_when_a_source_is_missing(layout):
    kp = body(layout, 3)
    xy, scores = kp[..., :2].copy(), kp[..., 2].copy()
    full, _ = convert_layout(xy, scores, layout, "h36m")
    eyes = {"body25": (15, 16), "coco18": (14, 15), "halpe26": (1, 2)}[layout]
    ears = {"body25": (17, 18), "coco18": (16, 17), "halpe26": (3, 4)}[layout]
    head_src = 17 if layout == "halpe26" else None
    if head_src is not None:
        xy[0, head_src] = np.nan                     # no head top: eyes
        got, _ = convert_layout(xy, scores, layout, "h36m")
        np.testing.assert_allclose(got[0, 10], xy[0, list(eyes)].mean(0))
    xy[1, eyes[0]] = np.nan
    if head_src is not None:
        xy[1, head_src] = np.nan
    got, conf = convert_layout(xy, scores, layout, "h36m")
    np.testing.assert_allclose(got[1, 10], xy[1, list(ears)].mean(0))          # no eye: ears
    np.testing.assert_allclose(got[2], full[2])
    to_coco, _ = convert_layout(kp[..., :2], scores, layout, "coco")
    np.testing.assert_allclose(to_coco, body("coco", 3)[..., :2])               # the same body in COCO order


def test_h36m_cannot_become_coco():
    with pytest.raises(ValueError, match="cannot be converted to 'coco'"):
        convert_layout(np.zeros((1, 17, 2)), np.ones((1, 17)), "h36m", "coco")


def test_bodies_fit_their_own_layout_only():
    coco, h36m = body("coco"), body("h36m")
    assert fit_fractions(coco)["coco"][0] == 1 and fit_fractions(coco)["h36m"][0] == 0
    assert fit_fractions(h36m)["h36m"][0] == 1 and fit_fractions(h36m)["coco"][0] == 0
    assert guess_layout(coco) == "coco" and guess_layout(h36m) == "h36m"
    assert guess_layout(np.random.RandomState(0).uniform(0, 500, (20, 17, 3))) is None


@pytest.mark.parametrize("stored, declared, flag, message", [
    ("coco", "h36m", None, "read as 'h36m' \\(the file\\) but they look like 'coco'.*pass --layout coco"),
    ("h36m", "coco", None, "read as 'coco' \\(the file\\) but they look like 'h36m'.*pass --layout h36m"),
    ("coco", None, "h36m", "read as 'h36m' \\(--layout\\) but they look like 'coco'"),
    ("random", "coco", None, "look like a body in that order.*--force"),
])
def test_mislabelled_layouts_are_refused_with_the_flag_to_pass(tmp_path, stored, declared, flag, message):
    kp = np.random.RandomState(0).uniform(100, 600, (20, 17, 3)) if stored == "random" else body(stored)
    extra = {} if declared is None else {"layout": declared}
    np.savez(tmp_path / "k.npz", keypoints=kp, width=WIDTH, height=HEIGHT, **extra)
    with pytest.raises(ValueError, match=message):
        load_input(tmp_path / "k.npz", InputOptions(layout=flag))
    _, _, people = load_input(tmp_path / "k.npz", InputOptions(layout=flag, force=True))
    assert people[0].keypoints.layout == (flag or declared)


def test_alphapose_file_holding_h36m_order_is_refused(tmp_path):
    scene = dfiles.crossing_scene(20)
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, "h36m")
    with pytest.raises(ValueError, match="read as 'coco' \\(AlphaPose's 17-keypoint model\\) but they look like 'h36m'"):
        load_input(path, InputOptions(width=WIDTH, height=HEIGHT))


def test_unlabelled_17_keypoints_that_fit_neither_need_layout(tmp_path):
    np.save(tmp_path / "k.npy", np.random.RandomState(1).uniform(100, 600, (20, 17, 3)))
    with pytest.raises(ValueError, match="does not state its keypoint layout: pass --layout coco"):
        load_input(tmp_path / "k.npy", InputOptions(width=WIDTH, height=HEIGHT))


def test_mirrored_arms_are_refused():
    kp = body("coco")
    kp[:, [5, 6, 7, 8, 9, 10]] = kp[:, [6, 5, 8, 7, 10, 9]]     # arms swapped, legs not
    with pytest.raises(ValueError, match="left shoulder and the left hip on opposite sides.*--force"):
        check_left_right(kp, "coco", "the file")
    check_left_right(body("coco"), "coco", "the file")
    check_left_right(body("body25"), "body25", "the file")


def test_keypoint_count_names_the_layouts_that_fit(tmp_path):
    np.savez(tmp_path / "k.npz", keypoints=body("body25"), width=WIDTH, height=HEIGHT, layout="coco")
    with pytest.raises(ValueError, match="expected 17 keypoints per frame for layout 'coco', got 25; pass --layout body25"):
        load_input(tmp_path / "k.npz")
    np.savez(tmp_path / "k.npz", keypoints=body("halpe26"), width=WIDTH, height=HEIGHT)
    _, _, people = load_input(tmp_path / "k.npz")
    assert people[0].keypoints.layout == "halpe26"               # the only layout with 26 keypoints
