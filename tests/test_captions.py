"""Captions: located errors for captions that cannot be burned, burned text inside the safe area in the script's
font (Arabic shaped right to left), and cue spans inside crossfade windows."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import features

from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.fonts import caption_font
from pipeline.manifest.formats import cues, shot_spans, webvtt
from pipeline.manifest.timeline import timeline
from pipeline.media.formats import caption_overlay, safe_area

MANIFEST = """\
campaign: captions-check
defaults: {{enhance: false, video: {{frames: 9}}}}
videos:
  - id: ad
    captions: {mode}
    shots:
      - prompt: A sofa
        caption: "{caption}"
"""


def _problems(write_campaign, caption: str, mode: str = "burn") -> list[str]:  # type: ignore[no-untyped-def]
    path = write_campaign(MANIFEST.format(mode=mode, caption=caption))
    with pytest.raises(ManifestInvalid) as err:
        load_manifest(path)
    return [str(p) for p in err.value.problems]


def test_a_caption_no_font_can_burn_is_refused_at_its_line_naming_the_script(write_campaign) -> None:  # type: ignore[no-untyped-def]
    (msg,) = _problems(write_campaign, "ᚠᚢᚦ runes")
    assert ":8:18: error: videos[0].shots[0].caption: cannot burn this caption: no installed font covers the Runic" in msg
    (msg,) = _problems(write_campaign, "Spring 😀")
    assert ":8:18:" in msg and "U+1F600" in msg and "emoji" in msg
    (msg,) = _problems(write_campaign, "\u200b ")
    assert "the caption is blank" in msg
    # the same text as a sidecar needs no font: a player draws it
    load_manifest(write_campaign(MANIFEST.format(mode="sidecar", caption="ᚠᚢᚦ runes")))


@pytest.mark.parametrize(("text", "script_font"), [
    ("Frühling im Loft", "NotoSans"), ("Весна в лофте", "NotoSans"), ("春のロフト", "CJK"),
    ("الربيع في الدور العلوي", "")])
def test_burned_captions_sit_in_the_safe_area_in_a_font_of_their_script(text: str, script_font: str) -> None:
    if script_font and not any(script_font in f.name for f in Path("/usr/share/fonts").rglob("*")):
        pytest.skip(f"no {script_font} font installed (scripts/ensure_fonts.py installs it)")
    font = caption_font(text)
    assert script_font in font.path.name
    for fmt, (w, h) in {"9:16": (480, 854), "16:9": (854, 480), "1:1": (480, 480)}.items():
        ov = caption_overlay(text, fmt, w, h)
        x0, y0, x1, y1 = safe_area(fmt, w, h)
        drawn = np.argwhere(ov.alpha[..., 0] > 0.05)
        top, left = drawn.min(axis=0)
        bottom, right = drawn.max(axis=0)
        assert y0 <= ov.y + top and ov.y + bottom < y1, (fmt, ov.y, top, bottom)  # inside the safe area
        assert x0 - min(w, h) * 0.06 <= left and right < x1 + min(w, h) * 0.06  # (the band pads the text a little)
        white = (ov.rgb[..., 0] > 240) & (ov.alpha[..., 0] > 0.9)
        rows = np.where(white.any(axis=1))[0]
        assert rows.max() - rows.min() >= min(w, h) * 0.03  # the text is drawn, at a legible size


@pytest.mark.skipif(not features.check("raqm"), reason="Arabic is refused without raqm")
def test_arabic_is_shaped_right_to_left() -> None:
    """With raqm, Arabic letters take their joined forms: the word is narrower than its letters drawn apart,
    and it reads right to left (the first letter's isolated glyph is not at the left edge)."""
    from PIL import ImageFont

    font = caption_font("سلام")
    assert font.shaping
    shaped = ImageFont.truetype(str(font.path), 40, layout_engine=ImageFont.Layout.RAQM)
    basic = ImageFont.truetype(str(font.path), 40, layout_engine=ImageFont.Layout.BASIC)
    assert shaped.getlength("سلام") < basic.getlength("سلام")


def test_captions_switch_at_the_middle_frame_of_a_crossfade_window() -> None:
    tl = timeline([(17, 8), (17, 8), (17, 8)], crossfade_s=0.375, title_s=1.0)  # 3-frame windows, 8-frame title
    assert tl.crossfade_frames == 3
    spans = shot_spans(tl)
    # windows at [22, 25) and [36, 39): the caption switches at their middle frames 23 and 37
    assert spans == [(8, 23), (23, 37), (37, 53)] and spans[-1][1] == tl.frames
    cue_list = cues(tl, ["a", None, "c"])
    assert [(c.start, c.stop, c.text) for c in cue_list] == [(8, 23, "a"), (37, 53, "c")]
    text = webvtt(cue_list, Fraction(8))
    assert "00:00:01.000 --> 00:00:02.875\na\n" in text and "00:00:04.625 --> 00:00:06.625\nc\n" in text
