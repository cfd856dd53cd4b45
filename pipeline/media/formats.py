"""Delivery formats from an assembled video: each format fitted (crop, blur-pad, pad), captions burned in, cards
re-drawn at the format's size; one decode of the assembled video feeds every format's encoder at once.

How (`render_formats`):
1. Per clip, once: an energy map (mean Sobel gradient for detail plus mean frame difference for motion, on
   frames sampled across the clip, at a quarter of its size) from which each cropped format takes the window
   of most energy (pipeline/media/formats.py `crop_centre`), not blindly the middle.
2. Decode the assembled video once; for each frame and each format: the frame fitted to the format (inside a
   crossfade window the crop slides from one clip's centre to the next), or the card drawn at the format's
   size, then the frame's caption composited in the safe area; written to that format's encoder (an ffmpeg
   process each, so the formats encode in parallel; memory does not grow with the video's length).
3. Mux the assembled video's audio into each format by stream copy; check every format's frame count.

Burned captions sit in the format's safe area: 10 % of the width on each side, and above a bottom margin of
10 % of the height (12 % for 4:5, 20 % for 9:16, where the feed players put their buttons and text). The text is
6 % of the short side (4 % at least when a caption needs more than 3 lines), white with a dark outline on a
translucent band, in the first installed font that covers the caption's script (pipeline/manifest/fonts.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest.campaign import Card
from pipeline.manifest.fonts import caption_font
from pipeline.manifest.formats import Cue, caption_at
from pipeline.manifest.timeline import Timeline
from pipeline.media.brand import Logo, draw_logo, place_logo
from pipeline.media.compose import _wrap, render_card
from pipeline.media.encode import SegmentWriter, ffmpeg_exe, temp_beside
from pipeline.media.frames import decode

ENERGY_SAMPLES = 16  # frames per clip the energy map averages
ENERGY_SCALE = 4  # the map is 1/4 of the clip's size
SIDE_MARGIN = 0.10
BOTTOM_MARGIN = {"9:16": 0.20, "4:5": 0.12}
DEFAULT_BOTTOM_MARGIN = 0.10
TEXT_SIZE, MIN_TEXT_SIZE, MAX_LINES = 0.06, 0.04, 3
BLUR_DARKEN = 0.6


@dataclass(frozen=True)
class FormatTarget:
    """One format to make: its size, fit and where its file and poster go."""

    format: str | None
    width: int
    height: int
    fit: str
    burn: bool
    path: Path
    poster: Path


@dataclass(frozen=True)
class FormatResult:
    format: str | None
    width: int
    height: int
    frames: int
    fit: str | None  # None when the clips already had the format's shape


# --- 1. where the detail and motion are --------------------------------------------------------------------


def energy_map(path: Path) -> np.ndarray:
    """Detail plus motion of a clip, as a float map at 1/ENERGY_SCALE of its size, each term normalised to mean 1."""
    grays = []
    for frame in decode(Path(path)):
        small = cv2.resize(frame, (max(1, frame.shape[1] // ENERGY_SCALE), max(1, frame.shape[0] // ENERGY_SCALE)),
                           interpolation=cv2.INTER_AREA)
        grays.append(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32))
    if not grays:
        raise JobFailed(f"clip {path} has no frames to measure")
    step = max(1, len(grays) // ENERGY_SAMPLES)
    picked = grays[::step]
    detail = np.mean([cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)) for g in picked], axis=0)
    motion = (np.mean([np.abs(b - a) for a, b in zip(grays[:-1], grays[1:], strict=True)], axis=0)
              if len(grays) > 1 else np.zeros_like(detail))
    energy = np.zeros_like(detail)
    for term in (detail, motion):
        mean = float(term.mean())
        if mean > 1e-6:
            energy += term / mean
    return np.asarray(energy, dtype=np.float32)


def crop_centre(energy: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> tuple[float, float]:
    """The centre (fractions of the source's width and height) of the crop window for `dst` that holds the
    most energy; the window covers the whole source along the axis it does not cut."""
    sw, sh = src
    dw, dh = dst
    scale = max(dw / sw, dh / sh)
    cw, ch = dw / scale / sw, dh / scale / sh  # the window as fractions of the source
    centre = []
    for axis, frac in ((0, cw), (1, ch)):  # axis 0: columns (x), 1: rows (y)
        profile = energy.sum(axis=0) if axis == 0 else energy.sum(axis=1)  # per column, or per row
        n = len(profile)
        win = max(1, min(n, round(frac * n)))
        if frac >= 0.999 or win >= n:
            centre.append(0.5)
            continue
        sums = np.convolve(profile, np.ones(win, dtype=np.float32), mode="valid")
        best = int(np.argmax(sums))
        centre.append((best + win / 2) / n)
    return centre[0], centre[1]


# --- 2. fitting a frame ------------------------------------------------------------------------------------


def _cover_box(sw: int, sh: int, dw: int, dh: int, cx: float, cy: float) -> tuple[int, int, int, int]:
    scale = max(dw / sw, dh / sh)
    cw, ch = min(sw, round(dw / scale)), min(sh, round(dh / scale))
    x = int(min(max(round(cx * sw - cw / 2), 0), sw - cw))
    y = int(min(max(round(cy * sh - ch / 2), 0), sh - ch))
    return x, y, cw, ch


def fit_frame(frame: np.ndarray, width: int, height: int, fit: str, centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    sh, sw = frame.shape[:2]
    if (sw, sh) == (width, height):
        return frame
    if fit == "crop":
        x, y, cw, ch = _cover_box(sw, sh, width, height, *centre)
        return cv2.resize(frame[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_AREA)
    scale = min(width / sw, height / sh)
    fw, fh = max(2, round(sw * scale)), max(2, round(sh * scale))
    fg = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
    if fit == "pad":
        out = np.zeros((height, width, 3), np.uint8)
    elif fit == "blur-pad":
        x, y, cw, ch = _cover_box(sw, sh, width, height, 0.5, 0.5)
        small = cv2.resize(frame[y:y + ch, x:x + cw], (max(1, width // 8), max(1, height // 8)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=3)
        out = (cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR) * BLUR_DARKEN).astype(np.uint8)
    else:
        raise InputRejected(f"unknown fit {fit!r}")
    x0, y0 = (width - fw) // 2, (height - fh) // 2
    out[y0:y0 + fh, x0:x0 + fw] = fg
    return out


# --- burned captions ---------------------------------------------------------------------------------------


def safe_area(fmt: str | None, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the area captions are drawn in."""
    bottom = BOTTOM_MARGIN.get(fmt or "", DEFAULT_BOTTOM_MARGIN)
    return (round(width * SIDE_MARGIN), round(height * SIDE_MARGIN), width - round(width * SIDE_MARGIN),
            height - round(height * bottom))


@dataclass(frozen=True)
class _Overlay:
    y: int
    x: int
    rgb: np.ndarray  # float32 h x w x 3
    alpha: np.ndarray  # float32 h x w x 1


def caption_overlay(text: str, fmt: str | None, width: int, height: int, *, font: Path | None = None) -> _Overlay:
    """The caption drawn once: lines wrapped to the safe area's width, bottom-aligned in it, in `font` (the
    brand's caption font) or the first installed font that covers it."""
    choice = caption_font(text, brand=font)
    x0, y0, x1, y1 = safe_area(fmt, width, height)
    short = min(width, height)
    size = max(12, round(short * TEXT_SIZE))
    layout = ImageFont.Layout.RAQM if choice.shaping else ImageFont.Layout.BASIC
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    while True:
        fnt = ImageFont.truetype(str(choice.path), size, index=choice.index, layout_engine=layout)
        lines = _wrap(probe, text, fnt, x1 - x0)
        if len(lines) <= MAX_LINES or size <= short * MIN_TEXT_SIZE:
            break
        size = max(round(short * MIN_TEXT_SIZE), size - 2)
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES]
        lines[-1] = lines[-1].rstrip() + "…"
    line_h = round(size * 1.3)
    pad = size // 3
    box_h = line_h * len(lines) + 2 * pad
    img = Image.new("RGBA", (width, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    widest = max(draw.textlength(line, font=fnt) for line in lines)
    band = ((width - widest) / 2 - pad, 0, (width + widest) / 2 + pad, box_h)
    draw.rounded_rectangle(band, radius=pad, fill=(0, 0, 0, 110))
    for i, line in enumerate(lines):
        w = draw.textlength(line, font=fnt)
        draw.text(((width - w) / 2, pad + i * line_h), line, font=fnt, fill=(255, 255, 255, 255),
                  stroke_width=max(1, size // 14), stroke_fill=(0, 0, 0, 255))
    rgba = np.asarray(img, np.float32)
    return _Overlay(y=max(y0, y1 - box_h), x=0, rgb=rgba[..., :3], alpha=rgba[..., 3:] / 255.0)


def _composite(frame: np.ndarray, ov: _Overlay) -> np.ndarray:
    out = frame.copy()
    h = min(ov.rgb.shape[0], out.shape[0] - ov.y)
    region = out[ov.y:ov.y + h].astype(np.float32)
    a = ov.alpha[:h]
    out[ov.y:ov.y + h] = (region * (1 - a) + ov.rgb[:h] * a + 0.5).astype(np.uint8)
    return out


# --- the pass ------------------------------------------------------------------------------------------------


def _clip_starts(tl: Timeline) -> list[int]:
    starts, pos = [], tl.title_frames
    for n in tl.clip_frames:
        starts.append(pos)
        pos += n - tl.crossfade_frames
    return starts


def _centres(tl: Timeline, per_clip: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each frame's crop centre: its clip's, sliding from one clip's to the next across a crossfade window."""
    k, starts = tl.crossfade_frames, _clip_starts(tl)
    out = [(0.5, 0.5)] * tl.frames
    for i, (start, n) in enumerate(zip(starts, tl.clip_frames, strict=True)):
        for f in range(start, start + n):
            out[f] = per_clip[i]
        if i > 0 and k:
            a, b = per_clip[i - 1], per_clip[i]
            for j in range(k):
                w = (j + 0.5) / k
                out[start + j] = (a[0] + (b[0] - a[0]) * w, a[1] + (b[1] - a[1]) * w)
    return out


def render_formats(*, base: Path, size: tuple[int, int], tl: Timeline, clips: Sequence[Path],
                   targets: Sequence[FormatTarget], cues: Sequence[Cue], title: Card | None, end_card: Card | None,
                   has_audio: bool, poster_frame: int, logo: Logo | None = None, card_font: Path | None = None,
                   caption_font: Path | None = None) -> list[FormatResult]:
    """Make every target from the assembled video `base` (of `size`) in one decode (see the module's docstring);
    `logo`, the brand's, is drawn on every frame of every target, clear of its burned captions; the brand's
    fonts, when given, draw its cards and captions."""
    if not targets:
        return []
    rate: Fraction = tl.fps
    total = tl.frames
    sw, sh = size
    # 1. crop centres, once per clip (only when a target crops)
    maps: list[np.ndarray] | None = None
    if any(t.fit == "crop" and (t.width, t.height) != (sw, sh) for t in targets):
        maps = [energy_map(p) for p in clips]
    plans = []
    for t in targets:
        native = (t.width, t.height) == (sw, sh)
        centres = None
        if maps is not None and t.fit == "crop" and not native:
            centres = _centres(tl, [crop_centre(m, (sw, sh), (t.width, t.height)) for m in maps])
        cards = [render_card(c, width=t.width, height=t.height, font=card_font) if c and not native else None
                 for c in (title, end_card)]
        overlays = {text: caption_overlay(text, t.format, t.width, t.height, font=caption_font)
                    for text in dict.fromkeys(c.text for c in cues)} if t.burn else {}
        placed = place_logo(logo, width=t.width, height=t.height, safe=safe_area(t.format, t.width, t.height),
                            captions_top=min((o.y for o in overlays.values()), default=None)) if logo else None
        plans.append((t, native, centres, cards, overlays, placed))
    text_at = caption_at(cues)
    card_end = tl.frames - tl.end_card_frames

    # 2. one decode, every format's encoder fed frame by frame
    scratch = [temp_beside(t.path) for t in targets]
    writers = [SegmentWriter(s, width=t.width, height=t.height, fps=rate) for s, t in zip(scratch, targets, strict=True)]
    posters: list[np.ndarray | None] = [None] * len(targets)
    try:
        n = 0
        for n, frame in enumerate(decode(base)):
            if n >= total:
                raise JobFailed(f"assembled video {base} has more frames than the {total} planned")
            for i, (t, native, centres, cards, overlays, placed) in enumerate(plans):
                if native:
                    out = frame
                elif n < tl.title_frames and cards[0] is not None:
                    out = cards[0]
                elif n >= card_end and cards[1] is not None:
                    out = cards[1]
                else:
                    out = fit_frame(frame, t.width, t.height, t.fit, centres[n] if centres else (0.5, 0.5))
                text = text_at.get(n)
                if text is not None and overlays:
                    out = _composite(out, overlays[text])
                if placed is not None:
                    out = draw_logo(out, placed)
                if n == poster_frame:
                    posters[i] = out.copy()
                writers[i].write(out)
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        for s in scratch:
            s.unlink(missing_ok=True)
        raise
    # 3. audio by stream copy, frame counts, posters
    results = []
    try:
        for t, w, s, poster in zip(targets, writers, scratch, posters, strict=True):
            if w.frames != total:
                raise JobFailed(f"format {t.format or 'native'}: encoded {w.frames} frames, the plan has {total}")
            if has_audio:
                _mux_audio(s, base, t.path)
            else:
                os.replace(s, t.path)
            if poster is None:
                raise JobFailed(f"format {t.format or 'native'}: no poster frame {poster_frame}")
            ok, buf = cv2.imencode(".png", cv2.cvtColor(poster, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise JobFailed("could not encode a poster as PNG")
            t.poster.write_bytes(buf.tobytes())
            native = (t.width, t.height) == (sw, sh)
            results.append(FormatResult(t.format, t.width, t.height, w.frames, None if native else t.fit))
    finally:
        for s in scratch:
            s.unlink(missing_ok=True)
    return results


def _mux_audio(video: Path, audio_from: Path, out: Path) -> None:
    tmp = temp_beside(out)
    try:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(video),
                               "-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c", "copy", "-f", "mp4", str(tmp)],
                              capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            raise JobFailed(f"ffmpeg could not mux the audio into {out.name}: {proc.stderr.strip()[-1500:]}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
