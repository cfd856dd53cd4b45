"""Lambda `Enhance prompt`: one prompt enhancement or translation job, by the same task functions as `campaign run`."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.events import JobEvent
from pipeline.cloud.job_step import run_job_step
from pipeline.tasks.enhance import run_enhance
from pipeline.tasks.translate import run_translate
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return run_job_step(JobEvent.from_event(event), kind="enhance", task=run_enhance,
                            store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                            workdir=work, also={"translate": run_translate})
