"""The approval gate before GPU spend: which jobs wait for it, the record of a held run
(`runs/<campaign>/<run-id>/approval.json`, local folder or S3 alike) and the report a held run writes."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipeline.credentials.keys import SigningKey
from pipeline.errors import ApprovalUnavailable
from pipeline.plan.build import Plan
from pipeline.report.write import AWAITING_APPROVAL, restate_report, run_prefix, write_run
from pipeline.run.budget import estimate_uncached
from pipeline.storage.store import Store
from pipeline.tasks import JobResult

BEFORE_RENDER = "before-render"
RENDER_KINDS = ("clip", "video")  # what waits: GPU clips, and the videos made of them
AWAITING, APPROVED, REJECTED, EXPIRED = "awaiting", "approved", "rejected", "expired"
SUPERSEDED = "superseded"  # a newer run of the campaign replaced the held one (record and report alike)


def approval_key(campaign: str, run_id: str) -> str:
    return f"{run_prefix(campaign, run_id)}/approval.json"


@dataclass(frozen=True)
class ApprovalRecord:
    """What a held run waits for and how it was answered. `manifest_sha256` lets `approve` refuse a manifest
    edited after review (re-run it: the gate shows the change); `backends` are the local run's backend flags,
    so approving plans the same content keys; `task_token` is the cloud execution's callback token."""

    campaign: str
    run_id: str
    status: str
    manifest: str
    requested: str
    manifest_sha256: str | None = None
    remaining_usd: float | None = None
    expires: str | None = None
    answered: str | None = None
    answered_by: str | None = None
    reason: str | None = None
    backends: Mapping[str, Any] = field(default_factory=dict)
    task_token: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"backends": dict(self.backends)}, indent=1)

    @classmethod
    def from_json(cls, text: bytes | str) -> ApprovalRecord:
        d = json.loads(text)
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def answer(self, *, status: str, by: str | None, reason: str | None, now: float | None = None) -> ApprovalRecord:
        if self.status != AWAITING:
            raise ApprovalUnavailable(f"run {self.run_id} of {self.campaign} is not awaiting approval (it is {self.status})")
        return replace(self, status=status, answered=iso(now), answered_by=by, reason=reason)


def iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def write_record(store: Store, record: ApprovalRecord) -> None:
    store.write_bytes(approval_key(record.campaign, record.run_id), record.to_json().encode())


def read_record(store: Store, campaign: str, run_id: str | None = None) -> ApprovalRecord:
    """The run's record; without `run_id`, the campaign's latest run (runs/<campaign>/latest.json)."""
    if run_id is None:
        latest = f"runs/{campaign}/latest.json"
        if not store.exists(latest):
            raise ApprovalUnavailable(f"no run of {campaign} in {store.location('runs/')}")
        run_id = str(json.loads(store.read_bytes(latest))["run_id"])
    key = approval_key(campaign, run_id)
    if not store.exists(key):
        raise ApprovalUnavailable(f"run {run_id} of {campaign} was not held for approval (no {store.location(key)})")
    return ApprovalRecord.from_json(store.read_bytes(key))


@dataclass(frozen=True)
class LocalHold:
    """A local run to stop at the gate: the manifest it came from (path and digest) and its backend flags."""

    manifest: str
    manifest_sha256: str
    backends: Mapping[str, Any]


def gate_applies(plan: Plan, cached: Mapping[str, bool]) -> bool:
    """The gate holds a run only when a clip is still to be rendered: a re-run whose clips are all cached
    spends no GPU time."""
    return any(j.kind == "clip" and not cached.get(j.id) for j in plan.jobs)


def before_render(plan: Plan) -> Plan:
    """The jobs that run before the gate: prompt enhancement and image edits."""
    return replace(plan, jobs=tuple(j for j in plan.jobs if j.kind not in RENDER_KINDS), _index={})


def hold_for_approval(plan: Plan, results: list[JobResult], store: Store, *, run_id: str, started: float,
                      cost: dict[str, Any] | None, budget: dict[str, Any] | None, manifest: str,
                      manifest_sha256: str | None = None, backends: Mapping[str, Any] | None = None,
                      task_token: str | None = None, timeout_s: int | None = None,
                      instance_type: str | None = None, signing: SigningKey | None = None,
                      ) -> tuple[dict[str, Any], ApprovalRecord]:
    """Write the held run's record and its report (status `awaiting-approval`: every enhanced prompt, every
    edited image, and the estimate of what approval would still spend)."""
    now = time.time()
    remaining = estimate_uncached(plan, store, instance_type=instance_type).estimate
    record = ApprovalRecord(
        campaign=plan.campaign, run_id=run_id, status=AWAITING, manifest=manifest, requested=iso(now),
        manifest_sha256=manifest_sha256, remaining_usd=float(remaining["uncached_usd"]) if remaining else None,
        expires=iso(now + timeout_s) if timeout_s else None, backends=dict(backends or {}), task_token=task_token)
    report = write_run(plan, results, store, run_id=run_id, started=started, finished=now, cost=cost, budget=budget,
                       status=AWAITING_APPROVAL, approval=approval_section(record), signing=signing)
    write_record(store, record)  # last: a run with a record has its report for review
    return report, record


def approval_section(record: ApprovalRecord) -> dict[str, Any]:
    """The report's `approval`: the record without its token (the report is for reviewers)."""
    return {k: v for k, v in asdict(record).items() if k not in ("task_token", "backends", "campaign", "run_id")}


def supersede_held(store: Store, campaign: str, *, by: str | None) -> ApprovalRecord | None:
    """A new run of a campaign whose latest run still waits at the gate replaces it: the held run's record and
    report end `superseded`, so no run waits forever for an answer nobody will give (the new run holds again
    for its own review if it renders anything). None when the latest run does not wait."""
    try:
        record = read_record(store, campaign)
    except ApprovalUnavailable:
        return None
    if record.status != AWAITING:
        return None
    why = "the campaign was run again before this run was answered; the newer run replaces it"
    answered = record.answer(status=SUPERSEDED, by=by, reason=why)
    write_record(store, answered)
    restate_report(store, run_prefix(campaign, record.run_id), status=SUPERSEDED,
                   error={"job": "approval", "error": "Superseded", "message": why}, approval=approval_section(answered))
    return answered
