"""Names and addresses of a cloud run: execution and schedule names, S3 keys of the run's documents, ARNs and
console links. Pure string functions."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline.cloud.contract import (
    EXECUTION_NAME_MAX,
    MANIFEST_PREFIX,
    MANIFEST_SUFFIXES,
    NAME_HASH_CHARS,
    SCHEDULE_NAME_MAX,
)
from pipeline.report.write import run_prefix


def slug(text: str, max_len: int) -> str:
    """[a-z0-9-] only, no leading/trailing or doubled dashes, at most max_len characters."""
    s = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")
    return s[:max_len].rstrip("-") or "campaign"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:NAME_HASH_CHARS]


def execution_name(campaign: str, *, bucket: str, key: str, version: str) -> str:
    """`<campaign>-<hash of bucket, key and version id (or ETag)>`: the same object version always gets the
    same name, so a re-delivered event meets ExecutionAlreadyExists instead of starting a second run."""
    if not version:
        raise ValueError(f"s3://{bucket}/{key}: a version id or ETag is needed to name its execution")
    return f"{slug(campaign, EXECUTION_NAME_MAX - NAME_HASH_CHARS - 1)}-{_digest(bucket, key, version)}"


def schedule_name(*, bucket: str, key: str) -> str:
    """One schedule per manifest object (its key is all a deletion event carries)."""
    stem = posixpath.splitext(posixpath.basename(key))[0]
    return f"{slug(stem, SCHEDULE_NAME_MAX - NAME_HASH_CHARS - 1)}-{_digest(bucket, key)}"


def is_manifest_key(key: str) -> bool:
    """Case-sensitive, like the EventBridge rule's wildcards (infra/triggers.py): `manifests/x.YAML` is not one."""
    return key.startswith(MANIFEST_PREFIX) and key.endswith(MANIFEST_SUFFIXES)


def object_version(obj: Mapping[str, Any]) -> str:
    """The version id of an S3 object (event detail or PutObject answer), else its ETag without quotes."""
    version = obj.get("version-id") or obj.get("VersionId")
    if version and version != "null":
        return str(version)
    return str(obj.get("etag") or obj.get("ETag") or "").strip('"')


@dataclass(frozen=True)
class RunRef:
    """Which run a task works for; everything else is read from the run document in S3."""

    campaign: str
    run_id: str

    @property
    def prefix(self) -> str:
        return run_prefix(self.campaign, self.run_id)

    def to_dict(self) -> dict[str, str]:
        return {"campaign": self.campaign, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRef:
        missing = [k for k in ("campaign", "run_id") if not isinstance(d.get(k), str) or not d.get(k)]
        if missing:
            raise ValueError(f"run reference {dict(d)!r} lacks {', '.join(missing)}")
        return cls(str(d["campaign"]), str(d["run_id"]))


def run_document_key(ref: RunRef) -> str:
    return f"{ref.prefix}/plan.json"


def result_key(ref: RunRef, job_id: str) -> str:
    """Where a job's result lands; the ASL's `Record ... failure` states write the same key."""
    return f"{ref.prefix}/results/{job_id}.json"


def stage_key(ref: RunRef, stage: str, wave: int | None = None) -> str:
    """Where a distributed stage's items are (a JSON list the Distributed Map's ItemReader reads)."""
    name = stage.replace("_", "-") + (f"-w{wave}" if wave is not None else "")
    return f"{ref.prefix}/stages/{name}.json"


def batch_failure_key(ref: RunRef, batch_id: str) -> str:
    return f"{ref.prefix}/results/batches/{batch_id}.json"


def batch_s3_uri(bucket: str, ref: RunRef, batch_id: str, attempt: str) -> str:
    return f"s3://{bucket}/{ref.prefix}/batches/{batch_id}/{attempt}"


def region_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[3]


def execution_arn(state_machine_arn: str, name: str) -> str:
    head, _, machine = state_machine_arn.rpartition(":stateMachine:")
    if not head:
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return f"{head}:execution:{machine}:{name}"


def execution_console_url(arn: str) -> str:
    region = region_of(arn)
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"


def state_machine_console_url(arn: str) -> str:
    region = region_of(arn)
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/statemachines/view/{arn}"


def campaign_name_of(text: str, key: str) -> str:
    """The campaign's name for a manifest that may not validate: its `campaign:` if usable, else the file name."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    name = data.get("campaign") if isinstance(data, dict) else None
    if isinstance(name, str) and re.fullmatch(r"[a-z0-9-]{3,48}", name):
        return name
    return slug(posixpath.splitext(posixpath.basename(key))[0], 48)
