"""The S3 trigger (Lambda behind the EventBridge rule on the input bucket): one execution per manifest version,
and the manifest's schedule kept in step with the bucket's current version of it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from pipeline.cloud.contract import MANIFEST_PREFIX, MANIFEST_SUFFIXES
from pipeline.cloud.data_reader import s3_data_reader
from pipeline.cloud.events import OBJECT_CREATED, OBJECT_DELETED, S3ObjectEvent
from pipeline.cloud.failures import client_error_code
from pipeline.cloud.names import (
    campaign_name_of,
    execution_arn,
    execution_name,
    is_manifest_key,
    schedule_name,
)
from pipeline.cloud.settings import CloudSettings
from pipeline.cloud.tenancy import manifest_key_problem, schedule_floor_problem
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest_text

LIFECYCLE_EXPIRATION = "Lifecycle Expiration"
NOT_FOUND = ("NoSuchKey", "NoSuchVersion", "404", "NotFound")


def handle_manifest_event(event: Mapping[str, Any], *, s3: Any, sfn: Any, scheduler: Any,
                          settings: CloudSettings) -> dict[str, Any]:
    """EventBridge `Object Created` / `Object Deleted` for manifests/*.yaml|yml in the input bucket.

    A failure here (an unreadable manifest, a throttled StartExecution, a failed CreateSchedule) is raised:
    Lambda retries the asynchronous event twice, then its on-failure destination keeps it (infra/triggers.py)."""
    ev = S3ObjectEvent.from_event(event)
    if not any(is_manifest_key(k) for k in event_keys(ev.key)):
        return {"action": "ignored", "key": ev.key, "why": f"not a manifest ({MANIFEST_PREFIX}*{'|'.join(MANIFEST_SUFFIXES)})"}
    if ev.detail_type == OBJECT_DELETED:
        return _on_deleted(ev, s3=s3, scheduler=scheduler, settings=settings)
    if ev.detail_type != OBJECT_CREATED:
        return {"action": "ignored", "key": ev.key, "why": f"event type {ev.detail_type!r}"}

    key, text = _read_event_object(s3, ev)
    bucket = ev.bucket
    try:
        campaign = load_manifest_text(text, file=f"s3://{bucket}/{key}", base_dir=Path("."), check_files=False,
                                      data_reader=s3_data_reader(s3, bucket=bucket, manifest_key=key,
                                                                 tenancy=settings.tenancy()))
        name, cron = campaign.name, campaign.schedule
        valid = True
    except ManifestInvalid:  # the run still starts: it writes the validation problems as its report
        name, cron, valid = campaign_name_of(text, key), None, False

    execution = execution_name(name, bucket=bucket, key=key, version=ev.version)
    run_input = {"bucket": bucket, "key": key, "version_id": ev.version_id, "campaign": name, "trigger": "s3"}
    started = _start_once(sfn, settings.need("state_machine_arn"), execution, run_input)
    schedule = schedule_name(bucket=bucket, key=key)
    current = _current_version(s3, bucket, key)
    if current != ev.version:
        # events of one key can arrive out of order: only the bucket's current version decides the schedule
        schedule_action = f"unchanged (current version is {current or 'none'}, not {ev.version})"
    elif not valid:
        schedule_action = "unchanged (manifest invalid)"
    elif cron and (refused := manifest_key_problem(key, settings.tenancy())
                   or schedule_floor_problem(cron, settings.schedule_floor_s())):
        # the run reports the same refusal, located; no schedule starts runs this deployment refuses
        schedule_action = f"refused: {refused}; {_delete_schedule(scheduler, schedule, settings)}"
    elif cron:
        schedule_action = _upsert_schedule(scheduler, schedule, settings, expression=cron, bucket=bucket, key=key,
                                           campaign=name)
    else:
        schedule_action = _delete_schedule(scheduler, schedule, settings)
    return {"action": "started" if started else "duplicate", "key": key, "execution": execution,
            "schedule": schedule_action}


def event_keys(key: str) -> tuple[str, ...]:
    """The keys an event's `key` may stand for: as spelt, then URL-decoded. S3's classic notifications
    URL-encode keys ("red flower.yaml" -> "red+flower.yaml"); whether EventBridge events do is unverified, so
    create and delete both try the key as spelt first, then decoded (the same rule for both)."""
    decoded = unquote_plus(key)
    return (key,) if decoded == key else (key, decoded)


def _on_deleted(ev: S3ObjectEvent, *, s3: Any, scheduler: Any, settings: CloudSettings) -> dict[str, Any]:
    """A schedule goes only when the bucket has no current object under the key. A lifecycle expiration of a
    noncurrent version (`Permanently Deleted`, reason `Lifecycle Expiration`) leaves the manifest in place,
    and a delete marker may already be followed by a newer upload: both keep the schedule."""
    if ev.reason == LIFECYCLE_EXPIRATION and not ev.is_delete_marker:
        return {"action": "ignored", "key": ev.key, "why": "a noncurrent version expired; the manifest stays"}
    schedules: list[str] = []
    for key in event_keys(ev.key):
        name = schedule_name(bucket=ev.bucket, key=key)
        current = _current_version(s3, ev.bucket, key)
        schedules.append(f"kept {name} (current version {current})" if current
                         else _delete_schedule(scheduler, name, settings))
    return {"action": "deleted", "key": ev.key, "schedule": "; ".join(schedules)}


def _read_event_object(s3: Any, ev: S3ObjectEvent) -> tuple[str, str]:
    """The object version an event names, and its key as stored (see `event_keys`)."""
    extra = {"VersionId": ev.version_id} if ev.version_id else {}
    keys = event_keys(ev.key)
    for i, key in enumerate(keys):
        try:
            return key, s3.get_object(Bucket=ev.bucket, Key=key, **extra)["Body"].read().decode("utf-8")
        except Exception as exc:
            if i == len(keys) - 1 or client_error_code(exc) not in NOT_FOUND:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _current_version(s3: Any, bucket: str, key: str) -> str | None:
    """The version id (else ETag) of the key's current object; None when there is none (deleted, or its
    current version is a delete marker: HEAD answers 404)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if client_error_code(exc) in NOT_FOUND:
            return None
        raise
    version = head.get("VersionId")
    return str(version) if version and version != "null" else str(head.get("ETag") or "").strip('"')


def _start_once(sfn: Any, state_machine_arn: str, name: str, run_input: Mapping[str, Any]) -> bool:
    """Start the execution unless one of that name exists (a re-delivered event). Step Functions itself
    refuses a second execution of one name (ExecutionAlreadyExists, or the open one for identical input);
    looking first only lets the answer say which case this was."""
    try:
        sfn.describe_execution(executionArn=execution_arn(state_machine_arn, name))
        return False
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
    try:
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(run_input, sort_keys=True))
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


def _upsert_schedule(scheduler: Any, name: str, settings: CloudSettings, *, expression: str, bucket: str,
                     key: str, campaign: str) -> str:
    args = {
        "Name": name, "GroupName": settings.need("schedule_group"), "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": "UTC", "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "ENABLED",
        "Description": f"campaign {campaign}: s3://{bucket}/{key}"[:512],
        "Target": {
            "Arn": settings.need("state_machine_arn"), "RoleArn": settings.need("scheduler_role_arn"),
            # no version: a scheduled run reads the manifest's latest version
            "Input": json.dumps({"bucket": bucket, "key": key, "campaign": campaign, "trigger": "schedule"},
                                sort_keys=True),
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
        },
    }
    try:
        scheduler.create_schedule(**args)
        return f"created {name} ({expression})"
    except scheduler.exceptions.ConflictException:
        scheduler.update_schedule(**args)
        return f"updated {name} ({expression})"


def _delete_schedule(scheduler: Any, name: str, settings: CloudSettings) -> str:
    try:
        scheduler.delete_schedule(Name=name, GroupName=settings.need("schedule_group"))
    except scheduler.exceptions.ResourceNotFoundException:
        return "none"
    return f"deleted {name}"
