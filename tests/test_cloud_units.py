"""pipeline/cloud/'s small decisions, and that the light task functions fit their layer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import errors
from pipeline.cloud import names, rundoc
from pipeline.cloud.contract import ERROR_MESSAGE_MAX, PLAN_SUMMARY_FIELDS, SCHEDULE_NAME_MAX
from pipeline.cloud.events import JobEvent, ManifestSource, PlanEvent, StepError
from pipeline.cloud.failures import describe_failure
from pipeline.cloud.job_step import run_job_step
from pipeline.cloud.plan_step import _enhancer_model_problem, plan_run
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import BackendUnavailable
from pipeline.manifest.campaign import load_manifest
from pipeline.plan import schedule
from pipeline.plan.build import KeySource, Plan, build_plan
from pipeline.storage.store import LocalStore
from pipeline.tasks.enhance import run_enhance

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ASSETS = ROOT / "manifests" / "assets"


def plan_of(tmp_path: Path, text: str) -> Plan:
    import shutil

    shutil.copytree(EXAMPLE_ASSETS, tmp_path / "assets", dirs_exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    keys = KeySource(enhancer="passthrough:v1", images="local", video="preview")
    return build_plan(load_manifest(path), keys, backends={"enhancer": "passthrough", "images": "local", "video": "preview"})


def test_waves_follow_dependencies_and_batches_follow_pipeline_folders(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, """\
        campaign: waves-test
        defaults: {video: {frames: 9}}
        assets: {sofa: assets/sofa.png, mask: assets/sofa-mask.png}
        images:
          - {id: base, from: sofa, edits: [{upscale-fast: {}}]}
          - {id: cut, from: base, edits: [{remove-background: {}}]}
          - {id: other, from: mask, edits: [{upscale-fast: {}}]}  # not base's chain: that would wait for base
        videos:
          - id: chain
            continuity: last-frame
            shots:
              - {prompt: one}
              - {prompt: two}
              - {prompt: three}
          - id: from-image
            shots:
              - {prompt: a, image: cut}
              - {prompt: b}
              - {prompt: c}
              - {prompt: d, model: cogvideox1.5-5b, frames: 17}
        """)
    assert schedule.image_waves(plan) == (("image:base", "image:other"), ("image:cut",))
    first, later = schedule.clip_waves(plan, max_batch=2)
    assert [(b.id, b.jobs) for b in first] == [
        ("w0-cogvideox-5b-01", ("clip:chain/01", "clip:from-image/02")),
        ("w0-cogvideox-5b-02", ("clip:from-image/03",)),
        ("w0-cogvideox1.5-5b-01", ("clip:from-image/04",)),
    ]
    assert [[(b.id, b.jobs) for b in wave] for wave in later] == [
        [("w1-cogvideox-5b-i2v-01", ("clip:chain/02", "clip:from-image/01"))],
        [("w2-cogvideox-5b-i2v-01", ("clip:chain/03",))],
    ]
    every_clip = {j for b in first for j in b.jobs} | {j for w in later for b in w for j in b.jobs}
    assert every_clip == {j.id for j in plan.by_kind("clip")}


def test_settings_come_from_the_environment_and_say_what_is_missing() -> None:
    s = CloudSettings.from_env({"CAMPAIGN_OUTPUT_BUCKET": "out", "CAMPAIGN_CLIPS_PER_BATCH": "4"})
    assert s.output_bucket == "out" and s.clips_per_batch == 4 and s.instance_type is None
    with pytest.raises(BackendUnavailable, match="CAMPAIGN_SAGEMAKER_ROLE_ARN is not set"):
        s.need("sagemaker_role_arn")
    with pytest.raises(ValueError, match="CAMPAIGN_CLIPS_PER_BATCH must be an integer, got 'four'"):
        CloudSettings.from_env({"CAMPAIGN_CLIPS_PER_BATCH": "four"})


def test_failures_read_as_their_error_and_message() -> None:
    lambda_error = {"Error": "MemoryError", "Cause": json.dumps({"errorType": "MemoryError", "errorMessage": "killed",
                                                                 "stackTrace": []})}
    assert describe_failure(StepError("MemoryError", lambda_error["Cause"])) == ("MemoryError", "killed")
    job = {"Error": "States.TaskFailed", "Cause": json.dumps({"ProcessingJobName": "j-1", "ProcessingJobStatus": "Failed",
                                                              "FailureReason": "AlgorithmError: CUDA out of memory"})}
    assert describe_failure(StepError.from_state(job)) == ("States.TaskFailed",
                                                           "processing job j-1 Failed: AlgorithmError: CUDA out of memory")
    assert describe_failure(StepError("States.Timeout", "x" * 5000))[1] == "x" * ERROR_MESSAGE_MAX


@pytest.mark.parametrize("raised, retried", [(errors.Throttled("slow down"), True), (errors.TransientError("503"), True),
                                             (errors.ContentFiltered("refused"), False), (KeyError("bug"), False)])
def test_only_transient_failures_are_raised_for_the_state_machine_to_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException, retried: bool) -> None:
    """The job step raises a transient failure again as the very exception the backend raised (the state's
    Retry matches its class name); any other failure is recorded as the job's result."""
    summary, out = large_plan_run(tmp_path, videos=1, distributed_over=None)
    settings = CloudSettings(enhancer="passthrough", images="local", video="preview", clips_per_batch=8)
    ref = names.RunRef.from_dict(summary["ref"])
    [job_id] = summary["enhance"]

    def enhance(self: object, prompt: str) -> str:
        raise raised

    monkeypatch.setattr("pipeline.backends.PassThroughEnhancer.enhance", enhance)
    event = JobEvent(job_id, ref)
    store = LocalStore(out)
    if retried:
        with pytest.raises(type(raised)) as caught:
            run_job_step(event, kind="enhance", task=run_enhance, store=store, s3=None, settings=settings, workdir=tmp_path / "w")
        assert caught.value is raised
        assert not (out / names.result_key(ref, job_id)).exists()
    else:
        answer = run_job_step(event, kind="enhance", task=run_enhance, store=store, s3=None, settings=settings, workdir=tmp_path / "w")
        assert answer == {"job_id": job_id, "status": "failed"}
        recorded = json.loads((out / names.result_key(ref, job_id)).read_text())
        assert recorded["status"] == "failed" and recorded["error_type"] in (type(raised).__name__, "JobFailed")


def test_names_and_console_links() -> None:
    arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:campaign"
    ex = names.execution_arn(arn, "spring-0123")
    assert ex == "arn:aws:states:eu-west-1:123456789012:execution:campaign:spring-0123"
    assert names.execution_console_url(ex) == (
        "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/" + ex)
    name = names.schedule_name(bucket="b", key="manifests/" + "very-long-name" * 10 + ".yaml")
    assert len(name) <= SCHEDULE_NAME_MAX
    assert names.is_manifest_key("manifests/a/b.yml") and not names.is_manifest_key("assets/a.yaml")
    assert names.object_version({"etag": '"abc"', "version-id": "null"}) == "abc"


def test_the_light_task_functions_need_nothing_beyond_their_layer() -> None:
    """plan, enhance, image (Bedrock), report and the starter run as zip functions whose layer holds only
    pyyaml, jsonschema, pillow and numpy (infra/build_layer.py): importing them and building the cloud backends
    must not pull OpenCV, moviepy or ffmpeg."""
    script = textwrap.dedent("""
        import importlib.abc, sys
        HEAVY = ("cv2", "moviepy", "imageio_ffmpeg", "imageio", "tqdm", "torch", "diffusers")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in HEAVY:
                    raise ImportError(f"{name} is not in the light functions' layer")
        sys.meta_path.insert(0, Block())
        import tasks.plan, tasks.enhance, tasks.image, tasks.report, tasks.starter
        import pipeline.manifest.campaign, pipeline.report.write, pipeline.report.html, pipeline.plan.cost, pipeline.backends.sagemaker_jobs
        import pipeline.manifest.yamlsrc, pipeline.tasks
        from pipeline.cloud.settings import CloudBackends, CloudSettings
        s = CloudSettings(output_bucket="o", sagemaker_role_arn="arn:aws:iam::1:role/r",
                          sagemaker_image_uri="1.dkr.ecr.us-east-1.amazonaws.com/x:1", models_s3_uri="s3://o/models/")
        b = CloudBackends({"enhancer": "bedrock", "images": "bedrock", "video": "sagemaker"}, enhancer_model=None, settings=s)
        keys = b.key_source()
        print(keys.enhancer, keys.image("inpaint"), keys.clip("cogvideox-5b"))
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "bedrock:" in result.stdout and "sagemaker/cogvideox-5b@" in result.stdout


def test_the_layer_pins_come_from_pyproject() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from infra.build_layer import LAYER_PACKAGES, layer_requirements
    finally:
        sys.path.remove(str(ROOT))
    reqs = layer_requirements()
    assert [r.split("==")[0] for r in reqs] == list(LAYER_PACKAGES)
    assert all("==" in r for r in reqs)


def test_clips_that_all_wait_for_images_never_run_with_the_images(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, """\
        campaign: all-wait
        defaults: {video: {frames: 9}}
        assets: {sofa: assets/sofa.png}
        images:
          - {id: big, from: sofa, edits: [{upscale-fast: {}}]}
        videos:
          - id: v
            shots:
              - {prompt: a, image: big}
        """)
    first, later = schedule.clip_waves(plan, max_batch=8)
    assert first == ()
    assert [[b.id for b in w] for w in later] == [["w1-cogvideox-5b-i2v-01"]]


class _ManifestBucket:
    """The one S3 call the plan step makes for a manifest without assets."""

    def __init__(self, text: str) -> None:
        self.text = text

    def get_object(self, **_: object) -> dict[str, object]:
        import io

        return {"Body": io.BytesIO(self.text.encode())}


def large_plan_run(tmp_path: Path, *, videos: int, distributed_over: int | None) -> tuple[dict, Path]:
    """plan_run on a generated campaign of `videos` one-shot videos: 3 jobs each (enhance, clip, video)."""
    shots = "\n".join(f"  - {{id: v{i:04d}, shots: [{{prompt: 'Shot number {i}.'}}]}}" for i in range(videos))
    text = f"campaign: large-launch\ndefaults: {{video: {{frames: 9, steps: 2}}}}\nvideos:\n{shots}\n"
    settings = CloudSettings(enhancer="passthrough", images="local", video="preview", clips_per_batch=8)
    out = tmp_path / "out"
    event = PlanEvent(ManifestSource("in", "manifests/large.yaml"), run_id="large-run", started=0.0,
                      distributed_over=distributed_over)
    summary = plan_run(event, store=LocalStore(out), s3=_ManifestBucket(text), settings=settings, workdir=tmp_path / "w")
    return summary, out


def test_a_large_plan_writes_its_stage_lists_to_s3_and_the_state_carries_only_a_summary(tmp_path: Path) -> None:
    summary, out = large_plan_run(tmp_path, videos=1000, distributed_over=None)  # default threshold: 500
    assert set(summary) == set(PLAN_SUMMARY_FIELDS)
    state = json.dumps(summary)
    assert len(state) < 2_000, len(state)  # 3,000 jobs, not one id in the state
    assert "v0001" not in state
    prefix = "runs/large-launch/large-run/"
    stages = summary["stages"]
    assert stages["enhance"] == {"mode": "distributed", "count": 1000, "key": prefix + "stages/enhance.json"}
    assert stages["clips"] == {"mode": "distributed", "count": 1000, "key": prefix + "stages/clips.json"}
    assert stages["videos"] == {"mode": "distributed", "count": 1000, "key": prefix + "stages/videos.json"}
    assert stages["images"] == {"mode": "inline", "count": 0} and stages["waiting_clips"] == {"mode": "inline", "count": 0}
    assert all(summary[k] == [] for k in ("enhance", "image_waves", "clip_batches", "clip_waves", "videos"))
    # the lists the Distributed Maps' ItemReaders read: every job once, in small items
    enhance = json.loads((out / stages["enhance"]["key"]).read_text())
    assert len(enhance) == 1000 and all(set(e) == {"job_id"} and e["job_id"].startswith("enhance:") for e in enhance)
    batches = json.loads((out / stages["clips"]["key"]).read_text())
    assert all(set(b) == {"batch", "jobs", "service"} and 1 <= len(b["jobs"]) <= 8 for b in batches)
    assert len({j for b in batches for j in b["jobs"]}) == 1000
    assert json.loads((out / stages["videos"]["key"]).read_text())[-1] == {"job_id": "video:v0999"}
    assert (out / prefix / "plan.json").is_file()


def test_small_stages_stay_inline_until_the_state_budgets_move_the_largest_to_s3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary, out = large_plan_run(tmp_path, videos=40, distributed_over=40)  # 40 jobs a stage: not over 40
    assert {s["mode"] for s in summary["stages"].values()} == {"inline"}
    assert len(summary["enhance"]) == 40 and not (out / "runs/large-launch/large-run/stages").exists()
    # past the inline jobs budget (the history's 25,000 events), the largest stages go distributed first
    monkeypatch.setattr(rundoc, "INLINE_JOBS_BUDGET", 50)
    summary, _ = large_plan_run(tmp_path, videos=40, distributed_over=500)
    modes = {name: s["mode"] for name, s in summary["stages"].items() if s["count"]}
    assert sorted(modes.values()) == ["distributed", "distributed", "inline"], modes  # 40 inline jobs <= 50
    [inline] = [name for name, mode in modes.items() if mode == "inline"]
    assert summary["stages"][inline] == {"mode": "inline", "count": 40}


def test_a_manifest_may_only_name_enhancer_models_the_stack_can_invoke() -> None:
    from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL
    settings = CloudSettings.from_env({"CAMPAIGN_ENHANCER": "bedrock",
                                       "CAMPAIGN_ALLOWED_ENHANCER_MODELS": "us.anthropic.claude-sonnet-4-5, other"})
    assert _enhancer_model_problem(DEFAULT_ENHANCER_MODEL, settings) is None
    assert _enhancer_model_problem("us.anthropic.claude-sonnet-4-5", settings) is None
    problem = _enhancer_model_problem("anthropic.claude-v2", settings)
    assert problem and "not enabled in this deployment" in problem and "allowed_enhancer_models" in problem
    assert _enhancer_model_problem("anything", CloudSettings.from_env({"CAMPAIGN_ENHANCER": "passthrough"})) is None
