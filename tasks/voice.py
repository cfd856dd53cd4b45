"""Lambda `Speak utterance` (an item of the `Speak voiceover` Map): one utterance by Amazon Polly (the deployment's
voice), by the same task function as `campaign run`; its WAV is cached under its key, where `Assemble video` reads it
for the mix."""

from __future__ import annotations

from typing import Any

from pipeline.cloud.events import JobEvent
from pipeline.cloud.job_step import run_job_step
from pipeline.tasks.voice import run_voice
from tasks import _runtime


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    with _runtime.scratch() as work:
        return run_job_step(JobEvent.from_event(event), kind="voice", task=run_voice,
                            store=_runtime.output_store(), s3=_runtime.client("s3"), settings=_runtime.settings(),
                            workdir=work)
