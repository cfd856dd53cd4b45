"""Lambda `Assemble video`: one video's assembly, by the same task function as `campaign run`."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.events import JobEvent
from pipeline.cloud.job_step import run_job_step
from pipeline.tasks.videos import run_video
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return run_job_step(JobEvent.from_event(event), kind="video", task=run_video,
                            store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                            workdir=work)
