"""Any BVH rig: joint-name heuristics per naming convention, rig maps, units, translations, file names."""
import re

import numpy as np
import pytest

from d3dp_ktp.data.bvh import forward_kinematics, parse_bvh, translation_modes
from d3dp_ktp.data.mocap import (CMU_ICLONE, CMU_SALSA, MocapConfig, build_dataset, find_bvh_files, load_trial,
                                 read_subject_csv, trial_names)
from d3dp_ktp.data.prepare_mocap import main
from d3dp_ktp.data.rigs import (guess_rig_map, load_rig_map, parse_joint_name, rig_map_from_dict, rig_map_to_dict,
                                rig_map_to_yaml)
from d3dp_ktp.skeleton import H36M

# A generic body (metres, Y up, facing +Z, left on +X): role -> (parent role, OFFSET). Thigh 0.45 m,
# shank 0.43 m, upper arm 0.28 m, forearm 0.25 m.
BODY = {
    "hips": (None, (0, 0, 0)), "spine": ("hips", (0, 0.1, 0)), "chest": ("spine", (0, 0.15, 0)),
    "neck": ("chest", (0, 0.22, 0)), "head": ("neck", (0, 0.1, 0.01)),
    "l_clav": ("chest", (0.04, 0.18, 0)), "l_arm": ("l_clav", (0.14, 0, 0)), "l_fore": ("l_arm", (0.28, 0, 0)),
    "l_hand": ("l_fore", (0.25, 0, 0)), "l_thigh": ("hips", (0.09, -0.06, 0)), "l_knee": ("l_thigh", (0, -0.45, 0)),
    "l_foot": ("l_knee", (0, -0.43, 0)), "l_toe": ("l_foot", (0, -0.06, 0.13)),
}
BODY.update({"r" + k[1:]: (None if p is None else ("r" + p[1:] if p.startswith("l_") else p), (-o[0], o[1], o[2]))
             for k, (p, o) in list(BODY.items()) if k.startswith("l_")})
HEAD_TOP = (0, 0.2, 0.0)  # head -> top of the skull, for rigs that have such a joint
# Joints only some rigs have: role -> (parent role, OFFSET); included when a convention names them.
OPTIONAL = {"head_top": ("head", HEAD_TOP), "l_palm": ("l_hand", (0.08, 0, 0)), "r_palm": ("r_hand", (-0.08, 0, 0))}

CONVENTIONS = {
    "cmu": dict(hips="Hips", spine="Spine", chest="Spine1", neck="Neck", head="Head", l_clav="LeftShoulder",
                l_arm="LeftArm", l_fore="LeftForeArm", l_hand="LeftHand", l_thigh="LeftUpLeg", l_knee="LeftLeg",
                l_foot="LeftFoot", l_toe="LeftToeBase"),
    "mixamo": dict(hips="mixamorig:Hips", spine="mixamorig:Spine", chest="mixamorig:Spine2", neck="mixamorig:Neck",
                   head="mixamorig:Head", head_top="mixamorig:HeadTop_End", l_clav="mixamorig:LeftShoulder",
                   l_arm="mixamorig:LeftArm", l_fore="mixamorig:LeftForeArm", l_hand="mixamorig:LeftHand",
                   l_thigh="mixamorig:LeftUpLeg", l_knee="mixamorig:LeftLeg", l_foot="mixamorig:LeftFoot",
                   l_toe="mixamorig:LeftToeBase"),
    "unity": dict(hips="Hips", spine="Spine", chest="Chest", neck="Neck", head="Head", l_clav="Shoulder_L",
                  l_arm="UpperArm_L", l_fore="LowerArm_L", l_hand="Hand_L", l_thigh="UpperLeg_L", l_knee="LowerLeg_L",
                  l_foot="Foot_L", l_toe="Toes_L"),
    "daz": dict(hips="hip", spine="abdomen", chest="chest", neck="neck", head="head", l_clav="lCollar",
                l_arm="lShldr", l_fore="lForeArm", l_hand="lHand", l_thigh="lThigh", l_knee="lShin", l_foot="lFoot",
                l_toe="lToe"),
    "iclone": dict(hips="CC_Base_Hip", spine="CC_Base_Waist", chest="CC_Base_Spine02", neck="CC_Base_NeckTwist01",
                   head="CC_Base_Head", l_clav="CC_Base_L_Clavicle", l_arm="CC_Base_L_Upperarm",
                   l_fore="CC_Base_L_Forearm", l_hand="CC_Base_L_Hand", l_thigh="CC_Base_L_Thigh",
                   l_knee="CC_Base_L_Calf", l_foot="CC_Base_L_Foot", l_toe="CC_Base_L_ToeBase"),
    "biped": dict(hips="Bip01 Pelvis", spine="Bip01 Spine", chest="Bip01 Spine1", neck="Bip01 Neck",
                  head="Bip01 Head", head_top="Bip01 HeadNub", l_clav="Bip01 L Clavicle", l_arm="Bip01 L UpperArm",
                  l_fore="Bip01 L Forearm", l_hand="Bip01 L Hand", l_thigh="Bip01 L Thigh", l_knee="Bip01 L Calf",
                  l_foot="Bip01 L Foot", l_toe="Bip01 L Toe0"),
    # SMPL joint names (AMASS exports): L_Shoulder is the shoulder joint below L_Collar, L_Foot the ball of
    # the foot below L_Ankle, L_Hand the knuckles below L_Wrist.
    "smpl": dict(hips="Pelvis", spine="Spine1", chest="Spine3", neck="Neck", head="Head", l_clav="L_Collar",
                 l_arm="L_Shoulder", l_fore="L_Elbow", l_hand="L_Wrist", l_palm="L_Hand", l_thigh="L_Hip",
                 l_knee="L_Knee", l_foot="L_Ankle", l_toe="L_Foot"),
    "xsens": dict(hips="Hips", spine="Chest", chest="Chest2", neck="Neck", head="Head", l_clav="LeftCollar",
                  l_arm="LeftShoulder", l_fore="LeftElbow", l_hand="LeftWrist", l_thigh="LeftHip",
                  l_knee="LeftKnee", l_foot="LeftAnkle", l_toe="LeftToe"),
    "optitrack": dict(hips="Hip", spine="Ab", chest="Chest", neck="Neck", head="Head", l_clav="LShoulder",
                      l_arm="LUArm", l_fore="LFArm", l_hand="LHand", l_thigh="LThigh", l_knee="LShin",
                      l_foot="LFoot", l_toe="LToe"),
}


def _right(name: str) -> str:
    if name.startswith("L_") or (name[0] == "L" and name[1].isupper()):  # SMPL 'L_Hip', OptiTrack 'LThigh'
        return "R" + name[1:]
    for a, b in (("Left", "Right"), ("_L", "_R"), ("_L_", "_R_"), (" L ", " R ")):
        if a in name:
            return name.replace(a, b)
    return "r" + name[1:]  # DAZ 'lThigh'


def names_of(convention: str) -> dict:
    table = dict(CONVENTIONS[convention])
    table.update({"r" + k[1:]: _right(v) for k, v in CONVENTIONS[convention].items() if k.startswith("l_")})
    return table


def rig_bvh(convention: str, num_frames: int = 12, unit: float = 1.0, all_positions: bool = False,
            root_height_in_offset: bool = False) -> str:
    """A BVH of BODY in a naming convention, ``unit`` metres per file unit. The hips stand 0.98 m up
    and walk along +Z while the spine and knees bend. ``all_positions``: every joint carries 6 channels
    whose positions are its local translation (the OFFSET values). ``root_height_in_offset``: the root
    OFFSET holds the standing height and its channels animate a displacement (iClone style)."""
    names = names_of(convention)
    body = dict(BODY)
    body.update({role: where for role, where in OPTIONAL.items() if role in names})
    children: dict = {}
    for role, (parent, _) in body.items():
        children.setdefault(parent, []).append(role)
    order: list = []

    def block(role, depth):
        pad, off = "  " * depth, np.asarray(body[role][1], float) / unit
        if role == "hips" and root_height_in_offset:
            off = np.array([0, 0.98, 0]) / unit
        six = depth == 0 or all_positions
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if six else "3 Zrotation Xrotation Yrotation"
        order.append((role, six, off))
        lines = [f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {names[role]}", f"{pad}{{",
                 f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}", f"{pad}  CHANNELS {chans}"]
        for child in children.get(role, []):
            lines += block(child, depth + 1)
        if role not in children:
            lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 {0.05 / unit:.6f} 0", f"{pad}  }}"]
        return lines + [f"{pad}}}"]

    header = ["HIERARCHY"] + block("hips", 0) + ["MOTION", f"Frames: {num_frames}", "Frame Time: 0.02"]
    rows = []
    for f in range(num_frames):
        row = []
        for role, six, off in order:
            if role == "hips":
                pos = (np.array([0, 0.0 if root_height_in_offset else 0.98, 0.04 * f]) + [0, 0.01 * np.sin(f), 0]) / unit
            else:
                pos = off
            bend = {"spine": 8.0, "l_knee": 20.0, "r_knee": 12.0, "l_fore": 30.0}.get(role, 0.0) * np.sin(0.3 * f)
            row += list(pos) + [0.0, bend, 0.0] if six else [0.0, bend, 0.0]
        rows.append(" ".join(f"{v:.6f}" for v in row))
    return "\n".join(header + rows) + "\n"


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_name_heuristics_map_every_convention(convention):
    names = names_of(convention)
    rig = guess_rig_map(parse_bvh(rig_bvh(convention)))
    single = {H36M.joint_names[j]: mix[0][0] for j, mix in enumerate(rig.joints) if len(mix) == 1}
    expected = {"RHip": "r_thigh", "RKnee": "r_knee", "RAnkle": "r_foot", "LHip": "l_thigh", "LKnee": "l_knee",
                "LAnkle": "l_foot", "Thorax": "neck", "LShoulder": "l_arm", "LElbow": "l_fore", "LWrist": "l_hand",
                "RShoulder": "r_arm", "RElbow": "r_fore", "RWrist": "r_hand"}
    assert {k: single[k] for k in expected} == {k: names[v] for k, v in expected.items()}
    assert dict(rig.joints[0]) == {names["l_thigh"]: 0.5, names["r_thigh"]: 0.5}
    spine = dict(rig.joints[H36M.joint_names.index("Spine")])
    assert set(spine) <= {names["spine"], names["chest"], names["hips"]} and abs(sum(spine.values()) - 1) < 1e-6
    if "head_top" in names:  # a joint above the head is the head top; otherwise the neck line is extended
        assert single["Head"] == names["head_top"]


@pytest.mark.parametrize("convention", ["cmu", "biped", "mixamo", "smpl", "xsens"])
def test_guessed_rig_converts_at_true_size_with_head_on_top(tmp_path, convention):
    path = tmp_path / "walk.bvh"
    path.write_text(rig_bvh(convention))
    trial = load_trial(path)
    thigh = np.linalg.norm(trial.positions[:, 1] - trial.positions[:, 2], axis=-1)
    shank = np.linalg.norm(trial.positions[:, 2] - trial.positions[:, 3], axis=-1)
    np.testing.assert_allclose(thigh, 0.45, atol=1e-5)
    np.testing.assert_allclose(shank, 0.43, atol=1e-5)
    p = trial.positions
    assert np.all(p[:, 10, 2] > p[:, 9, 2]) and np.all(p[:, 9, 2] > p[:, 8, 2]) and np.all(p[:, 8, 2] > p[:, 7, 2])
    assert 1.6 < p[:, 10, 2].mean() < 1.9  # head top of a ~1.8 m person standing on the floor
    assert "height 1." in trial.info and "thigh 0.450 m" in trial.info


def test_parse_joint_name_ignores_case_prefixes_and_separators():
    cases = {"mixamorig:LeftUpLeg": ("L", "upleg"), "CC_Base_R_Calf": ("R", "calf"), "Bip01 L Thigh": ("L", "thigh"),
             "UpperLeg_L": ("L", "upperleg"), "lShin": ("L", "shin"), "rShldr": ("R", "shldr"),
             "RIGHTFOREARM": ("R", "forearm"), "left_hand": ("L", "hand"), "thigh.R": ("R", "thigh"),
             "LeftHandThumb1": ("L", "handthumb1"), "Head": (None, "head"), "LHipJoint": ("L", "hipjoint")}
    assert {n: parse_joint_name(n) for n in cases} == cases


def test_failed_mapping_lists_missing_joints_and_candidates(tmp_path):
    text = rig_bvh("cmu").replace("LeftHand", "LeftPaw")
    with pytest.raises(ValueError, match=r"cannot place the H36M joints \['LWrist'\].*LeftPaw \(L, paw\)"):
        guess_rig_map(parse_bvh(text))
    (tmp_path / "x.bvh").write_text(text)
    assert main(["--bvh-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("rig", [CMU_ICLONE, CMU_SALSA], ids=lambda r: r.name)
def test_rig_map_yaml_round_trip(tmp_path, rig):
    path = tmp_path / "rig.yaml"
    path.write_text(rig_map_to_yaml(rig))
    assert load_rig_map(path) == rig
    assert rig_map_from_dict(rig_map_to_dict(rig)) == rig


def test_rig_map_from_yaml_gives_the_builtin_output_bit_for_bit(tmp_path):
    from tests.data.test_mocap import figure_bvh  # the DAZ (cmu_salsa) figure
    (tmp_path / "60_01_scaled.bvh").write_text(figure_bvh(40))
    (tmp_path / "salsa.yaml").write_text(rig_map_to_yaml(CMU_SALSA))
    builtin = load_trial(tmp_path / "60_01_scaled.bvh")
    mapped = load_trial(tmp_path / "60_01_scaled.bvh", rig=load_rig_map(tmp_path / "salsa.yaml"))
    assert np.array_equal(builtin.positions, mapped.positions)


def test_rig_map_errors_name_the_key():
    good = rig_map_to_dict(CMU_SALSA)
    with pytest.raises(ValueError, match="missing \\['RWrist'\\]"):
        rig_map_from_dict({**good, "joints": {k: v for k, v in good["joints"].items() if k != "RWrist"}})
    with pytest.raises(ValueError, match="weights must sum to 1"):
        rig_map_from_dict({**good, "joints": {**good["joints"], "Hip": {"lThigh": 0.5}}})
    with pytest.raises(ValueError, match="units"):
        rig_map_from_dict({**good, "units": "furlong"})


def test_translations_on_every_joint_are_local_translations(tmp_path):
    text = rig_bvh("cmu", all_positions=True)
    motion = parse_bvh(text)
    assert set(translation_modes(motion)) - {None} == {"replace"}
    (tmp_path / "walk.bvh").write_text(text)
    p = load_trial(tmp_path / "walk.bvh").positions
    np.testing.assert_allclose(np.linalg.norm(p[:, 1] - p[:, 2], axis=-1), 0.45, atol=1e-5)  # not 0.90


def test_root_offset_with_displacement_channels_is_detected(tmp_path):
    text = rig_bvh("cmu", root_height_in_offset=True)
    motion = parse_bvh(text)
    assert translation_modes(motion)[0] == "add"
    reference = forward_kinematics(parse_bvh(rig_bvh("cmu")))
    np.testing.assert_allclose(forward_kinematics(motion), reference, atol=1e-5)
    (tmp_path / "walk.bvh").write_text(text)
    assert "displacements from OFFSET on Hips" in load_trial(tmp_path / "walk.bvh").info


@pytest.mark.parametrize("unit,factor", [("m", 1.0), ("cm", 0.01), ("inch", 0.0254), ("cmu", 0.0254 / 0.45)])
def test_units_are_detected_from_the_body_height(tmp_path, unit, factor):
    (tmp_path / "walk.bvh").write_text(rig_bvh("daz", unit=factor))
    trial = load_trial(tmp_path / "walk.bvh")
    assert f"units {unit}," in trial.info
    np.testing.assert_allclose(np.linalg.norm(trial.positions[:, 4] - trial.positions[:, 5], axis=-1), 0.45, atol=1e-4)
    forced = load_trial(tmp_path / "walk.bvh", MocapConfig(units="mm"))  # --units overrides the detection
    np.testing.assert_allclose(np.linalg.norm(forced.positions[:, 4] - forced.positions[:, 5], axis=-1),
                               0.45 / factor * 0.001, rtol=1e-4)


def test_file_names_without_subject_or_trial(tmp_path):
    for person in ("alice", "bob"):
        (tmp_path / "takes" / person).mkdir(parents=True)
        (tmp_path / "takes" / person / "Dash Fast.bvh").write_text(rig_bvh("mixamo"))
    (tmp_path / "takes" / "07_05.bvh").write_text(rig_bvh("unity"))
    files = find_bvh_files([tmp_path / "takes"])
    assert [trial_names(f) for f in files] == [("cmu07", "07_05"), ("alice", "Dash Fast"), ("bob", "Dash Fast")]
    assert trial_names(files[1], subject="carol") == ("carol", "Dash Fast")
    (tmp_path / "map.csv").write_text("file,subject,action\nDash Fast.bvh,dora,dash\n")
    assert trial_names(files[1], subject_map=read_subject_csv(tmp_path / "map.csv")) == ("dora", "dash")
    data = build_dataset(files, MocapConfig(num_cameras=1, noise_px=0))
    assert sorted(data.positions_3d) == ["alice", "bob", "cmu07"]


def test_cli_list_joints_and_any_rig(tmp_path, capsys):
    (tmp_path / "bvh").mkdir()
    (tmp_path / "bvh" / "take 1.bvh").write_text(rig_bvh("biped"))
    assert main(["--list-joints", str(tmp_path / "bvh" / "take 1.bvh")]) == 0
    out = capsys.readouterr().out
    assert "Bip01 L Thigh  [3 ch]  -> Hip x0.5, LHip" in out and "joints:\n  Hip:" in out
    (tmp_path / "rig.yaml").write_text(out.split("--rig-map):\n")[1])
    assert main(["--bvh-dir", str(tmp_path / "bvh"), "--out", str(tmp_path / "o"), "--name", "t",
                 "--rig-map", str(tmp_path / "rig.yaml"), "--cameras", "1", "--noise-px", "0"]) == 0
    out = capsys.readouterr().out
    assert "take 1.bvh: rig guessed, units m, height" in out and "thigh 0.450 m" in out and "bvh " in out


def _set_channel(text: str, joint: str, channel: str, value, frames=slice(None)) -> str:
    """``text`` (BVH) with one channel of one joint set to ``value`` in the given frames."""
    motion = parse_bvh(text)
    j = motion.joint_names.index(joint)
    column = sum(len(c) for c in motion.channels[:j]) + motion.channels[j].index(channel)
    head, rows = text.split("Frame Time: 0.02\n")
    rows = [r.split() for r in rows.strip().splitlines()]
    for r in list(range(len(rows)))[frames]:
        rows[r][column] = f"{value:.6f}"
    return head + "Frame Time: 0.02\n" + "\n".join(" ".join(r) for r in rows) + "\n"


def test_head_top_without_an_end_site_is_a_site_that_nods_with_the_head(tmp_path):
    """No head-top End Site: the head top is a site in the head's frame along the rest pose's up (10.3% of
    the stature), so it follows a nod of the head instead of the neck line; no eyes: the nose-level joint is
    a site up and forward of the head."""
    text = _set_channel(rig_bvh("cmu"), "Head", "Xrotation", 30.0, slice(6, None))  # nod in the last 6 frames
    rig = guess_rig_map(parse_bvh(text))
    sites = {name: (parent, np.array(offset)) for name, parent, offset in rig.sites}
    assert sites["HeadTop"][0] == "Head" and sites["Nose"][0] == "Head"
    top, nose = sites["HeadTop"][1], sites["Nose"][1]
    assert top[0] == top[2] == 0 and 0.15 < top[1] < 0.22  # straight up the head's (= the file's) Y
    assert nose[0] == 0 and nose[1] == nose[2] > 0  # up and forward (+Z: BODY faces +Z)
    (tmp_path / "nod.bvh").write_text(text)
    p = load_trial(tmp_path / "nod.bvh").positions  # frame 0 is the rest pose: dropped, so the nod is [5:]
    a, b, lateral = p[:, 10] - p[:, 9], p[:, 8] - p[:, 7], p[:, 4] - p[:, 1]  # head top - nose, chest, hips
    tilt = np.degrees(np.arctan2(np.sum(np.cross(a, b) * lateral, -1) / np.linalg.norm(lateral, axis=-1),
                                 np.sum(a * b, -1)))  # signed, in the sagittal plane
    np.testing.assert_allclose(abs(tilt[5:] - tilt[:5].mean()), 30.0, atol=0.1)
    np.testing.assert_allclose(np.linalg.norm(p[:, 10] - p[:, 9], axis=-1),
                               np.linalg.norm(p[0, 10] - p[0, 9]), atol=1e-6)  # a rigid point of the head


def test_head_axes_come_from_the_motion_when_the_rest_pose_lies_down(tmp_path):
    """A rig whose rest pose lies along -Z and whose root rotation stands it up gives the same joints."""
    text = rig_bvh("cmu")
    motion = parse_bvh(text)
    turn = lambda m: f"OFFSET {float(m[1]):.6f} {float(m[3]):.6f} {-float(m[2]):.6f}"  # noqa: E731  (-90 deg about X)
    lying = _set_channel(re.sub(r"OFFSET (\S+) (\S+) (\S+)", turn, text), "Hips", "Xrotation", 90.0)
    (tmp_path / "up.bvh").write_text(text)
    (tmp_path / "lying.bvh").write_text(lying)
    np.testing.assert_allclose(forward_kinematics(parse_bvh(lying)), forward_kinematics(motion), atol=1e-5)
    relative = lambda p: p - p[:, :1]  # noqa: E731
    up = load_trial(tmp_path / "up.bvh").positions  # its frame 0 is a rest pose and dropped; the lying one has none
    np.testing.assert_allclose(relative(load_trial(tmp_path / "lying.bvh").positions[1:]), relative(up), atol=1e-4)


def test_a_body_outside_adult_height_is_reported(tmp_path):
    (tmp_path / "small.bvh").write_text(rig_bvh("cmu", unit=1.4))  # file units read as m: a 1.27 m figure
    info = load_trial(tmp_path / "small.bvh", MocapConfig(units="m")).info
    assert "WARNING: 1.2" in info and "figure_scale" in info
    (tmp_path / "adult.bvh").write_text(rig_bvh("cmu"))
    assert "WARNING" not in load_trial(tmp_path / "adult.bvh").info
