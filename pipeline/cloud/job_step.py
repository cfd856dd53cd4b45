"""Lambda steps `Enhance prompt`, `Edit image`, `Speak utterance`, `Assemble video`: one job by the local runner's
task function, its result recorded in S3."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.cloud.events import JobEvent
from pipeline.cloud.names import RunRef, result_key
from pipeline.cloud.rundoc import load_run
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import TransientError
from pipeline.plan.jobs import JobKind
from pipeline.storage.store import Store
from pipeline.tasks import JobResult, TaskFunction, run_task


def run_job_step(event: JobEvent, *, kind: JobKind, task: TaskFunction, store: Store, s3: Any,
                 settings: CloudSettings, workdir: Path, also: Mapping[str, TaskFunction] | None = None,
                 polly: Any = None) -> dict[str, Any]:
    """Run one enhance, image, voice or video job with its task function (the handler passes the one of its kind,
    so a light Lambda never imports another kind's modules) and record its result; `also` holds the other kinds
    the same step runs (the enhance step's translate jobs). A retryable failure (TransientError and
    its kinds) is raised again as the exception it was, so the state's Retry (which matches on its class
    name) backs off and tries again; any other failure is a result like a success. `polly`: the Polly client of
    a voice job's backend (None: boto3's, made on its first request)."""
    run = load_run(store, event.run)
    job = run.plan.job(event.job_id)
    tasks: dict[str, TaskFunction] = {kind: task, **(also or {})}
    if job.kind not in tasks:
        raise ValueError(f"job {event.job_id!r} is a {job.kind} job; this task runs {' and '.join(tasks)} jobs")
    context = run.task_context(store=store, settings=settings, s3=s3, workdir=workdir, polly=polly)
    result = run_task(job, context, tasks[job.kind])
    if isinstance(result.exception, TransientError):
        raise result.exception
    save_result(store, event.run, result)
    return {"job_id": job.id, "status": result.status}


def save_result(store: Store, ref: RunRef, result: JobResult) -> None:
    store.write_bytes(result_key(ref, result.job_id), json.dumps(result.to_dict(), default=str).encode())
