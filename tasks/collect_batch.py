"""Lambda `Collect clip batch`: the processing job's clips into the cache, one result per clip (also after a
failed render, whose error each clip then carries)."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.batches import collect_clip_batch
from pipeline.cloud.events import CollectBatchEvent
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return collect_clip_batch(CollectBatchEvent.from_event(event), store=_runtime.output_store(), s3=_runtime.client("s3"),
                                  settings=_runtime.settings(), workdir=work)
