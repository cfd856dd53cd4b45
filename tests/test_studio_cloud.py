"""The studio's Runs page over the cloud's output bucket: a campaign executed by the real state machine on moto
is listed beside the local runs, opened in place, its video and downloads served by presigned S3 URLs; and in
a real Chromium, a bucket's video plays straight from S3 (moto's server over HTTP)."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import requests
import streamlit as st
from fake_aws.cloud import OUTPUT_BUCKET, Cloud, cloud_for_tasks
from moto.server import ThreadedMotoServer
from streamlit.testing.v1 import AppTest
from studio_server import CHROMIUM, LONG, NO_CHROMIUM, launch_chromium, running_studio, video_duration

from pipeline.cli import main as campaign_cli
from pipeline.studio import runs
from pipeline.studio.config import ENV_VAR, StudioConfig
from pipeline.studio.plain import literal

APP = Path(__file__).resolve().parents[1] / "pipeline" / "studio" / "app.py"
CAMPAIGN = "cloud-review"
MANIFEST = f"""
    campaign: {CAMPAIGN}
    assets:
      sofa: assets/sofa.png
    images:
      - id: sofa-big
        from: sofa
        edits:
          - upscale-fast: {{}}
    videos:
      - id: teaser
        shots:
          - prompt: A bee on a flower.
            frames: 9
            enhance: false
          - prompt: The sofa in a sunlit loft.
            image: sofa-big
            frames: 9
            enhance: false
    """
RUN_ID = "20261125T120000Z-cloud"  # the execution's name is its run id; ids sort by their start time
GOING = "20991231T000000Z-going"  # a run whose report is not written yet


def one_shot(write_campaign: Callable[..., Path], campaign: str, *, frames: int) -> Path:
    """A manifest of one video `teaser` of one shot, written by conftest's write_campaign."""
    return write_campaign(f"""
        campaign: {campaign}
        videos:
          - id: teaser
            shots:
              - prompt: A bee on a flower
                frames: {frames}
                enhance: false
        """, name=f"{campaign}.yaml")


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)


@pytest.fixture
def cloud_run(cloud: Cloud, write_campaign: Callable[..., Path]) -> Cloud:
    """One campaign executed by the state machine, and a later run still going (plan.json, no report)."""
    manifest = write_campaign(MANIFEST, name=f"{CAMPAIGN}.yaml")
    cloud.upload_folder(manifest.parent)
    run = cloud.run(f"manifests/{manifest.name}", name=RUN_ID)
    assert run.status == "SUCCEEDED", run.described
    cloud.s3.put_object(Bucket=OUTPUT_BUCKET, Key=f"runs/{CAMPAIGN}/{GOING}/plan.json", Body=b"{}")
    return cloud


def test_a_buckets_runs_are_read_from_their_reports_and_served_by_presigned_urls(cloud_run: Cloud) -> None:
    bucket = runs.BucketRuns(OUTPUT_BUCKET)  # its own SigV4 client, as the studio makes it
    assert bucket.report_keys() == [f"runs/{CAMPAIGN}/{GOING}/report.json", f"runs/{CAMPAIGN}/{RUN_ID}/report.json"]
    assert runs.BucketRuns(OUTPUT_BUCKET, limit=1).report_keys() == [f"runs/{CAMPAIGN}/{GOING}/report.json"]
    [run] = runs.read_runs(bucket)  # the run still going has no report: not listed, no error
    report = cloud_run.json(f"runs/{CAMPAIGN}/{RUN_ID}/report.json")
    assert (run.campaign, run.run_id, run.status, run.source.label) == (CAMPAIGN, RUN_ID, "succeeded", f"s3://{OUTPUT_BUCKET}")
    assert (run.videos, run.images, run.errors) == (1, 1, 0) and run.cost_usd == report["cost"]["total_usd"]

    [video] = report["videos"]
    url = bucket.media(run.file(video["path"]))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == [str(runs.URL_SECONDS)]
    assert requests.get(url, timeout=30).content == cloud_run.bytes(f"runs/{CAMPAIGN}/{RUN_ID}/{video['path']}")
    link = bucket.link(run.file("report.html"), filename="x.html")
    assert link is not None
    got = requests.get(link, timeout=30)
    assert got.headers["Content-Disposition"] == 'attachment; filename="x.html"'
    assert got.content == cloud_run.bytes(f"runs/{CAMPAIGN}/{RUN_ID}/report.html")


def test_the_runs_page_lists_cloud_runs_beside_local_ones_and_opens_one(
        cloud_run: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_campaign: Callable[..., Path]) -> None:
    out = tmp_path / "out"
    local = one_shot(write_campaign, "local-one", frames=9)
    assert campaign_cli(["run", str(local), "--out", str(out), "--quiet"]) == 0
    monkeypatch.setenv(ENV_VAR, StudioConfig(out_dir=out, output_bucket=OUTPUT_BUCKET).to_env())
    st.cache_resource.clear()  # the page keeps a bucket's listing for a minute

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value("Runs").run()
    assert not at.exception, at.exception
    labels = at.selectbox(key="run").options
    [local_run] = runs.list_runs(out)
    # newest first: the local run started now, the cloud one at the test's own clock too; both are there
    assert sorted(labels) == sorted([local_run.label, f"{CAMPAIGN} / {RUN_ID} — succeeded (s3://{OUTPUT_BUCKET})"])
    assert at.multiselect(key="runs_campaigns").options == [CAMPAIGN, "local-one"]

    at.multiselect(key="runs_source").set_value([f"s3://{OUTPUT_BUCKET}"]).run()
    assert at.selectbox(key="run").options == [f"{CAMPAIGN} / {RUN_ID} — succeeded (s3://{OUTPUT_BUCKET})"]
    assert [h.value for h in at.header] == [literal(f"{CAMPAIGN} / {RUN_ID}")]  # shown as text, not Markdown
    [player] = at.get("video")
    assert urllib.parse.urlsplit(player.proto.url).path == f"/runs/{CAMPAIGN}/{RUN_ID}/videos/teaser.mp4"
    assert "X-Amz-Signature=" in player.proto.url
    [image] = at.image
    [image_url] = image.value
    assert urllib.parse.urlsplit(image_url).path.startswith(f"/runs/{CAMPAIGN}/{RUN_ID}/images/")
    # the downloads are links straight to S3; the page holds no bytes of a cloud run
    assert {b.proto.label for b in at.link_button} == {"Download", "Download report.html"}
    assert at.get("download_button") == []

    at.multiselect(key="runs_source").set_value(["local"]).run()
    assert at.selectbox(key="run").options == [local_run.label]


def test_a_bucket_that_cannot_be_read_is_said_and_local_runs_stay_listed(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, StudioConfig(out_dir=tmp_path / "out", output_bucket="no-such-bucket").to_env())
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value("Runs").run()
    assert not at.exception, at.exception
    [error] = at.error
    assert literal("cannot list the runs in s3://no-such-bucket/runs/") in error.value and "NoSuchBucket" in error.value
    assert any("no runs under" in i.value for i in at.info)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_a_cloud_runs_video_plays_in_the_browser_from_its_presigned_url(
        tmp_path: Path, write_campaign: Callable[..., Path], offline_aws: None, artifacts: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    # A run made locally, then put in a bucket under the same keys (the cloud writes them with the same writer:
    # see the tests above for a run made by the state machine); moto's server answers the browser over HTTP.
    made = tmp_path / "made"
    manifest = one_shot(write_campaign, "bucket-run", frames=17)
    assert campaign_cli(["run", str(manifest), "--out", str(made), "--quiet"]) == 0
    [run] = runs.list_runs(made)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        s3.create_bucket(Bucket=OUTPUT_BUCKET)
        for path in sorted((made / run.prefix).rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), OUTPUT_BUCKET, path.relative_to(made).as_posix())
        env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_REGION": "us-east-1"}
        with running_studio(tmp_path / "out", log_path=tmp_path / "studio.log", env=env,
                            flags=("--output-bucket", OUTPUT_BUCKET)) as url, \
                sync_api.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"{url}&page=Runs", wait_until="load", timeout=LONG)  # the link has its ?token=
            sync_api.expect(page.get_by_role("heading", name=f"bucket-run / {run.run_id}")).to_be_visible(timeout=LONG)
            video = page.locator("video")
            sync_api.expect(video).to_have_count(1, timeout=LONG)
            assert video.get_attribute("src", timeout=LONG).startswith(f"{endpoint}/{OUTPUT_BUCKET}/{run.prefix}/")
            [made_video] = (runs.read_report(run) or {})["videos"]
            assert video_duration(video) == pytest.approx(made_video["duration_s"], abs=0.05)
            link = page.get_by_role("link", name="Download", exact=True).get_attribute("href", timeout=LONG)
            assert link is not None
            with urllib.request.urlopen(link, timeout=30) as got:
                assert got.read() == (made / run.prefix / "videos" / "teaser.mp4").read_bytes()
            page.screenshot(path=str(artifacts / "runs-cloud.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    assert (artifacts / "runs-cloud.png").stat().st_size > 20_000
