"""Local image-edit backend: classical OpenCV/PIL stand-ins for the Stability tools, labelled placeholders where none exists."""

from __future__ import annotations

import colorsys
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.backends.base import EditOutcome
from pipeline.catalog import EDIT_TOOLS, EditTool
from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest.image_files import check_edit_size

BACKEND = "local"

# Seed used where a local method has randomness (grabCut's k-means) and the manifest gives none or 0
# ("random" on the service); local runs stay reproducible.
DEFAULT_SEED = 1
# grow_mask when the manifest leaves it out: the Stability service defaults (erase/inpaint 5, search tools 3).
GROW_MASK_DEFAULTS = {"erase-object": 5, "inpaint": 5, "search-recolor": 3, "search-replace": 3}
# style_strength when left out: the service default.
STYLE_STRENGTH_DEFAULT = 1.0
# The "about 4K" upscalers: 4x, but at most this many output pixels.
UPSCALE_MAX_PIXELS = 4 * 1024 * 1024
UPSCALE_FACTOR = 4
# grabCut works on a copy whose longer side is at most this: its cost grows fast with size (0.1 s at 160x120,
# 0.3 s at 192x144, 1.3 s at 320x240 on smooth images, 2 cores), and a guided filter restores the full-size edge.
GRABCUT_MAX_SIDE = 160
GRABCUT_ITERATIONS = 5
# Navier-Stokes rather than Telea: it continues smooth gradients exactly where Telea leaves an X-shaped seam.
INPAINT_RADIUS = 3

# Colour words search-recolor understands in its prompt; anything else falls back to a hue hashed from the prompt.
COLOURS: dict[str, tuple[int, int, int]] = {
    "navy": (24, 34, 84), "blue": (35, 85, 200), "red": (200, 30, 35), "green": (40, 140, 60),
    "yellow": (235, 205, 40), "orange": (240, 130, 30), "purple": (115, 50, 160), "violet": (140, 80, 200),
    "pink": (240, 140, 175), "magenta": (200, 40, 150), "cyan": (40, 190, 210), "teal": (20, 125, 125),
    "turquoise": (50, 200, 190), "aqua": (80, 210, 220), "brown": (115, 70, 35), "beige": (220, 200, 160),
    "cream": (240, 230, 200), "ivory": (245, 240, 225), "tan": (210, 180, 140), "khaki": (195, 180, 130),
    "black": (20, 20, 22), "white": (242, 242, 240), "grey": (128, 128, 128), "gray": (128, 128, 128),
    "silver": (190, 190, 195), "charcoal": (54, 62, 70), "gold": (212, 175, 55), "mustard": (210, 170, 40),
    "maroon": (120, 20, 30), "burgundy": (128, 20, 45), "crimson": (200, 20, 60), "coral": (250, 125, 85),
    "peach": (250, 190, 150), "salmon": (240, 130, 115), "terracotta": (200, 100, 70), "rust": (180, 75, 35),
    "olive": (120, 120, 30), "lime": (150, 215, 50), "mint": (160, 225, 190), "sage": (150, 170, 130),
    "emerald": (30, 150, 90), "indigo": (70, 30, 130), "lavender": (180, 160, 220), "lilac": (200, 160, 210),
}
_LIGHTER = frozenset({"light", "pale", "pastel", "bright"})
_DARKER = frozenset({"dark", "deep"})

Params = Mapping[str, Any]
Refs = Mapping[str, Image.Image]


@dataclass(frozen=True)
class _LocalTool:
    """One tool's local implementation; bump `version` whenever its output pixels change."""

    version: int
    run: Callable[[Image.Image, Params, Refs], EditOutcome]


class LocalImageEditor:
    """Runs every catalog edit tool on this machine with no weights; the tool functions below say what each does."""

    name = BACKEND

    def identity(self, tool: str) -> str:
        return f"{BACKEND}:{tool}:v{_lookup(tool).version}"

    def edit(self, tool: str, image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
        impl = _lookup(tool)
        _check_request(EDIT_TOOLS[tool], params, refs)
        check_edit_size(tool, image.size, _output_size(tool, image.size, params))
        return impl.run(_normalise(image), params, refs)


def _output_size(tool: str, size: tuple[int, int], params: Params) -> tuple[int, int]:
    """The size a tool will make, known before any pixel work (so a limit is checked first)."""
    w, h = size
    if tool == "outpaint":
        return (w + int(params.get("left", 0)) + int(params.get("right", 0)),
                h + int(params.get("up", 0)) + int(params.get("down", 0)))
    if tool == "upscale-fast":
        return _upscale_size(size, None)
    if tool in ("upscale-creative", "upscale-conservative"):
        return _upscale_size(size, UPSCALE_MAX_PIXELS)
    return size


# --- request checks ---------------------------------------------------------------------------------


def _lookup(tool: str) -> _LocalTool:
    if tool not in _TOOLS:
        raise InputRejected(f"unknown edit tool {tool!r}; known: {', '.join(sorted(_TOOLS))}")
    return _TOOLS[tool]


def _check_request(tool: EditTool, params: Params, refs: Refs) -> None:
    """Reject fields the tool does not have and values out of the catalog's ranges, quoting them."""
    image_fields = set(tool.image_fields)
    for name in refs:
        if name not in image_fields:
            raise InputRejected(f"{tool.name}: {name!r} is not an image field of this tool (image fields: {sorted(image_fields)})")
    for name, value in params.items():
        spec = tool.fields.get(name)
        if spec is None:
            raise InputRejected(f"{tool.name}: unknown field {name!r} (fields: {sorted(tool.fields)})")
        if spec.kind == "image":
            raise InputRejected(f"{tool.name}: image field {name!r} belongs in refs, not params (got {value!r})")
        if spec.kind in ("int", "number"):
            numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not numeric or (spec.kind == "int" and not float(value).is_integer()):
                raise InputRejected(f"{tool.name}: {name} must be {'an integer' if spec.kind == 'int' else 'a number'}, got {value!r}")
            if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
                raise InputRejected(f"{tool.name}: {name}={value!r} is outside {spec.minimum}..{spec.maximum}")
        elif spec.kind == "enum" and value not in spec.choices:
            raise InputRejected(f"{tool.name}: {name}={value!r} is not one of {list(spec.choices)}")
        elif spec.kind == "text" and not isinstance(value, str):
            raise InputRejected(f"{tool.name}: {name} must be text, got {value!r}")
    if tool.any_of and not any(name in params for name in tool.any_of):
        raise InputRejected(f"{tool.name}: needs at least one of {list(tool.any_of)}")


# --- pixel helpers -------------------------------------------------------------------------------------


def _normalise(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the input carries transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA", "La") or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")


def _split(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(image)
    if image.mode == "RGBA":
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    return np.ascontiguousarray(arr), None


def _join(rgb: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    if alpha is None:
        return Image.fromarray(rgb)
    return Image.fromarray(np.dstack([rgb, alpha]))


def _flatten(image: Image.Image) -> Image.Image:
    """Composite on white: the control tools return opaque images."""
    if image.mode != "RGBA":
        return image
    return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")


def _has_transparency(alpha: np.ndarray | None) -> bool:
    return alpha is not None and bool((alpha < 128).any()) and bool((alpha >= 128).any())


def _seed(params: Params) -> int:
    return int(params.get("seed", 0)) or DEFAULT_SEED


def _fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    w, h = size
    scale = longest / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _load_mask(tool: str, mask: Image.Image, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """White (>50%) = selected. A mask with alpha counts transparent pixels as black. Resized to `size` if needed."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        grey: np.ndarray = np.asarray(rgba.convert("L"), dtype=np.float32) * (np.asarray(rgba)[..., 3] / 255.0)
    else:
        grey = np.asarray(mask.convert("L"), dtype=np.float32)
    note = ""
    if mask.size != size:
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
        note = f"; mask resized from {mask.size[0]}x{mask.size[1]} to {size[0]}x{size[1]}"
    selected = grey > 127.5
    if not selected.any():
        raise InputRejected(f"{tool}: the mask selects nothing (no pixel brighter than 50% grey)")
    return selected, note


def _fill(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return cv2.inpaint(rgb, mask.astype(np.uint8) * 255, INPAINT_RADIUS, cv2.INPAINT_NS)


def _foreground(rgb: np.ndarray, seed: int) -> np.ndarray:
    """Soft foreground weight (0..1, float32) of the central subject, by grabCut from a centred rectangle."""
    h, w = rgb.shape[:2]
    small = rgb if max(h, w) <= GRABCUT_MAX_SIDE else cv2.resize(rgb, _fit((w, h), GRABCUT_MAX_SIDE), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    if min(sh, sw) < 8:
        raise InputRejected(f"image {w}x{h} is too small to find a foreground in")
    mx, my = max(1, round(sw * 0.04)), max(1, round(sh * 0.04))
    labels = np.zeros((sh, sw), np.uint8)
    cv2.setRNGSeed(seed & 0x7FFFFFFF)  # grabCut's k-means draws from OpenCV's (thread-local) RNG
    cv2.grabCut(small, labels, (mx, my, sw - 2 * mx, sh - 2 * my), np.zeros((1, 65)), np.zeros((1, 65)),
                GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    if not fg.any():
        raise JobFailed(f"no foreground found in the {w}x{h} image (grabCut from a centred rectangle)")
    if (sh, sw) == (h, w):
        return fg
    # Back to full size, then snap the blocky edge to the image's own edges.
    fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    return np.clip(_guided_filter(grey, fg, radius=max(2, round(2 * w / sw))), 0, 1)


def _guided_filter(guide: np.ndarray, src: np.ndarray, *, radius: int, eps: float = 1e-3) -> np.ndarray:
    """He et al.'s guided filter: `src` smoothed, but following the edges of `guide`."""
    def mean(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, (2 * radius + 1, 2 * radius + 1))

    m_i, m_p = mean(guide), mean(src)
    a = (mean(guide * src) - m_i * m_p) / (mean(guide * guide) - m_i * m_i + eps)
    b = m_p - a * m_i
    return mean(a) * guide + mean(b)


def _selection(rgb: np.ndarray, alpha: np.ndarray | None, seed: int) -> tuple[np.ndarray, str]:
    """The subject: the image's alpha where it has transparency, else grabCut's central foreground."""
    if _has_transparency(alpha):
        assert alpha is not None
        return alpha.astype(np.float32) / 255.0, "alpha-channel"
    return _foreground(rgb, seed), "central"


def _posterize(rgb: np.ndarray, levels: int) -> np.ndarray:
    step = 256 // levels
    return (rgb // step * step + step // 2).astype(np.uint8)


def _label(image: Image.Image, text: str) -> Image.Image:
    """Draw `text` white on black in the top-left corner, so a placeholder can never pass for a result."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, min(out.size) // 24))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 3
    black, white = ((0, 0, 0, 255), (255, 255, 255, 255)) if out.mode == "RGBA" else ((0, 0, 0), (255, 255, 255))
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=black)
    draw.text((pad - left, pad - top), text, fill=white, font=font)
    return out


def _outcome(image: Image.Image, note: str, *, placeholder: bool = False, seed: int | None = None,
             **extra: Any) -> EditOutcome:
    return EditOutcome(image=image, backend=BACKEND, placeholder=placeholder, note=note, seed=seed, extra=extra)


# --- the tools -----------------------------------------------------------------------------------------


def _erase_object(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """cv2.inpaint (Navier-Stokes) over the mask grown by grow_mask: the object is replaced by its surroundings."""
    rgb, alpha = _split(image)
    if "mask" in refs:
        mask, mask_note = _load_mask("erase-object", refs["mask"], image.size)
    elif _has_transparency(alpha):
        assert alpha is not None
        mask, mask_note = alpha < 128, "; mask taken from the alpha channel"
    else:
        raise InputRejected("erase-object: needs a mask (or an input image with transparent pixels)")
    grow = int(params.get("grow_mask", GROW_MASK_DEFAULTS["erase-object"]))
    filled = _fill(rgb, _grow(mask, grow))
    note = f"Filled the masked area from its surroundings with cv2.inpaint (mask grown {grow} px{mask_note})."
    return _outcome(_join(filled, alpha), note)


def _inpaint(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """cv2.inpaint over refs['mask'], else over the transparent pixels; the prompt is not used."""
    rgb, alpha = _split(image)
    if "mask" in refs:
        mask, mask_note = _load_mask("inpaint", refs["mask"], image.size)
        keep_alpha = alpha
    elif _has_transparency(alpha):
        assert alpha is not None
        mask, mask_note, keep_alpha = alpha < 128, "; mask from the alpha channel", None
    else:
        raise InputRejected("inpaint: needs a mask or an input image with transparent pixels")
    grow = int(params.get("grow_mask", GROW_MASK_DEFAULTS["inpaint"]))
    filled = _fill(rgb, _grow(mask, grow))
    note = (f"Filled the masked area from its surroundings with cv2.inpaint, prompt not used locally "
            f"(mask grown {grow} px{mask_note}).")
    return _outcome(_join(filled, keep_alpha), note)


def _outpaint(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Edge replication, blended far from the original into a heavy blur of it, so the extension is smooth."""
    left, right, up, down = (int(params.get(side, 0)) for side in ("left", "right", "up", "down"))
    arr = np.asarray(image)
    h, w = arr.shape[:2]
    padded = cv2.copyMakeBorder(arr, up, down, left, right, cv2.BORDER_REPLICATE)
    big_h, big_w = padded.shape[:2]
    # A blur about 1/30 of the canvas wide, done cheaply at low resolution.
    small = cv2.resize(padded, _fit((big_w, big_h), 64), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 2.0)
    blurred = cv2.resize(small, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    # Weight of the blur grows with the distance outside the original rectangle.
    xs = np.arange(big_w, dtype=np.float32)
    ys = np.arange(big_h, dtype=np.float32)
    dx = np.maximum(np.maximum(left - xs, xs - (left + w - 1)), 0)
    dy = np.maximum(np.maximum(up - ys, ys - (up + h - 1)), 0)
    ramp = max(8.0, 0.25 * min(h, w))
    weight = np.clip(np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2) / ramp, 0, 1).astype(np.float32)
    out = cv2.blendLinear(padded, blurred, 1 - weight, weight)
    out[up:up + h, left:left + w] = arr  # the original, bit for bit
    note = (f"Extended the canvas by left {left}, right {right}, up {up}, down {down} px with replicated, "
            "blurred edges; prompt and creativity not used locally.")
    return _outcome(Image.fromarray(out), note)


def _remove_background(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """grabCut from a centred rectangle; the soft foreground becomes the alpha channel."""
    rgb, alpha = _split(image)
    seed = DEFAULT_SEED  # the tool has no seed field
    fg = np.round(_foreground(rgb, seed) * 255).astype(np.uint8)
    if alpha is not None:
        fg = np.minimum(fg, alpha)
    note = "Cut out the central subject with cv2.grabCut; the background is transparent."
    return _outcome(_join(rgb, fg), note, seed=seed)


def _parse_colour(prompt: str) -> tuple[str, tuple[int, int, int]]:
    words = re.findall(r"[a-z]+", prompt.lower())
    for i, word in enumerate(words):
        if word not in COLOURS:
            continue
        rgb = np.array(COLOURS[word], dtype=np.float32)
        modifier = words[i - 1] if i > 0 else ""
        if modifier in _LIGHTER:
            rgb = rgb + (255 - rgb) * 0.4
        elif modifier in _DARKER:
            rgb = rgb * 0.6
        else:
            modifier = ""
        r, g, b = (int(round(float(c))) for c in rgb)
        return f"{modifier} {word}".strip(), (r, g, b)
    hue = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:2], "big") % 360
    r, g, b = (round(c * 255) for c in colorsys.hsv_to_rgb(hue / 360, 0.6, 0.65))
    return f"hue {hue} (no colour word understood)", (r, g, b)


def _recolor_lab(rgb: np.ndarray, selected: np.ndarray, grown: np.ndarray, target: tuple[int, int, int]) -> np.ndarray:
    """Move the selected pixels' lightness and chroma to the target's, keeping their shading.

    Lightness changes only inside the selection; the grown band takes the new hue alone, so a recolour
    toward a dark colour leaves no dark ring on the background around the subject."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    t_l, t_a, t_b = cv2.cvtColor(np.array([[target]], np.float32) / 255, cv2.COLOR_RGB2LAB)[0, 0]
    inside = selected > 0.5
    m_l, m_a, m_b = (float(lab[..., c][inside].mean()) for c in range(3))
    lum = lab[..., 0]
    # An order-preserving map of L that sends the mean to the target, never clipping.
    if t_l <= m_l:
        new_l = lum * (t_l / max(m_l, 1e-3))
    else:
        new_l = 100 - (100 - lum) * ((100 - t_l) / max(100 - m_l, 1e-3))
    out = np.dstack([
        lum + selected * (new_l - lum),
        lab[..., 1] + grown * (t_a + (lab[..., 1] - m_a) * 0.3 - lab[..., 1]),
        lab[..., 2] + grown * (t_b + (lab[..., 2] - m_b) * 0.3 - lab[..., 2]),
    ]).astype(np.float32)
    new_rgb = np.clip(cv2.cvtColor(out, cv2.COLOR_LAB2RGB) * 255, 0, 255).round().astype(np.uint8)
    # Untouched pixels stay bit for bit (a LAB round trip is off by one here and there).
    return np.where((np.maximum(selected, grown) > 0)[..., None], new_rgb, rgb)


def _search_recolor(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Recolour the subject (alpha, else grabCut's central foreground) toward the colour named in the prompt."""
    rgb, alpha = _split(image)
    seed = _seed(params)
    weight, source = _selection(rgb, alpha, seed)
    grow = int(params.get("grow_mask", GROW_MASK_DEFAULTS["search-recolor"]))
    hard = _grow(weight > 0.5, grow).astype(np.float32)
    soft = cv2.GaussianBlur(hard, (0, 0), 1.0 + grow / 2)
    colour, target = _parse_colour(str(params.get("prompt", "")))
    out = _recolor_lab(rgb, weight, np.maximum(soft, weight), target)
    select = params.get("select_prompt", "")
    note = f"Recoloured the {source} foreground toward {colour}; select_prompt {select!r} not understood locally."
    return _outcome(_join(out, alpha), note, seed=seed if source == "central" else None,
                    selection=source, target_rgb=list(target))


def _search_replace(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Placeholder: outlines the subject a real search would replace and labels the image."""
    rgb, alpha = _split(image)
    seed = _seed(params)
    try:
        weight, source = _selection(rgb, alpha, seed)
    except JobFailed:  # the outline is only a hint; a placeholder need not fail for want of it
        weight, source = np.zeros(rgb.shape[:2], np.float32), "no"
    hard = _grow(weight > 0.5, int(params.get("grow_mask", GROW_MASK_DEFAULTS["search-replace"])))
    contours, _ = cv2.findContours(hard.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outlined = cv2.drawContours(rgb.copy(), contours, -1, (255, 0, 255), max(2, min(rgb.shape[:2]) // 160))
    out = _label(_join(outlined, alpha), "PLACEHOLDER: search-replace")
    found = f"outlined the {source} foreground" if contours else "found no foreground to outline"
    note = (f"Placeholder: {found} as the area for {params.get('search_prompt', '')!r}; "
            "replacing it needs a generative model.")
    return _outcome(out, note, placeholder=True, seed=seed if source == "central" else None, selection=source)


def _upscale_size(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int]:
    w, h = size
    factor = float(UPSCALE_FACTOR)
    if max_pixels is not None:
        factor = max(1.0, min(factor, math.sqrt(max_pixels / (w * h))))
    return math.floor(w * factor + 1e-9), math.floor(h * factor + 1e-9)  # floor: never past the cap


def _upscale_fast(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Exactly 4x width and height, Lanczos."""
    size = _upscale_size(image.size, None)
    note = f"Upscaled 4x to {size[0]}x{size[1]} with Lanczos."
    return _outcome(image.resize(size, Image.Resampling.LANCZOS), note)


def _upscale_capped(kind: str) -> Callable[[Image.Image, Params, Refs], EditOutcome]:
    def run(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
        """Lanczos toward 4x, capped at about 4 MP with the aspect kept."""
        size = _upscale_size(image.size, UPSCALE_MAX_PIXELS)
        note = (f"Upscaled with Lanczos to {size[0]}x{size[1]} (4x, capped at 4 MP); the {kind} service's "
                "generative detail and the prompt are not reproduced locally.")
        return _outcome(image.resize(size, Image.Resampling.LANCZOS), note)

    return run


def _lab_stats(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    pixels = lab[alpha >= 128] if alpha is not None and _has_transparency(alpha) else lab.reshape(-1, 3)
    return pixels.mean(axis=0), pixels.std(axis=0)


def _style_transfer(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Reinhard colour transfer in LAB from the style image, blended by style_strength."""
    if "style_image" not in refs:
        raise InputRejected("style-transfer: needs style_image")
    rgb, alpha = _split(image)
    style = _normalise(refs["style_image"])
    if max(style.size) > 256:  # statistics only: a small copy is enough
        style = style.resize(_fit(style.size, 256), Image.Resampling.BILINEAR)
    s_mean, s_std = _lab_stats(*_split(style))
    i_mean, i_std = _lab_stats(rgb, alpha)
    strength = float(params.get("style_strength", STYLE_STRENGTH_DEFAULT))
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    transferred = (lab - i_mean) * (s_std / np.maximum(i_std, 1e-3)) + s_mean
    mixed = lab + strength * (transferred - lab)
    out = np.clip(cv2.cvtColor(mixed.astype(np.float32), cv2.COLOR_LAB2RGB) * 255, 0, 255).round().astype(np.uint8)
    note = f"Transferred the style image's colours (Reinhard, LAB) at strength {strength:g}; colour only, not texture."
    return _outcome(_join(out, alpha), note)


def _sketch(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Placeholder: the input smoothed and posterised, labelled."""
    rgb, _ = _split(_flatten(image))
    out = _posterize(cv2.medianBlur(rgb, 5), 4)
    note = "Placeholder: posterised the input sketch; rendering it from the prompt needs a generative model."
    return _outcome(_label(Image.fromarray(out), "PLACEHOLDER: sketch"), note, placeholder=True)


def _structure(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Placeholder: posterised input with its Canny edges drawn in, labelled."""
    rgb, _ = _split(_flatten(image))
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 60, 160) > 0
    out = _posterize(cv2.GaussianBlur(rgb, (0, 0), 2.0), 3)
    out[edges] = (20, 20, 20)
    note = "Placeholder: drew the input's edges over a posterised copy; new content needs a generative model."
    return _outcome(_label(Image.fromarray(out), "PLACEHOLDER: structure"), note, placeholder=True)


def _style_guide(image: Image.Image, params: Params, refs: Refs) -> EditOutcome:
    """Placeholder: the input centre-cropped to aspect_ratio (same pixel count), blurred, posterised, labelled."""
    flat = _flatten(image)
    w, h = flat.size
    ratio_text = params.get("aspect_ratio")
    if ratio_text is None:
        out_w, out_h, crop = w, h, flat
    else:
        num, den = (int(part) for part in str(ratio_text).split(":"))
        ratio = num / den
        out_w, out_h = max(1, round(math.sqrt(w * h * ratio))), max(1, round(math.sqrt(w * h / ratio)))
        crop_w, crop_h = (min(w, round(h * ratio)), h) if w / h >= ratio else (w, min(h, round(w / ratio)))
        x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
        crop = flat.crop((x0, y0, x0 + crop_w, y0 + crop_h))
    rgb = np.asarray(crop.resize((out_w, out_h), Image.Resampling.BILINEAR))
    out = _posterize(cv2.GaussianBlur(rgb, (0, 0), 3.0), 4)
    note = (f"Placeholder: a blurred, posterised {out_w}x{out_h} crop of the input; "
            "a new image in its style needs a generative model.")
    return _outcome(_label(Image.fromarray(out), "PLACEHOLDER: style-guide"), note, placeholder=True,
                    aspect_ratio=ratio_text)


_TOOLS: dict[str, _LocalTool] = {
    "erase-object": _LocalTool(1, _erase_object),
    "remove-background": _LocalTool(1, _remove_background),
    "search-recolor": _LocalTool(1, _search_recolor),
    "search-replace": _LocalTool(1, _search_replace),
    "inpaint": _LocalTool(1, _inpaint),
    "outpaint": _LocalTool(1, _outpaint),
    "upscale-creative": _LocalTool(1, _upscale_capped("creative")),
    "upscale-conservative": _LocalTool(1, _upscale_capped("conservative")),
    "upscale-fast": _LocalTool(1, _upscale_fast),
    "sketch": _LocalTool(1, _sketch),
    "structure": _LocalTool(1, _structure),
    "style-guide": _LocalTool(1, _style_guide),
    "style-transfer": _LocalTool(1, _style_transfer),
}
