"""The `sagemaker` video backend: clip batches as SageMaker processing jobs running container/generate.py.

For each batch (clips of one pipeline folder, at most `max_batch`): upload the jobs file and start images
to S3, create the processing job from `pipeline.backends.sagemaker_jobs.processing_job_request` (the same request the
state machine sends), poll until it ends, download <key>.mp4 and <key>.json. boto3 clients are created on
first use from the standard AWS configuration (profile, AWS_REGION, AWS_ENDPOINT_URL_<SERVICE>).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.sagemaker_jobs import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_RUNTIME_S,
    DEFAULT_VOLUME_GB,
    batch_clips,
    clip_outcome,
    fetch_clip_output,
    pipeline_folder,
    processing_job_name,
    processing_job_request,
    upload_batch_inputs,
)
from pipeline.backends.sagemaker_jobs import (
    container_args as parse_container_args,
)
from pipeline.errors import BackendUnavailable
from pipeline.plan.pricing import DEFAULT_INSTANCE_TYPE
from pipeline.storage.store import parse_s3_uri

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")


@dataclass
class _Submitted:
    name: str
    batch: list[ClipRequest]
    output_s3_uri: str
    status: str = "InProgress"
    failure_reason: str | None = None
    error: Exception | None = None  # set when the job could not even be created


class SageMakerVideoBackend:
    """Renders clip batches on SageMaker Processing; `work_s3_uri` receives each job's inputs and outputs."""

    name = "sagemaker"

    def __init__(
        self,
        *,
        image_uri: str,
        role_arn: str,
        models_s3_uri: str,
        work_s3_uri: str,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
        volume_gb: int = DEFAULT_VOLUME_GB,
        max_runtime_s: int = DEFAULT_MAX_RUNTIME_S,
        max_batch: int = DEFAULT_MAX_BATCH,
        container_args: str | Sequence[str] = (),
        compile_cache_s3_uri: str | None = None,
        environment: Mapping[str, str] | None = None,
        job_prefix: str = "clips",
        poll_s: float = 30.0,
        session: Any = None,
        log: Callable[[str], None] = print,
    ) -> None:
        parse_s3_uri(models_s3_uri)  # each raises with the bad value
        parse_s3_uri(work_s3_uri)
        self.image_uri = image_uri
        self.role_arn = role_arn
        self.models_s3_uri = models_s3_uri.rstrip("/")
        self.work_s3_uri = work_s3_uri.rstrip("/")
        self.instance_type = instance_type
        self.volume_gb = volume_gb
        self.max_runtime_s = max_runtime_s
        self.max_batch = max_batch
        self.container_args = parse_container_args(container_args)  # raises with the bad flag
        self.compile_cache_s3_uri = compile_cache_s3_uri
        self.environment = dict(environment or {})
        self.job_prefix = job_prefix
        self.poll_s = poll_s
        self._session = session
        self._clients: dict[str, Any] = {}
        self._client_lock = threading.Lock()
        self.log = log

    # Clients on first use, never at import or construction: a missing region or credential shows up
    # where it is needed, with boto3's own message.
    def _client(self, service: str) -> Any:
        with self._client_lock:  # the runner's threads may ask at once; boto3 sessions are not thread-safe
            if service not in self._clients:
                if self._session is None:
                    import boto3

                    self._session = boto3.session.Session()
                self._clients[service] = self._session.client(service)
            return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @property
    def s3(self) -> Any:
        return self._client("s3")

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> SageMakerVideoBackend:
        """From the CLI's `--sagemaker-option KEY=VALUE` strings. `bucket=B` stands for work_s3_uri=s3://B/sagemaker."""
        known = {"image_uri", "role_arn", "models_s3_uri", "work_s3_uri", "bucket", "instance_type", "volume_gb",
                 "max_runtime_s", "max_batch", "poll_s", "job_prefix", "container_args", "compile_cache_s3_uri"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BackendUnavailable(f"unknown --sagemaker-option {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = dict(options)
        if "bucket" in values:
            bucket = values.pop("bucket")
            values.setdefault("work_s3_uri", f"s3://{bucket}/sagemaker")
        missing = sorted({"image_uri", "role_arn", "models_s3_uri", "work_s3_uri"} - set(values))
        if missing:
            raise BackendUnavailable(f"--video sagemaker needs --sagemaker-option for {missing} "
                                     "(work_s3_uri may be given as bucket=NAME)")
        try:
            for name in ("volume_gb", "max_runtime_s", "max_batch"):
                if name in values:
                    values[name] = int(values[name])
            if "poll_s" in values:
                values["poll_s"] = float(values["poll_s"])
            return cls(**values)
        except ValueError as exc:  # a number that is not one, or a container argument that is not allowed
            raise BackendUnavailable(f"--sagemaker-option: {exc}") from exc

    def identity(self, model: str) -> str:
        """The container image and the weights prefix: a new image or new weights make new clips."""
        return f"sagemaker/{model}@{self.image_uri}|{self.models_s3_uri}"

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # 1. Submit every batch first, so the batches run in parallel on separate instances.
        submitted = [self._submit(batch) for batch in batch_clips(requests, self.max_batch)]
        # 2. Wait for all of them.
        self._wait(submitted)
        # 3. Fetch each clip's outputs.
        outcomes: dict[str, ClipOutcome] = {}
        for job in submitted:
            for request in job.batch:
                outcomes[request.key] = self._fetch(job, request, out_dir, wall_s=time.monotonic() - started)
        return [outcomes[request.key] for request in requests]

    def _submit(self, batch: list[ClipRequest]) -> _Submitted:
        keys = [r.key for r in batch]
        name = processing_job_name(self.job_prefix, keys, suffix=datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
        base = f"{self.work_s3_uri}/{name}"
        job = _Submitted(name=name, batch=batch, output_s3_uri=f"{base}/output/")
        try:
            jobs_s3_uri = upload_batch_inputs(batch, f"{base}/input/jobs/", s3=self.s3)
            job_request = processing_job_request(
                job_name=name, image_uri=self.image_uri, role_arn=self.role_arn, instance_type=self.instance_type,
                volume_gb=self.volume_gb, jobs_s3_uri=jobs_s3_uri, models_s3_uri=self.models_s3_uri,
                output_s3_uri=job.output_s3_uri, max_runtime_s=self.max_runtime_s, environment=self.environment,
                model_folders=[pipeline_folder(batch[0])], speed_args=self.container_args,
                compile_cache_s3_uri=self.compile_cache_s3_uri,
            )
            self.sagemaker.create_processing_job(**job_request)
            self.log(f"sagemaker: started {name} ({len(batch)} clip(s), {pipeline_folder(batch[0])}, {self.instance_type})")
        except Exception as exc:  # noqa: BLE001 - a batch that cannot start fails its clips, not the render
            job.status, job.error = "NotStarted", exc
            self.log(f"sagemaker: could not start {name}: {type(exc).__name__}: {exc}")
        return job

    def _wait(self, jobs: list[_Submitted]) -> None:
        """Poll DescribeProcessingJob until every job ends; one line per status change, one per poll while running."""
        deadline = time.monotonic() + self.max_runtime_s + 1800  # SageMaker stops it at max_runtime_s; allow for start/upload
        started = time.monotonic()
        while True:
            running = [job for job in jobs if job.error is None and job.status not in TERMINAL_STATUSES]
            if not running:
                return
            for job in running:
                described = self.sagemaker.describe_processing_job(ProcessingJobName=job.name)
                status = described["ProcessingJobStatus"]
                if status != job.status or status not in TERMINAL_STATUSES:
                    self.log(f"sagemaker: {job.name} {status} ({time.monotonic() - started:.0f}s)")
                job.status, job.failure_reason = status, described.get("FailureReason")
            if all(job.error is not None or job.status in TERMINAL_STATUSES for job in jobs):
                return
            if time.monotonic() > deadline:
                for job in jobs:
                    if job.error is None and job.status not in TERMINAL_STATUSES:
                        job.error = TimeoutError(f"{job.name} still {job.status} after {self.max_runtime_s + 1800}s")
                return
            time.sleep(self.poll_s)

    def _fetch(self, job: _Submitted, request: ClipRequest, out_dir: Path, *, wall_s: float) -> ClipOutcome:
        if job.error is not None:
            return ClipOutcome(key=request.key, path=None, backend=self.name, error=str(job.error),
                               error_type=type(job.error).__name__, extra={"processing_job": job.name})
        ended = None if job.status == "Completed" else (
            f"{job.name} ended {job.status}" + (f": {job.failure_reason}" if job.failure_reason else ""))
        outcome = clip_outcome(request, fetch_clip_output(request, job.output_s3_uri, out_dir, s3=self.s3),
                               backend=self.name, job_name=job.name, job_failure=ended)
        if outcome.path is None:
            return outcome
        return replace(outcome, timings={**outcome.timings, "batch_wall_s": round(wall_s, 3)})
