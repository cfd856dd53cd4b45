"""Lambda steps `Prepare clip batch` and `Collect clip batch`: a batch's inputs and CreateProcessingJob request
before the GPU job, its clips into the cache (with the same provenance as a local run) after it. A batch of
Luma Ray2 clips (`service: bedrock`) goes to the same functions and on to pipeline/cloud/ray2.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.backends import RoutingVideoBackend
from pipeline.backends.base import ClipOutcome, ClipRequest, VideoBackend
from pipeline.backends.sagemaker_jobs import (
    DEFAULT_MAX_RUNTIME_S,
    DEFAULT_VOLUME_GB,
    clip_outcome,
    container_args,
    fetch_clip_output,
    pipeline_folder,
    processing_job_name,
    processing_job_request,
    upload_batch_inputs,
)
from pipeline.cloud.contract import RENDER_REQUEST_FIELDS
from pipeline.cloud.events import CollectBatchEvent, PrepareBatchEvent
from pipeline.cloud.failures import describe_failure
from pipeline.cloud.job_step import save_result
from pipeline.cloud.names import batch_s3_uri
from pipeline.cloud.outputs import JobOutputs
from pipeline.cloud.ray2 import Ray2BatchEvent, Ray2CollectEvent, collect_ray2_batch, prepare_ray2_batch
from pipeline.cloud.rundoc import load_run
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import JobFailed
from pipeline.plan.pricing import DEFAULT_INSTANCE_TYPE
from pipeline.plan.schedule import BEDROCK
from pipeline.storage.store import Store
from pipeline.tasks import is_done, missing_dependency
from pipeline.tasks.clips import clip_request, run_clip_batch


def prepare_clip_batch(event: PrepareBatchEvent, *, store: Store, s3: Any, settings: CloudSettings,
                       workdir: Path) -> dict[str, Any]:
    """Write the batch's jobs file and start images to S3 and render its CreateProcessingJob request
    (pipeline/backends/sagemaker_jobs.py builds it; the state passes it on whole). Clips already cached, waiting on a
    failed job or whose request cannot be built are left out: the collect step records them.

    Safe to run again for the same batch: the state machine does so after a job SageMaker could not start
    (no capacity), with `attempt` counting up. Each attempt gets a job name (and inputs/outputs folder) of
    its own, since SageMaker never reuses a name; clips cached meanwhile are left out."""
    ref = event.run
    run = load_run(store, ref)
    plan = run.plan
    ctx = run.task_context(store=store, settings=settings, s3=s3, workdir=workdir)
    todo: list[ClipRequest] = []
    for job in (plan.job(j) for j in event.jobs):
        if is_done(store, job) or missing_dependency(job, store, plan):
            continue
        try:
            clip, _ = clip_request(job, ctx)
        except Exception:  # noqa: BLE001,S112 - collect builds the same request and records this failure
            continue
        todo.append(clip)
    if not todo:
        return {"render": False, "request": None, "clips": 0}

    bucket = settings.need("output_bucket")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    if event.attempt > 1:  # a retry within the same second still gets a new name
        stamp += f"-a{event.attempt}"
    # Job names are unique per account and Region: the run id (the execution's name) is part of the hash, so
    # two runs of one campaign preparing the same batch in the same second still get two names.
    job_name = processing_job_name(f"{ref.campaign}-{event.batch}", [r.key for r in todo] + [ref.run_id], suffix=stamp)
    base = batch_s3_uri(bucket, ref, event.batch, job_name)
    jobs_uri = upload_batch_inputs(todo, f"{base}/input/", s3=s3)
    request: dict[str, Any] = processing_job_request(
        job_name=job_name, image_uri=settings.need("sagemaker_image_uri"), role_arn=settings.need("sagemaker_role_arn"),
        instance_type=settings.instance_type or DEFAULT_INSTANCE_TYPE, volume_gb=settings.volume_gb or DEFAULT_VOLUME_GB,
        jobs_s3_uri=jobs_uri, models_s3_uri=settings.need("models_s3_uri"), output_s3_uri=f"{base}/output/",
        max_runtime_s=settings.max_runtime_s or DEFAULT_MAX_RUNTIME_S,
        environment={"CAMPAIGN": ref.campaign, "CAMPAIGN_RUN_ID": ref.run_id, "CAMPAIGN_BATCH": event.batch},
        model_folders=[pipeline_folder(todo[0])], speed_args=container_args(settings.container_args or ""),
        compile_cache_s3_uri=settings.compile_cache_s3_uri,
    )
    if set(request) != set(RENDER_REQUEST_FIELDS):  # the render state passes exactly these fields on
        raise ValueError(f"the CreateProcessingJob request has fields {sorted(request)}, the state machine passes "
                         f"{sorted(RENDER_REQUEST_FIELDS)}: add the field to RENDER_REQUEST_FIELDS and rebuild the ASL "
                         "(python -m state_machines.build --write)")
    return {"render": True, "request": request, "clips": len(todo)}


@dataclass
class BatchOutputs(JobOutputs):
    """A VideoBackend whose `render` fetches what a finished processing job wrote (<key>.mp4 and <key>.json)
    instead of rendering; with `failure` set (the render state's error), clips the job left nothing for
    carry it. `name` and `identity` are the plan's video backend's, so provenance reads as in a local run."""

    s3: Any
    output_s3_uri: str | None
    job_name: str | None
    failure: str | None = None

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        if self.output_s3_uri is None or self.job_name is None:
            if self.failure is not None:
                raise JobFailed(f"the clip batch failed before its outputs were written: {self.failure}")
            raise JobFailed("the clip was not part of the rendered batch (it became ready after the batch was prepared)")
        return [clip_outcome(r, fetch_clip_output(r, self.output_s3_uri, Path(out_dir), s3=self.s3),
                             backend=_backend_name(self.backend, r.model),
                             job_name=self.job_name, job_failure=self.failure) for r in requests]


def _backend_name(backend: VideoBackend, model: str) -> str:
    """The name a clip's record gives its backend: under `sagemaker+bedrock` (say), the one that makes its model."""
    return backend.backend_for(model).name if isinstance(backend, RoutingVideoBackend) else backend.name


def collect_clip_batch(event: CollectBatchEvent, *, store: Store, s3: Any, settings: CloudSettings,
                       workdir: Path) -> dict[str, Any]:
    """Run `run_clip_batch` (the local runner's clip task) over the batch with the processing job's outputs
    as its backend: cached and skipped clips are recorded as such, rendered ones are copied into
    cache/clip/<key>.mp4 with provenance, and a failed render fails each clip it did not finish."""
    run = load_run(store, event.run)
    backends = run.backends(settings)
    failure = ": ".join(describe_failure(event.error)) if event.error else None
    outputs = BatchOutputs(backend=backends.video, s3=s3, output_s3_uri=event.output_s3_uri, job_name=event.job_name,
                           failure=failure)
    ctx = run.task_context(store=store, settings=settings, s3=s3, workdir=workdir, backends=backends.with_video(outputs))
    results = run_clip_batch([run.plan.job(j) for j in event.jobs], ctx)
    counts: dict[str, int] = {}
    for result in results:
        save_result(store, event.run, result)
        counts[result.status] = counts.get(result.status, 0) + 1
    return {"batch": event.batch, "status": counts}


def prepare_batch(event: Mapping[str, Any], *, store: Store, s3: Any, settings: CloudSettings,
                  workdir: Path) -> dict[str, Any]:
    """`Prepare clip batch` or `Prepare Ray2 batch` (pipeline/cloud/ray2.py): the event's `service` says which."""
    if event.get("service") == BEDROCK:
        return prepare_ray2_batch(Ray2BatchEvent.from_event(event), store=store, s3=s3, settings=settings,
                                  workdir=workdir)
    return prepare_clip_batch(PrepareBatchEvent.from_event(event), store=store, s3=s3, settings=settings,
                              workdir=workdir)


def collect_batch(event: Mapping[str, Any], *, store: Store, s3: Any, settings: CloudSettings,
                  workdir: Path) -> dict[str, Any]:
    """`Collect clip batch` or `Collect Ray2 batch` (pipeline/cloud/ray2.py): the event's `service` says which."""
    if event.get("service") == BEDROCK:
        return collect_ray2_batch(Ray2CollectEvent.from_event(event), store=store, s3=s3, settings=settings,
                                  workdir=workdir)
    return collect_clip_batch(CollectBatchEvent.from_event(event), store=store, s3=s3, settings=settings,
                              workdir=workdir)
