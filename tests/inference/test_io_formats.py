"""Every detector format, written as its public documentation lays it out (tests/inference/detector_files.py),
is read to the expected one-person (frames, 17, 2) sequence in the H36M order."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from d3dp_ktp.inference.formats import read_detections
from d3dp_ktp.inference.inputs import InputOptions, load_input
from d3dp_ktp.inference.io import prepare_keypoints, read_keypoints

from . import detector_files as dfiles
from .conftest import HEIGHT, WIDTH


def mid(*xs):
    return np.mean(xs, axis=0)


def expected_h36m(p: dict, layout: str) -> np.ndarray:
    """(F, 17, 2) written out joint by joint from the named points (docs/inputs.md table), independently
    of the code's table."""
    q = p["points"]
    if layout in ("halpe26", "halpe136", "h36m"):
        pelvis, thorax, head = q["hip"], q["neck"], q["head"]
        spine = mid(q["neck"], q["hip"])
    elif layout in ("coco", "wholebody133"):
        pelvis, thorax = mid(q["left_hip"], q["right_hip"]), mid(q["left_shoulder"], q["right_shoulder"])
        spine, head = mid(pelvis, thorax), mid(q["left_eye"], q["right_eye"])
    elif layout == "body25":
        pelvis, thorax, head = q["hip"], q["neck"], mid(q["left_eye"], q["right_eye"])
        spine = mid(q["neck"], q["hip"])
    else:  # coco18: no MidHip
        pelvis, thorax, head = mid(q["left_hip"], q["right_hip"]), q["neck"], mid(q["left_eye"], q["right_eye"])
        spine = mid(thorax, pelvis)
    joints = [pelvis, q["right_hip"], q["right_knee"], q["right_ankle"], q["left_hip"], q["left_knee"],
              q["left_ankle"], spine, thorax, q["nose"], head, q["left_shoulder"], q["left_elbow"], q["left_wrist"],
              q["right_shoulder"], q["right_elbow"], q["right_wrist"]]
    return np.stack(joints, axis=1)


def lifted_input(path, **opts):
    """The main person of a file after the CLI's input checks, cleaned to H36M pixels (F, 17, 2)."""
    _, tracks, people = load_input(path, InputOptions(width=opts.pop("width", WIDTH), height=opts.pop("height", HEIGHT),
                                                      **opts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare_keypoints(people[0].keypoints, "h36m")
    return prep.pixels, tracks, people


def assert_person(pixels, p, layout, frames=None):
    exp = expected_h36m(p, layout)
    frames = np.flatnonzero(p["present"]) if frames is None else frames
    np.testing.assert_allclose(pixels[frames], exp[frames], atol=1e-3)


@pytest.mark.parametrize("layout", ["coco", "halpe26", "halpe136"])
@pytest.mark.parametrize("ids", [True, False])
def test_alphapose_results_json(tmp_path, layout, ids):
    """Detections grouped by image_id into frames, several people, idx track ids or none, Halpe-26/136."""
    scene = dfiles.crossing_scene()
    path = dfiles.write_alphapose(tmp_path / "alphapose-results.json", scene, layout, ids=ids)
    assert len(json.loads(path.read_text())) == sum(int(p["present"].sum()) for p in scene)  # one entry per detection
    pixels, tracks, people = lifted_input(path)
    assert pixels.shape == (40, 17, 2) and len(tracks) == 2
    assert_person(pixels, scene[0], layout)                       # the main person: the nearer, always present one
    assert people[0].keypoints.layout == layout and (people[0].track.id == 7) == ids


def test_alphapose_frames_without_detection_and_image_names(tmp_path):
    """AlphaPose writes nothing for an image without detection: frames come from the numbers in the names."""
    scene = dfiles.crossing_scene(30)
    path = dfiles.write_alphapose(tmp_path / "a.json", scene, "halpe26", skip_frames=(5, 6),
                                  image=lambda f: f"frame_{f + 1:05d}.png")
    det = read_detections(path)
    assert det.num_frames == 30 and det.first_frame == 1 and not np.isin([5, 6], det.frame).any()
    pixels, _, people = lifted_input(path)
    assert people[0].keypoints.extras["first_frame"] == 1
    assert_person(pixels, scene[0], "halpe26", np.setdiff1d(np.arange(30), [5, 6]))
    np.testing.assert_allclose(pixels[5], pixels[4] + (pixels[7] - pixels[4]) / 3, atol=1e-6)  # interpolated


@pytest.mark.parametrize("form", ["open", "cmu"])
def test_alphapose_openpose_style_forms(tmp_path, form):
    """AlphaPose --format open/cmu: {image: {'people': [{'pose_keypoints_2d'}]}} or {'bodies': [{'joints'}]},
    18 keypoints in OpenPose's COCO order."""
    scene = dfiles.crossing_scene(12)
    kps = [dfiles.keypoints_with_scores(p, "coco18") for p in scene]
    key, inner = ("people", "pose_keypoints_2d") if form == "open" else ("bodies", "joints")
    doc = {f"{f}.jpg": {"version": "AlphaPose v0.3", key: [{inner: k[f].reshape(-1).tolist()} for k in kps]}
           for f in range(12)}
    (tmp_path / "alphapose-results.json").write_text(json.dumps(doc))
    pixels, tracks, people = lifted_input(tmp_path / "alphapose-results.json")
    assert len(tracks) == 2 and people[0].keypoints.layout == "coco18"
    assert_person(pixels, scene[0], "coco18", np.arange(12))


@pytest.mark.parametrize("layout", ["body25", "coco18"])
def test_openpose_folder_and_single_file(tmp_path, layout):
    scene = dfiles.crossing_scene(24)
    folder = dfiles.write_openpose(tmp_path / "json", scene, layout)
    pixels, tracks, _ = lifted_input(folder)
    assert pixels.shape == (24, 17, 2) and len(tracks) == 2
    assert_person(pixels, scene[0], layout)
    one = sorted(folder.glob("*.json"))[3]
    pixels, tracks, _ = lifted_input(one)
    assert pixels.shape == (1, 17, 2)
    np.testing.assert_allclose(pixels[0], expected_h36m(scene[0], layout)[3], atol=1e-3)


def test_openpose_zeros_are_missing_keypoints(tmp_path):
    scene = dfiles.crossing_scene(20)[:1]
    folder = dfiles.write_openpose(tmp_path / "json", scene, "body25")
    f = sorted(folder.glob("*.json"))[4]
    doc = json.loads(f.read_text())
    doc["people"][0]["pose_keypoints_2d"][3 * 4: 3 * 5] = [0, 0, 0]      # RWrist not found
    f.write_text(json.dumps(doc))
    kf = read_keypoints(folder)
    assert kf.keypoints[4, 4, 2] == 0
    pixels, _, _ = lifted_input(folder)
    exp = expected_h36m(scene[0], "body25")
    np.testing.assert_allclose(pixels[4, 16], mid(exp[3, 16], exp[5, 16]), atol=1e-6)


@pytest.mark.parametrize("layout", ["coco", "halpe26", "wholebody133"])
def test_mmpose_inferencer_predictions(tmp_path, layout):
    scene = dfiles.crossing_scene(20)
    path = dfiles.write_mmpose(tmp_path / "results_clip.json", scene, layout)
    pixels, tracks, people = lifted_input(path)
    assert pixels.shape == (20, 17, 2) and len(tracks) == 2 and people[0].keypoints.layout == layout
    assert_person(pixels, scene[0], layout)


def test_detectron2_npz_of_infer_video_d2(tmp_path):
    """Object arrays of arrays per frame, read by the restricted unpickler; size from the metadata."""
    scene = dfiles.crossing_scene(16)
    scene[0]["present"][[2, 3]] = False                   # frames without the main person
    scene[1]["present"][[2, 3]] = False                   # ... and without anybody
    path = dfiles.write_detectron2(tmp_path / "clip.mp4.npz", scene)
    det = read_detections(path)
    assert (det.width, det.height, det.layout) == (WIDTH, HEIGHT, "coco") and det.num_frames == 16
    pixels, tracks, _ = lifted_input(path, width=None, height=None)
    assert pixels.shape == (16, 17, 2)
    assert_person(pixels, scene[0], "coco", np.setdiff1d(np.arange(16), [2, 3]))


def test_detectron2_npz_with_a_foreign_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    boxes = np.empty((1, 2), dtype=object)
    boxes[0, 0], boxes[0, 1] = [], Evil()
    np.savez(tmp_path / "bad.npz", boxes=boxes, keypoints=boxes, metadata=np.array({}, dtype=object))
    with pytest.raises(ValueError, match="refusing to load 'builtins.print'"):
        read_detections(tmp_path / "bad.npz")


def test_videopose3d_custom_npz_and_sequences(tmp_path):
    scene = dfiles.crossing_scene(12)
    kp = {"walk.mp4": dfiles.layout_points(scene[0]["points"], "coco"),
          "run.mp4": dfiles.layout_points(scene[1]["points"], "coco")}
    path = dfiles.write_videopose3d(tmp_path / "data_2d_custom_myvideos.npz", kp)
    with pytest.raises(ValueError, match="holds 2 sequences; choose one with --sequence NAME, one of: walk.mp4, run.mp4"):
        load_input(path)
    pixels, _, people = lifted_input(path, sequence="walk.mp4", width=None, height=None)
    assert_person(pixels, scene[0], "coco", np.arange(12))
    assert people[0].keypoints.extras["sequence"] == "walk.mp4"


def test_mocap_2d_npz_from_write_custom_dataset(tmp_path):
    """Our mocap tool's data_2d_<name>_<kp>.npz: subject/action/camera sequences; image size from data_3d."""
    from d3dp_ktp.data.custom import custom_camera, write_custom_dataset

    scene = dfiles.crossing_scene(10)
    h36m = dfiles.layout_points(scene[0]["points"], "h36m").astype(np.float32)
    cams = [custom_camera(str(i), WIDTH, HEIGHT, (1150, 1150), (WIDTH / 2, HEIGHT / 2), (1, 0, 0, 0), (0, 0, 0))
            for i in range(2)]
    pos3d = {"S1": {"walk": np.zeros((10, 17, 3), np.float32), "jump": np.zeros((10, 17, 3), np.float32)}}
    pos2d = {"S1": {"walk": [h36m, h36m + 5], "jump": [h36m, h36m]}}
    _, path = write_custom_dataset(tmp_path, "cmu", pos3d, {"S1": cams}, pos2d, keypoints="noisy")
    with pytest.raises(ValueError, match="S1/jump/0, S1/jump/1, S1/walk/0, S1/walk/1|S1/walk/0, S1/walk/1, S1/jump"):
        load_input(path)
    with pytest.raises(ValueError, match="'S1/walk' matches 2 sequences; pass --sequence with one of"):
        load_input(path, InputOptions(sequence="S1/walk"))
    pixels, _, people = lifted_input(path, sequence="S1/walk/1", width=None, height=None)
    np.testing.assert_allclose(pixels, h36m + 5, atol=1e-3)
    assert (people[0].keypoints.width, people[0].keypoints.layout) == (WIDTH, "h36m")


def test_our_formats_still_read_as_one_person(tmp_path):
    scene = dfiles.crossing_scene(8)
    kp = dfiles.keypoints_with_scores(scene[0], "coco")
    np.savez(tmp_path / "ours.npz", keypoints=kp, width=WIDTH, height=HEIGHT, layout="coco")
    (tmp_path / "ours.json").write_text(json.dumps([f.reshape(-1).tolist() for f in kp]))
    np.save(tmp_path / "ours.npy", kp)
    for name in ("ours.npz", "ours.json", "ours.npy"):
        pixels, tracks, people = lifted_input(tmp_path / name)
        assert len(tracks) == 1 and people[0].keypoints.layout == "coco"   # json/npy: recognised as COCO
        assert_person(pixels, scene[0], "coco", np.arange(8))


def test_zero_one_coordinates_are_converted_with_the_size_or_refused(tmp_path):
    scene = dfiles.crossing_scene(8)
    kp = dfiles.keypoints_with_scores(scene[0], "coco")
    kp[..., 0] /= WIDTH
    kp[..., 1] /= HEIGHT
    np.savez(tmp_path / "norm.npz", keypoints=kp, layout="coco")
    with pytest.raises(ValueError, match="between 0 and 1, so the keypoints are normalised.*pass --width and --height"):
        load_input(tmp_path / "norm.npz")
    pixels, _, people = lifted_input(tmp_path / "norm.npz")
    assert "converted to pixels with the image size 1000 x 800" in people[0].notes[0]
    assert_person(pixels, scene[0], "coco", np.arange(8))
    np.savez(tmp_path / "pm1.npz", keypoints=kp * 2 - 1, layout="coco")
    with pytest.raises(ValueError, match="between -1 and 1.*--keypoint_scale"):
        load_input(tmp_path / "pm1.npz", InputOptions(width=WIDTH, height=HEIGHT))
