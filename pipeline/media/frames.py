"""Frames out of videos (decoded by imageio-ffmpeg) and the continuity step's helpers: a clip's last frame, colour matching."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image

from pipeline.errors import JobFailed
from pipeline.media.probe import check_file


def decode(path: Path, *, input_params: Sequence[str] = (), what: str | None = None) -> Iterator[np.ndarray]:
    """Every decoded frame of `path` once, in order, as RGB (no rate conversion: `-fps_mode passthrough`)."""
    try:
        reader = imageio_ffmpeg.read_frames(str(path), input_params=list(input_params),
                                            output_params=["-fps_mode", "passthrough"])
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise JobFailed(f"ffmpeg could not decode {what or path}: {exc}") from None
    width, height = meta["size"]
    try:
        for buf in reader:
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    except RuntimeError as exc:
        raise JobFailed(f"ffmpeg could not decode {what or path}: {exc}") from None
    finally:
        reader.close()


def last_frame(path: Path) -> Image.Image:
    """The final frame of a video as an RGB image (decodes only its last second or so)."""
    path = Path(path)
    check_file(path, "video")
    tail = deque(decode(path, input_params=["-sseof", "-1"]), maxlen=1)
    if not tail:  # a clip shorter than the seek: decode from the start
        tail = deque(decode(path), maxlen=1)
    if not tail:
        raise JobFailed(f"video {path} has no decodable frames")
    return Image.fromarray(tail[0].copy())


def match_colors(image: Image.Image, reference: Image.Image) -> Image.Image:
    """`image` with its colour statistics (mean and spread of each LAB channel) moved to those of `reference`;
    used to keep a continued shot's start frame in the look of the clip before it. Alpha is kept."""
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    src = np.asarray(image.convert("RGB"), np.float32) / 255.0
    ref = np.asarray(reference.convert("RGB"), np.float32) / 255.0
    src_lab, ref_lab = cv2.cvtColor(src, cv2.COLOR_RGB2LAB), cv2.cvtColor(ref, cv2.COLOR_RGB2LAB)
    s_mean, s_std = src_lab.reshape(-1, 3).mean(0), src_lab.reshape(-1, 3).std(0)
    r_mean, r_std = ref_lab.reshape(-1, 3).mean(0), ref_lab.reshape(-1, 3).std(0)
    out_lab = (src_lab - s_mean) * (r_std / np.maximum(s_std, 1e-6)) + r_mean
    out = cv2.cvtColor(out_lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    result = Image.fromarray(np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if alpha is not None:
        result.putalpha(alpha)
    return result
