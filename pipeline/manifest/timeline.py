"""The one timeline rule: how a video's seconds become whole frames (crossfades, cards, clips at another rate).

Validation, planning, the report and assembly all count frames here, so the expected duration the report
shows is the duration assembly produces. A video runs at its first clip's frame rate; a span of seconds is
round-half-up(seconds * fps) frames; a clip at another rate keeps its length (at least one frame); a middle
clip gives frames to two crossfades.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


def frames_for(seconds: float, fps: float | Fraction) -> int:
    """Whole frames for a span of `seconds` at `fps`: round half up (0.5 frame -> 1 frame)."""
    return math.floor(Fraction(seconds).limit_denominator(10**9) * Fraction(fps) + Fraction(1, 2))


def clip_frames_at(frames: int, clip_fps: float | Fraction, fps: float | Fraction) -> int:
    """A clip of `frames` at `clip_fps`, resampled to the video's `fps`: same length, at least one frame."""
    if Fraction(clip_fps) == Fraction(fps):
        return frames
    return max(1, math.floor(frames * Fraction(fps) / Fraction(clip_fps) + Fraction(1, 2)))


@dataclass(frozen=True)
class Timeline:
    """A video's frame counts: its rate, each clip's frames at that rate, the crossfade and card lengths."""

    fps: Fraction
    clip_frames: tuple[int, ...]
    crossfade_frames: int
    title_frames: int
    end_card_frames: int

    @property
    def frames(self) -> int:
        overlaps = self.crossfade_frames * max(0, len(self.clip_frames) - 1)
        return sum(self.clip_frames) - overlaps + self.title_frames + self.end_card_frames

    @property
    def duration_s(self) -> float:
        return float(self.frames / self.fps)

    def crossfade_room(self) -> int:
        """The longest crossfade (frames) every clip can give: a middle clip gives to both of its neighbours."""
        n = len(self.clip_frames)
        if n < 2:
            return 0
        return min(frames // ((i > 0) + (i < n - 1)) for i, frames in enumerate(self.clip_frames))


def timeline(clips: Sequence[tuple[int, float | Fraction]], *, crossfade_s: float = 0.0,
             title_s: float | None = None, end_card_s: float | None = None) -> Timeline:
    """The timeline of clips given as (frames, fps), in order, at the first clip's rate."""
    if not clips:
        raise ValueError("a video needs at least one clip")
    fps = Fraction(clips[0][1])
    counts = tuple(clip_frames_at(n, rate, fps) for n, rate in clips)
    k = frames_for(crossfade_s, fps) if len(clips) > 1 and crossfade_s > 0 else 0
    card = [max(1, frames_for(s, fps)) if s else 0 for s in (title_s, end_card_s)]
    return Timeline(fps=fps, clip_frames=counts, crossfade_frames=k, title_frames=card[0], end_card_frames=card[1])


def crossfade_problem(seconds: float, clips: Sequence[tuple[int, float | Fraction]]) -> str | None:
    """Why a crossfade of `seconds` does not fit these clips, or None when it does."""
    tl = timeline(clips, crossfade_s=seconds)
    room = tl.crossfade_room()
    if tl.crossfade_frames <= room:
        return None
    rate = float(tl.fps)
    return (f"a {seconds:g} s crossfade is {tl.crossfade_frames} frames at {rate:g} fps, more than the shortest clip "
            f"can give ({room} frames a side); at most {room / rate:g} s fits")
