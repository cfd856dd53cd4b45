"""The `bedrock` video backend against a fake Bedrock over real HTTP and moto's S3 server: start, poll, download,
verify; throttling retried with jitter, failures per clip; and a campaign mixing Ray2 and CogVideoX shots run
end to end with `campaign run --video bedrock+preview`."""

from __future__ import annotations

import json
import random
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import imageio_ffmpeg
import pytest
from fake_bedrock import FakeBedrock, error, throttle
from fake_bedrock_async import AsyncVideoService, failed, ok, too_short
from moto.server import ThreadedMotoServer

from pipeline.backends.base import ClipRequest
from pipeline.backends.bedrock import RetryPolicy
from pipeline.backends.video_bedrock import BedrockVideoBackend, client_request_token, start_request
from pipeline.catalog import RAY2, Ray2Settings
from pipeline.cli import main as campaign_cli

BUCKET = "ray2-out"
OUTPUT = f"s3://{BUCKET}/clips"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(offline_aws: None, moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeBedrock, AsyncVideoService]]:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", fake.url)
        service = AsyncVideoService(s3)
        fake.default = service.reply
        yield fake, service
    assert service.problems == []  # every request matched botocore's model and the documented body


def ray2_request(key: str, prompt: str = "A bee on a flower.", settings: Ray2Settings | None = None) -> ClipRequest:
    s = settings or Ray2Settings(5, "540p", "16:9", False)
    return ClipRequest(key=key, model=RAY2.name, prompt=prompt, frames=s.frames, fps=s.fps, width=s.width,
                       height=s.height, steps=50, guidance=6.0, seed=1, ray2=s)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:  # no real waiting: the fake answers at once
        self.calls.append(seconds)


def backend(sleep: Sleeps, **kw: object) -> BedrockVideoBackend:
    return BedrockVideoBackend(output_s3_uri=OUTPUT, poll_s=2.0, max_poll_s=5.0, sleep=sleep, rng=random.Random(7),
                               retry=RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=8.0), log=lambda _: None,
                               **kw)  # type: ignore[arg-type]


def test_start_poll_download_and_verify(aws: tuple[FakeBedrock, AsyncVideoService], tmp_path: Path) -> None:
    fake, service = aws
    service.outcomes.extend([ok(polls=3)])
    settings = Ray2Settings(9, "720p", "9:16", True)
    sleeps = Sleeps()
    out = backend(sleeps).render([ray2_request("k1", settings=settings)], tmp_path)[0]
    assert out.error is None and out.path is not None, out.error
    # what the service received: the documented body, the output under the clip's key, the derived token
    start = next(r for r in fake.requests if r.operation == "start-async-invoke")
    assert start.body == {"modelId": "luma.ray-v2:0",
                          "modelInput": {"prompt": "A bee on a flower.", "aspect_ratio": "9:16", "loop": True,
                                         "duration": "9s", "resolution": "720p"},
                          "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"{OUTPUT}/k1"}},
                          "clientRequestToken": start.body["clientRequestToken"]}
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", start.body["clientRequestToken"])  # botocore's pattern
    assert [r.operation for r in fake.requests].count("get-async-invoke") == 4  # 3x InProgress, then Completed
    assert sleeps.calls == [2.0, 3.0, 4.5, 5.0]  # the poll interval grows by half, up to its ceiling
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out.path))
    assert seconds == pytest.approx(9.0, abs=0.05) and frames == 216
    assert out.extra["measured"]["width"] == 720 and out.extra["measured"]["height"] == 1280
    assert out.extra["output"].startswith(f"{OUTPUT}/k1/inv") and out.extra["output"].endswith("/output.mp4")


def test_throttled_start_is_retried_with_jitter_and_keeps_its_token(aws: tuple[FakeBedrock, AsyncVideoService],
                                                                      tmp_path: Path) -> None:
    fake, service = aws
    fake.script(throttle(), throttle())
    sleeps = Sleeps()
    out = backend(sleeps).render([ray2_request("k2")], tmp_path)[0]
    assert out.error is None, out.error
    starts = [r for r in fake.requests if r.operation == "start-async-invoke"]
    assert len(starts) == 3 and len({r.body["clientRequestToken"] for r in starts}) == 1  # one attempt, one token
    backoff = sleeps.calls[:2]  # full jitter: U(0, 1), then U(0, 2)
    assert 0 <= backoff[0] <= 1.0 and 0 <= backoff[1] <= 2.0 and backoff[0] != backoff[1]
    assert len(service.invocations) == 1


def test_a_start_sent_twice_is_one_job(aws: tuple[FakeBedrock, AsyncVideoService]) -> None:
    _, service = aws
    params = start_request(ray2_request("k3"), output_s3_uri=OUTPUT, attempt="run-1")
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    first = client.start_async_invoke(**params)["invocationArn"]
    second = client.start_async_invoke(**params)["invocationArn"]
    assert first == second and len(service.invocations) == 1
    assert params["clientRequestToken"] == client_request_token("k3", "run-1")


def test_a_clip_whose_job_failed_is_a_new_job_in_the_next_run(aws: tuple[FakeBedrock, AsyncVideoService],
                                                             tmp_path: Path) -> None:
    """Issue 23 item 4, locally: the token is the clip's key and the attempt, so the next run of a clip whose
    job failed starts a new job instead of being handed the failed invocation again."""
    fake, service = aws
    service.outcomes.append(failed("The model hit an internal error."))
    first = backend(Sleeps()).render([ray2_request("k4")], tmp_path / "a")[0]
    assert first.error is not None
    again = backend(Sleeps()).render([ray2_request("k4")], tmp_path / "b")[0]
    assert again.error is None and again.path is not None, again.error
    tokens = [r.body["clientRequestToken"] for r in fake.requests if r.operation == "start-async-invoke"]
    assert len(tokens) == 2 and tokens[0] != tokens[1] and len(service.invocations) == 2


def test_failures_are_per_clip(aws: tuple[FakeBedrock, AsyncVideoService], tmp_path: Path) -> None:
    fake, service = aws
    # start order: bad (rejected by the API), filtered, broken, short, good
    fake.script(error(400, "ValidationException", "prompt rejected"))
    service.outcomes.extend([failed("The output was blocked by our content filters."),
                             failed("Internal model error", polls=2), too_short(2), ok()])
    requests = [ray2_request(k, prompt=f"clip {k}") for k in ("bad", "filtered", "broken", "short", "good")]
    outcomes = {o.key: o for o in backend(Sleeps()).render(requests, tmp_path)}
    assert outcomes["bad"].error_type == "JobFailed" and "request rejected as invalid" in (outcomes["bad"].error or "")
    assert outcomes["filtered"].error_type == "ContentFiltered"
    assert outcomes["broken"].error_type == "JobFailed" and "Internal model error" in (outcomes["broken"].error or "")
    assert outcomes["short"].error_type == "JobFailed" and "lasts 2.00 s, asked 5 s" in (outcomes["short"].error or "")
    assert outcomes["good"].error is None and outcomes["good"].path is not None
    assert not (tmp_path / "short.mp4").exists() or outcomes["short"].path is None


def test_a_job_that_never_ends_times_out(aws: tuple[FakeBedrock, AsyncVideoService], tmp_path: Path) -> None:
    _, service = aws
    service.outcomes.append(ok(polls=10**6))
    sleeps = Sleeps()
    slow = backend(sleeps, max_wait_s=0.0)
    out = slow.render([ray2_request("k4")], tmp_path)[0]
    assert out.error_type == "JobFailed" and "still InProgress after 0 s" in (out.error or "")


def test_campaign_mixing_ray2_and_cogvideox_runs_end_to_end(aws: tuple[FakeBedrock, AsyncVideoService],
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, service = aws
    monkeypatch.setenv("CAMPAIGN_BEDROCK_POLL_S", "0.01")
    manifest = tmp_path / "mixed.yaml"
    manifest.write_text(textwrap.dedent("""\
        campaign: mixed-models
        defaults:
          video: {model: cogvideox-5b, steps: 2, frames: 9}
        videos:
          - id: teaser
            transition: {crossfade: 0.5}
            shots:
              - prompt: A bee on a flower.
              - prompt: A sofa in a loft, slow orbit.
                model: luma-ray2
                resolution: 540p
        """), encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", str(manifest), "--out", str(out), "--quiet", "--video", "bedrock+preview", "--bedrock-output", OUTPUT]
    assert campaign_cli(args) == 0
    latest = json.loads((out / "runs" / "mixed-models" / "latest.json").read_text())
    report = json.loads((out / "runs" / "mixed-models" / latest["report"]).read_text())
    video = report["videos"][0]
    assert [c["backend"] for c in video["clips"]] == ["preview", "bedrock"]
    # the video is normalised to its first clip (720x480 at 8 fps): 9/8 s + 5 s - 0.5 s of crossfade
    assert (video["width"], video["height"]) == (720, 480)
    assert video["duration_s"] == pytest.approx(9 / 8 + 5 - 0.5, abs=0.01)
    assert len(service.invocations) == 1
    # run again: everything cached, Bedrock is not called
    before = len(fake.requests)
    assert campaign_cli(args) == 0
    assert len(fake.requests) == before


def test_plan_check_models_reports_lifecycle_and_access_located(aws: tuple[FakeBedrock, AsyncVideoService],
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    from fake_bedrock_async import Lifecycle

    from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL

    fake, service = aws
    past, future = datetime(2026, 1, 1, tzinfo=UTC).timestamp(), datetime(2099, 9, 30, tzinfo=UTC).timestamp()
    service.models.update({
        RAY2.model_id: Lifecycle(status="LEGACY", end_of_life=future),
        "stability.stable-fast-upscale-v1:0": Lifecycle(access="denied"),
        DEFAULT_ENHANCER_MODEL.removeprefix("us."): Lifecycle(status="LEGACY", end_of_life=past),
    })
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "sofa.png").write_bytes((Path(__file__).resolve().parents[1] / "manifests" / "assets"
                                                    / "sofa.png").read_bytes())
    manifest = tmp_path / "check.yaml"
    manifest.write_text(textwrap.dedent("""\
        campaign: check-models
        assets:
          sofa: assets/sofa.png
        images:
          - id: big
            from: sofa
            edits:
              - remove-background: {}
              - upscale-fast: {}
        videos:
          - id: v
            shots:
              - prompt: A bee.
                model: luma-ray2
        """), encoding="utf-8")
    code = campaign_cli(["plan", str(manifest), "--check-models", "--enhancer", "bedrock", "--images", "bedrock",
                         "--video", "bedrock+preview", "--bedrock-output", OUTPUT, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"{manifest}:13:9: warning: videos[0].shots[0]: luma.ray-v2:0 is Legacy (end of life 2099-09-30)" in err
    assert f"{manifest}:9:23: error: images[0].edits[1].upscale-fast: no access to stability.stable-fast-upscale-v1:0" in err
    assert f"{manifest}:13:9: error: videos[0].shots[0]: anthropic.claude-haiku-4-5-20251001-v1:0 reached its end of life on 2026-01-01" in err
    asked = sorted(r.model_id for r in fake.requests if r.operation == "get-foundation-model")
    assert asked == sorted([RAY2.model_id, "stability.stable-image-remove-background-v1:0",
                            "stability.stable-fast-upscale-v1:0", DEFAULT_ENHANCER_MODEL.removeprefix("us.")])
    assert not any(r.operation in ("start-async-invoke", "invoke", "converse") for r in fake.requests)  # nothing ran
