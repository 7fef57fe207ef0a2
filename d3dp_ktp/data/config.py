"""Data configuration: which files to read, which subjects/actions, and how training chunks are cut."""
from __future__ import annotations

from dataclasses import dataclass, field

DATASETS = ("h36m", "mpi_inf_3dhp", "humaneva", "custom")
FLIP_MODES = ("paired", "random", "none")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time generalisation (d3dp_ktp/data/augment.py). All off by default: training is then
    bit-identical to a run without this section. YAML: ``data: {augment: {body: true, ...}}``."""
    prob: float = 1.0  # share of the training chunks augmented (a draw per chunk; 1 = every chunk)
    # --- body shape: rescale bones per chunk, joint angles kept (3D, before projection) ---
    body: bool = False
    body_height_m: tuple[float, float] = (1.4, 2.0)  # uniform draw of the stature
    body_proportion: float = 0.1  # each bone group (thigh, shank, spine, ...) x e^U(-p, p) before the height
    body_floor: bool = True  # move the rescaled body so its lowest ankle stays on the floor (the root moves)
    # --- speed: replay each chunk faster or slower (and shifted) by interpolating the recording ---
    speed: bool = False
    speed_range: tuple[float, float] = (0.7, 1.6)  # log-uniform playback speed (1 = as recorded)
    # --- camera: re-project each chunk from a new virtual pinhole camera ---
    camera: bool = False
    camera_image_sizes: tuple[tuple[int, int], ...] = ((1000, 1000), (1920, 1080), (1280, 720), (1080, 1920),
                                                       (640, 480))  # (w, h) px, one drawn per chunk
    camera_focal: tuple[float, float] = (0.6, 1.6)  # focal length / longer image side (H36M: 1.15)
    camera_fill: tuple[float, float] = (0.3, 0.9)  # share of the image height the person spans
    camera_height_m: tuple[float, float] = (0.3, 2.5)  # above the chunk's lowest joint
    camera_distance_m: tuple[float, float] = (1.5, 15.0)  # clamp of the distance the fill implies
    camera_pitch_deg: float = 10.0  # aim jitter up/down around the person
    camera_roll_deg: float = 5.0  # camera roll
    # --- detector-like 2D noise (scales: share of the person's 2D height) ---
    noise: bool = False
    noise_std: float = 0.01  # Gaussian std at confidence 1 (x JOINT_NOISE_SCALE / confidence)
    noise_confidence: tuple[float, float] = (0.5, 1.0)  # per-joint confidence drawn per chunk
    noise_jitter_frames: float = 0.25  # std of each frame's timing error, in frames
    noise_outlier_prob: float = 0.003  # per joint and frame: an outlier of 1-3 frames starts
    noise_outlier_std: float = 0.15  # displacement std of an outlier
    noise_swap_prob: float = 0.05  # per chunk: the left/right arms or legs swap for a short span
    noise_dropout_prob: float = 0.005  # per joint and frame: the joint freezes for 1-8 frames

    @property
    def enabled(self) -> bool:
        return self.body or self.camera or self.noise or self.speed

    def __post_init__(self):
        ranges = {"body_height_m": self.body_height_m, "speed_range": self.speed_range,
                  "camera_focal": self.camera_focal, "camera_fill": self.camera_fill,
                  "camera_height_m": self.camera_height_m,
                  "camera_distance_m": self.camera_distance_m, "noise_confidence": self.noise_confidence}
        for key, (low, high) in ranges.items():
            if not 0 < low <= high:
                raise ValueError(f"data.augment.{key} must be [low, high] with 0 < low <= high, got {[low, high]}")
        if self.noise_confidence[1] > 1:
            raise ValueError(f"data.augment.noise_confidence must lie in (0, 1], got {self.noise_confidence}")
        if not self.camera_image_sizes or any(len(s) != 2 or min(s) < 1 for s in self.camera_image_sizes):
            raise ValueError(f"data.augment.camera_image_sizes must be [[w, h], ...], got {self.camera_image_sizes}")
        for key in ("prob", "noise_outlier_prob", "noise_swap_prob", "noise_dropout_prob"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"data.augment.{key} must be in [0, 1], got {getattr(self, key)}")
        for key in ("body_proportion", "camera_pitch_deg", "camera_roll_deg", "noise_std",
                    "noise_jitter_frames", "noise_outlier_std"):
            if getattr(self, key) < 0:
                raise ValueError(f"data.augment.{key} must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class DataConfig:
    # 'h36m' | 'mpi_inf_3dhp' | 'humaneva' | 'custom' (file formats: d3dp_ktp/data/<dataset>.py).
    dataset: str = "h36m"
    # Folder holding the npz files (data_3d_*.npz, data_2d_*.npz, data_*_3dhp_ori.npz).
    root: str = "data"
    # custom only: <name> in data_3d_<name>.npz / data_2d_<name>_<keypoints>.npz.
    name: str = ""
    # 2D source, <kp> in data_2d_<dataset>_<kp>.npz: 'cpn_ft_h36m_dbb' (CPN, the paper's), 'gt',
    # 'detectron_pt_coco', ... Ignored by mpi_inf_3dhp, whose 2D is always the annotation.
    keypoints: str = "cpn_ft_h36m_dbb"
    # mpi_inf_3dhp only: folder with the official TS1..TS6/annot_data.mat; '' reads data_test_3dhp_ori.npz.
    annot_mat_dir: str = ""
    # docs/method.md §6.4 (Human3.6M). Other datasets need their own: see STANDARD_SPLITS in d3dp_ktp/data/registry.py.
    subjects_train: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
    subjects_test: tuple[str, ...] = ("S9", "S11")
    # '*' for all, else comma-separated action prefixes (official -a, e.g. 'Walk,Jog' for HumanEva).
    actions: str = "*"
    # T: frames per training chunk and evaluation window (the receptive field, docs/method.md §6.5/§6.6).
    num_frames: int = 243
    # 'paired': every chunk un-flipped and flipped each epoch (official, docs/method.md §6.5); 'random': each
    # chunk once per epoch, flipped with probability 0.5; 'none': no flip augmentation.
    flip_mode: str = "paired"
    # Chunks per training batch (D3DP: 1024 // 243 = 4).
    batch_size: int = 4
    # DataLoader workers; chunk slicing is cheap, so 0 (main process) is usually enough.
    num_workers: int = 0
    # Seed of the NumPy RandomState that permutes the chunks each epoch (official: 1234).
    seed: int = 1234
    # Body-shape, camera and 2D-noise augmentation of the training chunks (AugmentConfig above).
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {', '.join(DATASETS)}, got '{self.dataset}'")
        if self.dataset == "custom" and not self.name:
            raise ValueError("data.name must name the custom dataset (data_3d_<name>.npz) when data.dataset=custom")
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"data.flip_mode must be one of {', '.join(FLIP_MODES)}, got '{self.flip_mode}'")
        for key in ("num_frames", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
