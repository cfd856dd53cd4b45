"""The task functions, one per job kind: the same code runs in the local runner and in the Lambda tasks.

Each is a pure function of its job's inputs: it skips work whose output is already stored under the job's
key, writes the output and then its provenance JSON (the provenance is the commit mark: an output without
one is re-made), and reports a small JobResult.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import __version__
from pipeline.backends.base import BackendSet, ClipRequest
from pipeline.errors import DependencyFailed, JobFailed, PipelineError
from pipeline.image_files import load_image, upright_copy
from pipeline.integrity import (
    CHECK_FIELD,
    check_and_repair,
    check_entry,
    fingerprint_bytes,
    fingerprint_file,
    snapshot_asset,
    with_fingerprint,
)
from pipeline.jobs import AssetImage, ClipLastFrame, EditedImage, ImageRef, Job, output_key, provenance_key, ref_to_json
from pipeline.plan import Plan
from pipeline.prompts import fit_prompt
from pipeline.store import Store, parse_s3_uri


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


def _write_done(store: Store, job_kind: str, key: str, ext: str, prov: dict[str, Any], *,
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


# --- dispatch -------------------------------------------------------------------------------------


def run_job(job: Job, ctx: TaskContext) -> JobResult:
    """Run one job (clips go through run_clip_batch with a batch of one)."""
    if job.kind == "clip":
        return run_clip_batch([job], ctx)[0]
    started = time.perf_counter()
    cached = _cached_result(job, ctx)
    if cached:
        return cached
    try:
        _check_deps(job, ctx)
        fn = {"enhance": _run_enhance, "image": _run_image, "video": _run_video}[job.kind]
        info = fn(job, ctx)
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


def _cached_result(job: Job, ctx: TaskContext) -> JobResult | None:
    check = check_and_repair(ctx.store, provenance_key=job.provenance_key, output_key=job.output_key)
    if not check.done:  # absent, or damaged and now moved to quarantine/: the job runs again
        return None
    prov = check.provenance or read_provenance(ctx.store, job.kind, job.key) or {}
    info = prov.get("info", {})
    if job.kind == "image" and "chain" in info:  # image provenance is per step; the job's view is its chain
        info = _image_info(job, info["chain"])
    return JobResult(job.id, job.kind, job.key, "cached", job.output_key, 0.0, info=info)


def missing_dependency(job: Job, store: Store, plan: Plan) -> str | None:
    """The first job `job` needs whose output is not stored (it failed, was skipped or has not run), if any:
    readiness as the store sees it, for steps that run apart from the scheduler (the cloud's tasks)."""
    return next((d for d in job.deps if not is_done(store, plan.job(d))), None)


def _check_deps(job: Job, ctx: TaskContext) -> None:
    missing = missing_dependency(job, ctx.store, ctx.plan)
    if missing:
        raise DependencyFailed(f"needs {missing}, which has no output (it failed or was skipped)")


# --- enhance --------------------------------------------------------------------------------------


def _run_enhance(job: Job, ctx: TaskContext) -> dict[str, Any]:
    enhancer = ctx.backends.enhancer
    prompt, limit = job.enhance.prompt, job.enhance.max_tokens
    t0 = time.perf_counter()
    raw = enhancer.enhance(prompt).strip() or prompt
    fitted = fit_prompt(raw, limit)
    info = {
        "backend": enhancer.name, "identity": enhancer.identity(), "prompt": prompt, "enhanced_prompt": fitted.text,
        "changed": fitted.text != prompt, "tokens": fitted.tokens, "max_tokens": limit,
        "trimmed": fitted.trimmed, "tokens_before_trim": fitted.original_tokens,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if fitted.trimmed:
        info["raw_enhanced_prompt"] = raw
    _write_done(ctx.store, "enhance", job.key, "txt", provenance(ctx, job, info=info), data=fitted.text.encode())
    return info


def enhanced_text(ctx: TaskContext, enhance_job_id: str) -> str:
    job = ctx.plan.job(enhance_job_id)
    return ctx.store.read_bytes(job.output_key).decode()


# --- images ---------------------------------------------------------------------------------------


def _load_image(path: Path | io.BytesIO) -> Image.Image:
    src = path.getvalue() if isinstance(path, io.BytesIO) else path
    return load_image(src, what=path.name if isinstance(path, Path) else "image").image


def resolve_image(ctx: TaskContext, ref: ImageRef) -> Path:
    """A local path for an image reference: an asset, an edited image, or a clip's last frame."""
    if isinstance(ref, AssetImage):
        return ctx.asset_path(ref.asset)
    if isinstance(ref, EditedImage):
        job = ctx.plan.job(f"image:{ref.image}")
        return ctx.store.materialize(job.output_key, ctx.workdir)
    if isinstance(ref, ClipLastFrame):
        from pipeline.media.frames import last_frame, match_colors

        clip = ctx.plan.job(ref.clip)
        first = ctx.plan.job(ref.color_match_to) if ref.color_match_to else None
        dest = ctx.workdir / (f"lastframe-{clip.key}" + (f"-matched-{first.key}" if first else "") + ".png")
        if not dest.is_file():
            frame = last_frame(ctx.store.materialize(clip.output_key, ctx.workdir))
            if first is not None:  # keep a long continuity video in the first clip's look
                frame = match_colors(frame, last_frame(ctx.store.materialize(first.output_key, ctx.workdir)))
            _save_atomic(frame, dest)  # another thread may want the same frame (identical first shots)
        return dest
    raise TypeError(f"unknown image reference {ref!r}")


def _save_atomic(image: Image.Image, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".png", dir=dest.parent)
    os.close(fd)
    try:
        image.save(tmp, "PNG")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _encode(image: Image.Image, ext: str) -> bytes:
    buf = io.BytesIO()
    if ext == "jpg":
        image.convert("RGB").save(buf, "JPEG", quality=92)
    elif ext == "webp":
        image.save(buf, "WEBP", quality=92)
    else:
        image.save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def _run_image(job: Job, ctx: TaskContext) -> dict[str, Any]:
    editor = ctx.backends.images
    spec = job.image
    source = load_image(resolve_image(ctx, spec.source), what=f"{job.id}: source {ref_to_json(spec.source)}")
    current = source.image
    chain: list[dict[str, Any]] = []
    for i, step in enumerate(spec.steps):
        okey = output_key("image", step.key, step.ext)
        check = check_and_repair(ctx.store, provenance_key=provenance_key("image", step.key), output_key=okey)
        prov = check.provenance if check.done else None
        if prov:  # an unchanged prefix of the chain is reused
            current = _load_image(ctx.store.materialize(okey, ctx.workdir))
            chain.append(prov["info"]["step"])
            continue
        refs = {f: _load_image(resolve_image(ctx, r)) for f, r in step.refs.items()}
        t0 = time.perf_counter()
        before = current.size
        outcome = editor.edit(step.tool, current, step.params, refs)
        current = outcome.image
        step_info = {
            "index": i, "tool": step.tool, "params": step.params, "refs": {f: ref_to_json(r) for f, r in step.refs.items()},
            "key": step.key, "output": okey, "backend": outcome.backend, "identity": editor.identity(step.tool),
            "placeholder": outcome.placeholder, "note": outcome.note, "seed": outcome.seed,
            "size_in": list(before), "size_out": list(current.size), "mode": current.mode,
            "seconds": round(time.perf_counter() - t0, 3), **({"extra": outcome.extra} if outcome.extra else {}),
            **({"source_orientation": source.orientation, "source_mode": source.source_mode} if i == 0 else {}),
        }
        chain.append(step_info)
        data = _encode(current, step.ext)
        _write_done(ctx.store, "image", step.key, step.ext,
                    provenance(ctx, job, info={"step": step_info, "chain": list(chain)}), data=data)
        # the next step reads exactly what is stored (a lossy format changes pixels, jpeg drops alpha), so a
        # chain resumed from the cache makes the same bytes under the same keys as one run in a single pass
        current = _load_image(io.BytesIO(data))
    return _image_info(job, chain)


def _image_info(job: Job, chain: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image_id": job.image.image_id, "source": ref_to_json(job.image.source), "steps": chain,
            "backend": ",".join(sorted({s["backend"] for s in chain})),
            "placeholder": any(s["placeholder"] for s in chain)}


# --- clips ----------------------------------------------------------------------------------------


def clip_request(job: Job, ctx: TaskContext) -> tuple[ClipRequest, dict[str, Any]]:
    """The backend request for a clip job, with the prompt as the model will read it."""
    c = job.clip
    prompt = enhanced_text(ctx, c.enhance_job) if c.enhance_job else c.prompt
    fitted = fit_prompt(prompt, c.max_tokens)
    image = resolve_image(ctx, c.start) if c.start else None
    if image is not None and isinstance(c.start, AssetImage):  # the video backends read the file: hand them it upright
        image = upright_copy(image, ctx.workdir)
    req = ClipRequest(
        key=job.key, model=c.model, prompt=fitted.text, frames=c.frames, fps=c.fps, width=c.width, height=c.height,
        steps=c.steps, guidance=c.guidance, seed=c.seed, negative_prompt=c.negative_prompt, image=image, ray2=c.ray2,
    )
    info = {"prompt": c.prompt, "enhanced_prompt": fitted.text if c.enhance_job else None,
            "model_prompt": fitted.text, "prompt_tokens": fitted.tokens, "prompt_trimmed": fitted.trimmed,
            "seed": c.seed, "model": c.model, "i2v": c.i2v, "start": ref_to_json(c.start) if c.start else None,
            "frames": c.frames, "fps": c.fps, "width": c.width, "height": c.height, "steps": c.steps,
            "guidance": c.guidance, **({"ray2": asdict(c.ray2)} if c.ray2 else {})}
    return req, info


def run_clip_batch(jobs: Sequence[Job], ctx: TaskContext) -> list[JobResult]:
    """Render clips as one batch (one model load for a GPU backend). Cached clips are not sent."""
    results: dict[str, JobResult] = {}
    todo: list[tuple[Job, ClipRequest, dict[str, Any]]] = []
    for job in jobs:
        started = time.perf_counter()
        cached = _cached_result(job, ctx)
        if cached:
            results[job.id] = cached
            continue
        try:
            _check_deps(job, ctx)
            req, info = clip_request(job, ctx)
            todo.append((job, req, info))
        except Exception as exc:
            results[job.id] = failure(job, exc, time.perf_counter() - started)
    if todo:
        video = ctx.backends.video
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="clips-") as tmp:
            try:
                outcomes = {o.key: o for o in video.render([r for _, r, _ in todo], Path(tmp))}
            except Exception as exc:  # the whole batch failed (e.g. the GPU job could not start)
                outcomes = {}
                for job, _, _ in todo:
                    results[job.id] = failure(job, exc, time.perf_counter() - t0)
            batch_s = time.perf_counter() - t0
            for job, req, info in todo:
                if job.id in results:
                    continue
                out = outcomes.get(req.key)
                if out is None or out.error or out.path is None:
                    msg = out.error if out else "the backend returned no result for this clip"
                    etype = (out.error_type if out else None) or "JobFailed"
                    results[job.id] = JobResult(job.id, job.kind, job.key, "failed", None, batch_s, etype, msg)
                    continue
                info = {**info, "backend": out.backend, "identity": video.identity(req.model),
                        "placeholder": out.placeholder, "timings": out.timings, "batch_size": len(todo),
                        "batch_seconds": round(batch_s, 3), **({"extra": out.extra} if out.extra else {})}
                _write_done(ctx.store, "clip", job.key, "mp4", provenance(ctx, job, info=info), src=out.path)
                results[job.id] = JobResult(job.id, job.kind, job.key, "executed", job.output_key,
                                            batch_s / len(todo), info=info)
    return [results[j.id] for j in jobs]


# --- videos ---------------------------------------------------------------------------------------


def _run_video(job: Job, ctx: TaskContext) -> dict[str, Any]:
    from pipeline.media.assemble import AssemblyRequest, assemble_video
    from pipeline.media.probe import clip_info_from_provenance

    v = job.video
    clips = tuple(ctx.store.materialize(ctx.plan.job(c).output_key, ctx.workdir) for c in v.clips)
    # what each clip's provenance says about it (size, rate, frames, encoding): joined without probing the files
    known = tuple(clip_info_from_provenance((read_provenance(ctx.store, "clip", ctx.plan.job(c).key) or {}).get("info", {}))
                  for c in v.clips)
    audio = v.audio
    req = AssemblyRequest(
        clips=clips, crossfade=v.crossfade,
        audio=ctx.asset_path(audio.asset) if audio else None,
        audio_fade_in=audio.fade_in if audio else 0.0, audio_fade_out=audio.fade_out if audio else 0.0,
        audio_volume=audio.volume if audio else 1.0, title=v.title, end_card=v.end_card, clip_info=known,
    )
    if v.outputs:
        return _run_video_outputs(job, ctx, req)
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="video-") as tmp:
        out, poster = Path(tmp) / "video.mp4", Path(tmp) / "poster.png"
        result = assemble_video(req, out, poster)
        ctx.store.put_file(output_key("video", job.key, "png"), poster)
        info = {"video_id": v.video_id, "duration_s": result.duration_s, "width": result.width,
                "height": result.height, "fps": result.fps, "frames": result.frames, "method": result.method,
                "timings": result.timings, "poster": output_key("video", job.key, "png"),
                "frames_copied": result.frames_copied, "frames_encoded": result.frames_encoded,
                "notes": list(result.notes),
                "clips": [ctx.plan.job(c).key for c in v.clips]}
        _write_done(ctx.store, "video", job.key, "mp4", provenance(ctx, job, info=info), src=out)
    return info


def _run_video_outputs(job: Job, ctx: TaskContext, req: Any) -> dict[str, Any]:
    """A video with formats or captions: each output (and the WebVTT sidecar) under its own key, made only when
    not stored yet, so adding a format makes just that one. The job's own output is its first format's file."""
    from pipeline.formats import cues, webvtt
    from pipeline.media.deliver import make_outputs
    from pipeline.plan import video_timeline

    v = job.video
    tl = video_timeline(ctx.plan, job)
    wanted = list(dict.fromkeys(v.outputs))
    todo = [o for o in wanted if not check_entry(ctx.store, provenance_key=provenance_key("video", o.key),
                                                 output_key=output_key("video", o.key, "mp4")).done]
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="video-") as tmp:
        for m in make_outputs(req, outputs=todo, tl=tl, captions=v.captions, fit=v.fit, workdir=Path(tmp)):
            ctx.store.put_file(output_key("video", m.output.key, "png"), m.poster)
            _write_done(ctx.store, "video", m.output.key, "mp4", {**provenance(ctx, job, info=m.info), "key": m.output.key},
                        src=m.path)
    for ckey in dict.fromkeys(o.captions_key for o in wanted if o.captions_key):
        if not check_entry(ctx.store, provenance_key=provenance_key("captions", ckey),
                           output_key=output_key("captions", ckey, "vtt")).done:
            text = webvtt(cues(tl, v.captions), tl.fps)
            _write_done(ctx.store, "captions", ckey, "vtt", {**provenance(ctx, job, info={"language": v.language}),
                                                             "key": ckey}, data=text.encode())
    outputs = []
    for o in v.outputs:
        oinfo = (read_provenance(ctx.store, "video", o.key) or {}).get("info", {})
        outputs.append({**oinfo, "format": o.format, "key": o.key, "video": output_key("video", o.key, "mp4"),
                        "poster": output_key("video", o.key, "png"), "cached": o not in todo,
                        "captions": output_key("captions", o.captions_key, "vtt") if o.captions_key else None})
    first = outputs[0]
    info = {"video_id": v.video_id, **{k: first.get(k) for k in ("duration_s", "width", "height", "fps", "frames",
                                                                 "method", "timings", "poster", "notes")},
            "language": v.language, "outputs": outputs, "clips": [ctx.plan.job(c).key for c in v.clips]}
    ctx.store.copy(first["video"], job.output_key)
    fingerprint = (read_provenance(ctx.store, "video", v.outputs[0].key) or {}).get(CHECK_FIELD)
    prov = {**provenance(ctx, job, info=info), **({CHECK_FIELD: fingerprint} if fingerprint else {})}
    ctx.store.write_bytes(job.provenance_key, json.dumps(prov, indent=1, sort_keys=True, default=str).encode())
    return info
