"""Lambda steps `Prepare Ray2 batch` and `Collect Ray2 batch`: a batch of Luma Ray2 clips' StartAsyncInvoke
requests before the state machine starts and polls the jobs (AWS SDK integration, a Wait loop), and the clips
the jobs wrote to S3 into the cache, with the same provenance as `--video bedrock` in a local run, after it.

The requests are the local backend's (pipeline/backends/video_bedrock.py `start_request`: the body, the output
prefix under the clip's content key, the idempotency token, here of the key and the run: attempt_token), written in the AWS SDK
integration's PascalCase: "Parameters in Step Functions are expressed in PascalCase, even if the native service
API is in camelCase" (https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html). Only
structure members are renamed; `modelInput` is a document (botocore's bedrock-runtime model) and goes to the
model as written, as other SDK-integration examples pass documents (e.g. Converse's additionalModelRequestFields).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.video_bedrock import client_request_token, failure_error, ray2_outcome, start_request
from pipeline.cloud.contract import (
    DEFAULT_RAY2_MAX_POLLS,
    DEFAULT_RAY2_POLL_S,
    RAY2_JOBS_FOLDER,
    RAY2_OUTPUT_PREFIX,
    RAY2_START_FIELDS,
)
from pipeline.cloud.events import StepError, need, need_str
from pipeline.cloud.failures import describe_failure
from pipeline.cloud.job_step import save_result
from pipeline.cloud.names import RunRef
from pipeline.cloud.outputs import JobOutputs
from pipeline.cloud.rundoc import load_run
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import JobFailed, PipelineError, PollLimitExceeded
from pipeline.storage.store import Store
from pipeline.tasks import is_done, missing_dependency
from pipeline.tasks.clips import clip_request, run_clip_batch


def output_s3_uri(settings: CloudSettings) -> str:
    return f"s3://{settings.need('output_bucket')}/{RAY2_OUTPUT_PREFIX}"


def sfn_cased(value: Any, shape: Any) -> Any:
    """A botocore-shaped request as the AWS SDK integration takes it: structure members in PascalCase,
    documents and scalars as they are."""
    if shape.type_name == "structure" and not shape.metadata.get("document") and isinstance(value, Mapping):
        return {k[:1].upper() + k[1:]: sfn_cased(v, shape.members[k]) for k, v in value.items()}
    return value


@functools.cache
def _start_shape() -> Any:
    """StartAsyncInvoke's input shape, read from botocore's model once per process (a new session re-reads the
    service's JSON file each time)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("StartAsyncInvoke").input_shape


attempt_token = client_request_token  # in the cloud, an attempt is a run: its id


# --- typed events ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ray2BatchEvent:
    """`Prepare Ray2 batch`: the batch's id and clip job ids."""

    batch: str
    jobs: tuple[str, ...]
    run: RunRef

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> Ray2BatchEvent:
        return cls(need_str(d, "batch"), tuple(str(j) for j in need(d, "jobs")), RunRef.from_dict(need(d, "run")))


@dataclass(frozen=True)
class Ray2JobEnd:
    """How one clip's job ended, as the state machine recorded it (runs/.../ray2-jobs/<key>.json): GetAsyncInvoke's
    last answer (`got`, PascalCase), or the error that ended it early (a start that failed past its retries,
    the poll limit)."""

    key: str
    got: Mapping[str, Any] | None
    error: StepError | None

    @classmethod
    def from_record(cls, key: str, doc: Any) -> Ray2JobEnd:
        if isinstance(doc, Mapping) and "Error" in doc:
            return cls(key, None, StepError.from_state(doc))
        return cls(key, doc if isinstance(doc, Mapping) else None, None)


@dataclass(frozen=True)
class Ray2CollectEvent:
    """`Collect Ray2 batch`: the batch, the clips whose jobs were started (`prepared.clips`), and the error of a
    step that failed as a whole (prepare, or the Map over the jobs)."""

    batch: str
    jobs: tuple[str, ...]
    run: RunRef
    started: tuple[str, ...]
    error: StepError | None

    @classmethod
    def from_event(cls, d: Mapping[str, Any]) -> Ray2CollectEvent:
        prepared = d.get("prepared")
        clips = prepared.get("clips") if isinstance(prepared, Mapping) else None
        started = tuple(str(c["key"]) for c in clips) if isinstance(clips, list) else ()
        return cls(need_str(d, "batch"), tuple(str(j) for j in need(d, "jobs")), RunRef.from_dict(need(d, "run")),
                   started, StepError.from_state(d.get("error")))


def job_record_key(ref: RunRef, clip_key: str) -> str:
    """Where the state machine writes how a clip's job ended (build.py's `Record ... Ray2 job end` states)."""
    return f"{ref.prefix}/{RAY2_JOBS_FOLDER}/{clip_key}.json"


def read_job_ends(store: Store, event: Ray2CollectEvent) -> dict[str, Ray2JobEnd]:
    ends = {}
    for key in event.started:
        record = job_record_key(event.run, key)
        if store.exists(record):
            ends[key] = Ray2JobEnd.from_record(key, json.loads(store.read_bytes(record)))
    return ends


# --- the steps ---------------------------------------------------------------------------------------------------


def prepare_ray2_batch(event: Ray2BatchEvent, *, store: Store, s3: Any, settings: CloudSettings,
                       workdir: Path) -> dict[str, Any]:
    """One StartAsyncInvoke request per clip to make (cached clips, clips waiting on a failed job and clips
    whose request cannot be built are left out: the collect step records them), and how to poll."""
    run = load_run(store, event.run)
    ctx = run.task_context(store=store, settings=settings, s3=s3, workdir=workdir)
    shape = _start_shape()
    clips = []
    for job in (run.plan.job(j) for j in event.jobs):
        if is_done(store, job) or missing_dependency(job, store, run.plan):
            continue
        try:
            clip, _ = clip_request(job, ctx)
            request = sfn_cased(start_request(clip, output_s3_uri=output_s3_uri(settings), attempt=event.run.run_id), shape)
        except Exception:  # noqa: BLE001,S112 - collect builds the same request and records this failure
            continue
        if set(request) != set(RAY2_START_FIELDS):  # the start state passes exactly these fields on
            raise ValueError(f"the StartAsyncInvoke request has fields {sorted(request)}, the state machine passes "
                             f"{sorted(RAY2_START_FIELDS)}: add the field to RAY2_START_FIELDS and rebuild the ASL "
                             "(python -m state_machines.build --write)")
        # One attempt (this run) stays idempotent: a retried start is the same job. A later run of a clip whose
        # job failed must be a new request, not the earlier failed invocation that the same token returns.
        request["ClientRequestToken"] = attempt_token(clip.key, event.run.run_id)
        clips.append({"key": clip.key, "request": request})
    poll = {"wait_s": DEFAULT_RAY2_POLL_S if settings.ray2_poll_s is None else settings.ray2_poll_s,
            "max_polls": settings.ray2_max_polls or DEFAULT_RAY2_MAX_POLLS}
    return {"start": bool(clips), "clips": clips, "poll": poll}


@dataclass
class Ray2Outputs(JobOutputs):
    """A VideoBackend whose `render` reads how each clip's job ended in the state machine and fetches its MP4
    (video_bedrock.ray2_outcome) instead of rendering. `name` and `identity` are the plan's video backend's."""

    s3: Any
    output_s3_uri: str
    event: Ray2CollectEvent
    ended: Mapping[str, Ray2JobEnd]

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        ended = self.ended
        return [ray2_outcome(r, invocation_arn=_arn(ended.get(r.key)), error=self._error(r, ended.get(r.key)),
                             s3=self.s3, output_s3_uri=self.output_s3_uri, out_dir=out_dir, backend="bedrock")
                for r in requests]

    def _error(self, request: ClipRequest, end: Ray2JobEnd | None) -> PipelineError | None:
        key = request.key
        if end is None:
            if self.event.error is not None:
                name, message = describe_failure(self.event.error)
                return JobFailed(f"clip {key}: the Ray2 batch failed before this clip's job ended: {name}: {message}")
            if key not in self.event.started:
                return JobFailed(f"clip {key}: not part of the started batch (it became ready after the batch was prepared)")
            return JobFailed(f"clip {key}: the state machine recorded no end for this clip's job")
        if end.error is not None:
            name, message = describe_failure(end.error)
            if name == PollLimitExceeded.__name__:
                return PollLimitExceeded(f"clip {key}: {message}")
            # a start Bedrock refused (validation, access, a moderated prompt): the content filter words decide
            return failure_error(f"{name}: {message}", key=key)
        status = str((end.got or {}).get("Status"))
        if status == "Completed":
            return None
        if status == "Failed":
            return failure_error((end.got or {}).get("FailureMessage"), key=key)
        return JobFailed(f"clip {key}: the Ray2 job ended with status {status!r}")


def _arn(end: Ray2JobEnd | None) -> str | None:
    arn = (end.got or {}).get("InvocationArn") if end else None
    return str(arn) if arn else None


def collect_ray2_batch(event: Ray2CollectEvent, *, store: Store, s3: Any, settings: CloudSettings,
                       workdir: Path) -> dict[str, Any]:
    """Run `run_clip_batch` (the local runner's clip task) over the batch with the jobs' outputs as its backend:
    cached and skipped clips are recorded as such, finished ones are read back and stored under
    cache/clip/<key>.mp4 with provenance, and a failed, filtered or timed-out job fails its clip alone."""
    run = load_run(store, event.run)
    backends = run.backends(settings)
    outputs = Ray2Outputs(backend=backends.video, s3=s3, output_s3_uri=output_s3_uri(settings), event=event,
                          ended=read_job_ends(store, event))
    ctx = run.task_context(store=store, settings=settings, s3=s3, workdir=workdir, backends=backends.with_video(outputs))
    counts: dict[str, int] = {}
    for result in run_clip_batch([run.plan.job(j) for j in event.jobs], ctx):
        save_result(store, event.run, result)
        counts[result.status] = counts.get(result.status, 0) + 1
    return {"batch": event.batch, "status": counts}
