"""The operator's commands: `campaign submit` (manifest and assets into the input bucket, which starts the run),
`campaign status` (recent executions with their outcome and console links) and a cloud run's regenerate
(`campaign review ... --regenerate --bucket`: one execution that re-makes an item and what is made from it)."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import yaml

from pipeline.cloud.contract import MANIFEST_PREFIX
from pipeline.cloud.data_reader import s3_data_reader
from pipeline.cloud.events import ManifestSource
from pipeline.cloud.failures import client_error_code
from pipeline.cloud.names import execution_arn, execution_console_url, execution_name, object_version, region_of
from pipeline.cloud.tenancy import Tenancy, manifest_key_problem, submitted_assets_prefix
from pipeline.errors import ManifestInvalid, ReviewRefused, SubmitRefused, shown
from pipeline.manifest.campaign import load_manifest, load_manifest_text
from pipeline.manifest.inputs import submit_name
from pipeline.plan.keys import file_digest
from pipeline.plan.overrides import Override, check_override
from pipeline.report.write import refresh_review
from pipeline.review.commands import find_item, record
from pipeline.review.decisions import REGENERATE, overrides_from, read_decisions
from pipeline.review.export import READ_ERRORS
from pipeline.storage.store import S3Store

# S3 user-defined metadata (x-amz-meta-*, read back lower-case) naming who submitted the manifest
WRITER_METADATA = "campaign-submitted-by"
TEAM_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def submit(manifest_path: str | Path, *, bucket: str, state_machine_arn: str | None = None,
           s3: Any = None, allow_outside: Sequence[Path] = (), replace: bool = False, team: str | None = None,
           sts: Any = None) -> dict[str, str]:
    """Validate the manifest here, upload its local assets (content-addressed: unchanged files are not sent
    again) and the manifest with those assets rewritten to their s3:// addresses; the upload's event
    starts the run. A manifest of that name that someone else wrote is not replaced unless `replace`; `team`
    puts it under manifests/<team>/. Returns the manifest's address, the execution's name and, given the state
    machine, its console URL."""
    path = Path(manifest_path)
    # ManifestInvalid lists every problem, as `campaign validate` does, assets outside the folder included
    campaign = load_manifest(path, allow_outside=allow_outside)
    if team is not None and not TEAM_NAME.fullmatch(team):
        raise SubmitRefused(f"--team {shown(team)}: use a-z, 0-9 and '-', 1 to 63 characters")
    if s3 is None:
        s3 = boto3.client("s3")
    manifest_key = f"{MANIFEST_PREFIX}{team + '/' if team else ''}{campaign.name}.yaml"
    writer = caller_arn(sts)
    # Who wrote the manifest there now, before anything is uploaded: a refusal leaves the bucket untouched.
    current = _head_or_none(s3, bucket, manifest_key)
    if current is not None and not replace:
        owner = (current.get("Metadata") or {}).get(WRITER_METADATA)
        if not owner or writer_principal(owner) != writer_principal(writer):
            raise SubmitRefused(
                f"s3://{bucket}/{manifest_key} was written by {shown(owner) if owner else 'someone else (not campaign submit)'}, "
                f"not by you ({writer}): another team's campaign may have this name; rename `campaign:` in "
                f"{path.name}, submit with --team, or pass --replace to replace it (and its schedule)")
    addresses: dict[str, str] = {}
    uploaded = 0
    asset_prefix = submitted_assets_prefix(manifest_key)
    for asset in campaign.assets.values():
        if asset.path is None:
            continue  # s3:// assets stay as written
        key = f"{asset_prefix}{file_digest(asset.path)}/{submit_name(asset.location)}"
        if not _object_exists(s3, bucket, key):
            s3.upload_file(str(asset.path), bucket, key)
            uploaded += 1
        addresses[asset.id] = f"s3://{bucket}/{key}"
    data = dict(campaign.raw)
    data["assets"] = {aid: addresses.get(aid, loc) for aid, loc in (campaign.raw.get("assets") or {}).items()}
    if isinstance(data.get("brand"), str) and campaign.brand is not None:
        data["brand"] = campaign.brand.raw  # a brand file goes up inline: the cloud reads one manifest
    if isinstance(data.get("variables"), dict):  # data files go up beside the assets, `from:` rewritten to them
        data["variables"], sent = _upload_data_files(s3, bucket, asset_prefix, campaign.base_dir, data["variables"])
        uploaded += sent
    text = (f"# uploaded by `campaign submit` from {path.name}; local asset paths rewritten to s3:// addresses\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    # Conditional write (AmazonS3/latest/userguide/conditional-writes.html): create only if still absent, or
    # replace only the version looked at above; a write in between fails with 412 (or 409), not silently.
    condition = {"IfMatch": current["ETag"]} if current is not None else {"IfNoneMatch": "*"}
    try:
        put = s3.put_object(Bucket=bucket, Key=manifest_key, Body=text.encode(), ContentType="application/yaml",
                            Metadata={WRITER_METADATA: writer}, **condition)
    except Exception as exc:
        if client_error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            raise SubmitRefused(f"s3://{bucket}/{manifest_key} changed while this submit ran (someone else wrote "
                                "it); look at it, then submit again") from None
        raise
    name = execution_name(campaign.name, bucket=bucket, key=manifest_key, version=object_version(put))
    out = {"manifest": f"s3://{bucket}/{manifest_key}", "assets_uploaded": f"{uploaded} of {len(addresses)}",
           "execution_name": name}
    if state_machine_arn:
        arn = execution_arn(state_machine_arn, name)
        out["execution_arn"] = arn
        out["console_url"] = execution_console_url(arn)
    return out


def _upload_data_files(s3: Any, bucket: str, prefix: str, base_dir: Path,
                       variables: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """`{from: products.csv}` -> the file uploaded content-addressed (as assets are) and `from:` its s3://
    address; load_manifest has already read each one inside the manifest's folder."""
    out: dict[str, Any] = {}
    sent = 0
    for name, spec in variables.items():
        if isinstance(spec, dict) and isinstance(spec.get("from"), str) and "://" not in spec["from"]:
            local = base_dir / spec["from"]
            key = f"{prefix}{file_digest(local)}/{submit_name(spec['from'])}"
            if not _object_exists(s3, bucket, key):
                s3.upload_file(str(local), bucket, key)
                sent += 1
            spec = {**spec, "from": f"s3://{bucket}/{key}"}
        out[name] = spec
    return out, sent


def caller_arn(sts: Any = None) -> str:
    """The caller's identity as STS answers it (GetCallerIdentity needs no permission)."""
    if sts is None:
        sts = boto3.client("sts")
    return str(sts.get_caller_identity()["Arn"])


def writer_principal(arn: str) -> str:
    """Who owns what an ARN wrote: an IAM user itself; for an assumed role, the role (its session name changes
    from login to login, and a team shares its role): arn:aws:sts::A:assumed-role/R/s -> arn:aws:iam::A:role/R."""
    m = re.fullmatch(r"arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.*", arn)
    return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}" if m else arn


def _head_or_none(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        head: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        if client_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head


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




def review_execution_name(now: float | None = None) -> str:
    """A regenerate's execution (and run) name: its UTC start time, so the campaign's runs sort in time order, then
    random; 1 to 80 of A-Z a-z 0-9 - _, as StartExecution's `name` takes it."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(time.time() if now is None else now))}-review-{secrets.token_hex(4)}"


def regenerate(*, output_bucket: str, campaign: str, item: str, run_id: str | None, override: Override, note: str,
               by: str, state_machine_arn: str, s3: Any = None, sfn: Any = None) -> dict[str, str]:
    """Record the regenerate request in the output bucket beside the campaign's runs, then start one execution of
    the manifest version the reviewed run was planned from. Its plan step applies the request (plan_step.py), so
    only the item and what is made from it (the videos that contain a clip) get new keys; everything else is found
    in the bucket's cache. The request names the manifest by its s3:// address: it never changes another manifest
    of the same campaign name (another team's). Every check comes before the record: a refused request leaves the
    bucket as it was."""
    s3 = s3 or boto3.client("s3")
    store = S3Store(output_bucket, client=s3)
    reviewed = find_item(store, campaign, item, run_id)
    source = _planned_from(store, reviewed.prefix)
    refused = manifest_key_problem(source.key, Tenancy())
    if refused:
        raise ReviewRefused(f"run {reviewed.run_id} was not planned from a manifest a run may start from: {refused}")
    extra = {"VersionId": source.version_id} if source.version_id else {}
    try:
        text = s3.get_object(Bucket=source.bucket, Key=source.key, **extra)["Body"].read().decode("utf-8")
    except Exception as exc:
        raise ReviewRefused(f"{source.uri}: the manifest run {reviewed.run_id} was planned from cannot be read "
                            f"({client_error_code(exc)})") from None
    try:
        loaded = load_manifest_text(text, file=source.uri, base_dir=Path("."), check_files=False,
                                    data_reader=s3_data_reader(s3, bucket=source.bucket, manifest_key=source.key,
                                                               tenancy=Tenancy()))
    except ManifestInvalid as exc:
        raise ReviewRefused(f"{source.uri}: {exc.problems[0]}") from None
    if loaded.name != reviewed.campaign:
        raise ReviewRefused(f"{source.uri} is campaign {loaded.name}, not {reviewed.campaign}")
    earlier = overrides_from(read_decisions(store, campaign), source.uri).get(item)
    check_override(loaded, earlier.merged(override) if earlier else override)
    name = review_execution_name()
    decision = record(store, reviewed, action=REGENERATE, by=by, note=note, override=override, regenerate_run=name,
                      manifest=source.uri)
    refresh_review(store, reviewed.prefix)
    if sfn is None:
        sfn = boto3.client("stepfunctions", region_name=region_of(state_machine_arn))
    run_input = {**source.to_json(), "campaign": reviewed.campaign, "trigger": "review"}
    try:
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(run_input, sort_keys=True))
    except Exception as exc:
        raise ReviewRefused(f"{item}: regenerate recorded ({decision.id}), but the execution did not start "
                            f"({client_error_code(exc)}); the next run of {source.uri} applies it") from None
    arn = execution_arn(state_machine_arn, name)
    return {"item": item, "replaces": f"{reviewed.campaign}/{reviewed.run_id}", "asked": override.describe(),
            "run": name, "report": f"s3://{output_bucket}/runs/{reviewed.campaign}/{name}/report.json",
            "execution_arn": arn, "console_url": execution_console_url(arn)}


def _planned_from(store: S3Store, prefix: str) -> ManifestSource:
    """The manifest object (bucket, key, version) a cloud run was planned from: its run document says."""
    try:
        doc = json.loads(store.read_bytes(f"{prefix}/plan.json"))
        return ManifestSource.from_event(doc["source"])
    except (*READ_ERRORS, TypeError) as exc:
        raise ReviewRefused(f"{store.location(prefix)} has no run document (plan.json) naming its manifest; only a "
                            "run that was planned can be regenerated") from exc
