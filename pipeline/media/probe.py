"""What assembly knows about a clip: from the product's own provenance when it wrote the clip, else from moviepy.

A clip the product wrote (preview, diffusers or container backend) is described by its provenance: size, rate,
frame count and encoding profile, so joining it needs no probe process. Anything else (an uploaded clip, a cache
entry written before the profile existed) is probed with moviepy's `ffmpeg -i` parser and counted exactly by
imageio-ffmpeg's decode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
from moviepy.video.io.ffmpeg_reader import ffmpeg_parse_infos

from pipeline.errors import JobFailed
from pipeline.media.encode import KEYFRAME_INTERVAL, PROFILE_ID


def rate_of(fps: float | Fraction) -> Fraction:
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


@dataclass(frozen=True)
class ClipInfo:
    """A clip's geometry and encoding. `encoding` is PROFILE_ID for clips in the product's H.264 profile (which
    then have a keyframe every KEYFRAME_INTERVAL frames), another string or None when unknown."""

    width: int
    height: int
    fps: Fraction
    frames: int
    encoding: str | None = None

    @property
    def stitchable(self) -> bool:
        return self.encoding == PROFILE_ID

    @property
    def keyframes(self) -> range:
        return range(0, self.frames, KEYFRAME_INTERVAL if self.stitchable else self.frames)


@dataclass(frozen=True)
class VideoInfo:
    """A probed video file."""

    path: Path
    width: int
    height: int
    fps: float
    rate: Fraction
    frames: int
    duration: float  # frames / rate
    codec: str
    encoding: str | None  # the file's `comment` tag: PROFILE_ID for files in the product's profile
    has_audio: bool

    def clip_info(self) -> ClipInfo:
        return ClipInfo(self.width, self.height, self.rate, self.frames, self.encoding)


def check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise JobFailed(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise JobFailed(f"{what} {path} is empty")


def _infos(path: Path, what: str) -> dict[str, Any]:
    check_file(path, what)
    try:
        infos: dict[str, Any] = ffmpeg_parse_infos(str(path))
    except (OSError, IndexError, ValueError) as exc:  # moviepy raises IOError for files ffmpeg cannot read
        raise JobFailed(f"{what} {path} is not a readable video: {str(exc).strip().splitlines()[-1:]}") from None
    if not infos.get("video_found") or not infos.get("video_fps") or not infos.get("video_size"):
        raise JobFailed(f"{what} {path} has no video stream")
    return infos


def probe_video(path: Path, *, what: str = "video") -> VideoInfo:
    """Size, rate, exact frame count (one decode), codec, encoding tag and audio of a video file."""
    path = Path(path)
    infos = _infos(path, what)
    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as exc:
        raise JobFailed(f"{what} {path}: cannot count its frames: {exc}") from exc
    if not frames:
        raise JobFailed(f"{what} {path} has no video frames")
    rate = rate_of(float(infos["video_fps"]))
    width, height = (int(v) for v in infos["video_size"])
    return VideoInfo(path=path, width=width, height=height, fps=float(rate), rate=rate, frames=int(frames),
                     duration=float(frames / rate), codec=str(infos.get("video_codec_name") or "?"),
                     encoding=(infos.get("metadata") or {}).get("comment"), has_audio=bool(infos.get("audio_found")))


def inspect_clip(path: Path, known: ClipInfo | None) -> ClipInfo:
    """The clip's ClipInfo: `known` (from provenance) as is when it names the profile; when it does not say how
    the clip was encoded, one `ffmpeg -i` reads the file's profile tag; with nothing known, a full probe."""
    path = Path(path)
    if known is not None and known.encoding is not None:
        check_file(path, "clip")
        return known
    if known is not None:
        infos = _infos(path, "clip")
        size = tuple(int(v) for v in infos["video_size"])
        tag = (infos.get("metadata") or {}).get("comment")
        if tag == PROFILE_ID and size == (known.width, known.height) and rate_of(infos["video_fps"]) == known.fps:
            return ClipInfo(known.width, known.height, known.fps, known.frames, tag)
    return probe_video(path, what="clip").clip_info()


def clip_info_from_provenance(info: Mapping[str, Any]) -> ClipInfo | None:
    """ClipInfo from a clip job's stored provenance `info` (tasks.run_clip_batch): the size, rate and frame count
    the backend was asked for and wrote exactly, and the encoding the backend reports (None when it does not)."""
    try:
        width, height, frames, fps = (info[k] for k in ("width", "height", "frames", "fps"))
    except KeyError:
        return None
    extra = info.get("extra") or {}
    output = extra.get("output")  # the container's record of the file it wrote (pipeline/backends/sagemaker_jobs.py keeps it)
    if not isinstance(output, Mapping):
        output = (extra.get("provenance") or {}).get("output") or {}
    encoding = extra.get("encoding") or output.get("encoding")
    if not all(isinstance(v, int) and v > 0 for v in (width, height, frames)) or not isinstance(fps, (int, float)):
        return None
    return ClipInfo(int(width), int(height), rate_of(fps), int(frames), str(encoding) if encoding else None)
