"""Lambda step `Write report`: every job's result from S3 (or the error that stood in for it) -> report.json and
report.html, by the local runner's writer. Runs on every path of the state machine."""

from __future__ import annotations

import json
import posixpath
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.cloud.contract import APPROVAL_EXPIRED_ERROR, APPROVAL_REJECTED_ERROR, PARALLEL_S3_READS
from pipeline.cloud.events import FinishEvent, StepError
from pipeline.cloud.failures import describe_failure
from pipeline.cloud.names import RunRef, slug
from pipeline.cloud.rundoc import load_run
from pipeline.cloud.settings import CloudSettings
from pipeline.cloud.webhook_step import send_cloud_webhook, webhook_url
from pipeline.errors import ApprovalUnavailable
from pipeline.plan.build import Plan
from pipeline.plan.cost import estimate_cost
from pipeline.plan.jobs import Job
from pipeline.report.summary import Notification, publish, summarize
from pipeline.report.write import EXPIRED, REJECTED, restate_report, write_failed, write_run
from pipeline.run.approval import AWAITING, approval_section, read_record, write_record
from pipeline.run.approval import EXPIRED as RECORD_EXPIRED
from pipeline.storage.store import Store
from pipeline.tasks import JobResult

# How a run held at the approval gate ended -> its report's status
APPROVAL_ENDINGS = {APPROVAL_REJECTED_ERROR: REJECTED, APPROVAL_EXPIRED_ERROR: EXPIRED}


def finish_run(event: FinishEvent, *, store: Store, settings: CloudSettings, sns: Any | None = None,
               secrets: Any | None = None) -> dict[str, Any]:
    """Collect every job's result from S3 (or the error that stood in for it) and write the report with the
    local runner's writer, then notify the stack's topic and the webhook (the manifest's, else the stack's;
    `secrets` reads its signing secret). Runs on every path: a whole stage that failed leaves its jobs
    `skipped`; a run rejected or left unanswered at the approval gate ends `rejected` / `expired`."""
    manifest_webhook: str | None = None
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
        manifest_webhook = run.notify_webhook
        results = collect_results(store, ref, run.plan, stage_error=stage_error)
        ending = APPROVAL_ENDINGS.get(event.error.error) if event.error else None
        approval, why = _approval_ended(store, ref, ending)
        report = write_run(run.plan, results, store, run_id=ref.run_id, started=run.started, finished=time.time(),
                           cost=run_cost(run.plan, settings), budget=load_budget(store, ref), status=ending,
                           approval=approval)
        if ending and why:  # the answer's reason first among the errors, as `campaign reject` does locally
            report = restate_report(store, ref.prefix, status=ending, error=why)
    location = store.location(f"{report['prefix']}/report.json")
    summary_message = summarize(report, report_location=store.location(f"{report['prefix']}/report.html"))
    notified = notify(settings, sns, summary_message)
    send_cloud_webhook(url=webhook_url(manifest_webhook, settings), report=report, notification=summary_message,
                       store=store, settings=settings, secrets=secrets)
    return {"status": report["status"], "report": location, "jobs": report["jobs"], "errors": len(report["errors"]),
            "notified": notified}


def notify(settings: CloudSettings, sns: Any | None, notification: Notification) -> bool:
    """Publish when the stack has a topic. A notification that cannot be sent is logged, never the run's failure:
    the report is written, and the execution's own status change still reaches the topic (EventBridge)."""
    if not settings.notify_topic_arn or sns is None:
        return False
    try:
        publish(sns, topic_arn=settings.notify_topic_arn, notification=notification)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"notification not sent: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return True


def load_budget(store: Store, ref: RunRef) -> dict[str, Any] | None:
    """The plan step's budget check (runs/.../budget.json), for the report's budget section."""
    key = f"{ref.prefix}/budget.json"
    return json.loads(store.read_bytes(key)) if store.exists(key) else None


def _approval_ended(store: Store, ref: RunRef, ending: str | None) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """A held run's record for the report (an unanswered one is marked expired now that the wait ended) and,
    for a run that ended at the gate, the error entry that says who rejected it and why, or that it expired."""
    try:
        record = read_record(store, ref.campaign, ref.run_id)
    except ApprovalUnavailable:
        return None, None
    if ending == EXPIRED and record.status == AWAITING:
        record = record.answer(status=RECORD_EXPIRED, by=None, reason="no answer before the approval timeout")
        write_record(store, record)
    why = None
    if ending == REJECTED:
        why = {"job": "approval", "error": "Rejected",
               "message": f"rejected by {record.answered_by}" + (f": {record.reason}" if record.reason else "")}
    elif ending == EXPIRED:
        why = {"job": "approval", "error": "Expired",
               "message": f"no answer between {record.requested} and {record.expires or 'the approval timeout'}"}
    return approval_section(record), why


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


def run_cost(plan: Plan, settings: CloudSettings) -> dict[str, Any]:
    try:
        return estimate_cost(plan, instance_type=settings.instance_type)
    except ValueError as exc:  # an instance type without a price: the report says so instead of a number
        return {"note": f"no cost estimate: {exc}"}


