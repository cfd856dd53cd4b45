"""Task `translate`: one caption or voiceover text into its video's language by the translator, cached under its
key (the passthrough keeps the text as written and marks it untranslated); and the translated text that voice
and video jobs read back."""

from __future__ import annotations

import time
from typing import Any

from pipeline.plan.jobs import Job
from pipeline.tasks.common import TaskContext, provenance, write_done


def run_translate(job: Job, ctx: TaskContext) -> dict[str, Any]:
    translator = ctx.backends.translator
    spec = job.translate
    t0 = time.perf_counter()
    result = translator.translate(spec.text, source_language=spec.source_language,
                                  target_language=spec.target_language)
    info = {
        "backend": translator.name, "identity": translator.identity(), "source": spec.text,
        "source_language": spec.source_language, "target_language": spec.target_language,
        "translation": result.text, "untranslated": result.untranslated, "characters": len(spec.text),
        "usage": dict(result.usage), "seconds": round(time.perf_counter() - t0, 3),
    }
    write_done(ctx.store, "translate", job.key, "txt", provenance(ctx, job, info=info), data=result.text.encode())
    return info


def translated_text(ctx: TaskContext, translate_job_id: str) -> str:
    """The stored output of a translate job (its dependants run after it)."""
    return ctx.store.read_bytes(ctx.plan.job(translate_job_id).output_key).decode()
