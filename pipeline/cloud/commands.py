"""The operator's commands: `campaign submit` (manifest and assets into the input bucket, which starts the run)
and `campaign status` (recent executions with their outcome and console links)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import yaml

from pipeline.cloud.contract import MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX
from pipeline.cloud.failures import client_error_code
from pipeline.cloud.names import execution_arn, execution_console_url, execution_name, object_version, region_of
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.inputs import submit_name
from pipeline.plan.keys import file_digest


def submit(manifest_path: str | Path, *, bucket: str, state_machine_arn: str | None = None,
           s3: Any = None, allow_outside: Sequence[Path] = ()) -> dict[str, str]:
    """Validate the manifest here, upload its local assets (content-addressed: unchanged files are not sent
    again) and the manifest with those assets rewritten to their s3:// addresses; the upload's event
    starts the run. Returns the manifest's address, the execution's name and, given the state machine,
    its console URL."""
    path = Path(manifest_path)
    # ManifestInvalid lists every problem, as `campaign validate` does, assets outside the folder included
    campaign = load_manifest(path, allow_outside=allow_outside)
    if s3 is None:
        s3 = boto3.client("s3")
    addresses: dict[str, str] = {}
    uploaded = 0
    for asset in campaign.assets.values():
        if asset.path is None:
            continue  # s3:// assets stay as written
        key = f"{SUBMITTED_ASSETS_PREFIX}{campaign.name}/{file_digest(asset.path)}/{submit_name(asset.location)}"
        if not _object_exists(s3, bucket, key):
            s3.upload_file(str(asset.path), bucket, key)
            uploaded += 1
        addresses[asset.id] = f"s3://{bucket}/{key}"
    data = dict(campaign.raw)
    data["assets"] = {aid: addresses.get(aid, loc) for aid, loc in (campaign.raw.get("assets") or {}).items()}
    text = (f"# uploaded by `campaign submit` from {path.name}; local asset paths rewritten to s3:// addresses\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    manifest_key = f"{MANIFEST_PREFIX}{campaign.name}.yaml"
    put = s3.put_object(Bucket=bucket, Key=manifest_key, Body=text.encode(), ContentType="application/yaml")
    name = execution_name(campaign.name, bucket=bucket, key=manifest_key, version=object_version(put))
    out = {"manifest": f"s3://{bucket}/{manifest_key}", "assets_uploaded": f"{uploaded} of {len(addresses)}",
           "execution_name": name}
    if state_machine_arn:
        arn = execution_arn(state_machine_arn, name)
        out["execution_arn"] = arn
        out["console_url"] = execution_console_url(arn)
    return out


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        if client_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def status(campaign: str | None = None, *, state_machine_arn: str, limit: int = 20, sfn: Any = None) -> list[dict[str, Any]]:
    """Recent executions, newest first: status (with the report's succeeded/partial/failed), failed and
    skipped items, the report's address and the console link."""
    if sfn is None:
        sfn = boto3.client("stepfunctions", region_name=region_of(state_machine_arn))
    rows: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for ex in page.get("executions", []):
            described = sfn.describe_execution(executionArn=ex["executionArn"])
            run_input = _json_or_empty(described.get("input"))
            outcome = _json_or_empty(described.get("output")) or _json_or_empty(described.get("cause"))
            found = re.search(r"/runs/([^/]+)/", str(outcome.get("report") or ""))
            name = str(run_input.get("campaign") or (found.group(1) if found else ""))
            if campaign and name != campaign:
                continue
            jobs = outcome.get("jobs") if isinstance(outcome.get("jobs"), dict) else None
            report_status = outcome.get("status") if isinstance(outcome.get("status"), str) else None
            started = ex.get("startDate")
            rows.append({
                "name": ex["name"], "campaign": name, "trigger": run_input.get("trigger"),
                "status": ex["status"] + (f" ({report_status})" if report_status else ""),
                "started": started.strftime("%Y-%m-%d %H:%M:%S") if isinstance(started, datetime) else str(started),
                "failed_items": (jobs.get("failed", 0) + jobs.get("skipped", 0)) if jobs else
                ("-" if ex["status"] == "RUNNING" else described.get("error") or "-"),
                "report": outcome.get("report") or "",
                "console_url": execution_console_url(ex["executionArn"]),
            })
            if len(rows) >= limit:
                return rows
    return rows


def _json_or_empty(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


