"""Reading and writing video with PyAV (`av`), which ships its own FFmpeg: no system binary needed.

Frames are RGB arrays (H, W, 3) uint8. The writer encodes H.264 (yuv420p, so every player and
browser shows it) at an exact rational frame rate, so a 29.97 fps source stays 30000/1001 fps.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from d3dp_ktp.atomic import atomic_file

CODEC = "libx264"
FALLBACK_CODEC = "mpeg4"  # builds of PyAV without libx264


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: Fraction     # average frame rate of the video stream
    num_frames: int   # counted by decoding when the container does not state it

    @property
    def seconds(self) -> float:
        return self.num_frames / float(self.fps)


def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise ValueError(f"cannot read {path} as a video: {err}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} holds no video stream")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate and frame count of the first video stream of ``path``."""
    path = Path(path)
    with contextlib.closing(_open(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise ValueError(f"{path}: the video states no frame rate")
        count = stream.frames or sum(1 for _ in container.decode(video=0))
        return VideoInfo(path, int(stream.width), int(stream.height), Fraction(rate), int(count))


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of the first video stream, in order, as RGB (H, W, 3) uint8."""
    with contextlib.closing(_open(Path(path))) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


@contextlib.contextmanager
def video_writer(path: str | Path, fps: float | Fraction, width: int, height: int):
    """Context manager yielding ``write(image)`` for RGB (height, width, 3) uint8 images; the file
    appears (atomically) only when the block ends without an error. width and height must be even
    (yuv420p)."""
    if width % 2 or height % 2 or width < 2 or height < 2:
        raise ValueError(f"video width and height must be even and >= 2, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    with atomic_file(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            codec = CODEC if CODEC in av.codecs_available else FALLBACK_CODEC
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == CODEC:
                stream.options = {"crf": "23", "preset": "veryfast"}

            def write(image: np.ndarray) -> None:
                if image.shape != (height, width, 3) or image.dtype != np.uint8:
                    raise ValueError(f"expected a ({height}, {width}, 3) uint8 image, got {image.shape} {image.dtype}")
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)

            yield write
            for packet in stream.encode(None):  # flush the encoder's delayed frames
                container.mux(packet)
        finally:
            container.close()
