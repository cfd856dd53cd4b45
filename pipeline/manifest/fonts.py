"""Which installed font can burn a caption: the scripts a text uses, and the first font file whose character map
covers all of it (read with fontTools), so validation and assembly refuse the same captions.

Fonts are looked up by file name in the OS font folders. `make install-test` (scripts/ensure_fonts.py) installs
Debian's fonts-noto-core and fonts-noto-cjk; DejaVu Sans (fonts-dejavu-core) covers Latin, Greek, Cyrillic and
Arabic on its own. Right-to-left, joining scripts (Arabic, Hebrew, Syriac...) are only drawn when Pillow has
its raqm layout (libraqm with FriBiDi and HarfBuzz), which shapes and orders them; without it they are refused
rather than drawn as disconnected letters in the wrong order.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from pipeline.manifest.inputs import undrawable

# Tried in order; the first that covers every character of a caption draws it. Noto Sans first (Latin, Greek,
# Cyrillic), the Arabic faces before the CJK collection (whose Latin is fine but which has no Arabic).
FONT_FILES: tuple[tuple[str, int], ...] = (  # (file name, face index in a collection)
    ("NotoSans-Regular.ttf", 0),
    ("DejaVuSans.ttf", 0),
    ("NotoSansArabic-Regular.ttf", 0),
    ("NotoNaskhArabic-Regular.ttf", 0),
    ("NotoSansCJK-Regular.ttc", 0),
    ("NotoSansCJKjp-Regular.otf", 0),
    ("wqy-zenhei.ttc", 0),
)
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
# Scripts written right to left with joined letter forms: they need raqm's bidi and shaping
COMPLEX_SCRIPTS = frozenset({"Arabic", "Hebrew", "Syriac", "Thaana", "N'Ko"})
INSTALL_HINT = ("install Debian's fonts-noto-core and fonts-noto-cjk (`make install-test` does, through "
                "scripts/ensure_fonts.py), or deliver the captions as `captions: sidecar`")

_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0000, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"), (0x0370, 0x03FF, "Greek"), (0x0400, 0x052F, "Cyrillic"),
    (0x0590, 0x05FF, "Hebrew"), (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0x08A0, 0x08FF, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"), (0x0700, 0x074F, "Syriac"),
    (0x1100, 0x11FF, "CJK"), (0x2E80, 0x2FDF, "CJK"), (0x3000, 0x30FF, "CJK"), (0x3100, 0x31FF, "CJK"),
    (0x3400, 0x4DBF, "CJK"), (0x4E00, 0x9FFF, "CJK"), (0xAC00, 0xD7AF, "CJK"), (0xF900, 0xFAFF, "CJK"),
    (0xFF00, 0xFFEF, "CJK"),
)


def script_of(ch: str) -> str:
    """The script a character belongs to, by Unicode block ("Latin", "Cyrillic", "CJK", ...); the first word of
    its Unicode name for blocks not listed (e.g. "Devanagari")."""
    cp = ord(ch)
    for lo, hi, name in _RANGES:
        if lo <= cp <= hi:
            return name
    return unicodedata.name(ch, "Unknown").split()[0].title()


def scripts_in(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for ch in text:
        if not (ch.isspace() or unicodedata.category(ch).startswith(("P", "Z", "C", "N", "S"))):
            seen.setdefault(script_of(ch), None)
    return list(seen)


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, Path]:
    """File name -> path of every candidate font in the OS font folders."""
    wanted = {name for name, _ in FONT_FILES}
    found: dict[str, Path] = {}
    for folder in FONT_DIRS:
        for root, _dirs, files in os.walk(os.path.expanduser(folder)):
            for f in files:
                if f in wanted and f not in found:
                    found[f] = Path(root) / f
    return found


@functools.lru_cache(maxsize=16)
def _coverage(path: Path, index: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), fontNumber=index, lazy=True) as face:
        return frozenset(face.getBestCmap() or {})


@functools.lru_cache(maxsize=1)
def has_shaping() -> bool:
    """Pillow's raqm layout (bidi + HarfBuzz shaping) is available."""
    from PIL import features

    return bool(features.check("raqm"))


@dataclass(frozen=True)
class CaptionFont:
    path: Path
    index: int
    shaping: bool  # draw with raqm layout (the text has a right-to-left, joining script)


def caption_font_problem(text: str, *, brand: Path | None = None) -> str | None:
    """Why no installed font (or, given, the brand's caption font) can burn `text` (naming the script it
    misses), or None when one can."""
    return _choose(text, brand)[1]


def caption_font(text: str, *, brand: Path | None = None) -> CaptionFont:
    """The font that burns `text`: the brand's caption font when given (it must cover the text: a caption is
    never silently drawn in another face), else the first installed one that covers it."""
    font, problem = _choose(text, brand)
    if font is None:
        raise ValueError(problem)
    return font


MAX_FONT_BYTES = 32 * 1024 * 1024  # a brand's font file; CJK faces are around 16 MB
# The first four bytes of an OpenType font: TrueType outlines (0x00010000, or 'true' from Apple), CFF ('OTTO')
# (OpenType spec, "Organization of an OpenType Font", sfntVersion: https://learn.microsoft.com/en-us/typography/opentype/spec/otff).
FONT_MAGIC = (b"\x00\x01\x00\x00", b"OTTO", b"true")


def font_file_problem(path: Path) -> str | None:
    """Why `path` is not a font a brand can use (not a TTF/OTF, unreadable, no character map), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if size > MAX_FONT_BYTES:
        return f"it is {size} bytes; a font file may have at most {MAX_FONT_BYTES}"
    if head not in FONT_MAGIC:
        return "it is not a TrueType or OpenType font (.ttf/.otf; a collection .ttc or a web font .woff is not taken)"
    try:
        if not _coverage(path, 0):
            return "it has no character map (cmap): it draws no text"
    except Exception as exc:  # noqa: BLE001 - fontTools raises many kinds on a damaged file: all say "unreadable"
        return f"it is not a readable font ({type(exc).__name__})"
    return None


def _choose(text: str, brand: Path | None = None) -> tuple[CaptionFont | None, str | None]:
    bad = undrawable(text)  # emoji and other characters past the BMP: no caption font draws them either
    if bad:
        return None, f"the caption font cannot draw {bad}; emoji are not supported in burned captions"
    scripts = scripts_in(text)
    complex_ = [s for s in scripts if s in COMPLEX_SCRIPTS]
    if complex_ and not has_shaping():
        return None, (f"burning {', '.join(complex_)} text needs right-to-left shaping (Pillow's raqm layout, "
                      "libraqm), which this Pillow lacks; deliver these captions as `captions: sidecar`")
    needed = {ord(ch) for ch in text if not ch.isspace() and unicodedata.category(ch)[0] != "C"}
    if brand is not None:
        lacking_chars = needed - _coverage(brand, 0)
        if lacking_chars:
            chars = "".join(sorted(chr(c) for c in lacking_chars))[:12]
            return None, (f"the brand's caption font {brand.name} has no glyph for {chars!r}; use a brand font that "
                          "covers the caption, or deliver it as `captions: sidecar`")
        return CaptionFont(brand, 0, shaping=bool(complex_)), None
    installed = _installed()
    best_missing: set[int] | None = None
    for name, index in FONT_FILES:
        path = installed.get(name)
        if path is None:
            continue
        missing = needed - _coverage(path, index)
        if not missing:
            return CaptionFont(path, index, shaping=bool(complex_)), None
        if best_missing is None or len(missing) < len(best_missing):
            best_missing = missing
    missing = best_missing if best_missing is not None else needed
    chars = "".join(sorted(chr(c) for c in missing))[:12]
    lacking = sorted({script_of(chr(c)) for c in missing})
    return None, (f"no installed font covers the {', '.join(lacking)} characters of this caption ({chars!r}); "
                  + INSTALL_HINT)
