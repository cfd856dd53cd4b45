"""Lambda `Collect clip batch` (and `Collect Ray2 batch`): the processing job's clips, or the Ray2 jobs' clips,
into the cache, one result per clip (also after a failed render or job, whose error the clip then carries)."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.batches import collect_batch
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return collect_batch(event, store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                    workdir=work)
