"""The two evaluation protocols as values: what each decides, and that the runner follows the value."""
import dataclasses

import numpy as np
import pytest
import torch

from d3dp_ktp.evaluation.protocol import CLEAN, OFFICIAL, PROTOCOLS, EvalProtocol, get_protocol
from d3dp_ktp.evaluation.runner import frame_weights

from .helpers import make_video


def test_official_keeps_the_three_quirks_and_clean_removes_them():
    assert (OFFICIAL.frame_counting, OFFICIAL.p_best, OFFICIAL.jpma_root) == ("every_window_frame", "batch",
                                                                             "ground_truth")
    assert (CLEAN.frame_counting, CLEAN.p_best, CLEAN.jpma_root) == ("each_frame_once", "window", "estimated")
    assert PROTOCOLS == {"official": OFFICIAL, "clean": CLEAN} and get_protocol("clean") is CLEAN
    weight, root = torch.rand(2, 5), torch.rand(2, 5, 3)
    assert OFFICIAL.p_best_weights(weight) is None and CLEAN.p_best_weights(weight) is weight
    assert OFFICIAL.jpma_gt_root(root) is root and CLEAN.jpma_gt_root(root) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        OFFICIAL.p_best = "window"


def test_bad_protocols_are_refused_with_the_valid_values():
    with pytest.raises(ValueError, match=r"eval.mode must be one of official, clean, got 'paper'"):
        get_protocol("paper")
    with pytest.raises(ValueError, match=r"EvalProtocol.jpma_root must be one of \('ground_truth', 'estimated'\)"):
        EvalProtocol("mine", "each_frame_once", "window", "gt")


def test_frame_counting_follows_the_protocol_value_not_its_name():
    video = make_video("S9", "Walking 1", 13, 0)  # T = 5: windows [0,5) [5,10) [8,13): 2 frames repeat
    mixed = EvalProtocol("mixed", frame_counting="every_window_frame", p_best="window", jpma_root="estimated")
    assert frame_weights(video, 5, OFFICIAL).sum() == frame_weights(video, 5, mixed).sum() == 15
    once = frame_weights(video, 5, CLEAN)
    assert once.sum() == 13 and np.array_equal(once[1], [1, 1, 1, 0, 0])  # frames 8, 9: the last window's


def test_describe_names_each_choice():
    official = OFFICIAL.describe(4, has_valid_mask=False, jpma_skipped=False)
    assert "per batch of 4 windows" in official["p_best"] and "ground-truth" in official["jpma_root"]
    assert "counted again" in official["frame_counting"]
    clean = CLEAN.describe(4, has_valid_mask=True, jpma_skipped=True)
    assert clean["jpma_root"] == "skipped" and "valid frames" in clean["frame_counting"]
    assert "per window" in clean["p_best"]
