"""The brand kit (`brand:` inline, or a YAML file the manifest names): the logo, its corner and size, the card
colours, the fonts of cards and burned captions, and an end card, applied to every video unless the video says
`brand: false`."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast
from xml.parsers import expat

import jsonschema

from pipeline.errors import ManifestInvalid, Problem, shown
from pipeline.manifest.inputs import FONT_EXTENSIONS, outside_problem
from pipeline.manifest.yamlsrc import Path as DocPath
from pipeline.manifest.yamlsrc import Source, load_file

if TYPE_CHECKING:  # the model lives in campaign.py, which calls this module
    from pipeline.manifest.campaign import Campaign

CORNERS = ("top-right", "top-left", "bottom-right", "bottom-left")
DEFAULT_CORNER = "top-right"
DEFAULT_LOGO_SIZE = 0.12  # of the frame's shorter side: the logo's longer side
_COLOR = {"type": "string", "pattern": r"^#[0-9a-fA-F]{6}$"}
_FONT_REF = {"type": "string", "minLength": 1, "maxLength": 63, "description": "the id of a TrueType/OpenType font asset"}
FONT_USES = ("cards", "captions")  # title and end cards; burned captions
LOGO_EXTENSIONS = (".png", ".svg")
MAX_SVG_BYTES = 2 * 1024 * 1024  # a logo's vector file is kilobytes; a bigger one is refused before it is parsed
_EMBEDDED = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}  # data: images a logo may carry
_OUTSIDE_URL = re.compile(r"url\(\s*(?!['\"]?\s*#)", re.IGNORECASE)  # url(...) naming anything but #an-id


def brand_schema() -> dict[str, Any]:
    """The brand kit's shape: inline under `brand:` and as the whole of a brand file."""
    return {
        "type": "object", "additionalProperties": False,
        "description": "the brand kit: logo in a corner of every format, card colours, an end card",
        "properties": {
            "logo": {"type": "string", "minLength": 1, "maxLength": 63,
                     "description": "the id of a PNG (with transparency) or SVG asset (like an image's `from:`)"},
            "corner": {"enum": list(CORNERS), "description": "where the logo sits, inside the format's safe area"},
            "size": {"type": "number", "minimum": 0.02, "maximum": 0.4,
                     "description": "the logo's longer side, as a share of the frame's shorter side"},
            "colors": {"type": "object", "additionalProperties": False,
                       "properties": {"card": _COLOR, "card_text": _COLOR},
                       "description": "title and end cards that set no colour of their own take these"},
            "end_card": {"$ref": "#/$defs/card", "description": "the end card of every video that has none"},
            "fonts": {"type": "object", "additionalProperties": False,
                      "description": "the brand's fonts: each the id of a .ttf/.otf asset (like the logo)",
                      "properties": {"cards": _FONT_REF, "captions": _FONT_REF}},
        },
    }


@dataclass(frozen=True)
class BrandSpec:
    logo: str | None  # asset id
    corner: str
    size: float
    card_color: str | None
    card_text_color: str | None
    end_card: dict[str, Any] | None  # the card as written (campaign.py builds it, with the brand's colours)
    card_font: str | None = None  # asset ids of the fonts for title/end cards and for burned captions
    caption_font: str | None = None
    raw: dict[str, Any] = field(compare=False, default_factory=dict)  # the kit as loaded: what submit uploads


def load_brand(src: Source, base_dir: Path, *, allow_outside: Sequence[Path] = ()) -> tuple[BrandSpec | None,
                                                                                          list[Problem]]:
    """The manifest's `brand:` resolved (a file is read and checked, its problems located in it)."""
    data = src.data if isinstance(src.data, dict) else {}
    written = data.get("brand")
    if written is None:
        return None, []
    if isinstance(written, str):
        loc = written
        suffix = PurePosixPath(loc.lower()).suffix
        if suffix not in (".yaml", ".yml") or "://" in loc:
            return None, [src.problem(("brand",), f"brand file {shown(loc)} must be a .yaml file beside the manifest")]
        path = base_dir / loc
        if not path.is_file():
            return None, [src.problem(("brand",), f"brand file {shown(loc)} not found (looked in {path})")]
        outside = outside_problem(base_dir, loc, allow_outside=allow_outside)
        if outside:
            return None, [src.problem(("brand",), outside.replace("asset file", "brand file", 1))]
        try:
            bsrc = load_file(str(path))
        except ManifestInvalid as exc:
            return None, list(exc.problems)
        from pipeline.manifest.schema import load_schema

        schema = {**brand_schema(), "$defs": load_schema()["$defs"]}
        found = [bsrc.problem(tuple(e.absolute_path), e.message)
                 for e in jsonschema.Draft202012Validator(schema).iter_errors(bsrc.data)]
        if found:
            return None, found
        at_src, at_path, kit = bsrc, cast(DocPath, ()), cast(dict[str, Any], bsrc.data)
    elif isinstance(written, dict):
        at_src, at_path, kit = src, cast(DocPath, ("brand",)), written
    else:
        return None, []  # the schema reports it
    problems = []
    assets: dict[str, Any] = data["assets"] if isinstance(data.get("assets"), dict) else {}
    logo = kit.get("logo")
    if isinstance(logo, str):
        found_loc = assets.get(logo)
        if found_loc is None:
            problems.append(at_src.problem(at_path + ("logo",), f"logo {shown(logo)} names no asset of the manifest"
                                           f" (assets: {', '.join(assets) or 'none'})"))
        elif not isinstance(found_loc, str) or not found_loc.lower().endswith(LOGO_EXTENSIONS):
            problems.append(at_src.problem(at_path + ("logo",), f"logo {shown(logo)} must be a PNG asset (with "
                                           f"transparency) or an SVG asset, not {shown(str(found_loc))}"))
    fonts: dict[str, Any] = kit["fonts"] if isinstance(kit.get("fonts"), dict) else {}
    for use in FONT_USES:
        if isinstance(fonts.get(use), str):
            problems += _font_problems(at_src, at_path + ("fonts", use), fonts[use], assets)
    colors: dict[str, Any] = kit["colors"] if isinstance(kit.get("colors"), dict) else {}
    spec = BrandSpec(logo=logo if isinstance(logo, str) else None, corner=kit.get("corner", DEFAULT_CORNER),
                     size=float(kit.get("size", DEFAULT_LOGO_SIZE)), card_color=colors.get("card"),
                     card_text_color=colors.get("card_text"), end_card=kit.get("end_card"), raw=dict(kit),
                     card_font=_str_or_none(fonts.get("cards")), caption_font=_str_or_none(fonts.get("captions")))
    if spec.caption_font and not problems:
        problems += _caption_coverage(src, spec.caption_font, assets, base_dir)
    return spec, problems


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _font_problems(src: Source, where: DocPath, font: str, assets: dict[str, Any]) -> list[Problem]:
    """A brand font names an asset of the manifest that is a .ttf/.otf file (whose content the assets' own check
    reads: pipeline/manifest/inputs.py file_problem)."""
    loc = assets.get(font)
    if loc is None:
        return [src.problem(where, f"font {shown(font)} names no asset of the manifest (assets: {', '.join(assets) or 'none'})")]
    if not isinstance(loc, str) or not loc.lower().endswith(FONT_EXTENSIONS):
        return [src.problem(where, f"font {shown(font)} must be a TrueType or OpenType font asset "
                                   f"({', '.join(FONT_EXTENSIONS)}), not {shown(str(loc))}")]
    return []


def _caption_coverage(src: Source, font: str, assets: dict[str, Any], base_dir: Path) -> list[Problem]:
    """Every caption a branded video burns must be drawable in the brand's caption font (located at the caption)."""
    from pipeline.manifest.fonts import caption_font_problem, font_file_problem

    loc = assets.get(font)
    path = base_dir / loc if isinstance(loc, str) and "://" not in loc else None
    if path is None or not path.is_file() or font_file_problem(path):
        return []  # a missing or broken font file is reported at `assets:`
    problems = []
    videos = src.data.get("videos") if isinstance(src.data, dict) else None
    for i, video in enumerate(videos if isinstance(videos, list) else []):
        if not isinstance(video, dict) or video.get("brand") is False or video.get("captions") not in ("burn", "both"):
            continue
        shots: list[Any] = video["shots"] if isinstance(video.get("shots"), list) else []
        for j, shot in enumerate(shots):
            text = shot.get("caption") if isinstance(shot, dict) else None
            if isinstance(text, str) and (why := caption_font_problem(text, brand=path)):
                problems.append(src.problem(("videos", i, "shots", j, "caption"), f"cannot burn this caption: {why}"))
    return problems


def svg_file_problem(path: Path, location: str) -> str | None:
    """An SVG logo asset, read and checked (pipeline/manifest/inputs.py file_problem calls this at `assets:`)."""
    try:
        size = path.stat().st_size
        if size > MAX_SVG_BYTES:
            return f"{shown(location)} is {size} bytes; an SVG logo of at most {MAX_SVG_BYTES} bytes is accepted"
        data = path.read_bytes()
    except OSError as exc:
        return f"{shown(location)} cannot be read ({exc.strerror or exc})"
    return svg_problem(data, location)


def svg_problem(data: bytes, location: str) -> str | None:
    """Why an SVG logo may not be drawn, or None. The file is untrusted and resvg (pipeline/media/brand.py)
    reads whatever it points at: checked with resvg 0.48.1, `<image href="/any/file.png">` and a
    relative href (against the working folder) are drawn even with no resources folder, and so is an `<image>`
    that an internal DTD entity expands to. So a logo may link only inside itself (`#id`, `url(#id)`) or embed
    PNG/JPEG data; a DTD internal subset (entities, the "billion laughs"), a stylesheet processing instruction,
    CSS `@import` and `<text>` (drawn with whatever fonts a machine has, so differently locally and in the cloud)
    are refused. Parsed with the standard library's expat, which loads no external DTD or entity."""
    if len(data) > MAX_SVG_BYTES:
        return f"{shown(location)} is {len(data)} bytes; an SVG logo of at most {MAX_SVG_BYTES} bytes is accepted"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{shown(location)} is not UTF-8 text (byte {exc.start}); save the SVG as UTF-8"
    parser = expat.ParserCreate()
    seen: list[str] = []  # element names, outermost first (the root must be <svg>)
    in_style = 0

    def refuse(why: str) -> None:
        raise _SvgRefused(f"{shown(location)} line {parser.CurrentLineNumber}: {why}")

    def doctype(_name: str, _sysid: str | None, _pubid: str | None, internal_subset: int) -> None:
        if internal_subset:
            refuse("the DOCTYPE declares entities or other DTD content; export the SVG without a DTD")

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal in_style
        local = name.rpartition(":")[2]
        if not seen and local != "svg":
            refuse(f"the root element is <{name}>, not <svg>")
        seen.append(local)
        in_style += local == "style"
        if local == "text":
            refuse("<text> is drawn with whatever fonts a machine has; convert the logo's text to outlines (paths)")
        for key, value in attrs.items():
            if (key == "href" or key.endswith(":href")) and not _inside(value):
                refuse(f"<{name}> links to {shown(value[:80])}; a logo may link only inside itself (#id) or embed "
                       "PNG/JPEG data (data:image/png;base64,...)")
            if _OUTSIDE_URL.search(value) or "@import" in value.lower():
                refuse(f"<{name} {key}> names {shown(value[:80])}; a logo may use only url(#id) inside itself")

    def end(name: str) -> None:
        nonlocal in_style
        in_style -= name.rpartition(":")[2] == "style"

    def chars(value: str) -> None:
        if in_style and (_OUTSIDE_URL.search(value) or "@import" in value.lower()):
            refuse("its <style> loads or names something outside the logo (url(...) or @import); use url(#id) only")

    def instruction(target: str, _data: str) -> None:
        if target.lower() == "xml-stylesheet":
            refuse("an xml-stylesheet instruction would load a style sheet from outside the logo")

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = lambda *_: refuse("it declares an entity")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.ProcessingInstructionHandler = instruction
    try:
        parser.Parse(text, True)
    except _SvgRefused as exc:
        return f"{exc}"
    except expat.ExpatError as exc:
        return f"{shown(location)} is not well-formed XML ({exc})"
    return None if seen else f"{shown(location)} has no <svg> element"


class _SvgRefused(Exception):
    """An SVG logo's check stops at its first problem (raised from inside expat's handlers)."""


def _inside(href: str) -> bool:
    """An href that names a part of the logo itself, or PNG/JPEG data whose bytes really are PNG/JPEG (an
    embedded SVG would be a second document to check)."""
    href = href.strip()
    if href.startswith("#"):
        return True
    head, sep, payload = href.partition(",")
    magic = _EMBEDDED.get(head.lower().removeprefix("data:").removesuffix(";base64")) if sep else None
    if magic is None or not head.lower().startswith("data:") or not head.lower().endswith(";base64"):
        return False
    start = re.sub(r"\s", "", payload)[:24]  # 18 bytes: enough for the magic, whatever the data's length
    try:
        return base64.b64decode(start + "=" * (-len(start) % 4)).startswith(magic)
    except (binascii.Error, ValueError):
        return False


def apply_brand(campaign: Campaign, src: Source, brand: BrandSpec | None) -> Campaign:
    """Each video that does not say `brand: false` gets the kit: its colours on cards that set none, its end
    card where the video has none, and the logo (the plan keys and the formats pass draw it)."""
    if brand is None:
        return replace(campaign, brand=None)
    from pipeline.manifest.campaign import _card  # the one way a card is built

    raw_videos = src.data.get("videos", []) if isinstance(src.data, dict) else []
    videos = []
    for video, raw in zip(campaign.videos, raw_videos, strict=True):
        if raw.get("brand") is False:
            videos.append(replace(video, branded=False))
            continue
        colours = {**({"color": brand.card_color} if brand.card_color else {}),
                   **({"text_color": brand.card_text_color} if brand.card_text_color else {})}
        title, end = raw.get("title"), raw.get("end_card") or brand.end_card
        videos.append(replace(video, branded=True, title=_card({**colours, **title}) if title else None,
                              end_card=_card({**colours, **end}) if end else None))
    return replace(campaign, videos=tuple(videos), brand=brand)
