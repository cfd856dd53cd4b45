"""Brand fonts: `brand: {fonts: {cards, captions}}` name .ttf/.otf assets that draw the title and end cards and the
burned captions. Checked by drawing: a font whose glyphs are filled boxes (tests/font_builder.py) covers several
times the pixels the default face does, on the card frame and in the caption band of a delivered video; the
font files enter only the keys of what they draw; a bad font reference is a located error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from font_builder import block_font

from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import Card, load_manifest
from pipeline.media.compose import render_card
from pipeline.media.formats import caption_overlay
from pipeline.media.frames import decode

TEXT = (255, 204, 0)
MANIFEST = """\
    campaign: font-test
    assets: {{card-face: fonts/card.ttf, caption-face: fonts/caption.ttf}}
    brand: {{fonts: {{cards: card-face, captions: caption-face}}, colors: {{card: "#000000", card_text: "#ffcc00"}}}}
    defaults: {{enhance: false, video: {{frames: 9}}}}
    videos:
      - id: branded
        formats: ["16:9"]
        captions: burn
        title: {{text: Spring sale, duration: 0.25}}
        shots: [{{prompt: A quiet room, caption: {caption}}}]
      - id: plain
        brand: false
        formats: ["16:9"]
        captions: burn
        title: {{text: Spring sale, duration: 0.25, color: "#000000", text_color: "#ffcc00"}}
        shots: [{{prompt: A quiet room, caption: {caption}}}]
    """


def campaign(folder: Path, *, caption: str = "Hello there", manifest: str = MANIFEST) -> Path:
    (folder / "fonts").mkdir(parents=True, exist_ok=True)
    block_font(folder / "fonts" / "card.ttf")
    block_font(folder / "fonts" / "caption.ttf")
    (folder / "c.yaml").write_text(textwrap.dedent(manifest.format(caption=caption)), encoding="utf-8")
    return folder / "c.yaml"


def text_pixels(frame: np.ndarray) -> int:
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    return int(((abs(r - TEXT[0]) < 40) & (abs(g - TEXT[1]) < 40) & (b < 60)).sum())


def test_the_card_and_caption_are_drawn_in_the_given_font(tmp_path: Path) -> None:
    font = block_font(tmp_path / "block.ttf")
    card = Card(text="Spring sale", duration=1.0, color="#000000", text_color="#ffcc00")
    default, branded = (text_pixels(render_card(card, width=640, height=360, font=f)) for f in (None, font))
    assert default > 500 and branded > 1.6 * default, (default, branded)  # the card fits its text to the box: ~2x
    plain_band, brand_band = (caption_overlay("Hello there", "16:9", 640, 360, font=f) for f in (None, font))
    assert brand_band.alpha.sum() > 1.5 * plain_band.alpha.sum()


def test_a_run_draws_the_brands_card_and_captions_in_its_fonts(tmp_path: Path) -> None:
    """The wiring, from the manifest through the plan and the video task to the delivered file: the branded and
    the `brand: false` video have the same card text, colours and caption; only the font differs."""
    assert main(["run", str(campaign(tmp_path)), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    pointer = json.loads((tmp_path / "out" / "runs" / "font-test" / "latest.json").read_text())
    run_dir = (tmp_path / "out" / "runs" / "font-test" / pointer["report"]).parent
    report: dict[str, Any] = json.loads((run_dir / "report.json").read_text())
    frames = {v["id"]: list(decode(run_dir / v["formats"][0]["path"])) for v in report["videos"]}
    card_branded, card_plain = text_pixels(frames["branded"][0]), text_pixels(frames["plain"][0])
    assert card_plain > 500 and card_branded > 1.6 * card_plain, (card_branded, card_plain)
    mid = len(frames["plain"]) - 2  # a shot frame: the caption band in the lower fifth, white text
    band = slice(int(frames["plain"][mid].shape[0] * 0.75), None)
    white = {k: int((f[mid][band].min(axis=2) > 235).sum()) for k, f in frames.items()}
    assert white["plain"] > 100 and white["branded"] > 1.5 * white["plain"], white


def test_each_font_remakes_only_what_it_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = MANIFEST.split("    videos:")[0] + """\
    videos:
      - id: branded
        title: {{text: Spring sale, duration: 0.25}}
        shots: [{{prompt: A quiet room}}]
      - id: captioned
        formats: ["16:9"]
        captions: burn
        shots: [{{prompt: A hall, caption: Hi}}]
    """
    path = campaign(tmp_path, manifest=manifest)

    def keys() -> dict[str, str]:
        capsys.readouterr()
        assert main(["plan", str(path), "--json", "--out", str(tmp_path / "o")]) == 0
        return {j["id"]: j["key"] for j in json.loads(capsys.readouterr().out)["plan"]["jobs"]}

    before = keys()
    block_font(tmp_path / "fonts" / "card.ttf", width=800)  # another card face: the carded video only
    after_card = keys()
    assert {j for j in before if before[j] != after_card[j]} == {"video:branded"}
    block_font(tmp_path / "fonts" / "caption.ttf", width=800)  # another caption face: the captioned video only
    after_caption = keys()
    assert {j for j in after_card if after_card[j] != after_caption[j]} == {"video:captioned"}


def test_bad_font_references_are_located(tmp_path: Path) -> None:
    path = campaign(tmp_path)
    (tmp_path / "fonts" / "card.ttf").write_bytes(b"<svg>not a font</svg>")
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert [str(p) for p in exc.value.problems] == [
        f"{path}:2:21: error: assets.card-face: 'fonts/card.ttf': it is not a TrueType or OpenType font "
        "(.ttf/.otf; a collection .ttc or a web font .woff is not taken)"]
    path = campaign(tmp_path, caption="Привет")  # the caption font has no Cyrillic: located at each caption
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert [(p.line, p.path) for p in exc.value.problems] == [(10, "videos[0].shots[0].caption")]
    assert "the brand's caption font caption.ttf has no glyph for" in exc.value.problems[0].message
    (path).write_text(path.read_text().replace("cards: card-face", "cards: logo"), encoding="utf-8")
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert "brand.fonts.cards: font 'logo' names no asset of the manifest" in str(exc.value.problems[0])
