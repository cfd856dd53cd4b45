"""The real ASL file executed under moto's Step Functions interpreter, its Tasks running the real handlers in
tasks/ against moto's S3, and the same campaign run by `campaign run`: both must make the same outputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, Cloud, cloud_for_tasks
from fake_aws.container import CAPACITY_REASON, preview_container
from fake_aws.stepfunctions import ContainerRun
from small_campaign import write_small_campaign

from pipeline.cli import main as campaign_cli
from pipeline.cloud import STAGES, commands
from pipeline.errors import Throttled

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "spring-sofa-launch.yaml"
CAMPAIGN = "spring-sofa-launch"
RUN_FILES = ("plan.json", "budget.json")  # the cloud run's own bookkeeping, besides results/ and batches/


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)


@pytest.fixture
def distributed_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """The stack's `distributed_map_threshold` at 0: every stage that has items runs as a Distributed Map
    whose ItemReader reads the item list the plan step wrote to S3."""
    yield from cloud_for_tasks(monkeypatch, distributed_over=0)


@pytest.fixture
def small_campaign(tmp_path: Path) -> Path:
    """Two short videos (one from an edited image, one continuing its first shot) and an image chain."""
    folder = tmp_path / "small"
    roomtour = ("  - id: roomtour\n    continuity: last-frame\n    shots:\n      - prompt: A cozy living room.\n"
                "        image: sofa\n      - prompt: The camera pushes in.\n")  # a second video, after intro
    write_small_campaign(folder, name="small-launch", file_name="small.yaml", extra=roomtour)
    return folder


def local_run(manifest: Path, out: Path) -> tuple[dict[str, Any], Path]:
    # the backends the cloud side plans with in these tests (tests/fake_aws/cloud.py lambda_env)
    args = ["run", str(manifest), "--out", str(out), "--quiet", "--enhancer", "passthrough", "--images", "local",
            "--video", "preview"]
    assert campaign_cli(args) in (0, 1)
    latest = json.loads((out / "runs" / CAMPAIGN / "latest.json").read_text())
    report_path = out / "runs" / CAMPAIGN / latest["report"]
    return json.loads(report_path.read_text()), report_path.parent


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What must agree between a local and a cloud run of one campaign (not times, run ids or locations)."""
    videos = [{k: v.get(k) for k in ("id", "key", "status", "path", "duration_s", "width", "height", "fps", "frames")}
              | {"clips": [{k: c.get(k) for k in ("job", "key", "status", "prompt", "enhanced_prompt", "seed", "backend",
                                                   "placeholder", "path", "model_prompt")} for c in v["clips"]]}
              for v in report["videos"]]
    images = [{k: i.get(k) for k in ("id", "key", "status", "path", "edits", "backend", "placeholder")}
              for i in report["images"]]
    return {"campaign": report["campaign"], "status": report["status"], "jobs": report["jobs"],
            "errors": report["errors"], "videos": videos, "images": images, "backends": report["backends"]}


@pytest.fixture(scope="module")
def local_example(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    """The example campaign run locally once for the module's comparisons (report, run folder, output folder);
    the tests only read it."""
    out = tmp_path_factory.mktemp("local-example") / "out"
    report, run_dir = local_run(EXAMPLE, out)
    return report, run_dir, out


def test_example_campaign_makes_the_same_outputs_as_the_local_runner(
        cloud: Cloud, local_example: tuple[dict[str, Any], Path, Path]) -> None:
    run = same_outputs_as_the_local_runner(cloud, local_example, name="spring-sofa-launch-test")
    summary = run.calls.named("campaign-report")[0][1]["run"]
    assert {s["mode"] for s in summary["stages"].values()} == {"inline"}
    assert cloud.sfn.list_map_runs(executionArn=run.described["executionArn"])["mapRuns"] == []


def test_example_campaign_through_distributed_maps_makes_the_same_outputs(
        distributed_cloud: Cloud, local_example: tuple[dict[str, Any], Path, Path]) -> None:
    """Every stage as a Distributed Map (threshold 0): the plan step wrote each stage's items to S3, the
    state carried only their keys and counts, and the outputs are the local runner's."""
    cloud = distributed_cloud
    run = same_outputs_as_the_local_runner(cloud, local_example, name="spring-sofa-distributed")
    prefix = f"runs/{CAMPAIGN}/spring-sofa-distributed/"
    summary = run.calls.named("campaign-report")[0][1]["run"]
    assert all(summary[k] == [] for k in ("enhance", "image_waves", "clip_batches", "clip_waves", "videos"))
    stages = summary["stages"]
    # every stage with items (the example speaks no voiceover: its voice stage is empty, an inline Map of nothing)
    assert {name: s["mode"] for name, s in stages.items()} == dict.fromkeys(STAGES, "distributed") | {"voices": "inline"}
    run_doc = cloud.json(prefix + "plan.json")
    enhance_ids = [j["id"] for j in run_doc["plan"]["jobs"] if j["kind"] == "enhance"]
    assert stages["enhance"] == {"mode": "distributed", "count": len(enhance_ids), "key": prefix + "stages/enhance.json"}
    assert cloud.json(stages["enhance"]["key"]) == [{"job_id": j} for j in enhance_ids]
    assert [w["key"] for w in stages["waiting_clips"]["waves"]] == [prefix + "stages/waiting-clips-w1.json"]
    assert cloud.json(prefix + "stages/waiting-clips-w1.json") == [
        {"batch": "w1-cogvideox-5b-i2v-01", "jobs": ["clip:teaser/02", "clip:living-room/02"], "service": "sagemaker"}]
    # one Map Run per distributed Map: enhance, each image wave, clips, each waiting wave, videos
    map_runs = cloud.sfn.list_map_runs(executionArn=run.described["executionArn"])["mapRuns"]
    assert len(map_runs) == 3 + len(stages["images"]["waves"]) + len(stages["waiting_clips"]["waves"])
    for _, event, _ in run.calls.calls:
        assert len(json.dumps(event)) < 4_000  # ids stay in S3; the report step gets the whole state


def same_outputs_as_the_local_runner(cloud: Cloud, local: tuple[dict[str, Any], Path, Path], *, name: str) -> Any:
    # 1. The example campaign, run locally (the module's local_example).
    local_report, local_dir, local_out = local

    # 2. The same manifest and assets dropped into the input bucket, run by the state machine.
    cloud.upload_folder(EXAMPLE.parent, prefix="manifests/")
    run = cloud.run(f"manifests/{EXAMPLE.name}", name=name)
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "succeeded" and run.output["jobs"]["failed"] == 0, run.output
    prefix = f"runs/{CAMPAIGN}/{name}/"
    assert run.output["report"] == f"s3://{OUTPUT_BUCKET}/{prefix}report.json"
    cloud_report = cloud.json(prefix + "report.json")

    # 3. Same cache keys, byte-identical outputs (provenance aside: it records times).
    local_cache = {p.relative_to(local_out).as_posix() for p in (local_out / "cache").rglob("*") if p.is_file()}
    cloud_cache = set(cloud.keys("cache/"))
    assert cloud_cache == local_cache
    for key in sorted(k for k in local_cache if not k.endswith(".json")):
        local_sha = hashlib.sha256((local_out / key).read_bytes()).hexdigest()
        assert hashlib.sha256(cloud.bytes(key)).hexdigest() == local_sha, key

    # 4. Same named outputs and the same report (contract fields).
    local_named = {p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file()}
    cloud_named = {k[len(prefix):] for k in cloud.keys(prefix)
                   if not k[len(prefix):].startswith(("results/", "batches/", "stages/"))
                   and k[len(prefix):] not in RUN_FILES}
    assert cloud_named == local_named
    assert comparable(cloud_report) == comparable(local_report)

    # 5. One processing job per pipeline folder and wave; the state carried ids only.
    prepared = run.calls.named("campaign-prepare-batch")
    assert sorted((e["batch"], tuple(e["jobs"])) for _, e, _ in prepared) == [
        ("w0-cogvideox-5b-01", ("clip:teaser/01", "clip:teaser/03")),
        ("w0-cogvideox-5b-i2v-01", ("clip:living-room/01",)),
        # wave 1: a shot from an edited image, and a shot continuing living-room/01's last frame
        ("w1-cogvideox-5b-i2v-01", ("clip:teaser/02", "clip:living-room/02")),
    ]
    for _, event, _ in run.calls.calls:
        assert len(json.dumps(event)) < 8_000  # results and the plan stay in S3
    return run


def test_a_failed_clip_batch_gives_a_partial_report(cloud: Cloud, small_campaign: Path) -> None:
    cloud.upload_folder(small_campaign)
    fail_t2v = preview_container(
        cloud.s3, fail_job=lambda req: "AlgorithmError: CUDA out of memory" if "i2v" not in req["ProcessingJobName"] else None)
    run = cloud.run("manifests/small.yaml", name="small-partial", container=fail_t2v)
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "partial"
    report = cloud.json("runs/small-launch/small-partial/report.json")
    errors = {e["job"]: e for e in report["errors"]}
    # the text-to-video shot of `intro` failed with the job's reason; its video was skipped; the rest was made
    assert "CUDA out of memory" in errors["clip:intro/01"]["message"]
    assert errors["clip:intro/01"]["error"] == "JobFailed"
    assert errors["video:intro"]["error"] == "DependencyFailed"
    videos = {v["id"]: v for v in report["videos"]}
    assert videos["roomtour"]["status"] == "executed" and videos["roomtour"]["path"] == "videos/roomtour.mp4"
    assert videos["intro"]["path"] is None
    assert report["jobs"]["failed"] == 1 and report["jobs"]["skipped"] == 1
    # a failure other than capacity is not tried again: each batch was prepared once
    assert len(run.calls.named("campaign-prepare-batch")) == 3

    # `campaign status` reads the same execution back
    [row] = commands.status("small-launch", state_machine_arn=cloud.state_machine_arn, sfn=cloud.sfn)
    assert row["name"] == "small-partial" and row["status"] == "SUCCEEDED (partial)" and row["failed_items"] == 2
    assert row["report"] == "s3://campaign-output/runs/small-launch/small-partial/report.json"
    assert row["console_url"].endswith(":execution:campaign:small-partial")
    assert commands.status("another-campaign", state_machine_arn=cloud.state_machine_arn, sfn=cloud.sfn) == []


def recording(container: ContainerRun, jobs: dict[str, list[str]]) -> ContainerRun:
    """The container, noting each processing job's name under its batch, in the order they ran."""

    def run(request: dict[str, Any]) -> tuple[str, str | None]:
        jobs.setdefault(request["Environment"]["CAMPAIGN_BATCH"], []).append(request["ProcessingJobName"])
        return container(request)

    return run


WAVES = {"w0-cogvideox-5b-01": ["clip:intro/01"], "w0-cogvideox-5b-i2v-01": ["clip:roomtour/01"],
         "w1-cogvideox-5b-i2v-01": ["clip:intro/02", "clip:roomtour/02"]}


@pytest.mark.parametrize("mode", ["inline", "distributed"])
def test_a_batch_sagemaker_had_no_capacity_for_is_prepared_again_and_rendered(
        request: pytest.FixtureRequest, small_campaign: Path, mode: str) -> None:
    """Each batch's first processing job fails with `CapacityError: ...` (SageMaker could not get the
    instance): the batch is prepared again, a second job with a new name renders it, every clip is made.
    Inline Maps and Distributed Maps (the child workflows of both render paths) alike."""
    cloud: Cloud = request.getfixturevalue("cloud" if mode == "inline" else "distributed_cloud")
    cloud.upload_folder(small_campaign)
    name = f"small-capacity-{mode}"
    jobs: dict[str, list[str]] = {}
    run = cloud.run("manifests/small.yaml", name=name,
                    container=recording(preview_container(cloud.s3, no_capacity=1), jobs))
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "succeeded" and run.output["jobs"]["failed"] == 0, run.output
    prepared = [(e["batch"], e.get("attempt")) for _, e, _ in run.calls.named("campaign-prepare-batch")]
    assert sorted(prepared) == sorted((batch, n) for batch in WAVES for n in (1, 2))
    assert set(jobs) == set(WAVES)
    for batch, names in jobs.items():
        assert len(names) == len(set(names)) == 2, (batch, names)
        assert names[1].endswith("-a2"), names
    # each batch collected once, after its second job; the report has no error
    assert sorted(e["batch"] for _, e, _ in run.calls.named("campaign-collect-batch")) == sorted(WAVES)
    report = cloud.json(f"runs/small-launch/{name}/report.json")
    assert report["errors"] == []
    assert {r["job"]: r["status"] for r in report["job_results"] if r["job"].startswith("clip:")} == dict.fromkeys(
        [j for jobs_of in WAVES.values() for j in jobs_of], "executed")


def test_capacity_that_never_comes_fails_the_batch_after_the_attempt_limit(cloud: Cloud, small_campaign: Path) -> None:
    cloud.upload_folder(small_campaign)
    jobs: dict[str, list[str]] = {}
    run = cloud.run("manifests/small.yaml", name="small-no-capacity",
                    container=recording(preview_container(cloud.s3, no_capacity=1_000), jobs))
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "partial"  # the images were made
    # three jobs per batch (RenderAttempts), each its own name; roomtour/02 waits on the failed roomtour/01
    assert {batch: len(set(names)) for batch, names in jobs.items()} == dict.fromkeys(WAVES, 3)
    report = cloud.json("runs/small-launch/small-no-capacity/report.json")
    errors = {e["job"]: e for e in report["errors"]}
    for job in ("clip:intro/01", "clip:roomtour/01", "clip:intro/02"):
        assert errors[job]["error"] == "JobFailed" and CAPACITY_REASON in errors[job]["message"], errors[job]
    assert errors["clip:roomtour/02"]["error"] == "DependencyFailed"
    assert {errors[v]["error"] for v in ("video:intro", "video:roomtour")} == {"DependencyFailed"}
    assert report["jobs"]["failed"] == 3


def flaky_handlers(attempts: list[str]) -> dict[str, Any]:
    """The image task throttled once (then real), and the assembly of video:roomtour crashing every time."""
    from tasks import assemble, image

    def throttled_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
        attempts.append(event["job_id"])
        if len(attempts) == 1:
            raise Throttled("image service: throttled (ThrottlingException): Rate exceeded")
        return image.handler(event, context)

    def always_broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["job_id"] == "video:roomtour":
            raise MemoryError("Runtime exited with error: signal: killed")
        return assemble.handler(event, context)

    return {"campaign-image": throttled_once, "campaign-assemble": always_broken}


def test_a_throttled_task_is_retried_and_a_task_that_keeps_failing_becomes_an_error_entry(
        cloud: Cloud, small_campaign: Path) -> None:
    attempts: list[str] = []
    overrides = flaky_handlers(attempts)

    cloud.upload_folder(small_campaign)
    run = cloud.run("manifests/small.yaml", name="small-retry",
                    overrides=overrides)
    assert run.status == "SUCCEEDED", run.described
    assert attempts == ["image:sofa-big", "image:sofa-big"]  # Retry on `Throttled`, then success
    assert [o for _, e, o in run.calls.named("campaign-image")] == ["Throttled", "ok"]
    assert [o for _, e, o in run.calls.named("campaign-assemble") if e["job_id"] == "video:roomtour"] == ["MemoryError"]

    report = cloud.json("runs/small-launch/small-retry/report.json")
    assert report["status"] == "partial"
    [error] = report["errors"]
    assert error == {"job": "video:roomtour", "error": "MemoryError", "message": "Runtime exited with error: signal: killed"}
    # the failure record the state machine wrote (aws-sdk:s3:putObject) carries the Catch's error
    record = cloud.json("runs/small-launch/small-retry/results/video:roomtour.json")
    assert record["error"]["Error"] == "MemoryError" and record["job_id"] == "video:roomtour"


def test_failures_inside_distributed_maps_become_report_entries(distributed_cloud: Cloud, small_campaign: Path) -> None:
    """The child executions run the inline Maps' steps: Retry on a throttled task, a task that keeps failing
    caught and recorded as its job's result, a failed processing job failing its clips; no item fails the
    Map Run (ToleratedFailurePercentage 100) and the report lists every failure."""
    cloud = distributed_cloud
    attempts: list[str] = []
    overrides = flaky_handlers(attempts)

    cloud.upload_folder(small_campaign)
    fail_t2v = preview_container(
        cloud.s3, fail_job=lambda req: "AlgorithmError: CUDA out of memory" if "i2v" not in req["ProcessingJobName"] else None)
    run = cloud.run("manifests/small.yaml", name="small-distributed-failures", container=fail_t2v,
                    overrides=overrides)
    assert run.status == "SUCCEEDED", run.described
    summary = run.calls.named("campaign-report")[0][1]["run"]
    assert {s["mode"] for s in summary["stages"].values() if s["count"]} == {"distributed"}
    assert attempts == ["image:sofa-big", "image:sofa-big"]
    assert run.output["status"] == "partial"
    report = cloud.json("runs/small-launch/small-distributed-failures/report.json")
    errors = {e["job"]: e for e in report["errors"]}
    assert "CUDA out of memory" in errors["clip:intro/01"]["message"] and errors["clip:intro/01"]["error"] == "JobFailed"
    assert errors["video:intro"]["error"] == "DependencyFailed"
    assert errors["video:roomtour"] == {"job": "video:roomtour", "error": "MemoryError",
                                       "message": "Runtime exited with error: signal: killed"}
    record = cloud.json("runs/small-launch/small-distributed-failures/results/video:roomtour.json")
    assert record["error"]["Error"] == "MemoryError" and record["job_id"] == "video:roomtour"
    assert report["jobs"]["failed"] == 2 and report["jobs"]["skipped"] == 1


def test_an_invalid_manifest_ends_early_with_its_problems_as_the_report(cloud: Cloud, small_campaign: Path) -> None:
    text = (small_campaign / "small.yaml").read_text()
    (small_campaign / "small.yaml").write_text(text.replace("image: sofa-big", "image: sofa-huge")
                                               .replace("upscale-fast: {}", "upscale-fast: {seed: -1}"))
    (small_campaign / "assets" / "sofa.png").unlink()
    cloud.upload_folder(small_campaign)
    run = cloud.run("manifests/small.yaml", name="small-invalid")
    assert run.status == "FAILED"
    assert run.described["error"] == "ManifestInvalid"
    assert "see the report at s3://campaign-output/runs/small-launch/small-invalid/report.json" in run.described["cause"]
    assert [name for name, _, _ in run.calls.calls] == ["campaign-plan"]  # no job, no GPU
    report = cloud.json("runs/small-launch/small-invalid/report.json")
    assert report["status"] == "failed"
    messages = [e["message"] for e in report["errors"]]
    assert any("s3://campaign-input/manifests/small.yaml:" in m and "sofa-huge" in m for m in messages), messages
    assert any("not found (looked for s3://campaign-input/manifests/assets/sofa.png" in m for m in messages), messages
    assert any("seed" in m for m in messages), messages


def test_a_plan_step_that_fails_still_writes_a_report(cloud: Cloud) -> None:
    # the event named a version that is gone by the time the plan step reads it
    put = cloud.s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/gone.yaml", Body=b"campaign: gone-soon\n")
    cloud.s3.delete_object(Bucket=INPUT_BUCKET, Key="manifests/gone.yaml", VersionId=put["VersionId"])
    run = cloud.start({"bucket": INPUT_BUCKET, "key": "manifests/gone.yaml", "version_id": put["VersionId"]},
                      name="gone-run")
    assert run.status == "FAILED" and run.described["error"] == "CampaignFailed"
    assert json.loads(run.described["cause"])["status"] == "failed"
    assert [name for name, _, _ in run.calls.calls] == ["campaign-plan", "campaign-report"]
    report = cloud.json("runs/gone/gone-run/report.json")
    assert report["status"] == "failed"
    assert "could not be planned" in report["errors"][0]["message"]
    assert report["errors"][0]["job"] == "plan" and report["errors"][0]["error"] != "ManifestInvalid"


def test_stages_without_jobs_pass_through_and_a_rerun_is_all_cached(cloud: Cloud, tmp_path: Path) -> None:
    """No enhancement, no images, no clip that waits: those Maps get empty lists and the run goes on."""
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "bare.yaml").write_text(textwrap.dedent("""\
        campaign: bare-campaign
        defaults: {enhance: false, video: {frames: 9, steps: 2}}
        videos:
          - id: one
            shots:
              - prompt: A single title card.
        """), encoding="utf-8")
    cloud.upload_folder(folder)
    run = cloud.run("manifests/bare.yaml", name="bare-run")
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "succeeded" and run.output["jobs"]["total"] == 2
    assert [n for n, _, _ in run.calls.calls] == ["campaign-plan", "campaign-prepare-batch", "campaign-collect-batch",
                                                  "campaign-assemble", "campaign-report"]

    # run again: everything is in the cache, so no processing job starts and every job reads `cached`
    jobs_started: list[str] = []
    container = preview_container(cloud.s3)

    def counting(request: dict[str, Any]) -> tuple[str, str | None]:
        jobs_started.append(request["ProcessingJobName"])
        return container(request)

    again = cloud.run("manifests/bare.yaml", name="bare-run-again", container=counting)
    assert again.status == "SUCCEEDED" and jobs_started == []
    assert again.output["jobs"] == {"total": 2, "executed": 0, "cached": 2, "failed": 0, "skipped": 0}


def test_clips_a_stopped_processing_job_finished_are_kept(cloud: Cloud, tmp_path: Path) -> None:
    folder = tmp_path / "stopped"
    shutil.copytree(EXAMPLE.parent / "assets", folder / "assets")
    (folder / "stopped.yaml").write_text(textwrap.dedent("""\
        campaign: stopped-batch
        defaults:
          enhance: false
          video: {steps: 2, frames: 9}
        videos:
          - id: a
            shots: [{prompt: A bee on a flower.}, {prompt: A flower in the rain.}]
          - id: b
            shots: [{prompt: A tree in the wind.}]
        """))
    cloud.upload_folder(folder)
    run = cloud.run("manifests/stopped.yaml", name="stopped-run", container=preview_container(cloud.s3, stop_after=2))
    assert run.status == "SUCCEEDED", run.described
    report = cloud.json("runs/stopped-batch/stopped-run/report.json")
    assert report["status"] == "partial"
    status = {r["job"]: r["status"] for r in report["job_results"]}
    assert status["clip:a/01"] == status["clip:a/02"] == "executed"  # finished before the stop: kept
    assert status["clip:b/01"] == "failed" and status["video:a"] == "executed" and status["video:b"] == "skipped"
    [error] = [e for e in report["errors"] if e["job"] == "clip:b/01"]
    assert error["error"] == "JobFailed" and "MaxRuntimeExceeded" in error["message"]
