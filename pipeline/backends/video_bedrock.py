"""The `bedrock` video backend: Luma Ray2 clips through Bedrock's async API, and the pieces the cloud reuses.

Per batch: StartAsyncInvoke for every clip (output to S3 under the clip's content key, an idempotency token
derived from that key so a retried start does not start, or bill, a second job), then GetAsyncInvoke for
each until Completed or Failed (the interval grows by half each round up to a ceiling), then the MP4 is
downloaded, read back (duration and aspect ratio against the request) and handed to the task, which stores
it under the clip's key. Throttling and 5xx are retried with exponential backoff and full jitter
(pipeline/backends/bedrock.py); a content filter or validation failure fails that clip alone.

Shapes checked against botocore's bedrock-runtime model (2023-09-30): StartAsyncInvoke {modelId, modelInput
(document), outputDataConfig.s3OutputDataConfig.s3Uri, clientRequestToken (idempotency token, 1..256 of
[!-~])} -> {invocationArn}; GetAsyncInvoke {invocationArn} -> {status InProgress|Completed|Failed,
failureMessage, outputDataConfig}. The body is the Bedrock user guide's "Luma AI models" page.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.bedrock import RetryPolicy, _LazyClient, _map_error, _Where, _with_retries
from pipeline.catalog import RAY2, Ray2Settings
from pipeline.errors import BackendUnavailable, ContentFiltered, InputRejected, JobFailed, PipelineError
from pipeline.storage.store import parse_s3_uri

OUTPUT_ENV = "CAMPAIGN_BEDROCK_OUTPUT_S3_URI"
POLL_ENV = "CAMPAIGN_BEDROCK_POLL_S"
STATUSES = ("InProgress", "Completed", "Failed")  # botocore's AsyncInvokeStatus enum
DEFAULT_POLL_S = 10.0
MAX_POLL_S = 60.0
DEFAULT_MAX_WAIT_S = 3600.0  # a stuck job fails its clip after this, instead of holding the run forever
DEFAULT_MAX_BATCH = 8
DURATION_TOLERANCE_S = 0.5  # a clip within half a second of the asked duration is accepted
ASPECT_TOLERANCE = 0.03
# Bedrock's failureMessage wording for a moderated prompt or output is not documented [unverified]: these
# words mark a failure as ContentFiltered (reported as such), anything else as JobFailed.
FILTER_WORDS = re.compile(r"filter|moderat|safety|responsible ai|policy|blocked|inappropriate", re.IGNORECASE)


def client_request_token(key: str, attempt: str) -> str:
    """StartAsyncInvoke's clientRequestToken for one attempt at a clip: its content key and the attempt, hashed to
    fit the token's pattern `[a-zA-Z0-9](-*[a-zA-Z0-9])*` and 1-256 characters (botocore's bedrock-runtime model).
    Retries within one attempt (a throttled start) send the same token and so are one job; the next attempt (a
    later run of a clip whose job failed) is a new request, not the earlier failed invocation handed back."""
    return "clip-" + hashlib.sha256(f"{key}\n{attempt}".encode()).hexdigest()[:59]


def output_prefix(output_s3_uri: str, key: str) -> str:
    """Where Bedrock writes one clip's job: a folder per content key, so its MP4 is found without guessing."""
    return f"{output_s3_uri.rstrip('/')}/{key}"


def start_request(request: ClipRequest, *, output_s3_uri: str, attempt: str) -> dict[str, Any]:
    """The StartAsyncInvoke parameters for one Ray2 clip (the cloud's prepare step sends the same)."""
    settings = _settings(request)
    if not 1 <= len(request.prompt) <= RAY2.max_prompt_chars:
        raise InputRejected(f"clip {request.key}: {RAY2.name} takes a prompt of 1 to {RAY2.max_prompt_chars} "
                            f"characters, got {len(request.prompt)}")
    if request.image is not None:  # manifest validation refuses this; a hand-made plan must not slip through
        raise InputRejected(f"clip {request.key}: {RAY2.name} on Bedrock has no documented start-image field")
    return {"modelId": RAY2.model_id, "modelInput": settings.model_input(request.prompt),
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_prefix(output_s3_uri, request.key)}},
            "clientRequestToken": client_request_token(request.key, attempt)}


def _settings(request: ClipRequest) -> Ray2Settings:
    if request.model != RAY2.name or request.ray2 is None:
        raise InputRejected(f"clip {request.key}: the bedrock video backend makes {RAY2.name} clips only, "
                            f"not {request.model}")
    return request.ray2


def failure_error(message: str | None, *, key: str) -> JobFailed:
    text = message or "no failureMessage given"
    if FILTER_WORDS.search(text):
        return ContentFiltered(f"clip {key}: {RAY2.name} refused the prompt or its output: {text}")
    return JobFailed(f"clip {key}: the {RAY2.name} job failed: {text}")


def find_output_key(s3: Any, prefix_uri: str, invocation_arn: str | None) -> tuple[str, str]:
    """(bucket, key) of the MP4 a job wrote under `prefix_uri`. Bedrock writes into a folder named after the
    invocation [unverified for Ray2; documented for Nova Reel as <s3Uri>/<invocation id>/output.mp4], so
    that folder's MP4 wins; otherwise the only MP4 under the prefix."""
    bucket, prefix = parse_s3_uri(prefix_uri.rstrip("/") + "/")
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".mp4")]
    if invocation_arn:
        invocation_id = invocation_arn.rsplit("/", 1)[-1]
        mine = [k for k in found if f"/{invocation_id}/" in k]
        if mine:
            return bucket, sorted(mine)[0]
    if len(found) == 1:
        return bucket, found[0]
    raise JobFailed(f"the {RAY2.name} job left {len(found)} MP4 files under {prefix_uri}: "
                    f"{sorted(found)[:5] or 'none'}")


def verify_clip(path: Path, settings: Ray2Settings, *, key: str) -> dict[str, Any]:
    """Read the downloaded clip back: its duration and aspect ratio must be what was asked. Returns what was
    measured (the exact pixel size and fps are not documented, see catalog.py)."""
    import imageio_ffmpeg  # here, not at import: the cloud's plan step keys Ray2 clips without the media layer
    try:
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is not a usable clip
        raise JobFailed(f"clip {key}: the {RAY2.name} output is not a readable MP4: {exc}") from exc
    width, height = (int(v) for v in meta["size"])
    measured = {"frames": frames, "seconds": round(seconds, 3), "width": width, "height": height,
                "fps": float(meta.get("fps") or 0.0)}
    problems = []
    if abs(seconds - settings.duration_s) > DURATION_TOLERANCE_S:
        problems.append(f"lasts {seconds:.2f} s, asked {settings.duration_s} s")
    w, h = (int(x) for x in settings.aspect_ratio.split(":"))
    if height <= 0 or abs(width / height - w / h) > ASPECT_TOLERANCE * (w / h):
        problems.append(f"is {width}x{height}, not {settings.aspect_ratio}")
    if problems:
        raise JobFailed(f"clip {key}: the {RAY2.name} output " + " and ".join(problems))
    return measured


@dataclass
class _Job:
    request: ClipRequest
    arn: str | None = None
    status: str = "NotStarted"
    failure: str | None = None
    error: PipelineError | None = None
    started: float = 0.0


class BedrockVideoBackend:
    """VideoBackend for Luma Ray2 on Bedrock (`--video bedrock`); `output_s3_uri` receives the jobs' MP4s."""

    name = "bedrock"
    models = (RAY2.name,)

    def __init__(self, *, output_s3_uri: str, region: str | None = None, client: Any | None = None,
                 s3: Any | None = None, poll_s: float = DEFAULT_POLL_S, max_poll_s: float = MAX_POLL_S,
                 max_wait_s: float = DEFAULT_MAX_WAIT_S, max_batch: int = DEFAULT_MAX_BATCH,
                 retry: RetryPolicy | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print) -> None:
        parse_s3_uri(output_s3_uri.rstrip("/") + "/")  # raises with the bad value
        self.output_s3_uri = output_s3_uri.rstrip("/")
        self._runtime = _LazyClient(region=region, client=client, read_timeout_s=60)
        self._s3 = s3
        self._s3_lock = threading.Lock()
        self.poll_s, self.max_poll_s, self.max_wait_s = poll_s, max_poll_s, max_wait_s
        self.max_batch = max_batch
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.log = log

    @classmethod
    def from_options(cls, options: Mapping[str, str], env: Mapping[str, str]) -> BedrockVideoBackend:
        uri = options.get("bedrock_output_s3_uri") or env.get(OUTPUT_ENV)
        if not uri:
            raise BackendUnavailable(f"--video bedrock needs an S3 location for the Ray2 outputs: "
                                     f"--bedrock-output s3://BUCKET/PREFIX or {OUTPUT_ENV}")
        try:  # the poll interval is a setting for tests and impatient users, not a manifest concern
            poll = float(options.get("bedrock_poll_s") or env.get(POLL_ENV) or DEFAULT_POLL_S)
            return cls(output_s3_uri=uri, poll_s=poll, max_poll_s=max(poll, min(MAX_POLL_S, poll * 6)))
        except ValueError as exc:
            raise BackendUnavailable(f"bedrock_output_s3_uri: {exc}") from exc

    def identity(self, model: str) -> str:
        return f"bedrock:{RAY2.model_id}" if model == RAY2.name else f"bedrock:unsupported:{model}"

    @property
    def s3(self) -> Any:
        with self._s3_lock:
            if self._s3 is None:
                import boto3

                self._s3 = boto3.client("s3")
            return self._s3

    def _where(self, what: str) -> _Where:
        return _Where(what, RAY2.model_id, self._runtime.region)

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [_Job(r) for r in requests]
        attempt = uuid.uuid4().hex  # this render is one attempt at each of its clips (see client_request_token)
        # 1. Start every clip first: Bedrock runs them side by side.
        for job in jobs:
            self._start(job, attempt)
        # 2. Wait for all of them, polling each with a growing interval.
        self._wait(jobs)
        # 3. Download and check each finished clip.
        return [self._fetch(job, out_dir) for job in jobs]

    def _start(self, job: _Job, attempt: str) -> None:
        try:
            params = start_request(job.request, output_s3_uri=self.output_s3_uri, attempt=attempt)
            where = self._where(f"clip {job.request.key}")
            response, attempts = _with_retries(lambda: self._runtime.get().start_async_invoke(**params), where=where,
                                               policy=self.retry, rng=self.rng, sleep=self.sleep)
        except PipelineError as exc:
            job.error, job.status = exc, "NotStarted"
            self.log(f"bedrock: could not start clip {job.request.key}: {exc}")
            return
        job.arn, job.status, job.started = str(response["invocationArn"]), "InProgress", time.monotonic()
        self.log(f"bedrock: started {RAY2.model_id} for clip {job.request.key[:12]} ({job.arn})"
                 + (f" after {attempts} attempts" if attempts > 1 else ""))

    def _wait(self, jobs: list[_Job]) -> None:
        interval = self.poll_s
        deadline = time.monotonic() + self.max_wait_s
        while True:
            running = [j for j in jobs if j.error is None and j.status == "InProgress"]
            if not running:
                return
            if time.monotonic() > deadline:
                for j in running:
                    j.error = JobFailed(f"clip {j.request.key}: the {RAY2.name} job {j.arn} was still InProgress "
                                        f"after {self.max_wait_s:.0f} s")
                return
            self.sleep(interval)
            for job in running:
                self._poll(job)
            interval = min(self.max_poll_s, interval * 1.5)

    def _poll(self, job: _Job) -> None:
        arn = job.arn
        assert arn is not None
        try:
            got, _ = _with_retries(lambda: self._runtime.get().get_async_invoke(invocationArn=arn),
                                   where=self._where(f"clip {job.request.key}"), policy=self.retry, rng=self.rng,
                                   sleep=self.sleep)
        except PipelineError as exc:
            job.error = exc
            return
        status = str(got.get("status"))
        if status not in STATUSES:
            job.error = JobFailed(f"clip {job.request.key}: unknown async invoke status {status!r}")
            return
        if status != job.status:
            self.log(f"bedrock: clip {job.request.key[:12]} {status} ({time.monotonic() - job.started:.0f}s)")
        job.status, job.failure = status, got.get("failureMessage")

    def _fetch(self, job: _Job, out_dir: Path) -> ClipOutcome:
        if job.error is None and job.status == "Failed":
            job.error = failure_error(job.failure, key=job.request.key)
        return ray2_outcome(job.request, invocation_arn=job.arn, error=job.error, s3=self.s3,
                            output_s3_uri=self.output_s3_uri, out_dir=out_dir, backend=self.name,
                            wall_s=round(time.monotonic() - job.started, 3), where=self._where(f"clip {job.request.key}"))


def ray2_outcome(request: ClipRequest, *, invocation_arn: str | None, error: PipelineError | None, s3: Any,
                 output_s3_uri: str, out_dir: Path, backend: str, wall_s: float | None = None,
                 where: _Where | None = None) -> ClipOutcome:
    """One Ray2 clip's outcome once its job has ended: `error` (how the job failed), or its MP4 found under the
    clip's output prefix, downloaded and read back. The local backend and the cloud's collect step
    (pipeline/cloud/ray2.py) both record clips through here, so their provenance is the same."""
    extra: dict[str, Any] = {"invocation_arn": invocation_arn, "model_id": RAY2.model_id}
    if error is None:
        try:
            bucket, key = find_output_key(s3, output_prefix(output_s3_uri, request.key), invocation_arn)
            path = out_dir / f"{request.key}.mp4"
            s3.download_file(bucket, key, str(path))
            measured = verify_clip(path, _settings(request), key=request.key)
            extra |= {"output": f"s3://{bucket}/{key}", "measured": measured}
            return ClipOutcome(request.key, path, backend, timings={"wall_s": wall_s} if wall_s is not None else {},
                               extra=extra)
        except PipelineError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - an S3 failure fails this clip, not the batch
            error = (_map_error(exc, where or _Where(f"clip {request.key} output", RAY2.model_id, "S3")) if _is_boto(exc)
                     else JobFailed(f"clip {request.key}: {type(exc).__name__}: {exc}"))
    return ClipOutcome(request.key, None, backend, error=str(error), error_type=type(error).__name__, extra=extra)


def _is_boto(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))
