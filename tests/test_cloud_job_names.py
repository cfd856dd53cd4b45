"""Processing job names are unique per account and Region (SageMaker never reuses one): two runs of one
campaign preparing the same clip batch in the same second must get two names, each within 63 characters."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fake_aws.cloud import INPUT_BUCKET, Cloud, cloud_for_tasks

from tasks import enhance as enhance_task
from tasks import plan as plan_task
from tasks import prepare_batch as prepare_task

LONG = "a-campaign-name-as-long-as-the-manifest-allows-x"  # 48 characters, the manifest's maximum
MANIFEST = textwrap.dedent(f"""\
    campaign: {LONG}
    defaults:
      video: {{model: cogvideox-5b, steps: 2, seed: 7, frames: 9}}
    videos:
      - id: intro
        shots:
          - prompt: A bee on a flower.
    """)


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FrozenClock:  # type: ignore[override]
        return cls(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)  # every request checked against its service model (fake_aws/validate.py)


def test_two_runs_preparing_one_batch_in_the_same_second_get_different_names(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.cloud.batches as batches

    monkeypatch.setattr(batches, "datetime", FrozenClock)  # both prepare in the same second
    put = cloud.s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/long.yaml", Body=MANIFEST.encode())
    source = {"bucket": INPUT_BUCKET, "key": "manifests/long.yaml", "version_id": put["VersionId"]}
    names = []
    for run_id in (f"{LONG}-0123456789abcdef", f"{LONG}-fedcba9876543210"):
        summary = plan_task.handler({"source": source, "run_id": run_id, "started": 1772355600.0})
        for job_id in summary["enhance"]:  # the clip waits on its enhanced prompt
            enhance_task.handler({"job_id": job_id, "run": summary["ref"]})
        [batch] = summary["clip_batches"]
        prepared = prepare_task.handler({**batch, "run": summary["ref"]})
        assert prepared["render"] is True, (summary, prepared)
        names.append(prepared["request"]["ProcessingJobName"])
    assert names[0] != names[1]
    assert all(len(n) <= 63 and n.endswith("-20260301090000") for n in names), names
