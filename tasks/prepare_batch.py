"""Lambda `Prepare clip batch` (and `Prepare Ray2 batch`): a SageMaker batch's jobs file, start images and
processing job request, or a Luma Ray2 batch's StartAsyncInvoke requests (the event's `service` says which)."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.batches import prepare_batch
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return prepare_batch(event, store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                    workdir=work)
