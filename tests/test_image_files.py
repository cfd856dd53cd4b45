"""Real-world images: every mode read right, EXIF orientation applied once, pixel limits checked from the
header before decoding; and validation decodes each asset's header and checks the text it will draw."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.backends.images_local import LocalImageEditor
from pipeline.cli import main
from pipeline.errors import InputRejected
from pipeline.manifest.image_files import load_image
from pipeline.tasks.common import open_image as _load_image

W, H = 256, 8
GREY = np.tile(np.arange(W, dtype=np.uint8), (H, 1))  # 0..255 left to right


def _gradient(mode: str) -> Image.Image:
    """The same grey ramp in each mode, at that mode's own depth."""
    if mode == "I;16":
        return Image.fromarray(GREY.astype(np.uint16) * 257)
    base = Image.fromarray(GREY)
    if mode == "LA":
        return Image.merge("LA", (base, Image.new("L", base.size, 200)))
    if mode == "CMYK":  # grey as black ink only
        zero = Image.new("L", base.size, 0)
        return Image.merge("CMYK", (zero, zero, zero, Image.fromarray(255 - GREY)))
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA", "P", "CMYK", "LA"])
def test_every_mode_is_read_as_its_8_bit_grey_ramp(tmp_path: Path, mode: str) -> None:
    image = _gradient(mode)
    path = tmp_path / ("ramp.jpg" if mode == "CMYK" else "ramp.png")
    image.save(path, quality=100) if mode == "CMYK" else image.save(path)
    with Image.open(path) as check:
        assert check.mode == mode  # the file really is in that mode on disk
    got = _load_image(path)  # what every tool in the pipeline is handed
    assert got.mode == ("RGBA" if mode in ("RGBA", "LA") else "RGB")
    rgb = np.asarray(got.convert("RGB"), dtype=np.int16)
    tolerance = 3 if mode == "CMYK" else 0  # jpeg is lossy; the rest must be exact
    assert np.abs(rgb - GREY[..., None]).max() <= tolerance, mode
    if mode == "LA":
        assert np.asarray(got)[..., 3].min() == 200


def _phone_photo(path: Path) -> None:
    """A 60x40 picture stored sideways, as a phone stores it, with Orientation=6 (rotate 90° clockwise to view):
    upright, its top half is red and its bottom half blue."""
    upright = Image.new("RGB", (40, 60), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 40, 30))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, "JPEG", quality=95, exif=exif)


def test_exif_orientation_is_applied_once_and_recorded(write_campaign: Callable[[str], Path], tmp_path: Path) -> None:
    manifest = write_campaign("""\
        campaign: phone
        assets:
          photo: assets/photo.jpg
        images:
          - {id: big, from: photo, edits: [{upscale-fast: {}}]}
        videos:
          - id: v
            shots: [{prompt: A photo., image: photo, frames: 9}]
        """)
    _phone_photo(manifest.parent / "assets" / "photo.jpg")
    loaded = load_image(manifest.parent / "assets" / "photo.jpg", what="photo")
    assert loaded.orientation == 6 and loaded.image.size == (40, 60)
    top, bottom = np.asarray(loaded.image)[5, 20], np.asarray(loaded.image)[55, 20]
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]
    out = tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    [prov] = [json.loads(p.read_text()) for p in (out / "cache" / "image").glob("*.json")]
    assert prov["info"]["step"]["source_orientation"] == 6
    [png] = list((out / "cache" / "image").glob("*.png"))
    with Image.open(png) as im:
        assert im.size == (160, 240)  # upright, then 4x
        arr = np.asarray(im.convert("RGB"))
        assert arr[10, 80][0] > 200 and arr[230, 80][2] > 200
    # image-to-video starts from the upright picture too (the preview pans over it: its first frame is it)
    from pipeline.media.frames import last_frame

    [clip] = list((out / "cache" / "clip").glob("*.mp4"))
    assert clip.stat().st_size > 0
    frame = np.asarray(last_frame(clip).convert("RGB"), dtype=np.int16)
    h = frame.shape[0]
    assert frame[h // 8, frame.shape[1] // 2, 0] > frame[h // 8, frame.shape[1] // 2, 2]  # red on top
    assert frame[h - h // 8, frame.shape[1] // 2, 2] > frame[h - h // 8, frame.shape[1] // 2, 0]  # blue below


def test_a_huge_image_is_refused_from_its_header_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (13000, 13000)).save(path)  # 169 MP in a small file
    assert path.stat().st_size < 2_000_000
    with pytest.raises(InputRejected, match=r"13000x13000 px \(169.0 MP\); at most 40.0 MP .*before decoding"):
        _load_image(path)


def test_edits_past_the_pixel_limits_are_refused_before_any_work() -> None:
    editor = LocalImageEditor()
    with pytest.raises(InputRejected, match=r"outpaint: the output would be 8500x8500 px \(72.2 MP\)"):
        editor.edit("outpaint", Image.new("RGB", (4500, 4500)), {"left": 2000, "right": 2000, "up": 2000,
                                                                   "down": 2000}, {})


def test_chained_upscale_fast_fails_with_a_clear_message(write_campaign: Callable[[str], Path], tmp_path: Path) -> None:
    manifest = write_campaign("""\
        campaign: upscale-twice
        assets:
          pic: assets/pic.png
        images:
          - {id: huge, from: pic, edits: [{upscale-fast: {}}, {upscale-fast: {}}]}
        """)
    Image.new("RGB", (700, 700), (90, 120, 150)).save(manifest.parent / "assets" / "pic.png")
    out = tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 1
    latest = json.loads((out / "runs" / "upscale-twice" / "latest.json").read_text())
    report = json.loads((out / "runs" / "upscale-twice" / latest["report"]).read_text())
    [err] = [e for e in report["errors"] if e["job"] == "image:huge"]
    assert err["error"] == "InputRejected"
    assert "upscale-fast: the input is 2800x2800 px (7.8 MP); upscale-fast accepts at most 2.5 MP" in err["message"]
    assert "bomb" not in err["message"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("sofa.png", b"just some text", "'assets/sofa.png' is not a readable image"),
    ("music.mp3", b"just some text", "'assets/music.mp3' has no audio stream ffmpeg can read"),
])
def test_validate_decodes_each_asset_header(write_campaign: Callable[[str], Path], capsys: pytest.CaptureFixture[str],
                                            name: str, content: bytes, message: str) -> None:
    manifest = write_campaign("""\
        campaign: headers
        assets:
          sofa: assets/sofa.png
          music: assets/music.mp3
        videos:
          - id: v
            audio: {asset: music}
            shots: [{prompt: A sofa., image: sofa, frames: 9}]
        """)
    assert main(["validate", str(manifest)]) == 0
    capsys.readouterr()
    (manifest.parent / "assets" / name).write_bytes(content)
    assert main(["validate", str(manifest)]) == 2
    assert message in capsys.readouterr().out


def test_validate_refuses_an_asset_too_large_by_its_header(write_campaign: Callable[[str], Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign("campaign: big\nassets:\n  pic: assets/big.png\nimages:\n"
                              "  - {id: x, from: pic, edits: [{search-recolor: {select_prompt: sofa, prompt: red}}]}\n")
    Image.new("1", (13000, 13000)).save(manifest.parent / "assets" / "big.png")
    assert main(["validate", str(manifest)]) == 2
    assert "'assets/big.png' is 13000x13000 px (169.0 MP); images of at most 40 MP" in capsys.readouterr().out


@pytest.mark.parametrize(("prompt", "message"), [
    ("\\u200b\\u200b\\u2060", "the prompt is blank"),
    ("\\ufeff \\u200d", "the prompt is blank"),
])
def test_a_prompt_of_invisible_characters_is_blank(write_campaign: Callable[[str], Path],
                                                   capsys: pytest.CaptureFixture[str], prompt: str, message: str) -> None:
    manifest = write_campaign(f'campaign: blank\nvideos:\n  - id: v\n    shots:\n      - prompt: "{prompt}"\n')
    assert main(["validate", str(manifest)]) == 2
    assert f"videos[0].shots[0].prompt: {message}" in capsys.readouterr().out


def test_emoji_on_a_card_are_refused_clearly(write_campaign: Callable[[str], Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign('campaign: emoji\nvideos:\n  - id: v\n    title: {text: "Spring sale \\U0001F525"}\n'
                              '    shots:\n      - prompt: A sofa.\n')
    assert main(["validate", str(manifest)]) == 2
    out = capsys.readouterr().out
    assert "videos[0].title.text: the card font cannot draw" in out and "U+1F525 FIRE" in out
