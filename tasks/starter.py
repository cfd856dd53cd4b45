"""Lambda behind the EventBridge rule on the input bucket: a new manifest version starts its execution
(once, by its deterministic name) and registers its schedule; a deleted manifest loses its schedule."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.trigger import handle_manifest_event
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle_manifest_event(event, s3=_runtime.client("s3"), sfn=_runtime.client("stepfunctions"),
                                 scheduler=_runtime.client("scheduler"), settings=_runtime.settings())
