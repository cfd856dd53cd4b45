"""Delivery formats and caption timing: each format's output size, and which frames each shot's caption covers
(WebVTT cues on frame boundaries), from the one timeline rule (pipeline/manifest/timeline.py).

Sizes: a format whose ratio is within 1 % of the clips' own shape is delivered at the clips' size (so a video
of hard cuts stays a stream copy). Any other format keeps the clips' short side and sets the long side to the
ratio, rounded to an even number (H.264 4:2:0): 720x480 clips give 16:9 854x480, 9:16 480x854, 1:1 480x480 and
4:5 480x600; 1360x768 clips give 16:9 1360x768 (their own), 9:16 768x1366, 1:1 768x768, 4:5 768x960. No
format is larger than the clips' long side, so nothing is upscaled past the model's detail.

Captions: a shot's caption covers its span of the assembled video. Inside a crossfade window of k frames the
caption switches at frame k // 2 of the window: the first frame where the incoming clip weighs at least half
(compose.crossfade blends frame j at weight (j + 0.5) / k). Title and end cards carry no caption. Cue times are
those frame boundaries (frame / fps) written to the millisecond, WebVTT's resolution: round(time * fps) gives
the frame back exactly for any rate up to 500 fps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pipeline.manifest.schema import FORMATS
from pipeline.manifest.timeline import Timeline

SAME_SHAPE_TOLERANCE = 0.01
DEFAULT_FIT = "blur-pad"  # the common social treatment: nothing of the picture is lost
DEFAULT_CAPTIONS = "sidecar"
DEFAULT_LANGUAGE = "und"  # BCP 47 "undetermined"
RATIOS: dict[str, tuple[int, int]] = {f: (int(f.split(":")[0]), int(f.split(":")[1])) for f in FORMATS}


def file_tag(fmt: str) -> str:
    """The format as it appears in file names: 9:16 -> 9x16."""
    return fmt.replace(":", "x")


def same_shape(fmt: str, width: int, height: int) -> bool:
    a, b = RATIOS[fmt]
    return abs((a / b) / (width / height) - 1) <= SAME_SHAPE_TOLERANCE


def format_size(fmt: str | None, width: int, height: int) -> tuple[int, int]:
    """The delivered size of `fmt` for clips of width x height (None: the clips' own shape)."""
    if fmt is None or same_shape(fmt, width, height):
        return width, height
    a, b = RATIOS[fmt]
    short = min(width, height) - min(width, height) % 2

    def even(x: Fraction) -> int:
        return max(2, 2 * int(x / 2 + Fraction(1, 2)))

    if a >= b:
        return even(Fraction(short * a, b)), short
    return short, even(Fraction(short * b, a))


@dataclass(frozen=True)
class Cue:
    start: int  # first frame (inclusive) of the assembled video
    stop: int  # frame after the last
    text: str
    shot: int  # 0-based
    part: int | None = None  # the sentence's index where a shot's speech is captioned sentence by sentence


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*")


def sentences(text: str) -> list[str]:
    """A caption's sentences: split after . ! ? … followed by a space, and after 。！？ (no space in CJK text)."""
    return [p for p in (part.strip() for part in _SENTENCE_END.split(" ".join(text.split()))) if p]


def shot_spans(tl: Timeline) -> list[tuple[int, int]]:
    """Each shot's [start, stop) frames in the assembled video, crossfade windows split at their middle frame."""
    k, n = tl.crossfade_frames, len(tl.clip_frames)
    spans = []
    start = tl.title_frames
    for i, frames in enumerate(tl.clip_frames):
        first = start + (k // 2 if i > 0 else 0)
        last = start + frames - (k - k // 2 if i < n - 1 else 0)
        spans.append((first, last))
        start += frames - k
    return spans


def cues(tl: Timeline, captions: Sequence[str | None]) -> list[Cue]:
    if len(captions) != len(tl.clip_frames):
        raise ValueError(f"{len(captions)} captions for {len(tl.clip_frames)} clips")
    return [Cue(a, b, text, i) for i, ((a, b), text) in enumerate(zip(shot_spans(tl), captions, strict=True))
            if text and text.strip()]


def caption_at(cue_list: Sequence[Cue]) -> dict[int, str]:
    """Frame -> caption text, for burning."""
    return {f: c.text for c in cue_list for f in range(c.start, c.stop)}


def vtt_time(frame: int, fps: Fraction) -> str:
    ms = int(Fraction(frame) / fps * 1000 + Fraction(1, 2))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def webvtt(cue_list: Sequence[Cue], fps: Fraction) -> str:
    """A WebVTT file (https://www.w3.org/TR/webvtt1/): one cue per captioned shot, identified shot-N, or one per
    sentence of a shot's speech, shot-N.M (a cue identifier must be unique in its file)."""
    out = ["WEBVTT", ""]
    for c in cue_list:
        # a blank line would end a cue early (a caption is one paragraph); & < > are escaped as the spec requires
        text = " ".join(c.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").split())
        ident = f"shot-{c.shot + 1}" + (f".{c.part + 1}" if c.part is not None else "")
        out += [ident, f"{vtt_time(c.start, fps)} --> {vtt_time(c.stop, fps)}", text, ""]
    return "\n".join(out)
