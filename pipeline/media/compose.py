"""Frames assembly makes with moviepy: crossfade windows, title and end cards, clips fitted to another size and rate;
and the text drawing the preview backend shares (DejaVu Sans from the OS, else Pillow's bundled font)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from moviepy import ColorClip, CompositeVideoClip, ImageSequenceClip, TextClip, VideoFileClip, vfx
from PIL import ImageColor, ImageDraw, ImageFont

from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest.campaign import Card
from pipeline.media.probe import ClipInfo

# --- fonts and text -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def font_path() -> str | None:
    """DejaVu Sans (Debian's fonts-dejavu-core, wide Unicode coverage) when the OS has it, else None."""
    try:
        return str(ImageFont.truetype("DejaVuSans.ttf", 10).path)
    except OSError:
        return None


_fonts = threading.local()  # FreeType faces are not safe to share between threads: one cache per thread


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at `size` px if installed, else Pillow's bundled font (needs no files, works offline)."""
    size = max(6, int(size))
    cache: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = _fonts.__dict__.setdefault("by_size", {})
    if size not in cache:
        path = font_path()
        cache[size] = ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)
    return cache[size]


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt: Any, width: float) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            while draw.textlength(word, font=fnt) > width and len(word) > 1:  # a word wider than the box: break it
                cut = len(word) - 1
                while cut > 1 and draw.textlength(word[:cut], font=fnt) > width:
                    cut -= 1
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=fnt) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def draw_text_block(draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], *, fill: Any,
                    max_size: int, min_size: int, stroke_fill: Any = None, spacing: float = 1.25) -> None:
    """Draw `text` word-wrapped and centred in `box` at the largest size from max_size down that fits;
    at min_size, lines that still do not fit are dropped and the last kept line ends with an ellipsis.
    (The preview's overlays need the ellipsis and the stroke; cards use moviepy's TextClip.)"""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    size = max_size
    while True:
        fnt = font(size)
        lines = _wrap(draw, text, fnt, width)
        line_h = int(size * spacing)
        if len(lines) * line_h <= height or size <= min_size:
            break
        size = max(min_size, int(size * 0.88))
    fit = max(1, height // line_h)
    if len(lines) > fit:
        lines = lines[:fit]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=fnt) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    stroke = max(1, size // 18) if stroke_fill is not None else 0
    top = y0 + (height - len(lines) * line_h) // 2
    for i, line in enumerate(lines):
        w = draw.textlength(line, font=fnt)
        draw.text((x0 + (width - w) / 2, top + i * line_h), line, font=fnt, fill=fill,
                  stroke_width=stroke, stroke_fill=stroke_fill)


# --- cards, crossfades, fitted clips (moviepy) ----------------------------------------------------------------


def _rgb(card: Card, value: str) -> tuple[int, int, int]:
    try:
        r, g, b = ImageColor.getrgb(value)[:3]
    except ValueError as exc:
        raise InputRejected(f"card {card.text!r}: {exc}") from exc
    return r, g, b


def render_card(card: Card, *, width: int, height: int, font: Path | None = None) -> np.ndarray:
    """A card's single frame: its text, wrapped, sized to fit and centred (moviepy TextClip 'caption'), on its
    colour, in `font` (the brand's card font) or the default one."""
    bg, fg = _rgb(card, card.color), _rgb(card, card.text_color)
    margin_x, margin_y = width // 10, height // 8
    background = ColorClip((width, height), color=bg, duration=1)
    layers: list[Any] = [background]
    if card.text.strip():
        text = TextClip(font=str(font) if font else font_path(), text=card.text, method="caption", size=(width - 2 * margin_x, height - 2 * margin_y),
                        color=fg, text_align="center", horizontal_align="center", vertical_align="center", duration=1)
        layers.append(text.with_position("center"))
    frame = CompositeVideoClip(layers, size=(width, height)).get_frame(0)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def crossfade(a: Sequence[np.ndarray], b: Sequence[np.ndarray], fps: Fraction) -> Iterator[np.ndarray]:
    """A crossfade window: `b` fades in over `a` (moviepy CrossFadeIn), frame j at b's weight (j + 0.5) / k.

    Each frame is sampled at the middle of its display interval, so the window is symmetric: neither its first
    frame is pure `a` nor its last pure `b`."""
    k = len(a)
    if k != len(b) or not k:
        raise JobFailed(f"a crossfade window needs as many frames of each clip, got {len(a)} and {len(b)}")
    rate = float(fps)
    under = ImageSequenceClip(list(a), fps=rate, with_mask=False)
    over = ImageSequenceClip(list(b), fps=rate, with_mask=False).with_effects([vfx.CrossFadeIn(k / rate)])
    height, width = a[0].shape[:2]
    window = CompositeVideoClip([under, over], size=(width, height))
    for j in range(k):
        yield np.ascontiguousarray(window.get_frame((j + 0.5) / rate), dtype=np.uint8)


def fitted_frames(path: Path, info: ClipInfo, count: int, rate: Fraction, width: int, height: int) -> Iterator[np.ndarray]:
    """`count` frames of a clip at the video's size (fitted inside, letterboxed, never cropped) and rate (the source
    frame showing at each output frame's middle), read and composed by moviepy."""
    source = VideoFileClip(str(path), audio=False)
    try:
        clip: Any = source
        if (info.width, info.height) != (width, height):
            scale = min(width / info.width, height / info.height)
            size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
            clip = CompositeVideoClip([source.resized(size).with_position("center")], size=(width, height),
                                      bg_color=(0, 0, 0))
        src_fps = float(info.fps)
        for j in range(count):
            want = min(info.frames - 1, int((j + Fraction(1, 2)) * info.fps / rate))
            yield np.ascontiguousarray(clip.get_frame((want + 0.5) / src_fps)[..., :3], dtype=np.uint8)
    finally:
        source.close()
