"""`campaign studio` in a real headless Chromium: prompt -> enhance -> edit -> generate (preview backend) ->
the <video> plays with the clip's length -> download; the run under Runs; a bad manifest's problems with
their lines, as it is typed. A screenshot of each page is kept under build/test-artifacts/<test>/ (printed at the end)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from studio_server import CHROMIUM, LONG, NO_CHROMIUM, launch_chromium, running_studio, video_duration

from pipeline import catalog
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest_text
from pipeline.studio import editor as editor_module
from pipeline.studio import engine, jobs, runs
from pipeline.studio.config import StudioConfig

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out = tmp_path / "out"
    with running_studio(out, log_path=tmp_path / "studio.log") as url:
        yield url, out


@contextmanager
def chromium_page(sync_api: Any, url: str) -> Iterator[Any]:
    """A page of a fresh headless Chromium, opened at `url`."""
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
            page.goto(url, wait_until="load", timeout=LONG)
            yield page
        finally:
            browser.close()


def test_make_watch_and_download_a_clip_then_find_it_under_runs(studio: tuple[str, Path], tmp_path: Path, artifacts: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    url, out = studio
    shots_dir = artifacts
    model = catalog.VIDEO_MODELS[catalog.DEFAULT_VIDEO_MODEL]
    with chromium_page(sync_api, url) as page:
        # 1. prompt -> Enhance (passthrough: the prompt as written) -> edit
        prompt = page.get_by_label("Prompt", exact=True)
        prompt.fill("A bee on a flower")  # a form: Enhance sends what the box holds with its click
        page.get_by_role("button", name="Enhance").click()
        final = page.get_by_label("Prompt sent to the model (edit freely)")
        expect(final).to_have_value("A bee on a flower", timeout=LONG)
        expect(page.get_by_text("passthrough enhancer", exact=False)).to_be_visible(timeout=LONG)
        edited = "A honey bee lands on a yellow flower, macro lens, morning light"
        final.fill(edited)

        # 2. Generate -> progress -> player: the clip plays and lasts the model's default frames at its fps
        page.get_by_role("button", name="Generate video").click()
        tokens, _ = engine.token_count(edited, model=model.name)  # counted for the text the click sent
        expect(page.get_by_text(f"~{tokens} / {model.max_prompt_tokens} tokens for {model.name}", exact=False)).to_be_visible(timeout=LONG)
        video = page.locator("video").first
        video.wait_for(state="attached", timeout=LONG)
        assert video_duration(video) == pytest.approx(model.default_frames / model.fps, abs=0.05)
        video.evaluate("v => { v.muted = true; return v.play(); }")
        page.wait_for_function("v => v.currentTime > 0", arg=video.element_handle(), timeout=LONG)
        page.screenshot(path=str(shots_dir / "shot.png"), full_page=True)

        # 3. Download: the very file the run wrote
        with page.expect_download(timeout=LONG) as info:
            page.get_by_role("button", name="Download").click()
        saved = tmp_path / "download.mp4"
        info.value.save_as(saved)
        [run] = runs.list_runs(out)
        [job] = jobs.list_jobs(StudioConfig(out_dir=out))
        assert job.state == "succeeded" and run.run_id == job.id
        assert saved.read_bytes() == (out / run.file("videos/shot.mp4")).read_bytes()

        # 4. Runs: the shot is there, opened in place with its player
        page.get_by_text("Runs", exact=True).click()
        expect(page.get_by_role("heading", name=f"studio / {run.run_id}")).to_be_visible(timeout=LONG)
        expect(page.locator("video")).to_have_count(1, timeout=LONG)
        page.screenshot(path=str(shots_dir / "runs.png"), full_page=True)

    for name in ("shot", "runs"):
        assert (shots_dir / f"{name}.png").stat().st_size > 20_000
    print(f"screenshots: {shots_dir}")


def test_a_bad_manifest_shows_its_problems_with_line_numbers_as_you_type(studio: tuple[str, Path], tmp_path: Path, artifacts: Path) -> None:
    """Keys only, into the Manifest page's editor: no blur, no Ctrl+Enter, no click outside it. The problems (in the
    list and on the gutter's line numbers) and then "valid" appear while the box keeps the focus and every key typed,
    reruns landing between keystrokes included."""
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    url, out = studio
    shots_dir = artifacts
    bad = "campaign: Bad Name\nvideos:\n  - id: v\n    shots:\n      - prompt: hi\n        frames: 10\n"
    fixed = bad.replace("Bad Name", "bad-name").replace("frames: 10", "frames: 9")
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest_text(bad, file="campaign.yaml", base_dir=out / "studio" / "manifests")
    assert {p.line for p in exc.value.problems} == {1, 6}
    load_manifest_text(fixed, file="campaign.yaml", base_dir=out / "studio" / "manifests")  # the fix is a real one

    with chromium_page(sync_api, url) as page:
        page.get_by_text("Manifest", exact=True).click()
        editor = page.get_by_label("Manifest YAML")
        expect(editor).to_have_value(engine.STARTER_MANIFEST, timeout=LONG)  # the text Python gave it
        editor.click()  # the one click: into the editor itself
        page.keyboard.press("Control+A")
        page.keyboard.type(bad)
        for problem in exc.value.problems:
            expect(page.get_by_text(f"line {problem.line}, column {problem.col}:", exact=False).first).to_be_visible(
                timeout=LONG)
            marker = page.locator(f'.gutter [data-line="{problem.line}"]')
            expect(marker).to_have_class("problem", timeout=LONG)
            expect(marker).to_have_attribute("title", re.compile(f"line {problem.line}, column {problem.col}: "))
        expect(page.locator(".gutter .problem")).to_have_count(2)
        expect(editor).to_be_focused()
        expect(editor).to_have_value(bad)
        page.screenshot(path=str(shots_dir / "manifest.png"), full_page=True)

        # fix both lines in place with the keyboard: line 1's name, then line 6's frames
        page.keyboard.press("Control+Home")
        page.keyboard.press("End")
        for _ in "Bad Name":
            page.keyboard.press("Backspace")
        page.keyboard.type("bad-name")
        page.keyboard.press("Control+End")  # the empty line after the last newline
        page.keyboard.press("ArrowUp")
        page.keyboard.press("End")
        page.keyboard.press("Backspace")
        page.keyboard.press("Backspace")
        page.keyboard.type("9")
        expect(page.get_by_text("valid: ", exact=False)).to_be_visible(timeout=LONG)
        expect(page.locator(".gutter .problem")).to_have_count(0, timeout=LONG)
        expect(page.get_by_text("line 6, column", exact=False)).to_have_count(0, timeout=LONG)  # the list is gone too
        expect(editor).to_have_value(fixed)
        expect(editor).to_be_focused()
        page.screenshot(path=str(shots_dir / "manifest-valid.png"), full_page=True)

        # Load (now the box may lose the focus): the file's text replaces the typed text in the editor
        saved = tmp_path / "workspace" / "saved.yaml"  # the studio's workspace (running_studio's default)
        saved.write_text(engine.STARTER_MANIFEST)
        path_box = page.get_by_label("Manifest file")
        path_box.fill("saved.yaml")
        path_box.press("Enter")
        page.get_by_role("button", name="Load", exact=True).click()
        expect(editor).to_have_value(engine.STARTER_MANIFEST, timeout=LONG)
    assert (shots_dir / "manifest.png").stat().st_size > 20_000
    print(f"screenshots: {shots_dir}")


def test_the_editor_sends_once_per_pause_in_typing(studio: tuple[str, Path]) -> None:
    """The debounce, on Playwright's fake clock (no real waiting): eight keys typed with time stopped send nothing,
    nor does DEBOUNCE_MS - 1 more milliseconds; the last one sends the text once, and its problem appears."""
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    url, out = studio
    typed = "bogus: 1"  # an unknown top-level key after the starter's last line: one problem
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest_text(engine.STARTER_MANIFEST + typed, file="campaign.yaml", base_dir=out / "studio" / "manifests")
    [problem] = exc.value.problems
    with chromium_page(sync_api, "about:blank") as page:
        sent: list[bytes] = []  # the browser's messages to the server: a rerun request carries the widget values
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(
            payload if isinstance(payload, bytes) else payload.encode())))
        page.clock.install()  # before the page loads, so the editor's setTimeout is the fake one
        page.goto(url, wait_until="load", timeout=LONG)
        page.get_by_text("Manifest", exact=True).click()
        editor = page.get_by_label("Manifest YAML")
        expect(editor).to_have_value(engine.STARTER_MANIFEST, timeout=LONG)
        editor.click()
        page.keyboard.press("Control+End")
        now_ms = page.evaluate("Date.now()")
        page.clock.pause_at(now_ms / 1000 + 1)  # time stands still from here
        page.keyboard.type(typed)
        expect(editor).to_have_value(engine.STARTER_MANIFEST + typed)
        page.clock.run_for(editor_module.DEBOUNCE_MS - 1)
        assert not [f for f in sent if typed.encode() in f]  # nothing sent while typing, nor during the pause
        page.clock.run_for(1)
        page.clock.resume()
        expect(page.get_by_text(f"line {problem.line}, column {problem.col}:", exact=False).first).to_be_visible(timeout=LONG)
        expect(editor).to_be_focused()
        carrying = [f for f in sent if typed.encode() in f]
        assert len(carrying) == 1, len(carrying)  # one send for eight keys
