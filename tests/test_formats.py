"""Formats and captions end to end: the multi-market example's every format and WebVTT file read back (size,
frames, duration, cue times on frame boundaries against shot spans computed here from the manifest), each
distinct output made once and its variants grouped in the report (one run shared by both checks), re-runs
that execute nothing, a format added without re-making the others, and the crop following detail and motion."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.cli import main
from pipeline.media.encode import write_clip
from pipeline.media.formats import crop_centre, energy_map, fit_frame
from pipeline.media.probe import probe_video

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "multi-market.yaml"
CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


def _latest(out: Path, campaign: str) -> tuple[dict[str, Any], Path]:
    latest = json.loads((out / "runs" / campaign / "latest.json").read_text())
    path = out / "runs" / campaign / latest["report"]
    return json.loads(path.read_text()), path.parent


def _seconds(h: str, m: str, s: str, ms: str) -> Fraction:
    return Fraction(int(h) * 3600 + int(m) * 60 + int(s)) + Fraction(int(ms), 1000)


def parse_vtt(text: str) -> list[tuple[Fraction, Fraction, str]]:
    lines = text.split("\n")
    assert lines[0] == "WEBVTT"
    cues = []
    for i, line in enumerate(lines):
        m = CUE.match(line)
        if m:
            g = m.groups()
            cues.append((_seconds(*g[:4]), _seconds(*g[4:]), lines[i + 1]))
    return cues


def frame_of(t: Fraction, fps: int) -> int:
    """The frame boundary a cue time names: k / fps for an integer k, to WebVTT's millisecond."""
    k = round(t * fps)
    assert abs(t - Fraction(k, fps)) <= Fraction(1, 2000), f"{t} s is not on a frame boundary at {fps} fps"
    return k


class _Tracks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.videos: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "video":
            self.videos.append({**dict(attrs), "tracks": []})
        elif tag == "track" and self.videos:
            self.videos[-1]["tracks"].append(dict(attrs))


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """The multi-market example run once, then again unchanged: (report, run folder, the re-run's report). One
    run for the module's two end-to-end tests (formats and captions; variants and caching), read-only."""
    out = tmp_path_factory.mktemp("multi-market") / "out"
    assert main(["run", str(EXAMPLE), "--out", str(out), "--quiet"]) == 0
    report, run_dir = _latest(out, "multi-market")
    assert main(["run", str(EXAMPLE), "--out", str(out), "--quiet"]) == 0
    again, _ = _latest(out, "multi-market")
    return report, run_dir, again


def test_example_delivers_every_format_and_caption_file(
        example_runs: tuple[dict[str, Any], Path, dict[str, Any]]) -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    fps = 8  # cogvideox-5b
    frames = manifest["defaults"]["video"]["frames"]
    teaser = next(v for v in manifest["videos"] if v["id"].startswith("teaser-"))
    k = round(teaser["transition"]["crossfade"] * fps)
    title = round(teaser["title"]["duration"] * fps)
    # shot spans, independently of pipeline.manifest.formats: clips overlap by k frames; a caption switches at the
    # window's middle frame (the first where the incoming clip weighs at least half)
    spans = [(title, title + frames - (k - k // 2)), (title + frames - k + k // 2, title + 2 * frames - k)]
    total = title + 2 * frames - k
    sizes = {"16:9": (854, 480), "9:16": (480, 854), "1:1": (480, 480)}
    markets = {m["id"]: m for m in manifest["variables"]["market"]}
    products = {p["id"]: p for p in manifest["variables"]["product"]}

    report, run_dir, again = example_runs
    assert report["status"] == "succeeded"
    from credentials_check import assert_every_delivered_file_signed  # C2PA on every delivered file

    assert_every_delivered_file_signed(report, run_dir)
    teasers = [v for v in report["videos"] if v["template"] == "teaser-{product}-{market}"]
    assert len(teasers) == 6
    for v in teasers:
        market, product = markets[v["combination"]["market"]], products[v["combination"]["product"]]
        assert [f["format"] for f in v["formats"]] == teaser["formats"]
        assert v["language"] == market["language"]
        for f in v["formats"]:
            tag = f["format"].replace(":", "x")
            assert f["path"] == f"videos/{v['id']}-{tag}.mp4" and f["captions"] == f"videos/{v['id']}-{tag}.vtt"
            info = probe_video(run_dir / f["path"])  # read back: size, frames, duration, audio
            assert (info.width, info.height) == sizes[f["format"]]
            assert info.frames == total and info.rate == fps
            assert info.duration == pytest.approx(total / fps) == pytest.approx(v["expected_duration_s"])
            assert info.has_audio and f["burned"] and f["fit"] == "crop"
            assert (run_dir / f["poster"]).stat().st_size > 0
            cues = parse_vtt((run_dir / f["captions"]).read_text(encoding="utf-8"))
            assert [(frame_of(a, fps), frame_of(b, fps)) for a, b, _ in cues] == spans
            assert [text for _, _, text in cues] == [market["tagline"], f"{market['city']}: {product['fabric']}"]
    sky = next(v for v in report["videos"] if v["id"] == "skyline-us")
    (fmt,) = sky["formats"]
    info = probe_video(run_dir / fmt["path"])
    assert (info.width, info.height, fmt["fit"], fmt["burned"]) == (480, 854, "blur-pad", False)
    assert [(frame_of(a, fps), frame_of(b, fps), t) for a, b, t in parse_vtt((run_dir / fmt["captions"]).read_text())] == [
        (0, frames, "Brooklyn at dusk")]

    # the report's players: one per format, each with its captions track in the market's language
    page = _Tracks()
    page.feed((run_dir / "report.html").read_text(encoding="utf-8"))
    by_src = {p["src"]: p for p in page.videos}
    for v in teasers:
        for f in v["formats"]:
            (track,) = by_src[f["path"]]["tracks"]
            assert (track["kind"], track["src"], track["srclang"]) == ("captions", f["captions"], v["language"])
    assert again["jobs"]["executed"] == 0 and again["jobs"]["cached"] == again["jobs"]["total"]


def test_example_makes_each_output_once_groups_its_variants_and_an_unchanged_rerun_executes_nothing(
        example_runs: tuple[dict[str, Any], Path, dict[str, Any]]) -> None:
    report, run_dir, again = example_runs
    keys = {r["key"] for r in report["job_results"]}
    # every distinct output made exactly once; the jobs that share one read it back
    assert report["jobs"]["executed"] == len(keys) and report["jobs"]["cached"] == len(report["job_results"]) - len(keys)
    videos = {v["id"]: v for v in report["videos"]}
    assert len(videos) == 7
    for vid, v in videos.items():  # read back: each format's file is what the report says
        for f in v["formats"]:
            info = probe_video(run_dir / f["path"])
            assert (info.width, info.height) == (f["width"], f["height"]), vid
            assert info.duration == pytest.approx(v["expected_duration_s"], abs=1 / 8 + 1e-3), vid
        assert v["errors"] == []
    assert videos["teaser-navy-fr"]["template"] == "teaser-{product}-{market}"
    assert videos["teaser-navy-fr"]["combination"] == {"product": "navy", "market": "fr"}
    assert videos["skyline-us"]["combination"] == {"market": "us"}
    assert {g["template"]: (g["count"], g["failed"]) for g in report["variants"]} == {
        "sofa-{product}": (2, 0), "teaser-{product}-{market}": (6, 0), "skyline-{market}": (1, 0)}
    assert again["run_id"] != report["run_id"]
    assert again["jobs"] == {"total": len(report["job_results"]), "executed": 0, "cached": len(report["job_results"]),
                             "failed": 0, "skipped": 0}


VIDEO = """\
    campaign: formats-add
    defaults: {{enhance: false, video: {{frames: 9, steps: 2}}}}
    videos:
      - id: ad
        formats: {formats}
        captions: sidecar
        transition: {{crossfade: 0.25}}
        shots:
          - {{prompt: A sofa, caption: "Весна в лофте"}}
          - {{prompt: A lamp, caption: "春のロフト & more"}}
"""


def test_adding_a_format_makes_only_that_format(write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    path = write_campaign(VIDEO.format(formats='["16:9", "1:1"]'))
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    first, run_dir = _latest(out, "formats-add")
    cached = {p: p.read_bytes() for p in (out / "cache").rglob("*.mp4")}
    vtt = (run_dir / first["videos"][0]["formats"][0]["captions"]).read_text(encoding="utf-8")
    assert "Весна в лофте" in vtt and "春のロフト &amp; more" in vtt  # WebVTT escapes &

    write_campaign(VIDEO.format(formats='["16:9", "1:1", "4:5"]'))
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    second, run_dir = _latest(out, "formats-add")
    assert second["jobs"]["executed"] == 1  # the video job; its clips are cached
    formats = {f["format"]: f for f in second["videos"][0]["formats"]}
    assert {f: formats[f]["cached"] for f in formats} == {"16:9": True, "1:1": True, "4:5": False}
    # The earlier formats are the same cached files, not made again (the delivered copies differ: each is signed
    # with Content Credentials when it is published, and the signature carries its time); only 4:5 is new.
    assert all(p.read_bytes() == data for p, data in cached.items())
    new = set((out / "cache").rglob("*.mp4")) - set(cached)  # the 4:5 file (and the video job's own entry)
    assert (480, 600) in {(probe_video(p).width, probe_video(p).height) for p in new}
    info = probe_video(run_dir / formats["4:5"]["path"])
    assert (info.width, info.height, info.frames) == (480, 600, 9 + 9 - 2)


def test_crop_follows_detail_and_motion_not_the_middle(tmp_path: Path) -> None:
    """A clip that is flat grey but for a moving, textured square near its right edge: a 9:16 crop of it is
    centred on the square."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    frames = []
    for i in range(9):
        f = np.full((480, 720, 3), 128, np.uint8)
        y = 180 + 4 * i
        f[y:y + 80, 580:660] = texture
        frames.append(f)
    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames, width=720, height=480, fps=8)
    cx, cy = crop_centre(energy_map(clip), (720, 480), (480, 854))
    assert cy == 0.5  # the crop keeps the whole height
    width = round(480 * 480 / 854)  # the 9:16 window's width in the clip: 270 px
    left = min(max(round(cx * 720 - width / 2), 0), 720 - width)
    assert left <= 580 and 660 <= left + width, cx  # the square (x 580..660) is inside the window
    assert not 360 + width / 2 >= 660  # which a window in the middle (225..495) would have cut off
    cropped = fit_frame(frames[4], 480, 854, "crop", (cx, cy))
    textured = (cropped != 128).any(axis=2).sum()
    assert cropped.shape == (854, 480, 3) and textured > 0.9 * (80 * 854 / 480) ** 2  # the whole square, scaled


@pytest.mark.parametrize("fit", ["pad", "blur-pad"])
def test_pad_fits_keep_the_whole_picture(fit: str) -> None:
    frame = np.full((480, 720, 3), 200, np.uint8)
    out = fit_frame(frame, 480, 854, fit)
    fh = round(480 * 480 / 720)
    top = (854 - fh) // 2
    assert out.shape == (854, 480, 3)
    assert np.all(out[top + 2:top + fh - 2] == 200)  # the picture, scaled to the width, in the middle
    if fit == "pad":
        assert out[:top].max() == 0 and out[top + fh:].max() == 0
    else:  # a blurred, darkened copy of the picture around it
        assert 0 < out[:top].mean() < 200
