"""The local `preview` video backend: an animatic per clip at exactly the requested size, frame count and fps.

Image-to-video shots become a slow pan and zoom over the start image; text-to-video shots a title card with the
prompt over a slowly moving gradient whose colours come from the seed. Clips are written in the product's one
H.264 profile (pipeline.media.encode), so assembly joins them by stream copy. Output is a pure function of the request.
"""

from __future__ import annotations

import colorsys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from pipeline.backends.base import ClipOutcome, ClipRequest, reporting_frames
from pipeline.errors import InputRejected, JobFailed, PipelineError
from pipeline.media.compose import draw_text_block, font
from pipeline.media.encode import PROFILE_ID, write_clip

VERSION = "v3"  # bump when the pictures or their encoding change: it is part of every preview clip's cache key
ZOOM = 1.12  # Ken Burns: how far the frame zooms in (or out) over a clip
GRADIENT_SPEED = 0.06  # gradient drift, in frame diagonals per second
TRANSPARENT_FILL = (32, 32, 32)  # what shows through a start image's transparent parts


class PreviewVideoBackend:
    """VideoBackend that draws animatics instead of running a model (outcomes are marked placeholder)."""

    name = "preview"
    max_batch = 1  # nothing to share between clips: each renders as soon as it is ready

    def identity(self, model: str) -> str:
        return f"preview:{VERSION}:{model}"

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return [self._render_one(req, out_dir) for req in requests]

    def _render_one(self, req: ClipRequest, out_dir: Path) -> ClipOutcome:
        t0 = time.perf_counter()
        try:
            _check(req)
            frames = _ken_burns(req) if req.image is not None else _title_card(req)
            path = out_dir / f"{req.key}.mp4"
            written = write_clip(path, reporting_frames(frames, key=req.key, total=req.frames), width=req.width, height=req.height, fps=req.fps)
            if written != req.frames:  # cannot happen by construction; never leave a wrong clip under its key
                path.unlink(missing_ok=True)
                raise JobFailed(f"clip {req.key}: wrote {written} frames, expected {req.frames}")
        except PipelineError as exc:
            return ClipOutcome(req.key, None, self.name, error=str(exc), error_type=type(exc).__name__, placeholder=True)
        except Exception as exc:  # a foreign failure in one clip must not stop the batch
            return ClipOutcome(req.key, None, self.name, error=f"clip {req.key}: {exc}", error_type=JobFailed.__name__,
                               placeholder=True)
        mode = "image-to-video" if req.image is not None else "text-to-video"
        return ClipOutcome(
            req.key, path, self.name, placeholder=True, timings={"render_s": round(time.perf_counter() - t0, 4)},
            extra={"mode": mode, "frames": req.frames, "fps": req.fps, "width": req.width, "height": req.height,
                   "encoding": PROFILE_ID, "note": f"preview animatic ({mode}), not {req.model}"},
        )


def _check(req: ClipRequest) -> None:
    problems = []
    if req.width <= 0 or req.height <= 0 or req.width % 2 or req.height % 2:
        problems.append(f"width and height must be positive and even (H.264 4:2:0), got {req.width}x{req.height}")
    if req.frames < 1:
        problems.append(f"frames must be >= 1, got {req.frames}")
    if req.fps <= 0:
        problems.append(f"fps must be > 0, got {req.fps}")
    if not req.key or "/" in req.key or req.key.startswith("."):
        problems.append(f"key {req.key!r} cannot name a file")
    if problems:
        raise InputRejected(f"clip {req.key}: " + "; ".join(problems))


def _progress(i: int, n: int) -> float:
    """0..1 over the clip, eased at both ends so motion starts and stops gently."""
    t = i / (n - 1) if n > 1 else 0.0
    return t * t * (3.0 - 2.0 * t)


# --- image-to-video: slow pan and zoom over the start image -------------------------------------------


def _load_start_image(req: ClipRequest) -> np.ndarray:
    path = Path(req.image)  # type: ignore[arg-type]
    if not path.is_file():
        raise InputRejected(f"clip {req.key}: start image {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                base = Image.new("RGB", rgba.size, TRANSPARENT_FILL)
                base.paste(rgba, mask=rgba.getchannel("A"))
                rgb = base
            else:
                rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputRejected(f"clip {req.key}: start image {path} is not a readable image: {exc}") from exc
    if rgb.width < 1 or rgb.height < 1:
        raise InputRejected(f"clip {req.key}: start image {path} is empty")
    # Cover-fit at the largest zoom once, so each frame is only a small affine resample.
    scale = max(req.width / rgb.width, req.height / rgb.height) * ZOOM
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return np.asarray(rgb.resize(size, Image.Resampling.LANCZOS))


def _ken_burns(req: ClipRequest) -> Iterator[np.ndarray]:
    src = _load_start_image(req)
    sh, sw = src.shape[:2]
    w, h = req.width, req.height
    rng = np.random.default_rng(req.seed)
    # Like a real image-to-video model, the first frame is the start image itself (cover-fitted, centred), so a
    # continued shot (continuity: last-frame) joins its predecessor without a jump; then it zooms in and drifts.
    z0, z1 = 1.0, ZOOM
    u0 = v0 = 0.5
    u1, v1 = rng.uniform(0.2, 0.8, size=2)  # where the view ends in its free range
    overlay = _label_overlay(req, caption=True)
    base_scale = max(w / sw, h / sh)  # source px -> output px at zoom 1 (the source is cover-fitted already)
    for i in range(req.frames):
        p = _progress(i, req.frames)
        z = z0 + (z1 - z0) * p
        a = base_scale * z
        # the visible window in source pixels is (w/a, h/a); its centre moves within the free margin
        cx = w / (2 * a) + (u0 + (u1 - u0) * p) * (sw - w / a)
        cy = h / (2 * a) + (v0 + (v1 - v0) * p) * (sh - h / a)
        m = np.array([[a, 0.0, w / 2 - a * cx], [0.0, a, h / 2 - a * cy]], np.float64)
        frame = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yield _composite(frame, overlay, _overlay_strength(i, req.frames))


# --- text-to-video: the prompt over a drifting gradient ------------------------------------------------


def _palette(seed: int) -> np.ndarray:
    """Three colours from the seed (hues apart, muted so white text stays readable)."""
    rng = np.random.default_rng(seed)
    hue = rng.uniform()
    spread = rng.uniform(0.12, 0.3)
    return np.array([colorsys.hsv_to_rgb((hue + spread * j) % 1.0, rng.uniform(0.45, 0.75), rng.uniform(0.35, 0.6))
                     for j in range(3)]) * 255.0


def _title_card(req: ClipRequest) -> Iterator[np.ndarray]:
    w, h = req.width, req.height
    colours = _palette(req.seed)
    period = w + h  # the pattern repeats once along the frame's diagonal
    t = np.arange(period) / period * 3.0  # three colours around a loop, cosine-eased between neighbours
    j = np.floor(t).astype(int)
    f = (1 - np.cos((t - j) * np.pi)) / 2
    ramp = colours[j % 3] * (1 - f[:, None]) + colours[(j + 1) % 3] * f[:, None]
    speed = GRADIENT_SPEED * float(np.hypot(w, h)) / req.fps  # px per frame
    direction = 1 if req.seed % 2 == 0 else -1
    start = int(speed * req.frames) + 1  # the offset of frame 0; offsets stay within [1, 2 * start]
    reach = 2 * start + w + h + 2
    tiled = np.ascontiguousarray(np.tile(ramp, (reach // period + 1, 1)).round().astype(np.uint8))
    overlay = _label_overlay(req, caption=False)
    for i in range(req.frames):
        offset = start + direction * int(round(speed * i))
        # pixel (y, x) shows ramp[offset + x + y]: each row is the row above shifted by one, a diagonal gradient
        view = np.lib.stride_tricks.as_strided(tiled[offset:], shape=(h, w, 3), strides=(3, 3, 1), writeable=False)
        yield _composite(np.array(view), overlay, _overlay_strength(i, req.frames))


# --- text overlays ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Overlay:
    """A text layer ready to blend: its box in the frame, colour * alpha, and 255 - alpha (both HxWx3 uint8)."""

    box: tuple[int, int, int, int]
    premultiplied: np.ndarray
    keep: np.ndarray


def _label_overlay(req: ClipRequest, *, caption: bool) -> _Overlay:
    """The PREVIEW label and the prompt (large and centred, or as a caption at the bottom), cropped to where
    it draws."""
    w, h = req.width, req.height
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    unit = max(8, h // 24)
    label = f"PREVIEW · {req.model} · seed {req.seed}"
    fnt = font(unit)
    pad = unit // 2
    tw = int(draw.textlength(label, font=fnt))
    draw.rectangle((pad, pad, pad + tw + 2 * pad, pad + int(unit * 1.3) + pad), fill=(0, 0, 0, 150))
    draw.text((2 * pad, pad + pad // 2), label, font=fnt, fill=(255, 255, 255, 235))
    if caption:
        top = h - int(h * 0.2)
        draw.rectangle((0, top, w, h), fill=(0, 0, 0, 120))
        draw_text_block(draw, req.prompt, (w // 20, top + pad, w - w // 20, h - pad), fill=(255, 255, 255, 255),
                        max_size=unit, min_size=max(8, unit * 2 // 3))
    else:
        mx, my = w // 10, h // 6
        draw_text_block(draw, req.prompt, (mx, my, w - mx, h - my), fill=(255, 255, 255, 255),
                        max_size=max(12, h // 10), min_size=max(8, h // 36), stroke_fill=(0, 0, 0, 170))
    bbox = layer.getbbox() or (0, 0, 1, 1)
    rgba = np.asarray(layer.crop(bbox)).astype(np.uint16)
    alpha = rgba[..., 3:4]
    premultiplied = ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    keep = np.repeat(255 - alpha, 3, axis=2).astype(np.uint8)
    return _Overlay(bbox, premultiplied, keep)


def _overlay_strength(i: int, n: int) -> float:
    """Text fades in after the first frame and out before the last, so the first and last frames are clean
    pictures: a clip continued from this one's last frame does not inherit (and re-draw) its labels."""
    if n < 3:
        return 1.0
    ramp = max(1, n // 6)
    return min(1.0, i / ramp, (n - 1 - i) / ramp)


def _composite(frame: np.ndarray, overlay: _Overlay, strength: float = 1.0) -> np.ndarray:
    if strength <= 0.0:
        return frame
    x0, y0, x1, y1 = overlay.box
    frame = frame if frame.flags.writeable else frame.copy()
    region = frame[y0:y1, x0:x1]
    keep, colour = overlay.keep, overlay.premultiplied
    if strength < 1.0:
        keep = (255 - (255 - keep.astype(np.float32)) * strength).round().astype(np.uint8)
        colour = (colour.astype(np.float32) * strength).round().astype(np.uint8)
    # out = region * (255 - alpha) / 255 + colour * alpha / 255, in saturating uint8 arithmetic
    region[...] = cv2.add(cv2.multiply(region, keep, scale=1 / 255), colour)
    return frame
