"""The S3 trigger (Lambda behind the EventBridge rule on the input bucket): one execution per manifest version,
and the manifest's schedule kept in step with it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from pipeline.cloud.contract import MANIFEST_PREFIX, MANIFEST_SUFFIXES
from pipeline.cloud.events import need
from pipeline.cloud.failures import client_error_code
from pipeline.cloud.names import (
    campaign_name_of,
    execution_arn,
    execution_name,
    is_manifest_key,
    object_version,
    schedule_name,
)
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import ManifestInvalid
from pipeline.manifest import load_manifest_text


def handle_manifest_event(event: Mapping[str, Any], *, s3: Any, sfn: Any, scheduler: Any,
                          settings: CloudSettings) -> dict[str, Any]:
    """EventBridge `Object Created` / `Object Deleted` for manifests/*.yaml|yml in the input bucket."""
    detail_type = str(event.get("detail-type"))
    detail = need(event, "detail")
    bucket, obj = str(detail["bucket"]["name"]), detail["object"]
    key = str(obj["key"])
    if not is_manifest_key(key):
        return {"action": "ignored", "key": key, "why": f"not a manifest ({MANIFEST_PREFIX}*{'|'.join(MANIFEST_SUFFIXES)})"}
    if detail_type == "Object Deleted":
        schedule = _delete_schedule(scheduler, schedule_name(bucket=bucket, key=key), settings)
        return {"action": "deleted", "key": key, "schedule": schedule}
    if detail_type != "Object Created":
        return {"action": "ignored", "key": key, "why": f"event type {detail_type!r}"}

    version = object_version(obj)
    key, text = _read_event_object(s3, bucket, key, obj.get("version-id"))
    schedule = schedule_name(bucket=bucket, key=key)
    try:
        campaign = load_manifest_text(text, file=f"s3://{bucket}/{key}", base_dir=Path("."), check_files=False)
        name, cron = campaign.name, campaign.schedule
        valid = True
    except ManifestInvalid:  # the run still starts: it writes the validation problems as its report
        name, cron, valid = campaign_name_of(text, key), None, False

    execution = execution_name(name, bucket=bucket, key=key, version=version)
    run_input = {"bucket": bucket, "key": key, "version_id": obj.get("version-id"), "campaign": name, "trigger": "s3"}
    started = _start_once(sfn, settings.need("state_machine_arn"), execution, run_input)
    if not valid:
        schedule_action = "unchanged (manifest invalid)"
    elif cron:
        schedule_action = _upsert_schedule(scheduler, schedule, settings, expression=cron, bucket=bucket, key=key,
                                           campaign=name)
    else:
        schedule_action = _delete_schedule(scheduler, schedule, settings)
    return {"action": "started" if started else "duplicate", "key": key, "execution": execution,
            "schedule": schedule_action}


def _read_event_object(s3: Any, bucket: str, key: str, version_id: str | None) -> tuple[str, str]:
    """The object an event names, and its key as stored. S3's classic notifications URL-encode keys
    ("red flower.yaml" -> "red+flower.yaml"); should an EventBridge event do so too, the decoded key is tried."""
    extra = {"VersionId": version_id} if version_id else {}
    try:
        return key, s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read().decode("utf-8")
    except Exception as exc:
        decoded = unquote_plus(key)
        if decoded == key or client_error_code(exc) not in ("NoSuchKey", "NoSuchVersion", "404"):
            raise
        return decoded, s3.get_object(Bucket=bucket, Key=decoded, **extra)["Body"].read().decode("utf-8")


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


