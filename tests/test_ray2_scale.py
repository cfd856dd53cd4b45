"""40 Luma Ray2 clips, each taking the maximum number of polls, through the real ASL under moto: the run ends
SUCCEEDED with a report; the polls sit in the Ray2 batches' child executions, never in the parent's history; each
batch's jobs run one at a time (the Ray2 quota of 1) and every execution's history stays within the worst case
that pipeline/cloud/history.py computes from the ASL."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_aws.cloud import INPUT_BUCKET, Cloud, lambda_env, moto_cloud
from fake_bedrock import FakeBedrock
from fake_bedrock_async import AsyncVideoService, ok

from pipeline.cloud.contract import HISTORY_BUDGET
from pipeline.cloud.history import PARENT, RunShape, run_events
from pipeline.cloud.quotas import ray2_batch_size, ray2_child_events
from tasks import _runtime

CAMPAIGN = "forty-ray2"
CLIPS = 40
MAX_POLLS = 2  # tiny: each clip answers InProgress once and Completed on its second, last allowed, poll
NAMES = [f"n{i:02d}" for i in range(CLIPS)]
# one video of 40 independent shots (one assembly), square 540p: the smallest clip Ray2 makes (5 s)
MANIFEST = textwrap.dedent(f"""\
    campaign: {CAMPAIGN}
    videos:
      - id: forty
        shots:
    """) + "".join(f'      - {{prompt: "A sofa, take {n}.", model: luma-ray2, resolution: 540p, aspect_ratio: "1:1"}}\n'
                   for n in NAMES)


class OneClipService(AsyncVideoService):
    """The fake Bedrock, rendering the 5 s animatic once and writing the same MP4 for every job (the clips'
    pixels do not matter here; the state machine's handling of 40 jobs does)."""

    def __init__(self) -> None:
        super().__init__(s3=None)
        self._bytes: bytes | None = None

    def _write_clip(self, inv: Any) -> str:
        if self._bytes is None:
            uri = super()._write_clip(inv)
            bucket, _, key = uri[len("s3://"):].partition("/")
            self._bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return uri
        out = inv.body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].rstrip("/")
        bucket, _, prefix = out[len("s3://"):].partition("/")
        key = f"{prefix}/{inv.arn.rsplit('/', 1)[-1]}/output.mp4".lstrip("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=self._bytes)
        return f"s3://{bucket}/{key}"


@pytest.fixture
def cloud(offline_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", fake.url)  # the plan step's model check
        service = OneClipService()
        fake.default = service.reply
        for name, value in lambda_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CAMPAIGN_VIDEO", "bedrock")
        monkeypatch.setenv("CAMPAIGN_RAY2_POLL_S", "0")
        monkeypatch.setenv("CAMPAIGN_RAY2_MAX_POLLS", str(MAX_POLLS))
        _runtime.reset()
        try:
            with moto_cloud() as c:
                service.s3, c.bedrock = c.s3, service
                service.by_prompt.update({f"A sofa, take {n}.": ok(polls=MAX_POLLS - 1) for n in NAMES})
                yield c
        finally:
            _runtime.reset()
        assert service.problems == []  # every Bedrock request matched botocore's model


def history(cloud: Cloud, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in cloud.sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events += page["events"]
    return events


def test_forty_ray2_clips_at_the_poll_limit_succeed_with_the_polls_in_child_executions(
        cloud: Cloud, tmp_path: Path) -> None:
    path = tmp_path / f"{CAMPAIGN}.yaml"
    path.write_text(MANIFEST, encoding="utf-8")
    cloud.s3.upload_file(str(path), INPUT_BUCKET, f"manifests/{path.name}")
    run = cloud.run(f"manifests/{path.name}", name=f"{CAMPAIGN}-1", timeout_s=300)
    assert run.status == "SUCCEEDED", run.described
    report = cloud.json(f"runs/{CAMPAIGN}/{CAMPAIGN}-1/report.json")
    assert report["status"] == "succeeded" and report["errors"] == []
    clips = [c for v in report["videos"] for c in v["clips"]]
    assert len(clips) == CLIPS and {c["status"] for c in clips} == {"executed"}
    jobs = list(cloud.bedrock.invocations.values())
    assert len(jobs) == CLIPS and {j.polls for j in jobs} == {MAX_POLLS}  # every clip polled to the limit

    # the parent: the Ray2 stages ran as Distributed Maps, one Map Run per Ray2 batch (one batch per wave: wave 0's
    # beside the images, the others each a wave of waiting clips); not one start, wait or poll of a Ray2 job
    parent = history(cloud, run.described["executionArn"])
    states = [e["stateEnteredEventDetails"]["name"] for e in parent if "stateEnteredEventDetails" in e]
    assert not [s for s in states if "Ray2" in s], sorted({s for s in states if "Ray2" in s})
    size = ray2_batch_size(8, MAX_POLLS)
    batches = -(-CLIPS // size)
    assert states.count("Render clips (distributed)") == 1
    assert states.count("Render clip wave (distributed)") == batches - 1
    map_runs = cloud.sfn.list_map_runs(executionArn=run.described["executionArn"])["mapRuns"]
    assert len(map_runs) == batches
    # and the parent's history is within the worst case history.py computes from the ASL for this run
    shape = RunShape(distributed=frozenset({"clips", "waiting_clips"}), enhance=CLIPS, image_waves=(), clip_batches=1,
                     clip_waves=(1,) * (batches - 1), videos=1, ray2_batch=size, max_polls=MAX_POLLS, render_attempts=3)
    worst = run_events(shape)
    assert len(parent) <= worst[PARENT] < HISTORY_BUDGET
    assert worst["Render clips (distributed)"] == ray2_child_events(size, MAX_POLLS) <= HISTORY_BUDGET
