"""The brand kit: a logo of one pure colour is found, in the decoded frames of every delivered format, in its
corner of the safe area and nowhere else (and not at all in a `brand: false` video of the same clips); card
colours and the end card come from the kit; a new logo re-makes videos, not clips; a bad kit is located."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from small_campaign import plan_keys

from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.media.formats import safe_area
from pipeline.media.frames import decode

LOGO = (255, 0, 255)  # magenta: no preview gradient, caption or card makes it (the brand: false video shows)
LOGO_W, LOGO_H, PAD = 50, 40, 5  # the PNG, and its transparent margin on every side
SIZE = 0.2

KIT = """\
    logo: logo
    corner: {corner}
    size: {size}
    colors: {{card: "#102030", card_text: "#ffcc00"}}
    end_card: {{text: Acme, duration: 0.5}}
    """
MANIFEST = """\
    campaign: brand-test
    assets: {logo: logo.png}
    brand: brand/acme.yaml
    defaults: {enhance: false, video: {frames: 9}}
    videos:
      - id: branded
        formats: ["16:9", "9:16", "1:1"]
        captions: burn
        title: {text: Spring, duration: 0.25, color: "#000000"}
        shots: [{prompt: A quiet room, caption: Hello there}]
      - id: plain
        brand: false
        formats: ["16:9", "9:16", "1:1"]
        captions: burn
        shots: [{prompt: A quiet room, caption: Hello there}]
    """


def write_logo(path: Path, colour: tuple[int, int, int] = LOGO) -> None:
    im = Image.new("RGBA", (LOGO_W, LOGO_H), (0, 0, 0, 0))
    im.paste(Image.new("RGBA", (LOGO_W - 2 * PAD, LOGO_H - 2 * PAD), (*colour, 255)), (PAD, PAD))
    im.save(path)


def campaign(folder: Path, *, corner: str = "top-right", manifest: str = MANIFEST) -> Path:
    (folder / "brand").mkdir(parents=True, exist_ok=True)
    write_logo(folder / "logo.png")
    (folder / "brand" / "acme.yaml").write_text(textwrap.dedent(KIT.format(corner=corner, size=SIZE)), encoding="utf-8")
    (folder / "c.yaml").write_text(textwrap.dedent(manifest), encoding="utf-8")
    return folder / "c.yaml"


def latest(out: Path) -> tuple[dict[str, Any], Path]:
    pointer = json.loads((out / "runs" / "brand-test" / "latest.json").read_text())
    path = out / "runs" / "brand-test" / pointer["report"]
    return json.loads(path.read_text()), path.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("brand")
    assert main(["run", str(campaign(folder, corner="bottom-left")), "--out", str(folder / "out"), "--quiet"]) == 0
    return latest(folder / "out")


def logo_mask(frame: np.ndarray) -> np.ndarray:
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    return (r > 200) & (g < 70) & (b > 200)


def test_the_logo_is_in_its_corner_of_every_format_and_nowhere_else(run: tuple[dict[str, Any], Path]) -> None:
    report, run_dir = run
    videos = {v["id"]: v for v in report["videos"]}
    assert report["status"] == "succeeded"
    for fmt in videos["branded"]["formats"]:
        w, h = fmt["width"], fmt["height"]
        x0, y0, x1, y1 = safe_area(fmt["format"], w, h)
        scale = round(min(w, h) * SIZE) / max(LOGO_W, LOGO_H)  # the logo's longer side: SIZE of the shorter side
        opaque = (LOGO_W - 2 * PAD) * scale * (LOGO_H - 2 * PAD) * scale
        frames = list(decode(run_dir / fmt["path"]))
        assert len(frames) == fmt["frames"]
        for n, frame in enumerate(frames):
            ys, xs = np.nonzero(logo_mask(frame))
            assert 0.9 * opaque <= len(xs) <= 1.05 * opaque, (fmt["format"], n, len(xs))  # found, whole, in every frame
            # bottom-left: the opaque part starts its margin (scaled) right of the safe area's left edge, and
            # sits in the lower half of the safe area, above its bottom (and above the caption, tested below)
            assert abs(xs.min() - (x0 + PAD * scale)) <= 2 and abs(xs.max() + 1 - (x0 + (LOGO_W - PAD) * scale)) <= 2
            assert (ys.max() + 1 - ys.min()) == pytest.approx((LOGO_H - 2 * PAD) * scale, abs=2)
            assert (y0 + y1) / 2 < ys.min() and ys.max() < y1, (fmt["format"], n)
    for fmt in videos["plain"]["formats"]:  # the same clips, without the brand: not one logo-coloured pixel
        assert all(not logo_mask(f).any() for f in decode(run_dir / fmt["path"])), fmt["format"]


def test_the_logo_stays_clear_of_the_burned_caption(run: tuple[dict[str, Any], Path]) -> None:
    report, run_dir = run
    branded = next(v for v in report["videos"] if v["id"] == "branded")
    for fmt in branded["formats"]:
        frames = list(decode(run_dir / fmt["path"]))
        plain = list(decode(run_dir / fmt["path"].replace("branded", "plain")))
        # the caption's white text in the plain video's middle frame (the lower part: the preview's own prompt
        # text sits mid-frame); the logo's rows in the branded one's middle frame are all above it
        mid_plain, mid = plain[len(plain) // 2], frames[len(frames) // 2]
        lower = int(fmt["height"] * 0.6)
        caption_rows = {lower + int(y) for y in np.nonzero((mid_plain[lower:].min(axis=2) > 235).any(axis=1))[0]}
        logo_rows = {int(y) for y in np.nonzero(logo_mask(mid).any(axis=1))[0]}
        assert caption_rows and logo_rows and max(logo_rows) < min(caption_rows), fmt["format"]


def test_cards_take_the_kits_colours_and_end_card(tmp_path: Path) -> None:
    c = load_manifest(campaign(tmp_path))
    branded, plain = c.videos
    assert branded.branded and not plain.branded
    assert branded.title is not None and (branded.title.color, branded.title.text_color) == ("#000000", "#ffcc00")
    assert branded.end_card is not None and (branded.end_card.text, branded.end_card.color) == ("Acme", "#102030")
    assert plain.end_card is None


def test_a_new_logo_remakes_videos_not_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def keys() -> dict[str, str]:
        return plan_keys(path, tmp_path / "o", capsys)

    path = campaign(tmp_path)
    before = keys()
    write_logo(tmp_path / "logo.png", (0, 255, 0))
    after = keys()
    assert {j for j in before if before[j] != after[j]} == {"video:branded"}


def test_a_bad_kit_is_located_in_its_file(tmp_path: Path) -> None:
    path = campaign(tmp_path)
    (tmp_path / "brand" / "acme.yaml").write_text("logo: acme-logo\ncorner: middle\n", encoding="utf-8")
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    kit = tmp_path / "brand" / "acme.yaml"
    assert [str(p) for p in exc.value.problems] == [f"{kit}:2:9: error: corner: 'middle' is not one of "
                                                    "['top-right', 'top-left', 'bottom-right', 'bottom-left']"]
    (tmp_path / "brand" / "acme.yaml").write_text("logo: acme-logo\n", encoding="utf-8")
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert [str(p) for p in exc.value.problems] == [f"{kit}:1:7: error: logo: logo 'acme-logo' names no asset of "
                                                    "the manifest (assets: logo)"]


@pytest.mark.parametrize("corner", ["top-right", "top-left", "bottom-right", "bottom-left"])
def test_each_corner_is_inside_the_safe_area_and_clear_of_captions(tmp_path: Path, corner: str) -> None:
    from pipeline.media.brand import Logo, place_logo

    write_logo(tmp_path / "logo.png")
    for fmt, (w, h) in {"16:9": (854, 480), "9:16": (480, 854), "1:1": (480, 480)}.items():
        x0, y0, x1, y1 = safe = safe_area(fmt, w, h)
        caption_top = y1 - 60
        bx0, by0, bx1, by1 = place_logo(Logo(tmp_path / "logo.png", corner, SIZE), width=w, height=h, safe=safe,
                                        captions_top=caption_top).box
        assert max(bx1 - bx0, by1 - by0) == round(min(w, h) * SIZE)
        assert (bx0 == x0) if corner.endswith("left") else (bx1 == x1)
        assert (by0 == y0) if corner.startswith("top") else (by1 < caption_top)
