"""The Runs page's review in a real headless Chromium: open a run, reject a clip with a note, regenerate it with a
new seed, see both versions; only that clip and its video were made (counted from the new run's jobs); after the
video is approved, `campaign export` holds only approved files. A screenshot is kept under build/test-artifacts/."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path

import pytest
from studio_server import CHROMIUM, LONG, NO_CHROMIUM, launch_chromium, running_studio

from pipeline.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]
ROOT = Path(__file__).resolve().parents[1]
NOTE = "Too dark: <i>relight</i> it"


def test_reject_regenerate_and_export_from_the_runs_page(tmp_path: Path, artifacts: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    shutil.copytree(ROOT / "manifests" / "assets", tmp_path / "assets")
    manifest = tmp_path / "campaign.yaml"
    manifest.write_text(textwrap.dedent("""\
        campaign: review-page
        assets: {sofa: assets/sofa.png}
        images:
          - {id: big, from: sofa, edits: [{upscale-fast: {}}]}
        videos:
          - id: teaser
            shots:
              - {prompt: A bee on a flower., frames: 9}
              - {prompt: A sofa in a sunlit loft., frames: 9}
        """), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    runs_dir = out / "runs" / "review-page"
    [first] = [p.parent.name for p in runs_dir.glob("*/report.json")]

    with running_studio(out, log_path=tmp_path / "studio.log") as link, sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"{link}&page=Runs", wait_until="load", timeout=LONG)
            form = page.locator('[data-testid="stForm"]').filter(has_text="review clip:teaser/01")
            expect(form).to_be_visible(timeout=LONG)
            form.get_by_label("Note").fill(NOTE)
            form.get_by_role("button", name="Reject").click()
            form = page.locator('[data-testid="stForm"]').filter(has_text="review clip:teaser/01")
            expect(form.get_by_text("reject by", exact=False)).to_be_visible(timeout=LONG)
            expect(form.get_by_text(NOTE, exact=False)).to_be_visible(timeout=LONG)  # the note as text

            form.get_by_label("New seed (regenerate)").fill("7")
            form.get_by_role("button", name="Regenerate").click()
            expect(page.get_by_text("regenerating clip:teaser/01", exact=False)).to_be_visible(timeout=LONG)
            deadline = time.monotonic() + LONG / 1000
            while not [p for p in runs_dir.glob("*/report.json") if p.parent.name != first]:
                assert time.monotonic() < deadline, "the regenerate run wrote no report"
                time.sleep(0.5)
            [second] = [p.parent.name for p in runs_dir.glob("*/report.json") if p.parent.name != first]

            page.reload(wait_until="load")  # the newest run opens first
            expect(page.get_by_text(f"replaces its version of run {first}", exact=False)).to_be_visible(timeout=LONG)
            form = page.locator('[data-testid="stForm"]').filter(has_text="review clip:teaser/01")
            expect(form.get_by_text(f"v1 · run {first} · seed 42", exact=False)).to_be_visible(timeout=LONG)
            expect(form.get_by_text(f"v2 (this run) · run {second} · seed 7", exact=False)).to_be_visible(timeout=LONG)
            video_form = page.locator('[data-testid="stForm"]').filter(has_text="review video:teaser")
            video_form.get_by_role("button", name="Approve").click()
            video_form = page.locator('[data-testid="stForm"]').filter(has_text="review video:teaser")
            expect(video_form.get_by_text("approve by", exact=False)).to_be_visible(timeout=LONG)
            page.screenshot(path=str(artifacts / "runs-review.png"), full_page=True)
        finally:
            browser.close()

    report = json.loads((runs_dir / second / "report.json").read_text())
    assert {r["job"] for r in report["job_results"] if r["status"] == "executed"} == {"clip:teaser/01", "video:teaser"}
    versions = report["videos"][0]["clips"][0]["review"]["versions"]
    assert [v["made_with"]["seed"] for v in versions] == [42, 7]
    assert versions[0]["decisions"][0] == {**versions[0]["decisions"][0], "decision": "reject", "note": NOTE}
    dest = tmp_path / "delivery"
    assert main(["export", "review-page", "--to", str(dest), "--out", str(out)]) == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["export.json", "videos/teaser.mp4"]
    assert json.loads((dest / "export.json").read_text())["run_id"] == second
