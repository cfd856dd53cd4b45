"""Stage 4: join a video's clips, cards, crossfades and audio into one MP4, stream-copying all it can.

How a video is made (`assemble_video`):
1. Inspect every clip from its MP4 boxes (pure Python: size, fps, frame count, keyframes, codec configuration).
2. Plan the output frame by frame: each frame is either copied from a clip or synthesised (a crossfade blend,
   a card, a clip that must be normalised to the first clip's size/fps/encoding). Copied runs are shrunk to
   start on a keyframe, so every copied run can be cut out of its clip without decoding it.
3. Encode all synthesised frames, in order, into one scratch MP4 with an IDR frame at the start of each run,
   using the same H.264 settings the preview backend writes clips with (so both share SPS/PPS and join by copy).
4. Join copied runs and synthesised runs with ffmpeg's concat demuxer (`-c:v copy`), muxing the AAC audio in the
   same pass; extract the poster at the same time.
5. Check the result's frame count against the plan, then move files into place (temp name, then os.replace).

With hard cuts between compatible clips step 3 does nothing and the video is a pure stream copy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest import Card
from pipeline.timeline import timeline

# --- the shared H.264 encoding --------------------------------------------------------------------------

# A keyframe every few frames lets the assembler cut a clip next to a crossfade window by stream copy; no
# B-frames keeps decode order equal to display order, so any cut at a keyframe is clean.
KEYFRAME_INTERVAL = 4
H264_ARGS: tuple[str, ...] = (
    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
    "-g", str(KEYFRAME_INTERVAL), "-keyint_min", str(KEYFRAME_INTERVAL), "-sc_threshold", "0", "-bf", "0",
    # stitchable: headers do not depend on the content, so every encode at one size/fps shares its SPS/PPS
    "-x264-params", "stitchable=1", "-forced-idr", "1",
)
AUDIO_ARGS: tuple[str, ...] = ("-c:a", "aac", "-b:a", "192k")
POSTER_POSITION = 1 / 3  # of the video's frames


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _fraction(fps: float | Fraction) -> Fraction:
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


class H264Writer:
    """Pipes RGB frames into ffmpeg/libx264 with `H264_ARGS`; writes an MP4 at `path` (no audio).

    `idr_at` lists frame indices that must start a new IDR (a point where the stream can be cut by copy).
    The caller owns the path: use `write_h264` for an atomic write of a whole clip.
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: float | Fraction, idr_at: Iterable[int] = ()) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise InputRejected(f"H.264 yuv420p needs a positive, even width and height, got {width}x{height}")
        rate = _fraction(fps)
        if rate <= 0:
            raise InputRejected(f"fps must be positive, got {fps}")
        self.path, self.width, self.height, self.frames = Path(path), width, height, 0
        force: list[str] = []
        idr = sorted({int(i) for i in idr_at if int(i) > 0})
        if idr:
            force = ["-force_key_frames", "expr:" + "+".join(f"eq(n,{i})" for i in idr)]
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{rate.numerator}/{rate.denominator}",
            "-i", "pipe:0", "-an", *H264_ARGS, *force, "-f", "mp4", str(self.path),
        ]
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise JobFailed(f"{self.path.name}: frame {self.frames} is {frame.shape} {frame.dtype}, "
                            f"expected ({self.height}, {self.width}, 3) uint8")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            self._proc.wait()
            raise JobFailed(f"ffmpeg stopped while encoding {self.path}: {self._stderr()}") from None
        self.frames += 1

    def close(self) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        try:
            rc = self._proc.wait()
            if rc != 0:
                raise JobFailed(f"ffmpeg failed ({rc}) encoding {self.path}: {self._stderr()}")
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
        return self._log.read().decode(errors="replace").strip()[-2000:]

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_h264(path: Path, frames: Iterable[np.ndarray], *, width: int, height: int, fps: float | Fraction,
               idr_at: Iterable[int] = ()) -> int:
    """Encode `frames` to `path` atomically (temp name beside it, then os.replace); return the frame count."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        with H264Writer(tmp, width=width, height=height, fps=fps, idr_at=idr_at) as writer:
            for frame in frames:
                writer.write(frame)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return writer.frames


def _temp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    return Path(name)


# --- text on frames (cards here, title cards in the preview backend) --------------------------------------


@functools.lru_cache(maxsize=1)
def _font_file() -> str | None:
    """DejaVu Sans when the system has it (wide Unicode coverage), else None."""
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
        path = _font_file()
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
    at min_size, lines that still do not fit are dropped and the last kept line ends with an ellipsis."""
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


def render_card(card: Card, *, width: int, height: int) -> np.ndarray:
    """A card's single frame: its text, wrapped and centred, on its colour."""
    try:
        bg, fg = ImageColor.getrgb(card.color)[:3], ImageColor.getrgb(card.text_color)[:3]
    except ValueError as exc:
        raise InputRejected(f"card {card.text!r}: {exc}") from exc
    img = Image.new("RGB", (width, height), bg)
    margin_x, margin_y = width // 10, height // 8
    draw_text_block(ImageDraw.Draw(img), card.text, (margin_x, margin_y, width - margin_x, height - margin_y),
                    fill=fg, max_size=max(12, height // 8), min_size=max(8, height // 40))
    return np.asarray(img)


# --- reading MP4 boxes (no ffprobe in imageio-ffmpeg; a box walk is also ~100x faster than a subprocess) -------


@dataclass(frozen=True)
class VideoInfo:
    """What assembly needs to know about a clip. `signature` is equal for two files exactly when their video
    streams can be joined by stream copy (same codec configuration, size and frame rate); None when unknown."""

    path: Path
    width: int
    height: int
    fps: float
    frames: int
    duration: float  # frames / fps
    codec: str  # h264, hevc, ...
    pix_fmt: str | None = None  # from `ffmpeg -i`; None when not asked for (see probe_video)
    rate: Fraction = Fraction(0)
    keyframes: tuple[int, ...] = ()  # 0-based indices of sync samples
    signature: bytes | None = None
    reorders: bool = False  # B-frames: decode order differs from display order
    has_audio: bool = False
    audio_duration: float | None = None


_CODECS = {"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "vp09": "vp9", "av01": "av1",
           "mp4v": "mpeg4", "mjpa": "mjpeg", "jpeg": "mjpeg"}
_CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl", "edts"}


def _boxes(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, box end) of each box in buf[start:end]."""
    end = len(buf) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        head = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise ValueError(f"bad box {kind!r} at {pos}")
        yield kind.decode("latin-1"), pos + head, pos + size
        pos += size


def _read_moov(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        total = f.tell()
        pos = 0
        while pos + 8 <= total:
            f.seek(pos)
            head = f.read(16)
            size, kind = struct.unpack_from(">I4s", head)
            hlen = 8
            if size == 1:
                (size,) = struct.unpack_from(">Q", head, 8)
                hlen = 16
            elif size == 0:
                size = total - pos
            if size < hlen:
                break
            if kind == b"moov":
                f.seek(pos)
                return f.read(size)
            pos += size
    raise ValueError("no moov box (not an MP4/MOV file, or an unfinished one)")


def _child(buf: bytes, start: int, end: int, kind: str) -> tuple[int, int] | None:
    for k, s, e in _boxes(buf, start, end):
        if k == kind:
            return s, e
    return None


def _track(buf: bytes, start: int, end: int) -> dict[str, Any]:
    """The facts of one trak box."""
    out: dict[str, Any] = {}
    edts = _child(buf, start, end, "edts")
    elst = _child(buf, *edts, "elst") if edts else None
    if elst is not None:  # the presented length: sum of the edit list's segments (it trims e.g. AAC priming)
        s = elst[0]
        version, count = buf[s], struct.unpack_from(">I", buf, s + 4)[0]
        fmt, step = (">Qq", 16) if version == 1 else (">Ii", 8)
        entries = [struct.unpack_from(fmt, buf, s + 8 + i * (step + 4)) for i in range(count)]
        out["edit_duration"] = sum(d for d, media_time in entries if media_time != -1)
    mdia = _child(buf, start, end, "mdia")
    if mdia is None:
        return out
    for kind, s, _e in _boxes(buf, *mdia):
        if kind == "hdlr":
            out["handler"] = buf[s + 8:s + 12].decode("latin-1")
        elif kind == "mdhd":
            version = buf[s]
            if version == 1:
                out["timescale"], out["duration"] = struct.unpack_from(">IQ", buf, s + 20)
            else:
                out["timescale"], out["duration"] = struct.unpack_from(">II", buf, s + 12)
    minf = _child(buf, *mdia, "minf")
    stbl = _child(buf, *minf, "stbl") if minf else None
    if stbl is None:
        return out
    for kind, s, _e in _boxes(buf, *stbl):
        if kind == "stsd":
            (count,) = struct.unpack_from(">I", buf, s + 4)
            if count:
                (esize, fourcc) = struct.unpack_from(">I4s", buf, s + 8)
                entry = s + 8
                out["fourcc"] = fourcc.decode("latin-1")
                if out.get("handler") == "vide":
                    out["width"], out["height"] = struct.unpack_from(">HH", buf, entry + 32)
                    # codec configuration boxes (avcC, hvcC, colr, pasp...) decide copy-compatibility; btrt
                    # (bit rate) differs per file and does not.
                    parts = [buf[cs - 8:ce] for ck, cs, ce in _boxes(buf, entry + 86, entry + esize) if ck != "btrt"]
                    out["config"] = b"".join(parts)
                out["stsd_count"] = count
        elif kind == "stts":
            (count,) = struct.unpack_from(">I", buf, s + 4)
            out["stts"] = [struct.unpack_from(">II", buf, s + 8 + 8 * i) for i in range(count)]
        elif kind == "stsz":
            out["samples"] = struct.unpack_from(">I", buf, s + 8)[0]
        elif kind == "stss":
            (count,) = struct.unpack_from(">I", buf, s + 4)
            out["stss"] = struct.unpack_from(f">{count}I", buf, s + 8)
        elif kind == "ctts":
            (count,) = struct.unpack_from(">I", buf, s + 4)
            offsets = {struct.unpack_from(">I", buf, s + 12 + 8 * i)[0] for i in range(count)}
            out["reorders"] = len(offsets) > 1
    return out


def _inspect_mp4(path: Path) -> VideoInfo:
    moov = _read_moov(path)
    tracks = [_track(moov, s, e) for k, s, e in _boxes(moov, 8) if k == "trak"]
    mvhd = _child(moov, 8, len(moov), "mvhd")
    movie_scale = struct.unpack_from(">I", moov, mvhd[0] + (20 if moov[mvhd[0]] == 1 else 12))[0] if mvhd else 0
    video = next((t for t in tracks if t.get("handler") == "vide" and t.get("samples")), None)
    if video is None or "width" not in video or not video.get("stts") or not video.get("timescale"):
        raise ValueError("no video track with samples")
    n = int(video["samples"])
    counts: dict[int, int] = {}
    for c, d in video["stts"]:
        counts[d] = counts.get(d, 0) + c
    main_delta = max(counts, key=lambda d: counts[d])
    # Constant frame rate: one delta, or one delta plus a different last sample (muxers often shorten it).
    body = video["stts"][:-1] if video["stts"][-1][0] == 1 and len(video["stts"]) > 1 else video["stts"]
    constant = main_delta > 0 and all(d == main_delta for c, d in body)
    total_ticks = sum(c * d for c, d in video["stts"])
    rate = Fraction(video["timescale"], main_delta) if constant else Fraction(n * video["timescale"], max(total_ticks, 1))
    rate = rate.limit_denominator(1001) if not constant else rate
    stss = video.get("stss")
    keyframes = tuple(sorted(i - 1 for i in stss)) if stss is not None else tuple(range(n))
    sig = None
    if constant and video.get("stsd_count") == 1:
        sig = b"|".join([video["fourcc"].encode(), struct.pack(">HH", video["width"], video["height"]),
                         f"{rate.numerator}/{rate.denominator}".encode(), video["config"]])
    audio = next((t for t in tracks if t.get("handler") == "soun" and t.get("timescale")), None)
    return VideoInfo(
        path=path, width=int(video["width"]), height=int(video["height"]), fps=float(rate), frames=n,
        duration=float(n / rate), codec=_CODECS.get(video["fourcc"], video["fourcc"]), rate=rate, keyframes=keyframes,
        signature=sig, reorders=bool(video.get("reorders")), has_audio=audio is not None,
        audio_duration=None if audio is None else (
            audio["edit_duration"] / movie_scale if audio.get("edit_duration") and movie_scale
            else audio["duration"] / audio["timescale"]),
    )


_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (.*)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def _ffmpeg_info(path: Path) -> dict[str, Any]:
    """Parse `ffmpeg -i` (the only prober imageio-ffmpeg ships)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True,
                          errors="replace")
    info: dict[str, Any] = {"stderr": proc.stderr}
    m = _DURATION.search(proc.stderr)
    if m:
        h, mi, s = m.groups()
        info["duration"] = int(h) * 3600 + int(mi) * 60 + float(s)
    for kind, rest in _STREAM.findall(proc.stderr):
        flat = rest
        while "(" in flat:  # drop parenthesised details, which hold commas of their own
            new = re.sub(r"\([^()]*\)", "", flat)
            if new == flat:
                break
            flat = new
        fields = [f.strip() for f in flat.split(",")]
        if kind == "Video" and "codec" not in info:
            info["codec"] = fields[0].split()[0]
            info["pix_fmt"] = fields[1].split()[0] if len(fields) > 1 else None
            for f in fields:
                size = re.match(r"(\d+)x(\d+)", f)
                if size and "width" not in info:
                    info["width"], info["height"] = int(size.group(1)), int(size.group(2))
                fps = re.match(r"([\d.]+)(k?) (fps|tbr)$", f)
                if fps and "fps" not in info:
                    info["fps"] = float(fps.group(1)) * (1000 if fps.group(2) else 1)
        elif kind == "Audio":
            info["has_audio"] = True
    return info


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise JobFailed(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise JobFailed(f"{what} {path} is empty")


def _inspect(path: Path, what: str = "clip") -> VideoInfo:
    """VideoInfo from the MP4 boxes; other containers (or a damaged MP4) through ffmpeg, marked not copyable."""
    path = Path(path)
    _check_file(path, what)
    try:
        return _inspect_mp4(path)
    except (ValueError, struct.error):
        pass
    info = _ffmpeg_info(path)
    if "width" not in info or not info.get("fps"):
        tail = info["stderr"].strip().splitlines()[-1:] or [""]
        raise JobFailed(f"{what} {path} is not a readable video: {tail[0]}")
    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as exc:
        raise JobFailed(f"{what} {path}: cannot count its frames: {exc}") from exc
    if not frames:
        raise JobFailed(f"{what} {path} has no video frames")
    rate = Fraction(info["fps"]).limit_denominator(1001)
    return VideoInfo(path=path, width=info["width"], height=info["height"], fps=float(rate), frames=int(frames),
                     duration=float(frames / rate), codec=info.get("codec", "?"), pix_fmt=info.get("pix_fmt"), rate=rate,
                     keyframes=(0,), signature=None, has_audio=bool(info.get("has_audio")))


def probe_video(path: Path) -> VideoInfo:
    """Size, fps, frame count, duration, codec and pixel format of a video file (MP4 boxes + `ffmpeg -i`)."""
    info = _inspect(Path(path), "video")
    extra = _ffmpeg_info(Path(path))
    return VideoInfo(**{**info.__dict__, "codec": extra.get("codec", info.codec), "pix_fmt": extra.get("pix_fmt")})


@functools.lru_cache(maxsize=16)
def canonical_signature(width: int, height: int, rate: Fraction) -> bytes | None:
    """The signature of a clip written by `H264Writer` at this size and rate (one tiny encode, then cached)."""
    with tempfile.TemporaryDirectory(prefix="h264sig-") as tmp:
        path = Path(tmp) / "probe.mp4"
        with H264Writer(path, width=width, height=height, fps=rate) as w:
            w.write(np.zeros((height, width, 3), np.uint8))
        return _inspect_mp4(path).signature


# --- decoding ---------------------------------------------------------------------------------------------


def _decode(input_args: Sequence[str], width: int, height: int, *, what: str,
            vf: str | None = None) -> Generator[np.ndarray, None, None]:
    """RGB frames from an ffmpeg decode of `input_args`, every decoded frame once (no rate conversion)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *input_args, "-map", "0:v:0",
           *(["-vf", vf] if vf else []), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    size = width * height * 3
    assert proc.stdout is not None
    try:
        while True:
            data = _read_exact(proc.stdout, size)
            if data is None:
                break
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        if proc.wait() != 0:
            log.seek(0)
            raise JobFailed(f"ffmpeg could not decode {what}: {log.read().decode(errors='replace').strip()[-1500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        log.close()


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    if got == 0:
        return None
    if got < size:
        raise JobFailed(f"ffmpeg returned a partial frame ({got} of {size} bytes)")
    return b"".join(chunks)


def last_frame(path: Path) -> Image.Image:
    """The final frame of a video, as an RGB image (decodes only from the last keyframe or so)."""
    info = _inspect(Path(path), "video")
    seek = max(0.0, float((info.frames - 1.5) / info.rate)) if info.frames > 1 else 0.0
    tail = deque(_decode(["-ss", f"{seek:.6f}", "-i", str(path)], info.width, info.height, what=str(path)), maxlen=1)
    if not tail:  # nothing after the seek point (odd timestamps): decode from the start
        tail = deque(_decode(["-i", str(path)], info.width, info.height, what=str(path)), maxlen=1)
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


# --- the assembly contract ------------------------------------------------------------------------------------


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
    alpha: float  # weight of b


@dataclass(frozen=True)
class _CardFrame:
    card: int  # 0 title, 1 end card


_Op = _Frame | _Blend | _CardFrame


@dataclass
class _Segment:
    """A run of output frames: copied from clip `clip` [start, stop), or synthesised from `ops`."""

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
    for name in ("crossfade", "audio_fade_in", "audio_fade_out", "audio_volume"):
        value = getattr(req, name)
        if not isinstance(value, (int, float)) or value < 0 or value != value:
            raise InputRejected(f"{name} must be a number >= 0, got {value!r}")
    for name in ("title", "end_card"):
        card = getattr(req, name)
        if card is not None and not card.duration > 0:
            raise InputRejected(f"{name} {card.text!r}: duration must be > 0, got {card.duration!r}")
    if req.audio is not None:
        _check_file(Path(req.audio), "audio")


def _plan(infos: list[VideoInfo], copyable: list[bool], counts: list[int], k: int, cards: tuple[int, int]) -> list[_Segment]:
    """Every output frame in order, grouped into copied runs (starting on a keyframe) and synthesised runs."""
    ops: list[_Op] = [_CardFrame(0)] * cards[0]
    last = len(infos) - 1
    for i, n in enumerate(counts):
        if i > 0 and k:
            ops.extend(_Blend(_Frame(i - 1, counts[i - 1] - k + j), _Frame(i, j), (j + 0.5) / k) for j in range(k))
        head, tail = (k if i > 0 else 0), (k if i < last else 0)
        ops.extend(_Frame(i, j) for j in range(head, n - tail))
    ops.extend([_CardFrame(1)] * cards[1])

    segments: list[_Segment] = []

    def synth(op: _Op) -> None:
        if not segments or segments[-1].clip is not None:
            segments.append(_Segment())
        segments[-1].ops.append(op)

    pos = 0
    while pos < len(ops):
        op = ops[pos]
        if not (isinstance(op, _Frame) and copyable[op.clip]):
            synth(op)
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
                synth(o)
        else:
            for j in range(a, start):
                synth(_Frame(op.clip, j))
            segments.append(_Segment(clip=op.clip, start=start, stop=stop))
            for j in range(stop, b):
                synth(_Frame(op.clip, j))
        pos = end + 1
    return segments


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


def _audio_filter(req: AssemblyRequest, duration: float, audio_duration: float | None) -> str:
    end = min(duration, audio_duration) if audio_duration else duration
    chain = [f"atrim=end={duration:.6f}", "asetpts=PTS-STARTPTS"]
    if req.audio_fade_in > 0:
        chain.append(f"afade=t=in:st=0:d={min(req.audio_fade_in, end):.6f}")
    if req.audio_fade_out > 0:
        fade = min(req.audio_fade_out, end)
        chain.append(f"afade=t=out:st={end - fade:.6f}:d={fade:.6f}")
    if req.audio_volume != 1.0:
        chain.append(f"volume={req.audio_volume:.6f}")
    return ",".join(chain)


def assemble_video(req: AssemblyRequest, out_path: Path, poster_path: Path) -> AssemblyResult:
    """Join `req.clips` (plus cards, crossfades, audio) into `out_path`; write a PNG poster to `poster_path`."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out_path, poster_path = Path(out_path), Path(poster_path)

    # 1. inspect
    _validate(req)
    infos = [_inspect(Path(p)) for p in req.clips]
    first = infos[0]
    width, height, rate = first.width, first.height, first.rate
    notes: list[str] = []
    tl = timeline([(i.frames, i.rate) for i in infos], crossfade_s=req.crossfade,
                  title_s=req.title.duration if req.title else None,
                  end_card_s=req.end_card.duration if req.end_card else None)
    k = tl.crossfade_frames
    if k and abs(k - req.crossfade * rate) > 1e-6:
        notes.append(f"crossfade {req.crossfade:g} s is {k} frames ({float(k / rate):g} s) at {float(rate):g} fps")
    card_frames = [tl.title_frames, tl.end_card_frames]
    for card, n in zip((req.title, req.end_card), card_frames, strict=True):
        if card and abs(n - card.duration * rate) > 1e-6:
            notes.append(f"card {card.text!r}: {card.duration:g} s is {n} frames ({float(n / rate):g} s)")
    counts = list(tl.clip_frames)
    for info, n in zip(infos, counts, strict=True):
        if n * info.rate != info.frames * rate:
            notes.append(f"clip {info.path.name}: {info.frames} frames at {info.fps:g} fps become {n} at {float(rate):g} fps")
    for i, (info, n) in enumerate(zip(infos, counts, strict=True)):
        need = k * ((i > 0) + (i < len(infos) - 1))
        if need > n:
            raise InputRejected(f"clip {info.path} has {n} frames at {float(rate):g} fps; a {req.crossfade:g} s crossfade "
                                f"on {'both sides' if need > k else 'one side'} needs {need}")
    same_shape = [(i.width, i.height, i.rate) == (width, height, rate) for i in infos]
    pure_copy = (not k and not any(card_frames) and all(same_shape)
                 and first.signature is not None and all(i.signature == first.signature for i in infos))
    if pure_copy:
        copyable = [True] * len(infos)
    else:
        if width % 2 or height % 2:
            raise InputRejected(f"clip {first.path} is {width}x{height}: crossfades, cards and normalised clips are "
                                "encoded as H.264 4:2:0, which needs an even width and height")
        canon = canonical_signature(width, height, rate)
        copyable = [ok and i.signature is not None and i.signature == canon and not i.reorders
                    for i, ok in zip(infos, same_shape, strict=True)]
    segments = _plan(infos, copyable, counts, k, (card_frames[0], card_frames[1]))
    total = sum(s.frames for s in segments)
    duration = float(total / rate)
    timings["inspect_s"] = time.perf_counter() - t0

    work = Path(tempfile.mkdtemp(prefix="assemble-"))
    tmp_out = tmp_poster = None
    procs: list[subprocess.Popen[bytes]] = []
    join_log = tempfile.TemporaryFile()
    try:
        # 2. synthesise what cannot be copied, all into one scratch file
        t = time.perf_counter()
        poster_index = _poster_index(segments, infos, total, rate)
        poster_frame: np.ndarray | None = None
        synth_path = work / "synth.mp4"
        synth_segments = [s for s in segments if s.clip is None]
        synth_total = sum(s.frames for s in synth_segments)
        if synth_segments:
            poster_frame = _synthesise(segments, infos, copyable, counts, rate, width, height, req, synth_path,
                                       work, poster_index)
        timings["synthesise_s"] = time.perf_counter() - t

        # 3. join (and mux audio) by stream copy; extract the poster alongside
        t = time.perf_counter()
        entries, synth_pos = [], 0
        for seg in segments:
            if seg.clip is None:
                entries.append((synth_path, synth_pos, synth_pos + seg.frames, synth_total, rate))
                synth_pos += seg.frames
            else:
                info = infos[seg.clip]
                entries.append((info.path, seg.start, seg.stop, info.frames, rate))
        (work / "join.txt").write_text(_concat_list(entries), encoding="utf-8")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        poster_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_out, tmp_poster = _temp_beside(out_path), _temp_beside(poster_path)
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "concat", "-safe", "0", "-i", str(work / "join.txt")]
        if req.audio is not None:
            audio_duration = _ffmpeg_info(Path(req.audio)).get("duration")
            cmd += ["-i", str(req.audio), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *AUDIO_ARGS,
                    "-af", _audio_filter(req, duration, audio_duration)]
        else:
            cmd += ["-map", "0:v:0", "-c:v", "copy"]
        cmd += ["-f", "mp4", str(tmp_out)]
        join = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=join_log)
        procs.append(join)
        poster_png = None
        if poster_frame is None:  # a copied frame: decode it in-process while ffmpeg joins
            poster_source = _copied_frame(segments, infos, poster_index)
            poster_png = _png_via_opencv(*poster_source)
        if join.wait() != 0:
            join_log.seek(0)
            what = f"audio {req.audio} or clips" if req.audio is not None else "clips"
            raise JobFailed(f"ffmpeg could not join the {what}: {join_log.read().decode(errors='replace').strip()[-1500:]}")
        timings["join_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if poster_frame is not None:
            poster_png = _png(poster_frame)
        elif poster_png is None:
            poster_png = _png_via_ffmpeg(*poster_source, rate)
        tmp_poster.write_bytes(poster_png)
        timings["poster_s"] = time.perf_counter() - t

        # 4. check, then move into place
        made = _inspect_mp4(tmp_out)
        if made.frames != total or (made.width, made.height) != (width, height):
            raise JobFailed(f"assembled video has {made.frames} frames at {made.width}x{made.height}; "
                            f"the plan was {total} at {width}x{height}")
        if req.audio is not None and not made.has_audio:
            raise JobFailed(f"assembled video has no audio track (audio {req.audio})")
        os.replace(tmp_out, out_path)
        os.replace(tmp_poster, poster_path)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        join_log.close()
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
    copied = total - synth_total
    method = "stream-copy" if not synth_total else ("re-encode" if not copied else "+".join(["stream-copy", *kinds]))
    return AssemblyResult(
        duration_s=duration, width=width, height=height, fps=float(rate), frames=total, method=method,
        timings={key: round(v, 4) for key, v in timings.items()}, frames_copied=copied, frames_encoded=synth_total,
        poster_frame=poster_index,
        notes=tuple(notes),
        extra={"clips_normalised": [str(i.path) for i, ok in zip(infos, copyable, strict=True) if not ok],
               "segments": len(segments)},
    )


def _synthesise(segments: list[_Segment], infos: list[VideoInfo], copyable: list[bool], counts: list[int], rate: Fraction,
                width: int, height: int, req: AssemblyRequest, path: Path, work: Path, poster_index: int) -> np.ndarray | None:
    """Encode every synthesised frame, in order, into `path` (an IDR at each segment start); return the poster
    frame when it is one of them."""
    # which source frames are needed, from which decode
    needed: set[tuple[int, int]] = set()
    for seg in segments:
        for op in seg.ops:
            for f in (op.a, op.b) if isinstance(op, _Blend) else (op,) if isinstance(op, _Frame) else ():
                needed.add((f.clip, f.index))
    feeds: dict[int, _Feed] = {}
    decoders: list[Generator[Any, None, None]] = []
    # Copyable clips: one decode of just the needed ranges of all of them, through the concat demuxer.
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
        (work / "decode.txt").write_text(_concat_list([(infos[c].path, a, b, infos[c].frames, rate) for c, a, b in ranges]),
                                         encoding="utf-8")
        labels = [(c, j) for c, a, b in ranges for j in range(a, b)]
        decoded = _decode(["-f", "concat", "-safe", "0", "-i", str(work / "decode.txt")], width, height,
                         what=", ".join(sorted({infos[c].path.name for c, _, _ in ranges})))
        decoders.append(decoded)
        shared = _Feed(_labelled(labels, decoded, "the copyable clips"), needed)
        for c, _, _ in ranges:
            feeds[c] = shared
    # Other clips: decoded whole, fitted into the frame (letterboxed) and resampled to the video's rate.
    for clip in sorted({c for c, _ in needed if not copyable[c]}):
        normalised = _normalised(infos[clip], counts[clip], rate, width, height, clip)
        decoders.append(normalised)
        feeds[clip] = _Feed(normalised, needed)

    cards = [render_card(c, width=width, height=height) if c else None for c in (req.title, req.end_card)]
    idr, pos = [], 0
    for seg in segments:
        if seg.clip is None:
            idr.append(pos)
            pos += seg.frames
    poster = None
    out_index = 0
    try:
        with H264Writer(path, width=width, height=height, fps=rate, idr_at=idr) as writer:
            for seg in segments:
                if seg.clip is not None:
                    out_index += seg.frames
                    continue
                for op in seg.ops:
                    if isinstance(op, _CardFrame):
                        frame = cards[op.card]
                    elif isinstance(op, _Frame):
                        frame = feeds[op.clip].get((op.clip, op.index))
                    else:
                        a = feeds[op.a.clip].get((op.a.clip, op.a.index))
                        b = feeds[op.b.clip].get((op.b.clip, op.b.index))
                        frame = cv2.addWeighted(a, 1.0 - op.alpha, b, op.alpha, 0.0)
                    assert frame is not None
                    if out_index == poster_index:
                        poster = frame.copy()
                    writer.write(frame)
                    out_index += 1
    finally:
        for gen in decoders:  # stops decoders whose remaining frames were not needed
            gen.close()
    return poster


def _labelled(labels: list[tuple[int, int]], frames: Iterator[np.ndarray], what: str) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    count = 0
    for frame in frames:
        if count >= len(labels):
            raise JobFailed(f"decoding {what} gave more frames than the {len(labels)} expected")
        yield labels[count], frame
        count += 1
    if count < len(labels):
        raise JobFailed(f"decoding {what} gave {count} frames, expected {len(labels)}")


def _normalised(info: VideoInfo, count: int, rate: Fraction, width: int, height: int,
                clip: int) -> Generator[tuple[tuple[int, int], np.ndarray], None, None]:
    """All `count` frames of a clip at the video's size (fitted, letterboxed) and rate (nearest source frame)."""
    vf = None
    if (info.width, info.height) != (width, height):
        vf = (f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags=bicubic,"
              f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1")
    source = _decode(["-i", str(info.path)], width, height, what=str(info.path), vf=vf)
    src_index, current = -1, None
    for j in range(count):
        want = min(info.frames - 1, int((j + Fraction(1, 2)) * info.rate / rate))
        while src_index < want:
            nxt = next(source, None)
            if nxt is None:
                break
            current, src_index = nxt, src_index + 1
        if current is None:
            raise JobFailed(f"clip {info.path} has no decodable frames")
        yield (clip, j), current
    source.close()


def _poster_index(segments: list[_Segment], infos: list[VideoInfo], total: int, rate: Fraction) -> int:
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


def _copied_frame(segments: list[_Segment], infos: list[VideoInfo], index: int) -> tuple[Path, int]:
    """The clip file and frame number that output frame `index` is copied from."""
    pos = 0
    for seg in segments:
        if pos + seg.frames > index and seg.clip is not None:
            return infos[seg.clip].path, seg.start + index - pos
        pos += seg.frames
    raise AssertionError(f"output frame {index} is not a copied frame")


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise JobFailed("could not encode the poster as PNG")
    return buf.tobytes()


def _png_via_opencv(path: Path, index: int) -> bytes | None:
    """Frame `index` of `path` as PNG, decoded by OpenCV's bundled FFmpeg (no process start); None if it cannot."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened() or (index and not cap.set(cv2.CAP_PROP_POS_FRAMES, index)):
            return None
        ok, bgr = cap.read()
        if not ok or int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != index + 1:
            return None
    finally:
        cap.release()
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return buf.tobytes() if ok else None


def _png_via_ffmpeg(path: Path, index: int, rate: Fraction) -> bytes:
    # seek half a frame early: frames before the seek point are decoded and dropped, so `index` comes out first
    seek = ["-ss", f"{float((index - Fraction(1, 2)) / rate):.6f}"] if index > 0 else []
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *seek, "-i", str(path), "-map", "0:v:0",
           "-frames:v", "1", "-c:v", "png", "-f", "image2pipe", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise JobFailed(f"ffmpeg could not extract frame {index} of {path} for the poster: "
                        f"{proc.stderr.decode(errors='replace')[-1000:]}")
    return proc.stdout


__all__ = [
    "AssemblyRequest", "AssemblyResult", "H264Writer", "VideoInfo", "assemble_video", "canonical_signature",
    "draw_text_block", "font", "last_frame", "match_colors", "probe_video", "render_card", "write_h264",
]
