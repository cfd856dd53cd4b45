"""report.html in a real headless Chromium: loads without console errors, every video and image resolves; its
Content-Security-Policy blocks anything from elsewhere, long words wrap, bidi controls are shown, not obeyed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.report.html import render_html

ROOT = Path(__file__).resolve().parents[1]

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


LONG_WORD = "Supercalifragilistic" * 15  # 300 characters, no space to break at


def test_report_has_a_csp_wraps_a_300_character_word_and_shows_bidi_controls(
        write_campaign: Callable[..., Path], tmp_path: Path, artifacts: Path) -> None:
    """A real run's report, with what a crafted or careless report.json may hold (long words, a name with a
    right-to-left override, paths out of the run) rendered again by the same writer, opened at 1280 px."""
    sync_api = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "out"
    manifest = write_campaign(f"""
        campaign: long-words
        description: "{LONG_WORD}"
        videos:
          - id: v
            shots:
              - prompt: A bee
                frames: 9
                enhance: false
        """)
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    [report_json] = list((out / "runs" / "long-words").glob("*/report.json"))
    report = json.loads(report_json.read_text())
    secret = tmp_path / "secret.png"
    secret.write_bytes((ROOT / "manifests" / "assets" / "sofa.png").read_bytes())
    [video] = report["videos"]
    video["clips"][0]["prompt"] = f"{LONG_WORD} {LONG_WORD}"
    report["errors"] = [{"job": "\u202egnp.exe", "error": "Crafted", "message": LONG_WORD}]
    report["images"] = [{"id": "i", "status": "executed", "source": {"asset": "x"}, "source_path": "../../../secret.png",
                         "steps": [{"tool": "t", "path": str(secret)}, {"tool": "u", "path": "https://evil.invalid/u.png"}]}]
    page_path = report_json.with_name("report.html")
    page_path.write_text(render_html(report))
    html = page_path.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "\u202e" not in html and "evil.invalid" not in html.split("<pre>")[0] and "secret.png" not in html.split("<pre>")[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(page_path.as_uri(), wait_until="load", timeout=30000)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1] <= 1280, widths  # nothing wider than the window: the words wrapped
        # the run's own video still loads under the policy ('self' on a file:// page)
        duration = page.evaluate("""() => new Promise(r => { const v = document.querySelector('video');
            if (v.readyState >= 1) r(v.duration); v.onloadedmetadata = () => r(v.duration); v.onerror = () => r(-1);
            setTimeout(() => r(-2), 10000); })""")
        assert duration == pytest.approx(9 / 8, abs=0.05)
        assert page.locator('img[src*="secret"], img[src*="evil"]').count() == 0  # crafted paths: left out
        # anything from elsewhere is blocked by the policy itself, before any request
        blocked = page.evaluate("""() => new Promise(r => {
            document.addEventListener('securitypolicyviolation', e => r([e.violatedDirective, e.blockedURI]));
            const i = new Image(); i.src = 'https://evil.invalid/pixel.png'; document.body.append(i);
            setTimeout(() => r(null), 5000); })""")
        assert blocked is not None and blocked[0] == "img-src" and "evil.invalid" in blocked[1]
        text = page.inner_text("#errors")
        assert "<U+202E>gnp.exe" in text and "\u202e" not in text  # shown, not obeyed
        page.screenshot(path=str(artifacts / "report-long-words.png"), full_page=True)
        browser.close()
    # the one console error is Chromium's own line on the blocked image
    assert len(console_errors) == 1 and "evil.invalid" in console_errors[0], console_errors
