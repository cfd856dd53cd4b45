"""Checks on what a user hands in, for validation: asset files (inside the manifest's folder, and really the
image or audio their name says) and text (blank when only invisible characters, drawable on a card)."""

from __future__ import annotations

import re
import subprocess
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from pipeline.errors import shown
from pipeline.manifest.image_files import MAX_INPUT_PIXELS

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
AUDIO_EXTENSIONS = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac")
FONT_EXTENSIONS = (".ttf", ".otf")  # a brand's fonts (pipeline/manifest/brand.py)
AUDIO_DECODE_TIMEOUT_S = 120  # an hour of MP3 decodes in seconds; past this the file is hostile or broken


def outside_problem(base_dir: Path, location: str, *, allow_outside: Sequence[Path] = ()) -> str | None:
    """An asset must resolve (symlinks followed) inside the manifest's folder, or inside a folder the user
    named with --allow-outside: otherwise `submit` would upload whatever a link points at."""
    written = base_dir / location
    real = written.resolve()
    roots = [base_dir.resolve(), *(Path(p).expanduser().resolve() for p in allow_outside)]
    if any(real.is_relative_to(root) for root in roots):
        return None
    return (f"asset file {location!r} resolves to {real}, outside the manifest's folder (symbolic links are "
            f"followed); move it into {base_dir}, or pass "
            f"--allow-outside {real.parent} if it is meant to be read")


def file_problem(path: Path, location: str) -> str | None:
    """Decode the header of an image (format matches the name, size within the limit), an audio file, or
    read a font's character map or an SVG logo."""
    suffix = PurePosixPath(location.lower()).suffix
    if suffix in IMAGE_FORMATS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as im:
                    fmt, (w, h) = im.format, im.size
            except Image.DecompressionBombError:
                return f"{location!r} is far larger than the {MAX_INPUT_PIXELS / 1e6:.0f} MP accepted (by its header)"
            except (UnidentifiedImageError, OSError):
                return f"{location!r} is not a readable image (its content is not PNG, JPEG or WebP)"
        if fmt not in IMAGE_FORMATS.values():
            return f"{location!r} is a {fmt} image; use PNG, JPEG or WebP"
        if w * h > MAX_INPUT_PIXELS:
            return (f"{location!r} is {w}x{h} px ({w * h / 1e6:.1f} MP); images of at most "
                    f"{MAX_INPUT_PIXELS / 1e6:.0f} MP are accepted")
        return None
    if suffix in AUDIO_EXTENSIONS:
        return audio_problem(path, location)
    if suffix == ".svg":  # a brand logo: no link out of it, no entities (pipeline/manifest/brand.py)
        from pipeline.manifest.brand import svg_file_problem  # brand.py imports this module

        return svg_file_problem(path, location)
    if suffix in FONT_EXTENSIONS:
        from pipeline.manifest.fonts import font_file_problem  # fonts.py imports this module

        why = font_file_problem(path)
        return f"{shown(location)}: {why}" if why else None
    return None


def audio_problem(path: Path, location: str) -> str | None:
    """The whole stream decoded (ffmpeg to its null muxer): a header alone passes a file cut short, e.g. a
    truncated MP3 whose Xing header still says its full length. Decoding stops short of the length its header
    says (ffmpeg's `Duration`) -> refused, since the video would go silent (or fail) where the bytes end."""
    import imageio_ffmpeg

    try:
        done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
                               "-map", "0:a:0", "-f", "null", "-"], capture_output=True, text=True,
                              errors="replace", timeout=AUDIO_DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"{shown(location)} could not be decoded within {AUDIO_DECODE_TIMEOUT_S} s"
    log = done.stderr
    if done.returncode != 0 or not re.search(r"Stream #\d+:\d+.*: Audio:", log):
        return f"{shown(location)} has no audio stream ffmpeg can read"
    header = _seconds(re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", log))
    times = re.findall(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)", log)
    decoded = (_seconds(times[-1]) if times else None) or 0.0
    if decoded <= 0:
        return f"{shown(location)} has no audio ffmpeg can decode (the file may be cut short)"
    if header is not None and decoded < header - max(0.5, 0.02 * header):
        return (f"{shown(location)} is cut short: its header says {header:.1f} s but only {decoded:.1f} s decode "
                "(an incomplete download or copy?); export or copy it again")
    return None


def _seconds(hms: re.Match[str] | tuple[str, ...] | None) -> float | None:
    if hms is None:
        return None
    h, m, s = hms.groups() if isinstance(hms, re.Match) else hms
    return int(h) * 3600 + int(m) * 60 + float(s)


def submit_name(location: str) -> str:
    """The file name an asset is uploaded under: the name written in the manifest, never a link target's
    (a link to an extension-less file would otherwise lose the extension that says it is audio)."""
    return PurePosixPath(location).name


# Characters that draw nothing: format controls (zero-width space/joiners, BOM, bidi marks), separators,
# controls. A prompt made only of these is blank.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me"})


def is_blank(text: str) -> bool:
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text)


def undrawable(text: str) -> str | None:
    """The first character the card font (DejaVu Sans, or Pillow's bundled font) cannot draw: emoji and other
    characters past the Basic Multilingual Plane, and the emoji presentation selector. None when all draw."""
    for ch in text:
        if ord(ch) > 0xFFFF or ch in "\ufe0f\u200d":
            name = unicodedata.name(ch, "unnamed character")
            return f"{ch!r} (U+{ord(ch):04X} {name})"
    return None
