"""Any job by its kind: what the local runner calls (it runs every kind, so it imports them all)."""

from __future__ import annotations

from pipeline.plan.jobs import Job
from pipeline.tasks.clips import run_clip_batch
from pipeline.tasks.common import JobResult, TaskContext, TaskFunction, run_task
from pipeline.tasks.enhance import run_enhance
from pipeline.tasks.images import run_image
from pipeline.tasks.translate import run_translate
from pipeline.tasks.videos import run_video
from pipeline.tasks.voice import run_voice

TASKS: dict[str, TaskFunction] = {"enhance": run_enhance, "translate": run_translate, "image": run_image,
                                  "video": run_video, "voice": run_voice}


def run_job(job: Job, ctx: TaskContext) -> JobResult:
    """Run one job (a clip goes through run_clip_batch, as a batch of one)."""
    if job.kind == "clip":
        return run_clip_batch([job], ctx)[0]
    return run_task(job, ctx, TASKS[job.kind])
