"""Stage 4: join a video's clips, cards, crossfades and audio into one MP4, stream-copying all it can.

How a video is made (`assemble_video`):
1. Describe every clip: from the product's provenance when it wrote the clip (`AssemblyRequest.clip_info`),
   else by probing it (pipeline.media.probe). Count the video's frames with pipeline.manifest.timeline.
2. Plan the output frame by frame: each frame is copied from a clip or made (a crossfade blend, a card, a clip
   that must be normalised to the first clip's size/rate/profile). Copied runs start on a keyframe, so every
   copied run can be cut out of its clip without decoding it.
3. Make the frames with moviepy (pipeline.media.compose) and encode them, in order, into one scratch MP4 in the
   product's H.264 profile with an IDR at the start of each run (pipeline.media.encode), so they join by copy.
4. Render the audio with moviepy (trim, fades, volume, AAC).
5. Join copied runs, made runs and the audio with ffmpeg's concat demuxer and stream copy (moviepy has no
   stream copy), check the frame count ffmpeg reports against the plan, then move files into place.

With hard cuts between clips in the profile, steps 3 and 4 do nothing for the video and it is a pure stream copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest.campaign import Card
from pipeline.manifest.timeline import timeline
from pipeline.media.compose import crossfade, fitted_frames, render_card
from pipeline.media.encode import AUDIO_BITRATE, AUDIO_CODEC, SegmentWriter, ffmpeg_exe, temp_beside
from pipeline.media.frames import decode
from pipeline.media.mix import MixRequest, render_mix
from pipeline.media.probe import ClipInfo, check_file, inspect_clip

POSTER_POSITION = 1 / 3  # of the video's frames


@dataclass(frozen=True)
class AssemblyRequest:
    clips: tuple[Path, ...]  # in shot order
    crossfade: float = 0.0  # seconds between neighbouring clips; 0 = hard cuts
    audio: Path | None = None
    audio_fade_in: float = 0.0
    audio_fade_out: float = 0.0
    audio_volume: float = 1.0
    title: Card | None = None  # a text card before the shots
    end_card: Card | None = None  # after the shots
    # per clip, what the product recorded when it wrote it (None: probe the file); empty: probe them all
    clip_info: tuple[ClipInfo | None, ...] = ()
    mix: MixRequest | None = None  # voiceover, music ducked under it, loudness (pipeline/media/mix.py)
    card_font: Path | None = None  # the brand's font files: for title/end cards, for burned captions
    caption_font: Path | None = None


@dataclass(frozen=True)
class AssemblyResult:
    duration_s: float
    width: int
    height: int
    fps: float
    frames: int
    method: str  # "stream-copy", "stream-copy+crossfade-windows", "stream-copy+cards", ..., or "re-encode"
    timings: dict[str, float]
    frames_copied: int = 0
    frames_encoded: int = 0
    poster_frame: int = 0  # which output frame the poster shows
    notes: tuple[str, ...] = ()  # anything rounded to whole frames, said out loud
    extra: dict[str, Any] = field(default_factory=dict)


# One output frame of the plan.
@dataclass(frozen=True)
class _Frame:
    clip: int
    index: int


@dataclass(frozen=True)
class _Blend:
    a: _Frame
    b: _Frame
    window: int  # which crossfade (1 = between clips 0 and 1)


@dataclass(frozen=True)
class _CardFrame:
    card: int  # 0 title, 1 end card


_Op = _Frame | _Blend | _CardFrame


@dataclass
class _Segment:
    """A run of output frames: copied from clip `clip` [start, stop), or made from `ops`."""

    clip: int | None = None
    start: int = 0
    stop: int = 0
    ops: list[_Op] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.stop - self.start if self.clip is not None else len(self.ops)


def _validate(req: AssemblyRequest) -> None:
    if not req.clips:
        raise InputRejected("a video needs at least one clip")
    if req.clip_info and len(req.clip_info) != len(req.clips):
        raise InputRejected(f"clip_info has {len(req.clip_info)} entries for {len(req.clips)} clips")
    for name in ("crossfade", "audio_fade_in", "audio_fade_out", "audio_volume"):
        value = getattr(req, name)
        if not isinstance(value, (int, float)) or value < 0 or value != value:
            raise InputRejected(f"{name} must be a number >= 0, got {value!r}")
    for name in ("title", "end_card"):
        card = getattr(req, name)
        if card is not None and not card.duration > 0:
            raise InputRejected(f"{name} {card.text!r}: duration must be > 0, got {card.duration!r}")
    if req.audio is not None:
        check_file(Path(req.audio), "audio")


def _plan(infos: Sequence[ClipInfo], copyable: Sequence[bool], counts: Sequence[int], k: int,
          cards: tuple[int, int]) -> list[_Segment]:
    """Every output frame in order, grouped into copied runs (starting on a keyframe) and made runs."""
    ops: list[_Op] = [_CardFrame(0)] * cards[0]
    last = len(infos) - 1
    for i, n in enumerate(counts):
        if i > 0 and k:
            ops.extend(_Blend(_Frame(i - 1, counts[i - 1] - k + j), _Frame(i, j), i) for j in range(k))
        head, tail = (k if i > 0 else 0), (k if i < last else 0)
        ops.extend(_Frame(i, j) for j in range(head, n - tail))
    ops.extend([_CardFrame(1)] * cards[1])

    segments: list[_Segment] = []

    def made(op: _Op) -> None:
        if not segments or segments[-1].clip is not None:
            segments.append(_Segment())
        segments[-1].ops.append(op)

    pos = 0
    while pos < len(ops):
        op = ops[pos]
        if not (isinstance(op, _Frame) and copyable[op.clip]):
            made(op)
            pos += 1
            continue
        end = pos  # the run of consecutive frames of this clip
        while end + 1 < len(ops) and ops[end + 1] == _Frame(op.clip, op.index + end + 1 - pos):
            end += 1
        a, b = op.index, op.index + end + 1 - pos
        keys = infos[op.clip].keyframes
        start = next((kf for kf in keys if kf >= a), None)
        stop = b if b == infos[op.clip].frames else max((kf for kf in keys if kf <= b), default=None)
        if start is None or stop is None or start >= stop:
            for o in ops[pos:end + 1]:
                made(o)
        else:
            for j in range(a, start):
                made(_Frame(op.clip, j))
            segments.append(_Segment(clip=op.clip, start=start, stop=stop))
            for j in range(stop, b):
                made(_Frame(op.clip, j))
        pos = end + 1
    return segments


def _concat_list(entries: Sequence[tuple[Path, int, int, int, Fraction]]) -> str:
    """A concat-demuxer script: (file, first frame, stop frame, file's frame count, rate) each."""
    lines = []
    for path, start, stop, total, rate in entries:
        quoted = os.path.abspath(path).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
        if start > 0:  # a keyframe's time, rounded up so the seek cannot land on the keyframe before it
            lines.append(f"inpoint {-(-start * 1_000_000 // rate)}us")
        if stop < total:  # half a frame early: exclusive, and safe from rounding
            lines.append(f"outpoint {round((stop - Fraction(1, 2)) * 1_000_000 / rate)}us")
        lines.append(f"duration {round((stop - start) * 1_000_000 / rate)}us")
    return "\n".join(lines) + "\n"


class _Feed:
    """Frames of a decode in a known order, handed out by (clip, index); keeps only frames still needed."""

    def __init__(self, frames: Iterator[tuple[tuple[int, int], np.ndarray]], needed: set[tuple[int, int]]) -> None:
        self._frames, self._needed = frames, needed
        self._held: dict[tuple[int, int], np.ndarray] = {}

    def get(self, key: tuple[int, int]) -> np.ndarray:
        if key in self._held:
            return self._held.pop(key)
        for k, frame in self._frames:
            if k == key:
                return frame
            if k in self._needed:
                self._held[k] = frame
        raise JobFailed(f"the decoder ended before frame {key[1]} of clip {key[0]}")


def _labelled(labels: list[tuple[int, int]], frames: Iterator[np.ndarray], what: str) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    count = 0
    for frame in frames:
        if count >= len(labels):
            raise JobFailed(f"decoding {what} gave more frames than the {len(labels)} expected")
        yield labels[count], frame
        count += 1
    if count < len(labels):
        raise JobFailed(f"decoding {what} gave {count} frames, expected {len(labels)}")


def _feeds(segments: list[_Segment], paths: Sequence[Path], infos: Sequence[ClipInfo], copyable: Sequence[bool],
           counts: Sequence[int], rate: Fraction, width: int, height: int, work: Path) -> dict[int, _Feed]:
    """Where each clip's needed frames come from: one decode of just the needed ranges of all copyable clips
    (through the concat demuxer, each range from a keyframe); each other clip fitted by moviepy."""
    needed: set[tuple[int, int]] = set()
    for seg in segments:
        for op in seg.ops:
            for f in (op.a, op.b) if isinstance(op, _Blend) else (op,) if isinstance(op, _Frame) else ():
                needed.add((f.clip, f.index))
    feeds: dict[int, _Feed] = {}
    ranges: list[tuple[int, int, int]] = []  # clip, first decoded (a keyframe), stop
    for clip in sorted({c for c, _ in needed if copyable[c]}):
        idx = sorted(j for c, j in needed if c == clip)
        run_start = prev = idx[0]
        for j in [*idx[1:], None]:
            if j is not None and j == prev + 1:
                prev = j
                continue
            kf = max(kf for kf in infos[clip].keyframes if kf <= run_start)
            ranges.append((clip, kf, prev + 1))
            if j is not None:
                run_start = prev = j
    if ranges:
        listing = work / "decode.txt"
        listing.write_text(_concat_list([(paths[c], a, b, infos[c].frames, rate) for c, a, b in ranges]), encoding="utf-8")
        labels = [(c, j) for c, a, b in ranges for j in range(a, b)]
        what = ", ".join(sorted({paths[c].name for c, _, _ in ranges}))
        shared = _Feed(_labelled(labels, decode(listing, input_params=["-f", "concat", "-safe", "0"], what=what), what),
                       needed)
        for c, _, _ in ranges:
            feeds[c] = shared
    for clip in sorted({c for c, _ in needed if not copyable[c]}):
        frames = fitted_frames(paths[clip], infos[clip], counts[clip], rate, width, height)
        feeds[clip] = _Feed(zip([(clip, j) for j in range(counts[clip])], frames, strict=False), needed)
    return feeds


def _make(segments: list[_Segment], feeds: dict[int, _Feed], cards: list[np.ndarray | None], rate: Fraction
          ) -> Iterator[np.ndarray]:
    """Every made frame, in output order: cards, fitted clip frames, crossfade windows composited by moviepy."""
    for seg in segments:
        pending: list[_Blend] = []  # the current window's blends, composited together
        for op in [*seg.ops, None]:
            if pending and (not isinstance(op, _Blend) or op.window != pending[0].window):
                a = [feeds[x.a.clip].get((x.a.clip, x.a.index)) for x in pending]
                b = [feeds[x.b.clip].get((x.b.clip, x.b.index)) for x in pending]
                yield from crossfade(a, b, rate)  # a window is never split: it is made whole, in one segment
                pending = []
            if isinstance(op, _Blend):
                pending.append(op)
            elif isinstance(op, _CardFrame):
                card = cards[op.card]
                assert card is not None
                yield card
            elif isinstance(op, _Frame):
                yield feeds[op.clip].get((op.clip, op.index))


def _render_audio(req: AssemblyRequest, duration: float, path: Path) -> None:
    """The audio track with moviepy: trimmed to the video, faded in and out, scaled, encoded as AAC."""
    from moviepy import AudioFileClip, afx

    assert req.audio is not None
    try:
        channels, rate = _audio_layout(Path(req.audio))
        source = AudioFileClip(str(req.audio), fps=rate)
    except (OSError, KeyError, ValueError) as exc:
        raise JobFailed(f"audio {req.audio} is not readable audio: {str(exc).strip().splitlines()[-1:]}") from None
    try:
        end = min(duration, float(source.duration))
        clip = source.subclipped(0, end)
        effects: list[Any] = []
        if req.audio_fade_in > 0:
            effects.append(afx.AudioFadeIn(min(req.audio_fade_in, end)))
        if req.audio_fade_out > 0:
            effects.append(afx.AudioFadeOut(min(req.audio_fade_out, end)))
        # AudioFileClip always reads 2 channels, and ffmpeg upmixes mono to both at -3 dB (its centre mix level,
        # 1/sqrt(2)): undone here, so a mono track plays as loud as before (as players play mono on both speakers)
        gain = req.audio_volume * (2**0.5 if channels == 1 else 1.0)
        if abs(gain - 1.0) > 1e-9:
            effects.append(afx.MultiplyVolume(gain))
        if effects:
            clip = clip.with_effects(effects)
        clip.write_audiofile(str(path), fps=source.fps, codec=AUDIO_CODEC, bitrate=AUDIO_BITRATE, logger=None)
    except OSError as exc:
        raise JobFailed(f"audio {req.audio}: could not be rendered: {str(exc).strip()[-1500:]}") from None
    finally:
        source.close()


_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio: [^,]+, (\d+) Hz, ([^,]+),")
_LAYOUTS = {"mono": 1, "stereo": 2}


def _audio_layout(path: Path) -> tuple[int, int]:
    """(channels, sample rate) of the first audio stream, from `ffmpeg -i` (moviepy's parser keeps no channel count)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True,
                          errors="replace")
    m = _AUDIO_STREAM.search(proc.stderr)
    if m is None:
        raise JobFailed(f"audio {path} has no audio stream")
    layout = m.group(2).strip()
    count = re.match(r"\d+", layout)  # "5.1(side)", "6 channels", ...
    channels = _LAYOUTS.get(layout) or (int(count.group(0)) if count else 2)
    return min(channels, 2), int(m.group(1))


def _poster_index(segments: list[_Segment], infos: Sequence[ClipInfo], total: int, rate: Fraction) -> int:
    """About a third in; moved to a keyframe up to half a second away when that frame is copied (one frame to
    decode instead of a run)."""
    target = min(total - 1, int(total * POSTER_POSITION))
    pos = 0
    for seg in segments:
        if pos + seg.frames > target:
            if seg.clip is None:
                return target
            local = seg.start + target - pos
            near = [kf for kf in infos[seg.clip].keyframes if seg.start <= kf < seg.stop and abs(kf - local) <= rate / 2]
            return pos + min(near, key=lambda kf: (abs(kf - local), kf)) - seg.start if near else target
        pos += seg.frames
    return target


def _poster(path: Path, index: int) -> np.ndarray:
    """Frame `index` of a clip, decoded in-process by OpenCV: a seek when the decoder lands exactly there (a
    keyframe), else read up to it from the start (the product's clips are seconds long)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if index and not (cap.set(cv2.CAP_PROP_POS_FRAMES, index) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == index):
            cap.release()
            cap = cv2.VideoCapture(str(path))
            for _ in range(index):
                if not cap.grab():
                    break
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok:
        raise JobFailed(f"could not decode frame {index} of {path} for the poster")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise JobFailed("could not encode the poster as PNG")
    return buf.tobytes()


def assemble_video(req: AssemblyRequest, out_path: Path, poster_path: Path) -> AssemblyResult:
    """Join `req.clips` (plus cards, crossfades, audio) into `out_path`; write a PNG poster to `poster_path`."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out_path, poster_path = Path(out_path), Path(poster_path)

    # 1. describe the clips and count the frames (the one timeline rule)
    _validate(req)
    paths = [Path(p) for p in req.clips]
    known = req.clip_info or (None,) * len(paths)
    infos = [inspect_clip(p, k) for p, k in zip(paths, known, strict=True)]
    first = infos[0]
    width, height, rate = first.width, first.height, first.fps
    tl = timeline([(i.frames, i.fps) for i in infos], crossfade_s=req.crossfade,
                  title_s=req.title.duration if req.title else None,
                  end_card_s=req.end_card.duration if req.end_card else None)
    k, counts, card_frames = tl.crossfade_frames, list(tl.clip_frames), (tl.title_frames, tl.end_card_frames)
    notes: list[str] = []
    if k and abs(k - req.crossfade * rate) > 1e-6:
        notes.append(f"crossfade {req.crossfade:g} s is {k} frames ({float(k / rate):g} s) at {float(rate):g} fps")
    for card, n in zip((req.title, req.end_card), card_frames, strict=True):
        if card and abs(n - card.duration * rate) > 1e-6:
            notes.append(f"card {card.text!r}: {card.duration:g} s is {n} frames ({float(n / rate):g} s)")
    for path, info, n in zip(paths, infos, counts, strict=True):
        if n * info.fps != info.frames * rate:
            notes.append(f"clip {path.name}: {info.frames} frames at {float(info.fps):g} fps become {n} at {float(rate):g} fps")
    for i, (path, n) in enumerate(zip(paths, counts, strict=True)):
        need = k * ((i > 0) + (i < len(infos) - 1))
        if need > n:
            raise InputRejected(f"clip {path} has {n} frames at {float(rate):g} fps; a {req.crossfade:g} s crossfade "
                                f"on {'both sides' if need > k else 'one side'} needs {need}")
    copyable = [i.stitchable and (i.width, i.height, i.fps) == (width, height, rate) for i in infos]
    segments = _plan(infos, copyable, counts, k, card_frames)
    total = sum(s.frames for s in segments)
    made_total = sum(s.frames for s in segments if s.clip is None)
    if made_total and (width % 2 or height % 2):
        raise InputRejected(f"clip {paths[0]} is {width}x{height}: crossfades, cards and normalised clips are "
                            "encoded as H.264 4:2:0, which needs an even width and height")
    duration = float(total / rate)
    poster_index = _poster_index(segments, infos, total, rate)
    timings["inspect_s"] = time.perf_counter() - t0

    # scratch beside the output (the run's work folder), never in $TMPDIR: after a SIGKILL the next run's sweep of
    # abandoned work folders clears it, where nothing ever would in /tmp
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".assemble-", dir=out_path.parent))
    tmp_out = tmp_poster = None
    try:
        # 2. make what cannot be copied, all into one scratch file (an IDR at each run's start)
        t = time.perf_counter()
        poster: np.ndarray | None = None
        made_path = work / "made.mp4"
        if made_total:
            idr, pos = [], 0
            for seg in segments:
                if seg.clip is None:
                    idr.append(pos)
                    pos += seg.frames
            made_index = {}  # output frame -> made frame, for the poster
            out_i = made_i = 0
            for seg in segments:
                for _ in range(seg.frames):
                    if seg.clip is None:
                        made_index[out_i] = made_i
                        made_i += 1
                    out_i += 1
            feeds = _feeds(segments, paths, infos, copyable, counts, rate, width, height, work)
            cards = [render_card(c, width=width, height=height, font=req.card_font) if c else None
                     for c in (req.title, req.end_card)]
            with SegmentWriter(made_path, width=width, height=height, fps=rate, idr_at=idr) as writer:
                for n, frame in enumerate(_make(segments, feeds, cards, rate)):
                    if made_index.get(poster_index) == n:
                        poster = frame.copy()
                    writer.write(frame)
            if writer.frames != made_total:
                raise JobFailed(f"made {writer.frames} frames, the plan has {made_total}")
        timings["make_s"] = time.perf_counter() - t

        t = time.perf_counter()
        audio_path = work / "audio.m4a"
        mix_info: dict[str, Any] | None = None
        if req.mix is not None:  # the music (as below) becomes the bed under the voice
            music = work / "music.m4a" if req.audio is not None else None
            if music is not None:
                _render_audio(req, duration, music)
            mix_info = render_mix(req.mix, music=music, duration=duration, out=audio_path, work=work)
        elif req.audio is not None:
            _render_audio(req, duration, audio_path)
        timings["audio_s"] = time.perf_counter() - t

        # 3. join (and mux the audio) by stream copy
        t = time.perf_counter()
        entries, made_pos = [], 0
        for seg in segments:
            if seg.clip is None:
                entries.append((made_path, made_pos, made_pos + seg.frames, made_total, rate))
                made_pos += seg.frames
            else:
                entries.append((paths[seg.clip], seg.start, seg.stop, infos[seg.clip].frames, rate))
        (work / "join.txt").write_text(_concat_list(entries), encoding="utf-8")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        poster_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_out, tmp_poster = temp_beside(out_path), temp_beside(poster_path, ".partial.png")
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
               "-f", "concat", "-safe", "0", "-i", str(work / "join.txt")]
        if req.audio is not None or req.mix is not None:
            cmd += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c", "copy"]
        else:
            cmd += ["-map", "0:v:0", "-c", "copy"]
        # -progress reports what was muxed (key=value lines, last `frame=` is the count): the plan is checked
        # without reading the result back (https://ffmpeg.org/ffmpeg.html#Advanced-options, -progress)
        cmd += ["-progress", "pipe:1", "-f", "mp4", str(tmp_out)]
        join = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace")
        t_poster = time.perf_counter()
        if poster is None:  # a copied frame: decode it from its clip while ffmpeg joins
            pos = 0
            for seg in segments:
                if seg.clip is not None and pos <= poster_index < pos + seg.frames:
                    poster = _poster(paths[seg.clip], seg.start + poster_index - pos)
                pos += seg.frames
        timings["poster_s"] = time.perf_counter() - t_poster
        join_out, join_err = join.communicate()
        if join.returncode != 0:
            what = f"audio {req.audio} or clips" if req.audio is not None else "clips"
            raise JobFailed(f"ffmpeg could not join the {what}: {join_err.strip()[-1500:]}")
        muxed = [int(v) for key, _, v in (line.partition("=") for line in join_out.splitlines()) if key == "frame"]
        if not muxed or muxed[-1] != total:
            raise JobFailed(f"assembled video has {muxed[-1] if muxed else 'no'} frames; the plan was {total}")
        timings["join_s"] = time.perf_counter() - t

        assert poster is not None
        tmp_poster.write_bytes(_png(poster))
        os.replace(tmp_out, out_path)
        os.replace(tmp_poster, poster_path)
    finally:
        for tmp in (tmp_out, tmp_poster):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.perf_counter() - t0

    kinds = []
    ops = [op for s in segments if s.clip is None for op in s.ops]
    if any(isinstance(op, _Blend) for op in ops):
        kinds.append("crossfade-windows")
    if any(isinstance(op, _CardFrame) for op in ops):
        kinds.append("cards")
    if not all(copyable):
        kinds.append("normalised")
    copied = total - made_total
    method = "stream-copy" if not made_total else ("re-encode" if not copied else "+".join(["stream-copy", *kinds]))
    return AssemblyResult(
        duration_s=duration, width=width, height=height, fps=float(rate), frames=total, method=method,
        timings={key: round(v, 4) for key, v in timings.items()}, frames_copied=copied, frames_encoded=made_total,
        poster_frame=poster_index, notes=tuple(notes),
        extra={"clips_normalised": [str(p) for p, ok in zip(paths, copyable, strict=True) if not ok],
               "segments": len(segments), **({"mix": mix_info} if mix_info is not None else {})},
    )
