"""The one H.264 profile every clip the product writes uses, and a writer for it on moviepy's ffmpeg writer.

container/generate.py (which cannot import `pipeline`) carries a copy of `H264_PROFILE`; tests/test_media_encode.py
keeps the two identical. Clips in this profile at one size and rate share their SPS/PPS, so assembly joins them
and its own encoded segments by stream copy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from moviepy.video.io.ffmpeg_writer import FFMPEG_VideoWriter

from pipeline.errors import InputRejected, JobFailed

# Tagged into every file (MP4 `comment`), so a clip whose provenance does not say how it was encoded can be
# recognised by one `ffmpeg -i`. Bump the number whenever H264_PROFILE changes.
PROFILE_ID = "campaign-h264/1"
# A keyframe every few frames lets assembly cut a clip next to a crossfade window by stream copy; no B-frames
# keeps decode order equal to display order, so any cut at a keyframe is clean. CRF 17 is visually lossless
# for delivery. `stitchable=1` makes the headers independent of the content, so every encode at one size/fps
# shares its SPS/PPS. Codec (libx264) and pixel format (yuv420p) are the writers' own arguments.
KEYFRAME_INTERVAL = 4
H264_PROFILE: tuple[str, ...] = (
    "-preset", "veryfast", "-crf", "17", "-g", "4", "-keyint_min", "4", "-sc_threshold", "0", "-bf", "0",
    "-x264-params", "stitchable=1", "-metadata", "comment=campaign-h264/1",
)
AUDIO_CODEC, AUDIO_BITRATE = "aac", "192k"


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _option(name: str) -> str:
    return H264_PROFILE[H264_PROFILE.index(name) + 1]


class SegmentWriter:
    """RGB frames into an H.264 MP4 in the profile, through moviepy's FFMPEG_VideoWriter (no audio).

    `idr_at` lists frame indices that must start a new IDR (a point where the stream can be cut by copy).
    moviepy 2.2.1 writes `-r %.02f` (exact for the product's whole-number rates) and appends `-pix_fmt yuva420p`
    for libx264, which ffmpeg maps to yuv420p, the pixel format the container writes (moviepy/video/io/
    ffmpeg_writer.py; checked by tests/test_media_encode.py, which stream-copies the two writers' files together).
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: float | Fraction, idr_at: Iterable[int] = ()) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise InputRejected(f"H.264 yuv420p needs a positive, even width and height, got {width}x{height}")
        if fps <= 0:
            raise InputRejected(f"fps must be positive, got {fps}")
        self.path, self.width, self.height, self.frames = Path(path), width, height, 0
        idr = sorted({int(i) for i in idr_at if int(i) > 0})
        force = ["-force_key_frames", "expr:" + "+".join(f"eq(n,{i})" for i in idr), "-forced-idr", "1"] if idr else []
        self._log = tempfile.TemporaryFile()
        params = [*_without_preset(), *force]
        self._writer = FFMPEG_VideoWriter(str(self.path), (width, height), float(fps), codec="libx264",
                                          preset=_option("-preset"), ffmpeg_params=params, logfile=self._log)
        self._proc = self._writer.proc

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise JobFailed(f"{self.path.name}: frame {self.frames} is {frame.shape} {frame.dtype}, "
                            f"expected ({self.height}, {self.width}, 3) uint8")
        try:
            self._writer.write_frame(np.ascontiguousarray(frame))
        except OSError:
            raise JobFailed(f"ffmpeg stopped while encoding {self.path}: {self._stderr()}") from None
        self.frames += 1

    def close(self) -> None:
        try:
            self._writer.close()
            if self._proc.returncode != 0:
                raise JobFailed(f"ffmpeg failed ({self._proc.returncode}) encoding {self.path}: {self._stderr()}")
            if self.frames == 0:
                raise JobFailed(f"{self.path}: no frames were written")
        finally:
            self._log.close()

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._log.close()

    def _stderr(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return "\n".join(line for line in lines[-20:] if "error" in line.lower() or "invalid" in line.lower())[-2000:]

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _without_preset() -> list[str]:
    """The profile minus `-preset`, which moviepy's writer takes as its own argument."""
    i = H264_PROFILE.index("-preset")
    return [*H264_PROFILE[:i], *H264_PROFILE[i + 2:]]


def write_clip(path: Path, frames: Iterable[np.ndarray], *, width: int, height: int, fps: float | Fraction) -> int:
    """Encode `frames` to `path` in the profile, atomically (temp name beside it, then os.replace); return the count."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        with SegmentWriter(tmp, width=width, height=height, fps=fps) as writer:
            for frame in frames:
                writer.write(frame)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return writer.frames


def temp_beside(path: Path, suffix: str = ".partial.mp4") -> Path:
    """A fresh temp name in `path`'s folder (ffmpeg picks the container from the extension)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)
