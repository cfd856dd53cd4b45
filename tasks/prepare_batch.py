"""Lambda `Prepare clip batch`: jobs file and start images to S3, and the processing job request to run."""

from __future__ import annotations

from typing import Any

from pipeline.cloud import RunRef, prepare_clip_batch
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return prepare_clip_batch(event["batch"], event["jobs"], RunRef.from_dict(event["run"]),
                                  store=_runtime.output_store(), s3=_runtime.client("s3"),
                                  settings=_runtime.settings(), workdir=work, attempt=int(event.get("attempt") or 1))
