"""Task `clip`: clips rendered as one batch (one model load for a GPU backend), each stored with its provenance."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.backends.base import ClipRequest
from pipeline.manifest.image_files import upright_copy
from pipeline.media.frames import last_frame, match_colors
from pipeline.plan.jobs import AssetImage, ClipLastFrame, ImageRef, Job, ref_to_json
from pipeline.tasks.common import (
    JobResult,
    TaskContext,
    cached_result,
    check_deps,
    failure,
    provenance,
    resolve_image,
    save_png_atomic,
    write_done,
)
from pipeline.tasks.enhance import enhanced_text
from pipeline.tasks.prompts import fit_prompt


def start_image(ctx: TaskContext, ref: ImageRef) -> Path:
    """A local path for a clip's start image: an asset, an edited image, or the last frame of an earlier clip."""
    if isinstance(ref, ClipLastFrame):
        clip = ctx.plan.job(ref.clip)
        first = ctx.plan.job(ref.color_match_to) if ref.color_match_to else None
        dest = ctx.workdir / (f"lastframe-{clip.key}" + (f"-matched-{first.key}" if first else "") + ".png")
        if not dest.is_file():
            frame = last_frame(ctx.store.materialize(clip.output_key, ctx.workdir))
            if first is not None:  # keep a long continuity video in the first clip's look
                frame = match_colors(frame, last_frame(ctx.store.materialize(first.output_key, ctx.workdir)))
            save_png_atomic(frame, dest)  # another thread may want the same frame (identical first shots)
        return dest
    return resolve_image(ctx, ref)


def clip_request(job: Job, ctx: TaskContext) -> tuple[ClipRequest, dict[str, Any]]:
    """The backend request for a clip job, with the prompt as the model will read it."""
    c = job.clip
    prompt = enhanced_text(ctx, c.enhance_job) if c.enhance_job else c.prompt
    fitted = fit_prompt(prompt, c.max_tokens)
    image = start_image(ctx, c.start) if c.start else None
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
        cached = cached_result(job, ctx)
        if cached:
            results[job.id] = cached
            continue
        try:
            check_deps(job, ctx)
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
                write_done(ctx.store, "clip", job.key, "mp4", provenance(ctx, job, info=info), src=out.path)
                results[job.id] = JobResult(job.id, job.kind, job.key, "executed", job.output_key,
                                            batch_s / len(todo), info=info)
    return [results[j.id] for j in jobs]


