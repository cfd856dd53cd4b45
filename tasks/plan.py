"""Lambda `Plan campaign`: manifest in S3 -> validated plan in the output bucket -> the ids the state carries."""

from __future__ import annotations

from typing import Any

from pipeline.cloud import plan_run
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return plan_run(event["source"], run_id=event["run_id"], started=event["started"],
                        store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                        workdir=work)
