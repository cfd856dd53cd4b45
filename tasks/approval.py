"""Lambda `Await approval` (invoked with `.waitForTaskToken`): the held report, the task token stored under the run,
a notification saying what to review and how to answer. The state waits until the token is answered."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.approval_step import ApprovalEvent, request_approval
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings = _runtime.settings()
    return request_approval(ApprovalEvent.from_event(event), store=_runtime.output_store(), settings=settings,
                            sns=_runtime.client("sns") if settings.notify_topic_arn else None,
                            secrets=_runtime.client("secretsmanager") if settings.webhook_secret_id else None)
