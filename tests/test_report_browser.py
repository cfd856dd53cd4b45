"""report.html in a real headless Chromium: loads without console errors, every video and image resolves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                   "(make test installs it with apt-get when run as root)")]


def test_report_renders_every_output_in_chromium(example_manifest: Path, tmp_path: Path, artifacts: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "out"
    assert main(["run", str(example_manifest), "--out", str(out), "--quiet"]) == 0
    [report] = list((out / "runs" / "spring-sofa-launch").glob("*/report.html"))
    console_errors: list[str] = []
    failed_requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        # Chromium aborts a media element's first full request once it has read the moov box at the front of a
        # faststart MP4, then fetches by range: an aborted .mp4 request is that, and the videos are checked below
        page.on("requestfailed", lambda r: None if r.url.endswith(".mp4") and r.failure == "net::ERR_ABORTED"
                else failed_requests.append(f"{r.url}: {r.failure}"))
        page.goto(report.as_uri(), wait_until="load", timeout=30000)
        # the page lazy-loads images below the fold; load them all now, each with a time limit
        page.evaluate("""() => Promise.all([...document.images].map(i => { i.loading = 'eager';
                         return i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; setTimeout(r, 10000); }); }))""")
        images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
        videos = page.evaluate("""async () => Promise.all([...document.querySelectorAll('video')].map(v =>
            new Promise(r => { if (v.readyState >= 1) r([v.getAttribute('src'), v.duration, v.videoWidth]);
              v.onloadedmetadata = () => r([v.getAttribute('src'), v.duration, v.videoWidth]);
              v.onerror = () => r([v.getAttribute('src'), -1, 0]); setTimeout(() => r([v.getAttribute('src'), -2, 0]), 10000); })))""")
        posters = page.evaluate("() => [...document.querySelectorAll('video')].map(v => v.getAttribute('poster'))")
        shot = artifacts / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert console_errors == [] and failed_requests == []
    data = json.loads(report.with_suffix(".json").read_text())
    expected = {im["source_path"] for im in data["images"]} | {s["path"] for im in data["images"] for s in im["steps"]}
    assert {src for src, _ in images} == expected and len(expected) == 9  # each image's source and every step
    assert all(w > 0 for _, w in images), images
    assert len(videos) == 2
    for src, duration, width in videos:
        assert width == 720 and duration > 5, (src, duration)
        assert (report.parent / src).is_file()
    assert all(p and (report.parent / p).is_file() for p in posters)
    assert shot.stat().st_size > 50_000
