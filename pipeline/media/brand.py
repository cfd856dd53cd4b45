"""The brand's logo on a delivered format: sized as a share of the frame's shorter side, in its corner of the
format's safe area, moved clear of the burned captions, alpha-composited onto every frame. A PNG logo is
resampled; an SVG logo is drawn by resvg at each format's exact size (sharp at every size)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import InputRejected
from pipeline.manifest.brand import MAX_SVG_BYTES, svg_problem

MAX_LOGO_PIXELS = 4096 * 4096  # a logo is small; a bigger file is refused before it is decoded


@dataclass(frozen=True)
class Logo:
    path: Path  # a PNG (its alpha channel, or a fully opaque one, decides what covers the frame) or an SVG
    corner: str  # top-right | top-left | bottom-right | bottom-left
    size: float  # the logo's longer side as a share of the frame's shorter side


@dataclass(frozen=True)
class PlacedLogo:
    x: int
    y: int
    rgb: np.ndarray  # float32 h x w x 3
    alpha: np.ndarray  # float32 h x w x 1, 0..1

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.rgb.shape[1], self.y + self.rgb.shape[0]


def place_logo(logo: Logo, *, width: int, height: int, safe: tuple[int, int, int, int],
               captions_top: int | None) -> PlacedLogo:
    """The logo resized for a width x height frame and put in its corner of `safe` (x0, y0, x1, y1); a bottom
    corner sits above `captions_top` (the highest burned caption's top edge), so it never covers a caption."""
    x0, y0, x1, y1 = safe
    longest = max(2, round(min(width, height) * logo.size))
    if logo.path.suffix.lower() == ".svg":  # drawn to fit the box, its aspect kept
        fitted = _draw_svg(logo.path, width=min(x1 - x0, longest), height=min(y1 - y0, longest))
    else:
        rgba = _read_png(logo.path)
        scale = longest / max(rgba.width, rgba.height)
        w = max(1, min(x1 - x0, round(rgba.width * scale)))
        h = max(1, min(y1 - y0, round(rgba.height * scale)))
        fitted = rgba.resize((w, h), Image.Resampling.LANCZOS)
    pixels = np.asarray(fitted, np.float32)
    w, h = fitted.size
    left = logo.corner.endswith("left")
    x = x0 if left else x1 - w
    if logo.corner.startswith("top"):
        y = y0
    else:
        bottom = y1 if captions_top is None else min(y1, captions_top - max(2, h // 8))
        y = max(y0, bottom - h)
    return PlacedLogo(x=x, y=y, rgb=pixels[..., :3], alpha=pixels[..., 3:] / 255.0)


def _read_png(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_LOGO_PIXELS:
                raise InputRejected(f"logo {path.name} is {im.width}x{im.height} px; at most 4096x4096")
            return im.convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputRejected(f"logo {path.name} is not a readable PNG ({exc})") from None


def _draw_svg(path: Path, *, width: int, height: int) -> Image.Image:
    """The SVG drawn by resvg to fit width x height, with alpha. The bytes drawn are the bytes checked here
    (the check the manifest's validation made, again: the file may have changed since), handed over as text
    with no resources folder and no system fonts, so resvg reads nothing else."""
    import resvg_py  # imported only where a logo is drawn (the light Lambda layer has no resvg)

    try:
        with path.open("rb") as f:
            data = f.read(MAX_SVG_BYTES + 1)
    except OSError as exc:
        raise InputRejected(f"logo {path.name} cannot be read ({exc.strerror or exc})") from None
    why = svg_problem(data, path.name)
    if why:
        raise InputRejected(f"logo {why}")
    try:
        png = resvg_py.svg_to_bytes(svg_string=data.decode("utf-8"), width=width, height=height,
                                    skip_system_fonts=True, resources_dir=None)
    except ValueError as exc:  # resvg's parse errors ("SVG has an invalid size", ...)
        raise InputRejected(f"logo {path.name} cannot be drawn: {exc}") from None
    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGBA")


def draw_logo(frame: np.ndarray, placed: PlacedLogo) -> np.ndarray:
    """The frame (RGB uint8) with the logo composited over it; the rest of the frame is untouched."""
    out = frame.copy()
    x, y, x2, y2 = placed.box
    region = out[y:y2, x:x2].astype(np.float32)
    a = placed.alpha
    out[y:y2, x:x2] = (region * (1 - a) + placed.rgb * a + 0.5).astype(np.uint8)
    return out
