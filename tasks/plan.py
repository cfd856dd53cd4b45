"""Lambda `Plan campaign`: manifest in S3 -> validated plan in the output bucket -> the ids the state carries
(or, for a stage over the Distributed Map threshold, where its item list is in S3)."""

from __future__ import annotations

from typing import Any

from pipeline.cloud import plan_run
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    limits = event.get("limits") or {}
    with _runtime.scratch() as work:
        return plan_run(event["source"], run_id=event["run_id"], started=event["started"],
                        store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                        workdir=work, distributed_over=limits.get("distributed_over"))
