"""SVG brand logos: a logo of one pure colour, drawn by resvg, is found in its corner of the decoded frames of every
delivered format; it is drawn at each format's size (sharp edges where an upscaled PNG blurs); its bytes key the
videos, not the clips; an SVG that would read anything outside itself (a link to a file, a DTD entity, a style
sheet) is refused at its `assets:` line, and again where it would be drawn."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import numpy as np
import pytest
import resvg_py
from PIL import Image
from small_campaign import plan_keys

from pipeline.cli import main
from pipeline.errors import InputRejected, ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.media.brand import Logo, place_logo
from pipeline.media.formats import safe_area
from pipeline.media.frames import decode
from tests.test_brand import LOGO_H, LOGO_W, PAD, SIZE, latest, logo_mask, write_logo

# The same drawing as tests/test_brand.py's PNG: a LOGO_W x LOGO_H canvas, a magenta block PAD inside each edge.
SVG = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{LOGO_W}" height="{LOGO_H}" viewBox="0 0 {LOGO_W} {LOGO_H}">'
       f'<rect x="{PAD}" y="{PAD}" width="{LOGO_W - 2 * PAD}" height="{LOGO_H - 2 * PAD}" fill="{{fill}}"/></svg>\n')
MANIFEST = """\
    campaign: brand-test
    assets: {logo: logo.svg}
    brand: {logo: logo, corner: top-left, size: SIZE}
    defaults: {enhance: false, video: {frames: 9}}
    videos:
      - id: branded
        formats: ["16:9", "9:16", "1:1"]
        captions: burn
        shots: [{prompt: A quiet room, caption: Hello there}]
    """.replace("SIZE", str(SIZE))
FORMATS = {"16:9": (854, 480), "9:16": (480, 854), "1:1": (480, 480)}


def svg_campaign(folder: Path, svg: str = SVG.format(fill="#ff00ff")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logo.svg").write_text(svg, encoding="utf-8")
    (folder / "c.yaml").write_text(textwrap.dedent(MANIFEST), encoding="utf-8")
    return folder / "c.yaml"


def test_an_svg_logo_is_in_its_corner_of_every_format(tmp_path: Path) -> None:
    assert main(["run", str(svg_campaign(tmp_path)), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    report, run_dir = latest(tmp_path / "out")
    assert report["status"] == "succeeded"
    (video,) = report["videos"]
    assert {f["format"] for f in video["formats"]} == set(FORMATS)
    for fmt in video["formats"]:
        w, h = fmt["width"], fmt["height"]
        x0, y0, _, _ = safe_area(fmt["format"], w, h)
        scale = round(min(w, h) * SIZE) / LOGO_W  # drawn to the logo's size for this format, not resampled
        opaque = (LOGO_W - 2 * PAD) * scale * (LOGO_H - 2 * PAD) * scale
        frames = list(decode(run_dir / fmt["path"]))
        assert len(frames) == fmt["frames"]
        for n, frame in enumerate(frames):
            ys, xs = np.nonzero(logo_mask(frame))
            assert 0.9 * opaque <= len(xs) <= 1.05 * opaque, (fmt["format"], n, len(xs))
            # top-left: the block starts its (scaled) margin inside the safe area's top-left corner
            assert abs(xs.min() - (x0 + PAD * scale)) <= 2 and abs(ys.min() - (y0 + PAD * scale)) <= 2
            assert abs(xs.max() + 1 - (x0 + (LOGO_W - PAD) * scale)) <= 2
            assert abs(ys.max() + 1 - (y0 + (LOGO_H - PAD) * scale)) <= 2


def blurred_pixels(alpha: np.ndarray) -> int:
    """Pixels neither clear nor opaque: the logo's edges, one pixel wide when drawn sharp."""
    return int(((alpha > 0.05) & (alpha < 0.95)).sum())


@pytest.mark.parametrize("corner", ["top-right", "bottom-left"])
def test_an_svg_logo_is_drawn_sharp_at_each_formats_size(tmp_path: Path, corner: str) -> None:
    (tmp_path / "logo.svg").write_text(SVG.format(fill="#ff00ff"), encoding="utf-8")
    write_logo(tmp_path / "logo.png")
    for size in (SIZE, 0.35):  # 1.9x and 3.4x the drawing's own 50 px
        for fmt, (w, h) in FORMATS.items():
            safe = safe_area(fmt, w, h)
            svg = place_logo(Logo(tmp_path / "logo.svg", corner, size), width=w, height=h, safe=safe,
                             captions_top=None)
            png = place_logo(Logo(tmp_path / "logo.png", corner, size), width=w, height=h, safe=safe,
                             captions_top=None)
            bx0, by0, bx1, by1 = svg.box
            assert bx1 - bx0 == round(min(w, h) * size) and abs((by1 - by0) - (png.box[3] - png.box[1])) <= 1
            assert (bx0 == png.box[0]) if corner.endswith("left") else (bx1 == png.box[2])  # the PNG's place
            block = svg.alpha[..., 0] > 0.5  # the opaque block, in its full colour, transparent around it
            assert np.abs(svg.rgb[block] - np.array([255, 0, 255])).max() < 1 and svg.alpha[0, 0, 0] == 0
            scale = (bx1 - bx0) / LOGO_W
            ring = 2 * ((LOGO_W - 2 * PAD) + (LOGO_H - 2 * PAD)) * scale + 4  # the block's edge, one pixel wide
            assert blurred_pixels(svg.alpha) <= ring, (size, fmt)
            if size > SIZE:  # the PNG resampled 3.4x: its edges several pixels wide
                assert blurred_pixels(png.alpha) > 3 * blurred_pixels(svg.alpha), (size, fmt)


def test_a_new_svg_logo_remakes_videos_not_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def keys() -> dict[str, str]:
        return plan_keys(path, tmp_path / "o", capsys)

    path = svg_campaign(tmp_path)
    before = keys()
    svg_campaign(tmp_path, SVG.format(fill="#00ff00"))
    after = keys()
    assert {j for j in before if before[j] != after[j]} == {"video:branded"}


SECRET = "secret.png"  # a file beside the manifest: even inside the folder, a logo may not pull it in
ENTITY = ('<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY logo "<image href=\'secret.png\' width=\'9\' height=\'9\'/>">]>\n'
          '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">&logo;</svg>\n')
NESTED = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg"><image href="secret.png"/></svg>').decode()
REFUSED: dict[str, tuple[str, str]] = {
    "href": ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="9" '
             'height="9">\n<image xlink:href="secret.png" width="9" height="9"/></svg>',
             "'logo.svg' line 2: <image> links to 'secret.png'; a logo may link only inside itself (#id) or embed "
             "PNG/JPEG data (data:image/png;base64,...)"),
    "absolute href": ('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><image href="/etc/hostname"/></svg>',
                      "'logo.svg' line 1: <image> links to '/etc/hostname'"),
    "svg as png data": (f'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,{NESTED}"/></svg>',
                        "'logo.svg' line 1: <image> links to 'data:image/png;base64,"),
    "entity": (ENTITY, "'logo.svg' line 2: the DOCTYPE declares entities or other DTD content; export the SVG "
                       "without a DTD"),
    "url in a style": ('<svg xmlns="http://www.w3.org/2000/svg"><style>\nrect { fill: url(secret.svg#g) }</style></svg>',
                       "'logo.svg' line 2: its <style> loads or names something outside the logo"),
    "url in fill": ('<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(\'file:///etc/x#g\')"/></svg>',
                    "'logo.svg' line 1: <rect fill> names"),
    "stylesheet": ('<?xml-stylesheet href="s.css"?><svg xmlns="http://www.w3.org/2000/svg"/>',
                   "'logo.svg' line 1: an xml-stylesheet instruction"),
    "text": ('<svg xmlns="http://www.w3.org/2000/svg"><text>Acme</text></svg>',
             "'logo.svg' line 1: <text> is drawn with whatever fonts a machine has"),
    "not svg": ('<html/>', "'logo.svg' line 1: the root element is <html>, not <svg>"),
    "not xml": ('<svg', "'logo.svg' is not well-formed XML (unclosed token: line 1, column 0)"),
    "too big": ('<svg xmlns="http://www.w3.org/2000/svg">' + " " * 3_000_000 + "</svg>",
                "'logo.svg' is 3000046 bytes; an SVG logo of at most 2097152 bytes is accepted"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_svg_that_reaches_outside_itself_is_refused_at_its_asset(tmp_path: Path, case: str) -> None:
    svg, why = REFUSED[case]
    path = svg_campaign(tmp_path, svg)
    Image.new("RGBA", (9, 9), (0, 255, 0, 255)).save(tmp_path / SECRET)
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    (problem,) = (str(p) for p in exc.value.problems)
    assert problem.startswith(f"{path}:2:16: error: assets.logo: {why}"), problem
    if case != "too big":  # where it would be drawn (the file may change after validation): refused again
        with pytest.raises(InputRejected, match="^logo 'logo.svg' "):
            place_logo(Logo(tmp_path / "logo.svg", "top-left", SIZE), width=480, height=480,
                       safe=(0, 0, 480, 480), captions_top=None)


@pytest.mark.parametrize("href", ["absolute", "entity"])
def test_resvg_alone_would_draw_a_local_file_the_logo_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            href: str) -> None:
    """Why the check exists: resvg given the SVG as text, with no resources folder, still draws the file an
    <image> names, by absolute path or through a DTD entity (relative to the working folder)."""
    Image.new("RGBA", (9, 9), (0, 255, 0, 255)).save(tmp_path / SECRET)
    monkeypatch.chdir(tmp_path)
    svg = ENTITY if href == "entity" else ('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
                                           f'<image href="{tmp_path / SECRET}" width="9" height="9"/></svg>')
    (tmp_path / "drawn.png").write_bytes(resvg_py.svg_to_bytes(svg_string=svg, resources_dir=None,
                                                               skip_system_fonts=True))
    with Image.open(tmp_path / "drawn.png") as im:
        assert im.convert("RGBA").getpixel((4, 4)) == (0, 255, 0, 255)


def test_an_svg_logo_may_link_inside_itself_and_embed_png_data(tmp_path: Path) -> None:
    write_logo(tmp_path / "inner.png")
    data = base64.b64encode((tmp_path / "inner.png").read_bytes()).decode()
    svg = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
           f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{LOGO_W}" '
           f'height="{LOGO_H}"><defs><linearGradient id="g"><stop stop-color="#ff00ff"/></linearGradient>'
           f'<rect id="r" x="{PAD}" y="{PAD}" width="4" height="4" style="fill: url(#g)"/></defs>'
           f'<image xlink:href="data:image/png;base64,\n{data}" width="{LOGO_W}" height="{LOGO_H}"/>'
           '<use xlink:href="#r"/></svg>')
    path = svg_campaign(tmp_path, svg)
    assert load_manifest(path).brand is not None
    placed = place_logo(Logo(tmp_path / "logo.svg", "top-left", SIZE), width=480, height=480, safe=(0, 0, 480, 480),
                        captions_top=None)
    assert logo_mask(placed.rgb.astype(np.uint8)[placed.alpha[..., 0] > 0.9]).mean() > 0.99  # the embedded PNG drawn


def test_the_kit_names_an_svg_or_png_logo_only(tmp_path: Path) -> None:
    path = svg_campaign(tmp_path)
    Image.new("RGB", (8, 8), (255, 0, 255)).save(tmp_path / "photo.jpg")  # no transparency, no vector
    text = path.read_text().replace("assets: {logo: logo.svg}", "assets: {logo: logo.svg, photo: photo.jpg}")
    path.write_text(text.replace("brand: {logo: logo,", "brand: {logo: photo,"))
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert [str(p) for p in exc.value.problems] == [
        f"{path}:3:15: error: brand.logo: logo 'photo' must be a PNG asset (with transparency) or an SVG asset, "
        "not 'photo.jpg'"]
