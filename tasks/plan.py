"""Lambda `Plan campaign`: manifest in S3 -> validated plan in the output bucket -> the ids the state carries
(or, for a stage over the Distributed Map threshold, where its item list is in S3)."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.events import PlanEvent
from pipeline.cloud.plan_step import plan_run
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return plan_run(PlanEvent.from_event(event), store=_runtime.output_store(), s3=_runtime.client("s3"),
                        settings=_runtime.settings(), workdir=work)
