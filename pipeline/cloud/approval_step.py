"""Lambda step `Await approval` (a `.waitForTaskToken` task): the run's images and prompts are done -> the held
report, the task token stored beside it, a notification; and `campaign approve` / `reject`, which answer it.

The callback pattern: the state passes `$$.Task.Token` to this step and waits until SendTaskSuccess or
SendTaskFailure returns it, or its TimeoutSeconds pass (then `States.Timeout`) ("Wait for a Callback with Task
Token", https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html#connect-wait-token;
SendTaskSuccess / SendTaskFailure in the API reference, https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.cloud.contract import APPROVAL_REJECTED_ERROR, APPROVAL_TOKENS_PREFIX, ERROR_MESSAGE_MAX
from pipeline.cloud.events import epoch, need, need_str
from pipeline.cloud.names import RunRef, execution_console_url
from pipeline.cloud.report_step import collect_results, load_budget, notify, run_cost
from pipeline.cloud.rundoc import load_run
from pipeline.cloud.settings import CloudSettings
from pipeline.cloud.webhook_step import send_cloud_webhook, webhook_url
from pipeline.errors import ApprovalUnavailable
from pipeline.report.summary import Notification, summarize
from pipeline.run.approval import APPROVED, REJECTED, ApprovalRecord, hold_for_approval, read_record, write_record
from pipeline.storage.store import Store


@dataclass(frozen=True)
class ApprovalEvent:
    """`Await approval`: the callback token, the run, and how long the state waits (seconds)."""

    token: str
    run: RunRef
    timeout_s: int
    started: float | None = None
    execution: str | None = None  # the execution's ARN ($$.Execution.Id): the notification links to it

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> ApprovalEvent:
        timeout = need(d, "timeout_s")
        if not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"event field 'timeout_s' must be a positive integer, got {timeout!r}")
        started, execution = d.get("started"), d.get("execution")
        if execution is not None and not (isinstance(execution, str) and execution.startswith("arn:")):
            raise ValueError(f"event field 'execution' must be an execution ARN, got {execution!r}")
        return cls(need_str(d, "token"), RunRef.from_dict(need(d, "run")), timeout,
                   epoch(started) if started is not None else None, execution)


def request_approval(event: ApprovalEvent, *, store: Store, settings: CloudSettings, sns: Any | None,
                     secrets: Any | None = None) -> dict[str, Any]:
    """Write the held run's report (every enhanced prompt and edited image, the remaining estimate) and its
    record with the task token, then tell the operator what to review and how to answer (the topic, and the
    webhook with the same summary: never the token)."""
    run = load_run(store, event.run)
    results = [r for r in collect_results(store, event.run, run.plan, stage_error=None) if r.kind in ("enhance", "image")]
    # The token answers the execution: it goes under approval-tokens/, which only this step and the CLI's user
    # read (README "The CLI user's permissions"), never into runs/ (the studio reads that) or the notification.
    store.write_bytes(approval_token_key(event.run.campaign, event.run.run_id), json.dumps({"task_token": event.token}).encode())
    report, record = hold_for_approval(
        run.plan, results, store, run_id=event.run.run_id, started=event.started or run.started,
        cost=run_cost(run.plan, settings), budget=load_budget(store, event.run), manifest=_manifest_uri(run.source),
        timeout_s=event.timeout_s, instance_type=settings.instance_type)
    message = approval_notification(report, record, bucket=settings.need("output_bucket"), store=store,
                                    run_link=execution_console_url(event.execution) if event.execution else None)
    notified = notify(settings, sns, message)
    send_cloud_webhook(url=webhook_url(run.notify_webhook, settings), report=report, notification=message, store=store,
                       settings=settings, secrets=secrets)
    return {"status": report["status"], "notified": notified}


def approval_token_key(campaign: str, run_id: str) -> str:
    """Where a held run's task token is kept: outside runs/ (which reports and the studio read)."""
    return f"{APPROVAL_TOKENS_PREFIX}{campaign}/{run_id}.json"


def read_token(store: Store, record: ApprovalRecord) -> str | None:
    key = approval_token_key(record.campaign, record.run_id)
    if store.exists(key):
        token = json.loads(store.read_bytes(key)).get("task_token")
        return str(token) if token else None
    return record.task_token  # a run held before the token moved out of the record


def approval_notification(report: Mapping[str, Any], record: ApprovalRecord, *, bucket: str, store: Store,
                          run_link: str | None = None) -> Notification:
    """What the operators' topic gets: the report, the run's link and the commands that answer. Never the task
    token: an email is read by whoever the topic reaches, and the token alone lets anyone answer."""
    prefix = f"runs/{record.campaign}/{record.run_id}"
    answer = f"{record.campaign} --run {record.run_id} --bucket {bucket}"
    actions = [
        f"approve: campaign approve {answer}",
        f"reject:  campaign reject {answer} --reason '...'",
    ]
    if run_link:
        actions.append(f"the run in the Step Functions console: {run_link}")
    return summarize(report, report_location=store.location(f"{prefix}/report.html"), actions=actions)


def answer_approval(store: Store, sfn: Any, *, campaign: str, run_id: str | None, approve: bool, by: str,
                    reason: str | None) -> ApprovalRecord:
    """`campaign approve|reject CAMPAIGN --bucket B`: answer the stored task token; the execution goes on to
    render (approved) or to its report, which ends it as `rejected`."""
    record = read_record(store, campaign, run_id)
    token = read_token(store, record)
    if not token:
        raise ApprovalUnavailable(f"run {record.run_id} of {campaign} has no task token (a local run? use --out)")
    answered = record.answer(status=APPROVED if approve else REJECTED, by=by, reason=reason)
    # The record is written before the token is answered: the execution goes on the moment Step Functions has
    # the answer, and its report step reads who answered and why from this record. Written after, the report
    # could say "rejected by None" (it did, once in a full test run).
    write_record(store, answered)
    try:
        if approve:
            sfn.send_task_success(taskToken=token,
                                  output=json.dumps({"approved": True, "by": by, "at": answered.answered}))
        else:
            cause = f"rejected by {by}" + (f": {reason}" if reason else "")
            sfn.send_task_failure(taskToken=token, error=APPROVAL_REJECTED_ERROR,
                                  cause=cause[:ERROR_MESSAGE_MAX])
    except Exception:
        write_record(store, record)  # the answer did not reach the execution: the run is still awaiting
        raise
    return answered


def _manifest_uri(source: Mapping[str, Any]) -> str:
    return f"s3://{source.get('bucket')}/{source.get('key')}"
