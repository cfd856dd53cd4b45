"""The studio tried as an attacker would, in a real headless Chromium against a real `campaign studio` started in a
workspace that holds a planted yaml.py: the page without the token is refused; Load of /etc/passwd and Save
outside the workspace are refused on the page; Markdown and HTML typed into a prompt and a manifest are shown as
text (no link, no image, no request to their server); the renders succeed and never import the planted code."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from studio_server import CHROMIUM, LONG, NO_CHROMIUM, base_url, launch_chromium, running_studio

from pipeline.studio import engine, jobs
from pipeline.studio.config import StudioConfig

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]

EVIL = "evil.invalid"  # a reserved name (RFC 2606): nothing answers, and any request to it is recorded below
PROMPT = f"A bee [win a prize](http://{EVIL}/a) ![p](http://{EVIL}/p.png) <b>x</b>"
DESCRIPTION = f"See [the offer](http://{EVIL}/offer) ![pixel](http://{EVIL}/d.png) <img src=http://{EVIL}/h.png>"
MANIFEST = f"""campaign: evil-campaign
description: "{DESCRIPTION}"
videos:
  - id: v
    shots:
      - prompt: A quiet meadow
        frames: 9
        enhance: false
"""


def finished_jobs(out: Path, count: int) -> list[jobs.StudioJob]:
    deadline = time.monotonic() + 120
    while True:
        listed = jobs.list_jobs(StudioConfig(out_dir=out))
        if len(listed) >= count and not any(j.active for j in listed):
            return listed
        assert time.monotonic() < deadline, f"the renders did not finish: {[(j.state, j.message) for j in listed]}"
        time.sleep(0.3)


def test_an_attacker_in_the_studio_reads_writes_links_and_imports_nothing(tmp_path: Path, artifacts: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    ws = tmp_path / "workspace"
    ws.mkdir()
    marker = tmp_path / "yaml-py-ran"
    (ws / "yaml.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    out = tmp_path / "out"
    evil_requests: list[str] = []
    with running_studio(out, log_path=tmp_path / "studio.log", workspace=ws) as link, sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("request", lambda r: evil_requests.append(r.url) if EVIL in r.url else None)
            refused = page.goto(base_url(link) + "/", wait_until="load", timeout=LONG)
            assert refused is not None and refused.status == 403  # no token, no page
            page.goto(link, wait_until="load", timeout=LONG)
            assert "token=" not in page.url  # it went into a cookie, out of the address bar and history

            # Shot: a prompt full of Markdown and HTML, generated; its title shows those characters as they are
            prompt = page.get_by_label("Prompt", exact=True)
            prompt.fill(PROMPT)
            page.get_by_role("button", name="Generate video").click()  # the form sends the prompt with the click
            final = page.get_by_label("Prompt sent to the model (edit freely)")
            expect(final).to_have_value(PROMPT, timeout=LONG)
            expect(page.get_by_text("A bee [win a prize](http:", exact=False).first).to_be_visible(timeout=LONG)
            assert page.locator(f'a[href*="{EVIL}"], img[src*="{EVIL}"]').count() == 0

            # Manifest: /etc/passwd is not loaded, ../ is not saved
            page.get_by_text("Manifest", exact=True).click()
            editor = page.get_by_label("Manifest YAML")
            starter = engine.STARTER_MANIFEST  # what the page starts with; waited for, not read while it loads
            expect(editor).to_have_value(starter, timeout=LONG)
            box = page.get_by_label("Manifest file")
            box.fill("/etc/passwd")
            box.press("Enter")
            expect(page.get_by_text("is outside the workspace", exact=False).first).to_be_visible(timeout=LONG)
            page.get_by_role("button", name="Load", exact=True).click()
            expect(editor).to_have_value(starter, timeout=LONG)
            expect(page.get_by_text("root:x:0:0", exact=False)).to_have_count(0)
            box.fill("../outside.yaml")
            box.press("Enter")
            expect(page.get_by_text("'../outside.yaml' is outside the workspace", exact=False)).to_be_visible(timeout=LONG)

            # a manifest in the workspace whose description is Markdown: saved there, run, shown as text under Runs
            box.fill("evil.yaml")
            box.press("Enter")
            expect(page.get_by_text("is outside the workspace", exact=False)).to_have_count(0, timeout=LONG)
            editor.fill(MANIFEST)
            editor.blur()
            expect(page.get_by_text("valid: 2 job(s)", exact=False)).to_be_visible(timeout=LONG)  # the starter has 5
            page.get_by_role("button", name="Run locally").click()
            expect(page.get_by_text("started run", exact=False)).to_be_visible(timeout=LONG)
            done = finished_jobs(out, 2)
            assert [j.state for j in done] == ["succeeded", "succeeded"], [j.message for j in done]
            assert (ws / "evil.yaml").read_text() == MANIFEST and not (tmp_path / "outside.yaml").exists()

            page.get_by_text("Runs", exact=True).click()
            expect(page.get_by_role("heading", name="evil-campaign /", exact=False)).to_be_visible(timeout=LONG)  # newest
            caption = page.get_by_text("the offer", exact=False).last
            expect(caption).to_be_visible(timeout=LONG)
            # every character as typed (an invisible word joiner keeps bare URLs from being linked: plain.literal)
            assert caption.inner_text().replace("\u2060", "") == DESCRIPTION
            page.screenshot(path=str(artifacts / "runs-markdown-as-text.png"), full_page=True)
            assert page.locator(f'a[href*="{EVIL}"], img[src*="{EVIL}"]').count() == 0
        finally:
            browser.close()
    assert evil_requests == []
    assert not marker.exists(), "a render or the server imported the workspace's yaml.py"
