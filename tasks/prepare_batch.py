"""Lambda `Prepare clip batch`: jobs file and start images to S3, and the processing job request to run."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.batches import prepare_clip_batch
from pipeline.cloud.events import PrepareBatchEvent
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return prepare_clip_batch(PrepareBatchEvent.from_event(event), store=_runtime.output_store(),
                                  s3=_runtime.client("s3"), settings=_runtime.settings(), workdir=work)
