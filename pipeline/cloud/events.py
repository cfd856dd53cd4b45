"""The events the state machine sends each Lambda step, as typed dataclasses: raw dicts stop here.

Each `from_event` checks its fields and raises ValueError naming the missing or malformed one, so a wiring
mistake between the ASL and a handler reads as such in the execution's history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.cloud.names import RunRef


def need(d: Mapping[str, Any], name: str) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(f"event must be a JSON object, got {type(d).__name__}")
    if name not in d or d[name] is None:
        raise ValueError(f"event has no {name!r} (has {sorted(d)})")
    return d[name]


def need_str(d: Mapping[str, Any], name: str) -> str:
    value = need(d, name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"event field {name!r} must be a non-empty string, got {value!r}")
    return value


def epoch(value: float | str) -> float:
    """Seconds since the epoch from a number or an ISO 8601 time ($$.Execution.StartTime)."""
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class StepError:
    """What a Catch put in the state: {"Error": name, "Cause": text}."""

    error: str
    cause: str

    @classmethod
    def from_state(cls, value: Any) -> StepError | None:
        if not isinstance(value, Mapping):
            return None
        return cls(str(value.get("Error") or "JobFailed"), str(value.get("Cause") or ""))


@dataclass(frozen=True)
class ManifestSource:
    """The manifest object a run reads (this exact version when the event named one)."""

    bucket: str
    key: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> ManifestSource:
        version = d.get("version_id")
        return cls(need_str(d, "bucket"), need_str(d, "key"), str(version) if version else None)

    def to_json(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id}


@dataclass(frozen=True)
class PlanEvent:
    """`Plan campaign`: which manifest, the run id (the execution name), when it started."""

    source: ManifestSource
    run_id: str
    started: float
    distributed_over: int | None = None

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> PlanEvent:
        limits = d.get("limits") or {}
        over = limits.get("distributed_over") if isinstance(limits, Mapping) else None
        return cls(ManifestSource.from_event(need(d, "source")), need_str(d, "run_id"), epoch(need(d, "started")),
                   int(over) if over is not None else None)


@dataclass(frozen=True)
class JobEvent:
    """`Enhance prompt`, `Edit image`, `Speak utterance`, `Assemble video`: one job of the run."""

    job_id: str
    run: RunRef

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> JobEvent:
        return cls(need_str(d, "job_id"), RunRef.from_dict(need(d, "run")))


@dataclass(frozen=True)
class PrepareBatchEvent:
    """`Prepare clip batch`: the batch's id and clip job ids; `attempt` counts re-preparations."""

    batch: str
    jobs: tuple[str, ...]
    run: RunRef
    attempt: int = 1

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> PrepareBatchEvent:
        return cls(need_str(d, "batch"), tuple(str(j) for j in need(d, "jobs")), RunRef.from_dict(need(d, "run")),
                   int(d.get("attempt") or 1))


@dataclass(frozen=True)
class CollectBatchEvent:
    """`Collect clip batch`: the batch, the request that was rendered (None when nothing was) and the render
    state's error when it failed."""

    batch: str
    jobs: tuple[str, ...]
    run: RunRef
    request: Mapping[str, Any] | None
    error: StepError | None

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> CollectBatchEvent:
        prepared = d.get("prepared")
        request = prepared.get("request") if isinstance(prepared, Mapping) else None
        return cls(need_str(d, "batch"), tuple(str(j) for j in need(d, "jobs")), RunRef.from_dict(need(d, "run")),
                   request if isinstance(request, Mapping) else None, StepError.from_state(d.get("error")))

    @property
    def output_s3_uri(self) -> str | None:
        return str(self.request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]) if self.request else None

    @property
    def job_name(self) -> str | None:
        return str(self.request["ProcessingJobName"]) if self.request else None


@dataclass(frozen=True)
class FinishEvent:
    """`Write report`: the run id and start, the plan step's summary when it planned, and the error that
    ended the execution early, if one did."""

    run_id: str
    started: float
    summary: Mapping[str, Any] | None
    source: Mapping[str, Any]
    error: StepError | None

    @classmethod
    def from_event(cls, d: Mapping[str, Any], *, now: float) -> FinishEvent:
        summary = d.get("run") if isinstance(d.get("run"), Mapping) else None
        source = d.get("source")
        return cls(need_str(d, "run_id"), epoch(d.get("started") or now), summary,
                   source if isinstance(source, Mapping) else {},
                   StepError.from_state(d.get("error")))


# S3 -> EventBridge (AmazonS3/latest/userguide/ev-events.html and EventBridge.html): `Object Created` carries
# `reason` PutObject / POST Object / CopyObject / CompleteMultipartUpload; `Object Deleted` carries `reason`
# DeleteObject or "Lifecycle Expiration" and `deletion-type` "Permanently Deleted" (an unversioned object, or a
# version removed for good, e.g. a noncurrent version expired by lifecycle) or "Delete Marker Created".
OBJECT_CREATED = "Object Created"
OBJECT_DELETED = "Object Deleted"
DELETE_MARKER_CREATED = "Delete Marker Created"


@dataclass(frozen=True)
class S3ObjectEvent:
    """An S3 object event as EventBridge delivers it to the starter; `key` is spelt as the event spells it.
    Events of one key may arrive out of order, so the starter decides from the bucket's current object (a
    HEAD), not from the order of arrival; `sequencer` is kept for the logs."""

    detail_type: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    reason: str | None
    deletion_type: str | None

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> S3ObjectEvent:
        detail = need(d, "detail")
        bucket, obj = need(detail, "bucket"), need(detail, "object")
        version = obj.get("version-id")
        return cls(need_str(d, "detail-type"), need_str(bucket, "name"), need_str(obj, "key"),
                   str(version) if version and version != "null" else None,
                   str(obj["etag"]).strip('"') if obj.get("etag") else None,
                   str(obj["sequencer"]) if obj.get("sequencer") else None,
                   str(detail["reason"]) if detail.get("reason") else None,
                   str(detail["deletion-type"]) if detail.get("deletion-type") else None)

    @property
    def version(self) -> str:
        """The version id, else the ETag (an unversioned bucket): what names this version's execution."""
        return self.version_id or self.etag or ""

    @property
    def is_delete_marker(self) -> bool:
        return self.detail_type == OBJECT_DELETED and self.deletion_type == DELETE_MARKER_CREATED
