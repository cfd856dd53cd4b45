"""Reading images the way every tool needs them: pixel limits checked from the header before decoding,
EXIF orientation applied once, and every supported mode converted to 8-bit RGB or RGBA.

Limits per tool (local backend). The Stability services have their own (reference §1: upscale-fast 4x up to
4 MP out; the upscalers take at most 1 MP in; every tool at most 9,437,184 px in [unverified on Bedrock]);
the Bedrock backend downscales to those (pipeline/backends/bedrock.py). The local stand-ins have none, so
these bound their memory and time: a 13000x13000 PNG is 169 MP, about 680 MB as RGBA before any work."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import InputRejected

MAX_INPUT_PIXELS = 40_000_000  # any image read (asset, mask, style image): a 40 MP camera photo fits
MAX_OUTPUT_PIXELS = 40_000_000  # any edit's output, e.g. outpaint's canvas or upscale-fast's 4x
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class PixelLimits:
    max_input: int
    max_output: int
    source: str


LOCAL_LIMIT = PixelLimits(MAX_INPUT_PIXELS, MAX_OUTPUT_PIXELS, "the local backend's limit")
TOOL_LIMITS: dict[str, PixelLimits] = {
    # 4x per side is 16x the pixels: the output limit is what binds, so say it for the input too
    "upscale-fast": PixelLimits(MAX_OUTPUT_PIXELS // 16, MAX_OUTPUT_PIXELS,
                                "the local limit: 4x per side must stay within 40 MP out; the Stability "
                                "service itself takes at most 1 MP in [unverified on Bedrock]"),
}


def limits_for(tool: str) -> PixelLimits:
    return TOOL_LIMITS.get(tool, LOCAL_LIMIT)


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def check_edit_size(tool: str, size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
    """Refuse an edit whose input or (predicted) output is past the tool's limit, before any pixel work."""
    lim = limits_for(tool)
    (w, h), (ow, oh) = size_in, size_out
    if w * h > lim.max_input:
        raise InputRejected(f"{tool}: the input is {w}x{h} px ({_mp(w * h)}); {tool} accepts at most "
                            f"{_mp(lim.max_input)} ({lim.source})")
    if ow * oh > lim.max_output:
        raise InputRejected(f"{tool}: the output would be {ow}x{oh} px ({_mp(ow * oh)}); {tool} makes at most "
                            f"{_mp(lim.max_output)} ({lim.source}); use a smaller input or fewer steps")


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB or RGBA, upright
    orientation: int  # the EXIF Orientation that was applied (1: none)
    source_mode: str  # the mode on disk, before conversion


def load_image(src: Path | bytes, *, what: str, max_pixels: int = MAX_INPUT_PIXELS) -> LoadedImage:
    """Open `src`, refuse it from its header when it is past `max_pixels`, then decode, turn it upright and
    convert it. `what` names the image in errors (asset id, step)."""
    handle = io.BytesIO(src) if isinstance(src, bytes) else src
    with warnings.catch_warnings():
        # our own limit is lower than Pillow's warning threshold; Pillow's error (past twice that) is
        # turned into the same message below
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(handle)
        except Image.DecompressionBombError:
            raise InputRejected(f"{what}: the image is larger than {_mp(2 * (Image.MAX_IMAGE_PIXELS or 0))} by its "
                                f"header; at most {_mp(max_pixels)} is accepted") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputRejected(f"{what}: not a readable image ({exc})") from None
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise InputRejected(f"{what}: the image is {w}x{h} px ({_mp(w * h)}); at most {_mp(max_pixels)} "
                                    "is accepted (checked before decoding)")
            try:
                im.load()
            except OSError as exc:
                raise InputRejected(f"{what}: the image data is damaged ({exc})") from None
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            mode = im.mode
            upright = ImageOps.exif_transpose(im) if orientation != 1 else im
            return LoadedImage(to_rgb(upright), orientation, mode)


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA when the image carries transparency. 16- and 32-bit greys are scaled, not clipped
    (Pillow's own convert clips them at 255: a 16-bit gradient would come out white)."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        return im
    if mode.startswith("I;16") or mode == "I":
        # a 16-bit PNG opens as I;16 (or I in older Pillow): full scale is 65535
        grey = np.asarray(im, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        scale = 255.0 if grey.size and float(grey.max()) <= 1.0 else 1.0  # a float image is usually 0..1
        return Image.fromarray(np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)).convert("RGB")
    has_alpha = mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in im.info)
    return im.convert("RGBA" if has_alpha else "RGB")


def upright_copy(path: Path, workdir: Path) -> Path:
    """`path` itself when it is upright 8-bit RGB(A); else an upright RGB(A) PNG of it in `workdir`, for tools
    that read the file themselves (the video backends' start image)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA") and int(im.getexif().get(EXIF_ORIENTATION, 1) or 1) == 1:
                    return path
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            pass  # load_image below gives the clear error
    loaded = load_image(path, what=str(path.name))
    dest = workdir / f"{path.stem}-upright.png"
    if not dest.is_file():
        tmp = dest.with_name(f".{dest.name}.{id(loaded)}.png")
        loaded.image.save(tmp, "PNG")
        tmp.replace(dest)
    return dest
