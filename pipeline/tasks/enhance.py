"""Task `enhance`: one distinct prompt through the enhancer, held to the video model's token limit."""

from __future__ import annotations

import time
from typing import Any

from pipeline.plan.jobs import Job
from pipeline.tasks.common import TaskContext, provenance, write_done
from pipeline.tasks.prompts import fit_prompt


def run_enhance(job: Job, ctx: TaskContext) -> dict[str, Any]:
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
    write_done(ctx.store, "enhance", job.key, "txt", provenance(ctx, job, info=info), data=fitted.text.encode())
    return info


def enhanced_text(ctx: TaskContext, enhance_job_id: str) -> str:
    job = ctx.plan.job(enhance_job_id)
    return ctx.store.read_bytes(job.output_key).decode()


