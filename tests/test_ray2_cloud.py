"""Luma Ray2 in the cloud runner: the real ASL under moto's Step Functions interpreter starts each Ray2 clip's job
with the AWS SDK integration and polls it in a Wait loop, against the fake Bedrock (fake_bedrock_async.py, routed by
fake_aws/stepfunctions.py); CogVideoX clips of the same campaign render through the SageMaker branch. The outputs
match `campaign run --video bedrock+preview` against the same fake over HTTP byte for byte; a failed or filtered
job, or one that never ends, becomes that clip's error without failing the campaign; the plan step checks each
model's lifecycle and access (GetFoundationModel) before any job runs."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, Cloud, lambda_env, moto_cloud
from fake_bedrock import FakeBedrock
from fake_bedrock_async import AsyncVideoService, Lifecycle, Outcome, failed, ok
from moto.server import ThreadedMotoServer

from pipeline.catalog import RAY2
from pipeline.cli import main as campaign_cli
from pipeline.cloud.contract import RAY2_OUTPUT_PREFIX
from pipeline.cloud.ray2 import attempt_token
from tasks import _runtime

CAMPAIGN = "mixed-cloud"
MAX_POLLS = 3
MANIFEST = textwrap.dedent(f"""\
    campaign: {CAMPAIGN}
    defaults:
      video: {{model: cogvideox-5b, steps: 2, seed: 7, frames: 9}}
    videos:
      - id: teaser
        transition: {{crossfade: 0.5}}
        shots:
          - prompt: A bee on a flower.
          - prompt: A sofa in a loft, slow orbit.
            model: luma-ray2
            resolution: 540p
      - id: loop
        shots:
          - prompt: Waves on a beach at dawn.
            model: luma-ray2
            resolution: 540p
            aspect_ratio: "1:1"
            loop: true
    """)


SOFA, WAVES = "A sofa in a loft, slow orbit.", "Waves on a beach at dawn."
OUTCOMES = {SOFA: ok(polls=2), WAVES: ok(polls=1)}


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "campaign"
    folder.mkdir()
    path = folder / f"{CAMPAIGN}.yaml"
    path.write_text(MANIFEST, encoding="utf-8")
    return path


@pytest.fixture
def control_plane(offline_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsyncVideoService]:
    """GetFoundationModel over real HTTP (the plan step's model check); the same service object answers the
    state machine's Bedrock Runtime tasks once a cloud is up."""
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", fake.url)
        service = AsyncVideoService(s3=None)
        fake.default = service.reply
        yield service
    assert service.problems == []  # every request matched botocore's model and the documented body


@pytest.fixture
def cloud(control_plane: AsyncVideoService, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    for name, value in lambda_env().items():
        monkeypatch.setenv(name, value)
    # Ray2 clips on Bedrock, CogVideoX on the preview stand-in for the container; polls without waiting
    monkeypatch.setenv("CAMPAIGN_VIDEO", "bedrock+preview")
    monkeypatch.setenv("CAMPAIGN_RAY2_POLL_S", "0")
    monkeypatch.setenv("CAMPAIGN_RAY2_MAX_POLLS", str(MAX_POLLS))
    _runtime.reset()
    with moto_cloud() as c:
        control_plane.s3 = c.s3  # a completed job writes its MP4 into moto's output bucket
        c.bedrock = control_plane
        yield c
    _runtime.reset()


def run_cloud(cloud: Cloud, manifest: Path, *, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    key = f"manifests/{manifest.name}"
    cloud.s3.upload_file(str(manifest), INPUT_BUCKET, key)
    run = cloud.run(key, name=name)
    assert run.status == "SUCCEEDED", run.described
    report = cloud.json(f"runs/{CAMPAIGN}/{name}/report.json")
    return run.output, report


def clip_errors(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["job"]: e for e in report["errors"]}


def test_mixed_campaign_in_the_cloud_makes_the_same_clips_and_videos_as_a_local_bedrock_run(
        manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_aws: None) -> None:
    # 1. Locally: `campaign run --video bedrock+preview` against the fake Bedrock and moto's S3, both over HTTP.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        with monkeypatch.context() as local:
            local.setenv("AWS_REGION", "us-east-1")
            local.setenv("AWS_ENDPOINT_URL_S3", endpoint)
            local.setenv("CAMPAIGN_BEDROCK_POLL_S", "0.01")
            s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
            s3.create_bucket(Bucket="ray2-local")
            with FakeBedrock() as fake:
                local.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
                service = AsyncVideoService(s3)
                service.by_prompt.update(OUTCOMES)
                fake.default = service.reply
                out = tmp_path / "local"
                assert campaign_cli(["run", str(manifest), "--out", str(out), "--quiet", "--enhancer", "passthrough",
                                     "--images", "local", "--video", "bedrock+preview",
                                     "--bedrock-output", "s3://ray2-local/clips"]) == 0
                assert service.problems == []
    finally:
        server.stop()
    latest = json.loads((out / "runs" / CAMPAIGN / "latest.json").read_text())
    local_report = json.loads((out / "runs" / CAMPAIGN / latest["report"]).read_text())
    local_files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "cache").rglob("*.mp4")}

    # 2. In the cloud: the real ASL under moto, Ray2 jobs through the AWS SDK integration route.
    with FakeBedrock() as control:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", control.url)
        bedrock = AsyncVideoService(s3=None)
        control.default = bedrock.reply
        for name, value in lambda_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CAMPAIGN_VIDEO", "bedrock+preview")
        monkeypatch.setenv("CAMPAIGN_RAY2_POLL_S", "0")
        _runtime.reset()
        try:
            with moto_cloud() as cloud:
                bedrock.s3, cloud.bedrock = cloud.s3, bedrock
                bedrock.by_prompt.update(OUTCOMES)
                output, report = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-same")
                cloud_files = {k: cloud.bytes(k) for k in cloud.keys("cache/") if k.endswith(".mp4")}
                records = {k: cloud.json(k) for k in cloud.keys(f"runs/{CAMPAIGN}/{CAMPAIGN}-same/ray2-jobs/")}
                bedrock_outputs = cloud.keys(RAY2_OUTPUT_PREFIX)
        finally:
            _runtime.reset()
        assert bedrock.problems == []

    # the same clips (Ray2 and CogVideoX) and the same assembled videos, byte for byte, under the same keys
    assert output["status"] == "succeeded" and report["status"] == "succeeded"
    assert sorted(cloud_files) == sorted(local_files)
    assert cloud_files == local_files
    clips = {c["job"]: c for v in report["videos"] for c in v["clips"]}
    local_clips = {c["job"]: c for v in local_report["videos"] for c in v["clips"]}
    assert {j: (c["key"], c["backend"]) for j, c in clips.items()} == {j: (c["key"], c["backend"])
                                                                       for j, c in local_clips.items()}
    assert sorted(c["backend"] for c in clips.values()) == ["bedrock", "bedrock", "preview"]
    # what Bedrock received from the state machine: the documented body, the output under the clip's content
    # key in the output bucket's Bedrock prefix, the idempotency token derived from that key
    ray2_keys = sorted(c["key"] for c in clips.values() if c["backend"] == "bedrock")
    started = sorted(bedrock.invocations.values(), key=lambda i: i.body["clientRequestToken"])
    run_id = f"{CAMPAIGN}-same"  # the attempt: this run
    assert sorted(i.body["clientRequestToken"] for i in started) == sorted(attempt_token(k, run_id) for k in ray2_keys)
    for inv in started:
        key = next(k for k in ray2_keys if attempt_token(k, run_id) == inv.token)
        assert inv.body["modelId"] == RAY2.model_id
        assert inv.body["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": f"s3://{OUTPUT_BUCKET}/{RAY2_OUTPUT_PREFIX}{key}"}}
        assert inv.body["modelInput"]["resolution"] == "540p"
    assert {i.body["modelInput"]["prompt"]: i.polls for i in started} == {
        SOFA: 3, WAVES: 2}  # InProgress until the outcome's polls
    assert all(k.endswith("/output.mp4") for k in bedrock_outputs) and len(bedrock_outputs) == 2
    # the state machine's record of each job is GetAsyncInvoke's last answer, as the SDK integration returns it
    assert sorted(r["Status"] for r in records.values()) == ["Completed", "Completed"]
    assert all(r["InvocationArn"].startswith("arn:aws:bedrock:") for r in records.values())


def test_a_failed_or_filtered_ray2_job_is_that_clips_error_and_the_campaign_goes_on(
        cloud: Cloud, manifest: Path, control_plane: AsyncVideoService) -> None:
    # the teaser's Ray2 shot is refused by the content filter; the loop's Ray2 shot is made
    control_plane.by_prompt[SOFA] = failed("The output was blocked by our content filters.", polls=1)
    output, report = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-filtered")
    assert output["status"] == "partial" and report["status"] == "partial"
    by_prompt = {c["prompt"]: c for v in report["videos"] for c in v["clips"]}
    filtered = clip_errors(report)[by_prompt[SOFA]["job"]]
    assert filtered["error"] == "ContentFiltered" and "content filters" in filtered["message"]
    # the other clips were made, and the video whose clips all exist was assembled
    assert by_prompt[WAVES]["status"] == "executed" and by_prompt["A bee on a flower."]["status"] == "executed"
    assert [v["id"] for v in report["videos"] if v["status"] == "executed"] == ["loop"]


def test_a_ray2_job_that_fails_for_another_reason_is_a_job_failure(
        cloud: Cloud, manifest: Path, control_plane: AsyncVideoService) -> None:
    control_plane.by_prompt[WAVES] = failed("Internal model error", polls=0)
    output, report = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-failed")
    assert output["status"] == "partial"
    by_prompt = {c["prompt"]: c for v in report["videos"] for c in v["clips"]}
    other = clip_errors(report)[by_prompt[WAVES]["job"]]
    assert other["error"] == "JobFailed" and "Internal model error" in other["message"]


def test_a_ray2_job_that_never_ends_stops_at_the_poll_limit_with_a_named_error(
        cloud: Cloud, manifest: Path, control_plane: AsyncVideoService) -> None:
    control_plane.by_prompt[SOFA] = Outcome(polls=10_000)
    output, report = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-stuck")
    assert output["status"] == "partial"
    by_prompt = {c["prompt"]: c for v in report["videos"] for c in v["clips"]}
    stuck = clip_errors(report)[by_prompt[SOFA]["job"]]
    assert stuck["error"] == "PollLimitExceeded"
    assert f"still InProgress after {MAX_POLLS} polls" in stuck["message"]
    stuck_job = next(i for i in control_plane.invocations.values() if i.outcome.polls == 10_000)
    assert stuck_job.polls == MAX_POLLS  # exactly the bounded number of GetAsyncInvoke calls
    # the other Ray2 clip, polled side by side, was made
    assert by_prompt[WAVES]["status"] == "executed"


def test_a_clip_whose_job_failed_is_a_new_request_in_the_next_run(
        cloud: Cloud, manifest: Path, control_plane: AsyncVideoService) -> None:
    # run 1: Bedrock fails the sofa's job; run 2 (a new attempt) must start a new job, not get the failed one back
    control_plane.by_prompt[SOFA] = failed("Internal model error", polls=0)
    output, _ = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-first")
    assert output["status"] == "partial"
    control_plane.by_prompt[SOFA] = ok(polls=1)
    output, report = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-again")
    assert output["status"] == "succeeded", report["errors"]
    sofa = [i for i in control_plane.invocations.values() if i.body["modelInput"]["prompt"] == SOFA]
    assert len(sofa) == 2 and len({i.token for i in sofa}) == 2  # one job per attempt, each its own token
    assert sorted(i.outcome.status for i in sofa) == ["Completed", "Failed"]


def test_a_throttled_start_is_retried_by_the_state_machine_and_starts_one_job(
        cloud: Cloud, manifest: Path, control_plane: AsyncVideoService) -> None:
    control_plane.faults.append(("StartAsyncInvoke", "ThrottlingException"))
    output, report = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-throttled")
    assert output["status"] == "succeeded", report["errors"]
    assert len(control_plane.invocations) == 2 and not control_plane.faults


def test_the_plan_step_reports_a_retired_model_as_a_located_error_before_any_job(
        cloud: Cloud, manifest: Path, control_plane: AsyncVideoService) -> None:
    control_plane.models[RAY2.model_id] = Lifecycle(status="LEGACY",
                                                    end_of_life=datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    key = f"manifests/{manifest.name}"
    cloud.s3.upload_file(str(manifest), INPUT_BUCKET, key)
    run = cloud.run(key, name=f"{CAMPAIGN}-retired")
    assert run.status == "FAILED" and json.loads(run.described["output"] if "output" in run.described else "{}") in ({},)
    report = cloud.json(f"runs/{CAMPAIGN}/{CAMPAIGN}-retired/report.json")
    [problem] = report["problems"] if "problems" in report else report["errors"]
    text = json.dumps(problem)
    assert "luma.ray-v2:0 reached its end of life on 2026-01-01" in text
    assert f"{CAMPAIGN}.yaml:9:" in text and "videos[0].shots[1]" in text  # the first Ray2 shot, located
    assert control_plane.invocations == {}  # nothing was started


def test_a_legacy_model_is_a_warning_kept_beside_the_plan(cloud: Cloud, manifest: Path,
                                                          control_plane: AsyncVideoService) -> None:
    control_plane.models[RAY2.model_id] = Lifecycle(status="LEGACY",
                                                    end_of_life=datetime(2099, 9, 30, tzinfo=UTC).timestamp())
    output, _ = run_cloud(cloud, manifest, name=f"{CAMPAIGN}-legacy")
    assert output["status"] == "succeeded"
    [warning] = cloud.json(f"runs/{CAMPAIGN}/{CAMPAIGN}-legacy/model-check.json")
    assert warning["level"] == "warning" and "Legacy (end of life 2099-09-30)" in warning["message"]
