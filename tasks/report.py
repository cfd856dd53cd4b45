"""Lambda `Write report`: every job's result from S3 -> report.json and report.html (runs on every path), and the
run's summary to the stack's topic and the webhook (its signing secret from Secrets Manager)."""

from __future__ import annotations

import time
from typing import Any

from pipeline.cloud.events import FinishEvent
from pipeline.cloud.report_step import finish_run
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings = _runtime.settings()
    return finish_run(FinishEvent.from_event(event, now=time.time()), store=_runtime.output_store(), settings=settings,
                      sns=_runtime.client("sns") if settings.notify_topic_arn else None,
                      secrets=_runtime.client("secretsmanager") if settings.webhook_secret_id else None)
