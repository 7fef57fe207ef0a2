"""The two evaluation protocols, side by side (docs/method.md §5 metrics, §12 official-code quirks).

The project reports every number under both. ``OFFICIAL`` keeps the three quirks of the official D3DP
evaluation, so its numbers compare with the papers; ``CLEAN`` removes them (our choice, docs/method.md
§10). A protocol is a value: the runner asks it how frames count, how P-Best chooses and which root
JPMA reprojects with, and never tests the protocol's name.

| question (field)                         | OFFICIAL                                   | CLEAN                      |
|------------------------------------------|--------------------------------------------|----------------------------|
| which window frames count (frame_counting) | every one: the last window's overlap and the replicate padding again (quirk 3) | each video frame once |
| where P-Best chooses (p_best)            | per batch of windows, on every frame, padding included (quirk 2) | per window, on the counted frames |
| JPMA's root trajectory (jpma_root)       | the ground truth (quirk 1)                 | estimated from the 2D alone |

Videos with a valid-frame mask (MPI-INF-3DHP) are scored on their valid frames under both protocols,
as the official MATLAB code does (docs/method.md §7).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

MM = 1000.0  # metres -> millimetres: results are reported in mm
P2_PREFIX = "P2/"  # metric names of Protocol #2 (P-MPJPE): 'P2/J-Best', ...

FRAME_COUNTINGS = ("every_window_frame", "each_frame_once")
P_BEST_RULES = ("batch", "window")
JPMA_ROOTS = ("ground_truth", "estimated")


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    # 'every_window_frame': a frame counts once per window position it fills (quirk 3);
    # 'each_frame_once': a frame counts once, where `data.windows.stitch` keeps it.
    frame_counting: str
    # 'batch': one P-Best hypothesis per batch, chosen from every window frame (quirk 2);
    # 'window': one per window, chosen from exactly the frames that window is scored on.
    p_best: str
    # 'ground_truth': JPMA reprojects P + the GT root trajectory (quirk 1);
    # 'estimated': P + the root `aggregation.estimate_root` fits to the 2D (nothing from the GT).
    jpma_root: str

    def __post_init__(self):
        for field, value, valid in (("frame_counting", self.frame_counting, FRAME_COUNTINGS),
                                    ("p_best", self.p_best, P_BEST_RULES), ("jpma_root", self.jpma_root, JPMA_ROOTS)):
            if value not in valid:
                raise ValueError(f"EvalProtocol.{field} must be one of {valid}, got {value!r}")

    @property
    def counts_repeated_frames(self) -> bool:
        return self.frame_counting == "every_window_frame"

    def p_best_weights(self, weight: torch.Tensor) -> torch.Tensor | None:
        """The (B, T) frame weights P-Best chooses with: None = every frame alike (the official rule)."""
        return weight if self.p_best == "window" else None

    def jpma_gt_root(self, gt_root: torch.Tensor) -> torch.Tensor | None:
        """The root JPMA is given: the GT trajectory (B, T, 3), or None to estimate it from 2D."""
        return gt_root if self.jpma_root == "ground_truth" else None

    def describe(self, batch_size: int, has_valid_mask: bool, jpma_skipped: bool) -> dict[str, str]:
        """The settings lines of a report: how frames count, how P-Best chooses, JPMA's root."""
        if has_valid_mask:
            counting = "valid frames of the stitched sequence, each once (MATLAB protocol, docs/method.md §7)"
        elif self.counts_repeated_frames:
            counting = "every window frame, overlap and padding counted again (docs/method.md §12)"
        else:
            counting = "each frame once (no overlap or padding double counting)"
        p_best = (f"per batch of {batch_size} windows, chosen on every frame (docs/method.md §12)"
                  if self.p_best == "batch" else "per window, chosen on the counted frames only")
        root = ("skipped" if jpma_skipped else "ground-truth root trajectory (docs/method.md §12)"
                if self.jpma_root == "ground_truth" else "estimated from 2D (aggregation.estimate_root)")
        return {"p_best": p_best, "jpma_root": root, "frame_counting": counting}


OFFICIAL = EvalProtocol("official", frame_counting="every_window_frame", p_best="batch", jpma_root="ground_truth")
CLEAN = EvalProtocol("clean", frame_counting="each_frame_once", p_best="window", jpma_root="estimated")
PROTOCOLS = {p.name: p for p in (OFFICIAL, CLEAN)}


def get_protocol(name: str) -> EvalProtocol:
    """The protocol of ``eval.mode``."""
    if name not in PROTOCOLS:
        raise ValueError(f"eval.mode must be one of {', '.join(PROTOCOLS)}, got '{name}'")
    return PROTOCOLS[name]
