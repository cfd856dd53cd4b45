"""The studio's Runs page over the cloud's output bucket: a campaign executed by the real state machine on moto
is listed beside the local runs, opened in place, its video and downloads served by presigned S3 URLs; and in
a real Chromium, a bucket's video plays straight from S3 (moto's server over HTTP). A cloud run's clip is
rejected, approved and regenerated from the page (AppTest) through the functions `campaign review --bucket` uses:
the decisions land in the bucket and its report, the regenerate is one execution of the real ASL; without the state
machine's ARN Regenerate is disabled with its reason; AWS's refusal is one line that changes nothing."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import streamlit as st
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, Cloud, cloud_for_tasks, handlers
from fake_aws.container import preview_container
from fake_aws.stepfunctions import route_lambdas, route_sagemaker, wait_for
from moto.server import ThreadedMotoServer
from streamlit.testing.v1 import AppTest
from studio_server import CHROMIUM, LONG, NO_CHROMIUM, launch_chromium, running_studio, video_duration

from pipeline.cli import main as campaign_cli
from pipeline.cloud import commands
from pipeline.review.decisions import read_decisions
from pipeline.storage.store import S3Store
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


# --- review of a cloud run from the Runs page ------------------------------------------------------------

CLIP = "clip:teaser/01"


def _cloud_run_page(monkeypatch: pytest.MonkeyPatch, out: Path, *, arn: str | None,
                    user: str | None = "tester") -> AppTest:
    """The Runs page with the bucket's run open (the only cloud run), as `user` (None: nobody signed in)."""
    monkeypatch.setenv(ENV_VAR, StudioConfig(out_dir=out, output_bucket=OUTPUT_BUCKET, state_machine_arn=arn).to_env())
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.user = {"name": user} if user else {}  # the gate's trusted header (tests/test_studio.py)
    at.run()
    at.sidebar.radio(key="page").set_value("Runs").run()
    at.multiselect(key="runs_source").set_value([f"s3://{OUTPUT_BUCKET}"]).run()
    assert not at.exception, at.exception
    return at


def _click(at: AppTest, item: str, label: str) -> AppTest:
    """Press a submit button of one item's review form (the form's key names the run and the item)."""
    [button] = [b for b in at.button if b.label == label and b.proto.form_id.endswith(f"-{item}")]
    return button.click().run()


def _clip_review(cloud: Cloud) -> dict[str, Any]:
    report = cloud.json(f"runs/{CAMPAIGN}/{RUN_ID}/report.json")
    [clip] = [c for c in report["videos"][0]["clips"] if c["job"] == CLIP]
    return dict(clip["review"])


def test_a_cloud_runs_clip_is_rejected_then_approved_from_the_page_and_the_bucket_holds_it(
        cloud_run: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the owner rules of a local run made elsewhere: a cloud run is reviewed by any signed-in user, nobody else
    nobody = _cloud_run_page(monkeypatch, tmp_path / "out", arn=None, user=None)
    assert {b.label: b.disabled for b in nobody.button if b.proto.form_id.endswith(f"-{CLIP}")} == {"Approve": True}
    assert "only a signed\\-in user or an administrator can review this run" in [c.value for c in nobody.caption]

    at = _cloud_run_page(monkeypatch, tmp_path / "out", arn=None)
    at.text_input(key=f"note-{RUN_ID}-{CLIP}").input("too <b>dark</b>")
    at = _click(at, CLIP, "Reject")
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    store = S3Store(OUTPUT_BUCKET, client=cloud_run.s3)
    [rejected] = read_decisions(store, CAMPAIGN)
    assert (rejected.item, rejected.action, rejected.by, rejected.note, rejected.run_id) == (
        CLIP, "reject", "tester", "too <b>dark</b>", RUN_ID)
    # the decision names the manifest the run was planned from, as `campaign review --bucket` records it
    assert rejected.manifest == cloud_run.json(f"runs/{CAMPAIGN}/{RUN_ID}/report.json")["manifest"]
    assert rejected.manifest == f"s3://{INPUT_BUCKET}/manifests/{CAMPAIGN}.yaml"
    assert _clip_review(cloud_run)["status"] == "rejected"  # the report in the bucket was rewritten
    shown = [m.value for m in at.markdown]
    assert f"**review {literal(CLIP)}**: rejected" in shown  # the page read the rewritten report back
    assert any(literal("reject by tester") in c.value and literal("too <b>dark</b>") in c.value for c in at.caption)

    at = _click(at, CLIP, "Approve")
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert [d.action for d in read_decisions(store, CAMPAIGN)] == ["reject", "approve"]
    assert _clip_review(cloud_run)["status"] == "approved"
    assert f"**review {literal(CLIP)}**: approved" in [m.value for m in at.markdown]
    # regenerate needs the state machine: disabled here, the reason in one line
    [regenerate] = [b for b in at.button if b.label == "Regenerate" and b.proto.form_id.endswith(f"-{CLIP}")]
    assert regenerate.disabled
    assert literal(runs.NO_STATE_MACHINE, limit=None) in [c.value for c in at.caption]
    assert [e["name"] for e in cloud_run.sfn.list_executions(stateMachineArn=cloud_run.state_machine_arn)["executions"]] \
        == [RUN_ID]


def test_a_cloud_runs_clip_is_regenerated_from_the_page_by_one_execution(
        cloud_run: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = cloud_run.state_machine_arn
    at = _cloud_run_page(monkeypatch, tmp_path / "out", arn=arn)
    at.number_input(key=f"seed-{RUN_ID}-{CLIP}").set_value(11)
    at.text_input(key=f"note-{RUN_ID}-{CLIP}").input("again")
    with ExitStack() as routes:  # the execution the click starts runs the real ASL to its end, as the CLI's does
        routes.enter_context(route_lambdas(handlers()))
        routes.enter_context(route_sagemaker(preview_container(cloud_run.s3)))
        at = _click(at, CLIP, "Regenerate")
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        [started] = [e for e in cloud_run.sfn.list_executions(stateMachineArn=arn)["executions"] if e["name"] != RUN_ID]
        described = wait_for(cloud_run.sfn, started["executionArn"], timeout_s=90.0)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["input"])["trigger"] == "review"
    [said] = at.success
    assert literal(f"execution {started['name']}") in said.value
    assert [b.proto.url for b in at.link_button if b.proto.label.startswith("Open the execution")] == [
        commands.execution_console_url(started["executionArn"])]
    # recorded in the bucket: the request names the new run; the new run re-made only the clip and its video
    [asked] = read_decisions(S3Store(OUTPUT_BUCKET, client=cloud_run.s3), CAMPAIGN)
    assert (asked.action, asked.item, asked.by, asked.note, asked.regenerate_run) == (
        "regenerate", CLIP, "tester", "again", started["name"])
    report = cloud_run.json(f"runs/{CAMPAIGN}/{started['name']}/report.json")
    assert {r["job"] for r in report["job_results"] if r["status"] == "executed"} == {CLIP, "video:teaser"}
    assert report["videos"][0]["clips"][0]["seed"] == 11
    [replaced] = report["review"]["replaces"]
    assert (replaced["item"], replaced["run_id"], replaced["by"]) == (CLIP, RUN_ID, "tester")


def test_a_cloud_review_refused_by_aws_is_one_line_and_the_run_is_unchanged(
        cloud_run: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _cloud_run_page(monkeypatch, tmp_path / "out", arn=None)
    before = cloud_run.bytes(f"runs/{CAMPAIGN}/{RUN_ID}/report.json")
    # the studio's role may read the bucket but not write it: S3 answers AccessDenied to the decision's PutObject
    cloud_run.s3.put_bucket_policy(Bucket=OUTPUT_BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{OUTPUT_BUCKET}/*"}]}))
    at = _click(at, CLIP, "Approve")
    assert not at.exception, at.exception
    [error] = at.error
    # botocore's one-line ClientError text, shown as text (moto answers a denied PutObject 403 Forbidden)
    assert error.value.startswith(literal("not done: An error occurred (")) and "PutObject operation" in error.value
    assert "\n" not in error.value
    cloud_run.s3.delete_bucket_policy(Bucket=OUTPUT_BUCKET)
    assert cloud_run.bytes(f"runs/{CAMPAIGN}/{RUN_ID}/report.json") == before
    assert read_decisions(S3Store(OUTPUT_BUCKET, client=cloud_run.s3), CAMPAIGN) == []
