"""What every task function shares: the job's result, its context, the cache (checked on every hit), provenance,
and the one wrapper that turns a task function into a cached, dependency-checked, never-raising job run."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import __version__
from pipeline.backends.base import BackendSet
from pipeline.errors import DependencyFailed, JobFailed, PipelineError
from pipeline.manifest.image_files import load_image
from pipeline.plan.build import Plan
from pipeline.plan.jobs import AssetImage, EditedImage, ImageRef, Job, output_key, provenance_key, ref_to_json
from pipeline.storage.integrity import (
    check_and_repair,
    check_entry,
    fingerprint_bytes,
    fingerprint_file,
    snapshot_asset,
    with_fingerprint,
)
from pipeline.storage.store import Store, parse_s3_uri

TaskFunction = Callable[[Job, "TaskContext"], dict[str, Any]]  # one job -> the info its provenance records


@dataclass(frozen=True)
class JobResult:
    job_id: str
    kind: str
    key: str
    status: str  # executed | cached | failed | skipped
    output: str | None = None
    seconds: float = 0.0
    error_type: str | None = None
    message: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # the exception a failed job raised, kept as it was (not stored): the cloud's job step raises a retryable
    # one again, so the state machine's Retry sees its class
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status in ("executed", "cached")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["exception"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobResult:
        return cls(**{k: v for k, v in d.items() if k != "exception"})


@dataclass
class TaskContext:
    plan: Plan
    store: Store
    backends: BackendSet
    workdir: Path
    s3_client: Any = None  # for s3:// assets; created lazily
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def asset_path(self, asset_id: str) -> Path:
        asset = self.plan.assets[asset_id]
        if asset.path:
            p = Path(asset.path)
            if not p.is_file():
                raise JobFailed(f"asset {asset_id!r}: file {asset.path} is missing")
            # read once per run into the work folder, checked against the bytes the keys were made from, so
            # an asset edited mid-run cannot feed new bytes into outputs stored under the old key
            return snapshot_asset(p, digest=asset.digest, dest_dir=self.workdir / "assets", what=f"asset {asset_id!r}")
        assert asset.uri is not None
        dest = self.workdir / "assets" / f"{asset.digest}-{Path(asset.uri).name}"
        if not dest.is_file():
            with self._lock:  # one boto3 client, made once: client creation is not thread-safe
                if self.s3_client is None:
                    import boto3

                    self.s3_client = boto3.client("s3")
            bucket, key = parse_s3_uri(asset.uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            os.close(fd)
            try:
                # the version planned is the version used: a changed object fails here instead of feeding
                # new bytes into outputs keyed by the old ETag
                condition = {"IfMatch": f'"{asset.etag}"'} if asset.etag else {}
                body = self.s3_client.get_object(Bucket=bucket, Key=key, **condition)["Body"]
                with open(tmp, "wb") as fh:
                    for chunk in iter(lambda: body.read(1 << 20), b""):
                        fh.write(chunk)
                os.replace(tmp, dest)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return dest


def provenance(ctx: TaskContext, job: Job, **fields: Any) -> dict[str, Any]:
    return {"job": job.id, "kind": job.kind, "key": job.key, "campaign": ctx.plan.campaign,
            "pipeline_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}


def read_provenance(store: Store, kind: str, key: str) -> dict[str, Any] | None:
    pk = provenance_key(kind, key)
    if not store.exists(pk):
        return None
    try:
        doc: dict[str, Any] = json.loads(store.read_bytes(pk))
    except (ValueError, OSError):
        return None
    return doc


def is_done(store: Store, job: Job) -> bool:
    return check_entry(store, provenance_key=job.provenance_key, output_key=job.output_key).done


def write_done(store: Store, job_kind: str, key: str, ext: str, prov: dict[str, Any], *,
                data: bytes | None = None, src: Path | None = None) -> str:
    okey = output_key(job_kind, key, ext)
    if data is not None:
        store.write_bytes(okey, data)
        prov = with_fingerprint(prov, fingerprint_bytes(data))
    elif src is not None:
        store.put_file(okey, src)
        prov = with_fingerprint(prov, fingerprint_file(src))
    store.write_bytes(provenance_key(job_kind, key), json.dumps(prov, indent=1, sort_keys=True, default=str).encode())
    return okey


def run_task(job: Job, ctx: TaskContext, task: TaskFunction) -> JobResult:
    """Run one job with its task function: a checked cache hit is its result; a job whose inputs are missing is
    skipped; any failure becomes a failed result (one job's failure never ends the campaign)."""
    started = time.perf_counter()
    cached = cached_result(job, ctx)
    if cached:
        return cached
    try:
        check_deps(job, ctx)
        info = task(job, ctx)
        return JobResult(job.id, job.kind, job.key, "executed", job.output_key, time.perf_counter() - started, info=info)
    except Exception as exc:  # one job's failure must never end the campaign
        return failure(job, exc, time.perf_counter() - started)


def failure(job: Job, exc: BaseException, seconds: float = 0.0) -> JobResult:
    if isinstance(exc, PipelineError):
        etype, msg = type(exc).__name__, str(exc)
    else:  # a bug or a library error: keep the type and the innermost frame for the report
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        etype, msg = "JobFailed", f"{type(exc).__name__}: {exc}{where}"
    status = "skipped" if isinstance(exc, DependencyFailed) else "failed"
    return JobResult(job.id, job.kind, job.key, status, None, seconds, etype, msg, exception=exc)


def cached_result(job: Job, ctx: TaskContext) -> JobResult | None:
    check = check_and_repair(ctx.store, provenance_key=job.provenance_key, output_key=job.output_key)
    if not check.done:  # absent, or damaged and now moved to quarantine/: the job runs again
        return None
    prov = check.provenance or read_provenance(ctx.store, job.kind, job.key) or {}
    info = prov.get("info", {})
    if job.kind == "image" and "chain" in info:  # image provenance is per step; the job's view is its chain
        info = image_info(job, info["chain"])
    if job.kind == "voice" and job.voice.translation and info.get("text") != _stored_text(ctx, job.voice.translation):
        return None  # its translation is missing or was made again in other words: speak what it says now
    return JobResult(job.id, job.kind, job.key, "cached", job.output_key, 0.0, info=info)


def _stored_text(ctx: TaskContext, job_id: str) -> str | None:
    key = ctx.plan.job(job_id).output_key
    return ctx.store.read_bytes(key).decode() if ctx.store.exists(key) else None


def missing_dependency(job: Job, store: Store, plan: Plan) -> str | None:
    """The first job `job` needs whose output is not stored (it failed, was skipped or has not run), if any:
    readiness as the store sees it, for steps that run apart from the scheduler (the cloud's tasks)."""
    return next((d for d in job.deps if not is_done(store, plan.job(d))), None)


def check_deps(job: Job, ctx: TaskContext) -> None:
    missing = missing_dependency(job, ctx.store, ctx.plan)
    if missing:
        raise DependencyFailed(f"needs {missing}, which has no output (it failed or was skipped)")


def open_image(path: Path | io.BytesIO) -> Image.Image:
    src = path.getvalue() if isinstance(path, io.BytesIO) else path
    return load_image(src, what=path.name if isinstance(path, Path) else "image").image


def resolve_image(ctx: TaskContext, ref: ImageRef) -> Path:
    """A local path for an image reference: an asset or an edited image (a clip's last frame, which needs the
    media modules, is pipeline.tasks.clips.start_image's)."""
    if isinstance(ref, AssetImage):
        return ctx.asset_path(ref.asset)
    if isinstance(ref, EditedImage):
        job = ctx.plan.job(f"image:{ref.image}")
        return ctx.store.materialize(job.output_key, ctx.workdir)
    raise TypeError(f"{ref!r} is not an asset or an edited image (a clip's last frame: pipeline.tasks.clips)")


def save_png_atomic(image: Image.Image, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".png", dir=dest.parent)
    os.close(fd)
    try:
        image.save(tmp, "PNG")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def image_info(job: Job, chain: list[dict[str, Any]]) -> dict[str, Any]:
    """An image job's view of its chain of steps (what its result and the report show)."""
    return {"image_id": job.image.image_id, "source": ref_to_json(job.image.source), "steps": chain,
            "backend": ",".join(sorted({s["backend"] for s in chain})),
            "placeholder": any(s["placeholder"] for s in chain)}
