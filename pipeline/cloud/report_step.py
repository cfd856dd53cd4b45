"""Lambda step `Write report`: every job's result from S3 (or the error that stood in for it) -> report.json and
report.html, by the local runner's writer. Runs on every path of the state machine."""

from __future__ import annotations

import json
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.cloud.contract import PARALLEL_S3_READS
from pipeline.cloud.events import FinishEvent, StepError
from pipeline.cloud.failures import describe_failure
from pipeline.cloud.names import RunRef, slug
from pipeline.cloud.rundoc import load_run
from pipeline.cloud.settings import CloudSettings
from pipeline.cost import estimate_cost
from pipeline.jobs import Job
from pipeline.plan import Plan
from pipeline.report import write_failed, write_run
from pipeline.store import Store
from pipeline.tasks import JobResult


def finish_run(event: FinishEvent, *, store: Store, settings: CloudSettings) -> dict[str, Any]:
    """Collect every job's result from S3 (or the error that stood in for it) and write the report with the
    local runner's writer. Runs on every path: a whole stage that failed leaves its jobs `skipped`."""
    run_id, started, summary = event.run_id, event.started, event.summary
    stage_error = describe_failure(event.error) if event.error else None
    if summary is None or not summary.get("valid"):
        # The plan step itself failed (an invalid manifest never gets here: it ends the execution).
        source = event.source
        key = str(source.get("key") or "manifest")
        uri = f"s3://{source.get('bucket')}/{key}"
        name, message = stage_error or ("JobFailed", "the run was not planned")
        report = write_failed(campaign=slug(posixpath.splitext(posixpath.basename(key))[0], 48), manifest=uri,
                              error=name, message=f"the run could not be planned: {message}", store=store,
                              run_id=run_id, started=started)
    else:
        ref = RunRef.from_dict(summary["ref"])
        run = load_run(store, ref)
        results = collect_results(store, ref, run.plan, stage_error=stage_error)
        report = write_run(run.plan, results, store, run_id=ref.run_id, started=run.started, finished=time.time(),
                           cost=_cost(run.plan, settings))
    return {"status": report["status"], "report": store.location(f"{report['prefix']}/report.json"),
            "jobs": report["jobs"], "errors": len(report["errors"])}


def collect_results(store: Store, ref: RunRef, plan: Plan, *, stage_error: tuple[str, str] | None) -> list[JobResult]:
    """One JobResult per job of the plan, in plan order, from what the tasks (or the ASL's failure
    records) left under results/."""
    prefix = f"{ref.prefix}/results/"
    by_job: dict[str, JobResult] = {}
    batch_failures: dict[str, tuple[str, str]] = {}
    keys = [k for k in store.list_keys(prefix) if k.endswith(".json")]
    with ThreadPoolExecutor(max_workers=PARALLEL_S3_READS) as pool:  # thousands of small reads for a big run
        docs = list(pool.map(lambda k: json.loads(store.read_bytes(k)), keys))
    for key, doc in zip(keys, docs, strict=True):
        failure = StepError.from_state(doc.get("error"))
        if key.startswith(prefix + "batches/"):
            for job_id in doc.get("jobs", []):
                batch_failures[job_id] = describe_failure(failure or StepError("JobFailed", ""))
        elif failure is not None:  # written by a `Record ... failure` state: the task itself failed
            job = _job_or_none(plan, str(doc.get("job_id")))
            if job is not None:
                name, message = describe_failure(failure)
                by_job[job.id] = JobResult(job.id, job.kind, job.key, "failed", None, 0.0, name, message)
        else:
            result = JobResult.from_dict(doc)
            by_job[result.job_id] = result
    results: list[JobResult] = []
    for job in plan.jobs:
        if job.id in by_job:
            results.append(by_job[job.id])
        elif job.id in batch_failures:
            name, message = batch_failures[job.id]
            results.append(JobResult(job.id, job.kind, job.key, "failed", None, 0.0, name, message))
        else:
            why = f"{stage_error[0]}: {stage_error[1]}" if stage_error else "its step recorded no result"
            results.append(JobResult(job.id, job.kind, job.key, "skipped", None, 0.0, "NotRun",
                                     f"the execution ended before this job ran ({why})"))
    return results


def _job_or_none(plan: Plan, job_id: str) -> Job | None:
    try:
        return plan.job(job_id)
    except KeyError:
        return None


def _cost(plan: Plan, settings: CloudSettings) -> dict[str, Any]:
    try:
        return estimate_cost(plan, instance_type=settings.instance_type)
    except ValueError as exc:  # an instance type without a price: the report says so instead of a number
        return {"note": f"no cost estimate: {exc}"}


