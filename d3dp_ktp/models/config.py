"""ModelConfig: the one schema for every denoiser this package builds."""
from __future__ import annotations

from dataclasses import dataclass

from ..skeleton import get_skeleton


@dataclass(frozen=True)
class ModelConfig:
    # 'ktpformer' (docs/method.md §2, our diffusion denoiser §3.2) or 'mixste' (D3DP's MixSTE2, docs/method.md §3.1).
    arch: str = "ktpformer"
    # True: D3DP denoiser f(x2d, x_t, t) -> x0 (5 input channels + time embedding).
    # False: the deterministic lifter f(x2d) -> 3D (KTPFormer as published).
    diffusion: bool = True
    num_frames: int = 243          # T, the receptive field; the temporal graph and P_t are tied to it
    num_joints: int = 17           # J
    layout: str = "h36m"           # skeleton whose bones form the spatial graph (h36m, humaneva15, mpi_inf_3dhp)
    keypoint_layout: str = ""      # layout of the 2D input (e.g. 'coco' in the wild); '' = same as layout
    channels: int = 512            # C
    depth: int = 7                 # official depth argument: KTPFormer 7 (pairs after KPA/TPA), MixSTE 8 (all pairs)
    num_heads: int = 8
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.1    # 0.1 for training; the evaluation model uses 0 (docs/method.md §2.6)
    # Ablations of the KTPFormer paper (Tables 5-6).
    use_kpa: bool = True           # False: a Linear patch embedding replaces KPA
    use_tpa: bool = True           # False: no stacked TPA before the first temporal attention
    tpa_layers: int = 2            # TPA graph convs: 2 = SMD (paper), 1 = SMD-S; UMD/PMD use it too
    # Table 6: how KPA and TPA are combined (arch 'ktpformer'). 'smd' = Separate Mode (paper, official
    # code); 'umd' = United Mode, 'pmd' = Parallel Mode (our wiring; no official code, see ktpformer.py).
    mode: str = "smd"
    graph_prior: bool = True       # False = "w/o prior": no fixed bone/chain topology A
    graph_global: bool = True      # False = "w/o global": no learnable topology Â
    attention: str = "sdpa"        # 'sdpa' (fused kernels where available) or 'math' (explicit softmax)

    def validate(self) -> None:
        if self.arch not in ("ktpformer", "mixste"):
            raise ValueError(f"model.arch must be 'ktpformer' or 'mixste', got '{self.arch}'")
        if self.attention not in ("sdpa", "math"):
            raise ValueError(f"model.attention must be 'sdpa' or 'math', got '{self.attention}'")
        for name in ("num_frames", "num_joints", "channels", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.channels % self.num_heads:
            raise ValueError(f"model.channels ({self.channels}) must be divisible by model.num_heads ({self.num_heads})")
        get_skeleton(self.layout)
        if self.keypoint_layout:
            get_skeleton(self.keypoint_layout)
        if self.tpa_layers not in (1, 2):
            raise ValueError(f"model.tpa_layers must be 1 or 2, got {self.tpa_layers}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        self._validate_mode()

    def _validate_mode(self) -> None:
        if self.mode not in ("smd", "umd", "pmd"):
            raise ValueError(f"model.mode must be 'smd', 'umd' or 'pmd' (KTPFormer Table 6), got '{self.mode}'")
        if self.mode == "smd":
            return
        if self.arch != "ktpformer":
            raise ValueError(f"model.mode '{self.mode}' applies to arch 'ktpformer' only; "
                             f"use model.mode=smd with arch '{self.arch}'")
        if not (self.use_kpa and self.use_tpa):
            raise ValueError(f"model.mode '{self.mode}' combines KPA and TPA, so it needs model.use_kpa=true and "
                             f"model.use_tpa=true (got use_kpa={self.use_kpa}, use_tpa={self.use_tpa}); "
                             "use model.mode=smd for the KPA-only / TPA-only ablations")
