"""The run summary an operator reads: built from the report by one function, printed at the end of `campaign run`
and published to the stack's SNS topic when a cloud run finishes or waits for approval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.report.write import AWAITING_APPROVAL

MAX_ERRORS_SHOWN = 5
# SNS Publish: "Subjects must be UTF-8 text with no line breaks or control characters, and less than 100 characters
# long" (PublishRequest.subject, https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/sns/aws.sdk.kotlin.services.sns.model/-publish-request/subject.html);
# kept to ASCII too, since email clients show it as the mail's subject.
SUBJECT_MAX = 99


@dataclass(frozen=True)
class Notification:
    subject: str
    text: str


def _usd(value: Any) -> str:
    return f"${float(value):,.2f}" if isinstance(value, (int, float)) else "unknown"


def summarize(report: Mapping[str, Any], *, report_location: str, actions: Sequence[str] = ()) -> Notification:
    """A short, readable message from a report: the status, errors first, job counts, cost against budget, and
    where the report is. `actions` are the lines that say what to do next (how to approve, for a run that
    waits), which differ between a local and a cloud run."""
    campaign, run_id, status = report.get("campaign", "?"), report.get("run_id", "?"), str(report.get("status", "?"))
    jobs: Mapping[str, Any] = report.get("jobs") or {}
    errors: Sequence[Mapping[str, Any]] = report.get("errors") or []
    budget: Mapping[str, Any] = report.get("budget") or {}
    cost: Mapping[str, Any] = report.get("cost") or {}
    approval: Mapping[str, Any] = report.get("approval") or {}
    lines: list[str] = []

    # 1. What happened, in one line.
    if status == AWAITING_APPROVAL:
        headline = f"{campaign} run {run_id} awaits approval before rendering {jobs.get('pending', 0)} job(s)"
    else:
        headline = f"{campaign} run {run_id}: {status}"
    lines.append(headline)

    # 2. Errors first: they are why someone reads this.
    if errors:
        lines.append(f"errors ({len(errors)}):")
        lines += [f"  {e.get('job')}: {e.get('error')}: {e.get('message')}" for e in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            lines.append(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more in the report")

    # 3. What to review, for a run at the approval gate.
    if status == AWAITING_APPROVAL:
        prompts = [e for e in report.get("enhancements") or [] if e.get("enhanced_prompt")]
        images = [i for i in report.get("images") or [] if i.get("path")]
        lines.append(f"review: {len(prompts)} enhanced prompt(s) and {len(images)} edited image(s) in the report")
        if approval.get("expires"):
            lines.append(f"waits until {approval['expires']}, then ends as expired")

    # 4. Counts, cost and budget side by side, and what the estimate does not know.
    counts = ", ".join(f"{jobs.get(k, 0)} {k}" for k in ("executed", "cached", "failed", "skipped", "pending",
                                                         "not_run") if k in jobs)
    lines.append(f"jobs: {jobs.get('total', 0)} ({counts})" if counts else f"jobs: {jobs.get('total', 0)}")
    if status == AWAITING_APPROVAL and "remaining_usd" in approval:
        spend = f"remaining estimate {_usd(approval['remaining_usd'])}"
    elif "total_usd" in cost:
        spend = f"estimated cloud cost {_usd(cost['total_usd'])}"
        if budget.get("estimate_usd") is not None:
            spend += f" ({_usd(budget['estimate_usd'])} for what was not cached at the start)"
    else:
        spend = "no cost estimate"
    limit = budget.get("limit_usd")
    lines.append(f"cost: {spend}; budget {_usd(limit) if limit is not None else 'none'}")
    unknowns = budget.get("unknowns") or cost.get("unknowns") or []
    if unknowns:
        lines.append(f"the estimate rests on {len(unknowns)} unverified figure(s):")
        lines += [f"  - {u}" for u in unknowns]

    # 5. Where the report is, then what to do.
    lines.append(f"report: {report_location}")
    lines += list(actions)
    subject = _ascii(f"campaign {campaign}: {status}" + (f", {len(errors)} error(s)" if errors else ""))[:SUBJECT_MAX]
    return Notification(subject=subject, text="\n".join(lines) + "\n")


def _ascii(text: str) -> str:
    return " ".join(text.encode("ascii", "replace").decode().split())


def publish(sns: Any, *, topic_arn: str, notification: Notification) -> str:
    """Publish to the stack's topic; returns the MessageId."""
    answer = sns.publish(TopicArn=topic_arn, Subject=notification.subject, Message=notification.text)
    return str(answer["MessageId"])
