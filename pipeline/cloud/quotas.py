"""The AWS quotas a cloud run is sized to, in one table (value, source, date; each overridable per deployment as
stack context), the wall time they imply for a campaign, and the plan changes that keep a run within them:
Ray2 batches small enough for a child execution's history, one Ray2 batch per wave, and no SageMaker clip
planned on an account whose processing-instance quota is 0. Figures: reference/aws-quotas.md (2026-11)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.backends import makes, video_backend_names
from pipeline.cloud.contract import (
    DEFAULT_POLLY_TPS,
    DEFAULT_RAY2_MAX_POLLS,
    HISTORY_BUDGET,
    RAY2_BATCH_EVENTS,
    RAY2_CLIP_EVENTS,
    RAY2_POLL_EVENTS,
)
from pipeline.errors import Problem
from pipeline.plan.schedule import BEDROCK, ClipBatch


@dataclass(frozen=True)
class Quota:
    key: str  # the stack context key (and `campaign plan --quota key=value`) that overrides the default
    default: int
    unit: str
    what: str
    source: str
    checked: str  # when the source was read
    used: str  # what the pipeline does with it


QUOTAS: tuple[Quota, ...] = (
    Quota("ray2_concurrency", 1, "requests at once", "Luma Ray2 (luma.ray-v2:0) on-demand concurrent async requests",
          "third-party read of an account's Service Quotas (us-west-2); AWS default UNCONFIRMED", "2026-09-22",
          "MaxConcurrency of each Ray2 batch's Map; one Ray2 batch per wave"),
    Quota("sagemaker_instances", 2, "instances", "processing-job instances of the clip instance type (e.g. "
          "'ml.g6e.2xlarge for processing job usage', L-56245D0D)",
          "UNCONFIRMED: AWS default not retrieved; many new accounts read 0 (GitHub reports)", "2026-11",
          "MaxConcurrency of every clip-batch Map (gpu_concurrency may not pass it); 0 refuses SageMaker clips"),
    Quota("sagemaker_create_per_s", 1, "requests/s", "CreateProcessingJob request rate (not adjustable)",
          "third-party quote of the SageMaker General Reference; UNCONFIRMED first-hand", "2026-11",
          "wall-time estimate (submission time of the batches)"),
    Quota("inline_map_concurrency", 40, "iterations", "Inline Map concurrent iterations, whatever MaxConcurrency says",
          "AWS doc: 'Using Map state in Inline mode'", "2026-11", "job_concurrency of an inline Map is capped at it"),
    Quota("distributed_children_per_s", 100, "executions/s", "Distributed Map Standard child executions started",
          "AWS doc: 'Step Functions service quotas'", "2026-11", "wall-time estimate (child start-up)"),
    Quota("lambda_concurrency", 1000, "executions", "Lambda concurrent executions per Region (new accounts: less, "
          "UNCONFIRMED)", "AWS doc: 'Lambda quotas'", "2026-11", "job_concurrency may not pass it"),
    Quota("claude_tpm", 1_000_000, "tokens/min", "Claude cross-Region InvokeModel tokens per minute (output tokens "
          "count 5x)", "third-party reads of 1,000,000 to 5,000,000; AWS default UNCONFIRMED", "2026-09-29",
          "wall-time estimate of the enhance stage"),
    Quota("stability_rpm", 10, "requests/min", "Stability image edits per minute per model",
          "UNCONFIRMED: RPM quotas were removed from bedrock-runtime (AWS doc 'Quotas for the bedrock-runtime "
          "endpoint'); no per-model figure found", "2026-11", "wall-time estimate of the image stage"),
    Quota("polly_neural_tps", DEFAULT_POLLY_TPS, "requests/s", "Polly SynthesizeSpeech, neural voices (generative and "
          "long-form: also 8)", "AWS doc: 'Quotas in Amazon Polly'", "2026-11",
          "MaxConcurrency of the voice Map (at most 18, Polly's concurrent neural requests) and each voice Lambda's "
          "spacing of its requests, so the account sees at most this many a second"),
)
QUOTA_KEYS = tuple(q.key for q in QUOTAS)

# Durations the wall-time estimate assumes (not quotas; UNCONFIRMED beyond the one observation cited).
RAY2_CLIP_S = 72  # a 5 s 540p clip, one third-party observation (reference/aws-quotas.md section 2)
SAGEMAKER_CLIP_S = 180  # a CogVideoX-5b clip at 50 steps on an A100 (reference section E)
SAGEMAKER_START_S = 300  # a processing job's start-up (UNCONFIRMED)
LAMBDA_JOB_S = {"enhance": 5, "image": 10, "video": 30}  # one Lambda job (UNCONFIRMED)
ENHANCE_TOKENS = 2_000  # one enhance call: input plus 5x output, against the TPM quota (UNCONFIRMED)


def quotas(overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The defaults with a deployment's overrides; an unknown key or a value below 0 is a one-line error."""
    values = {q.key: q.default for q in QUOTAS}
    for key, raw in (overrides or {}).items():
        if key not in values:
            raise ValueError(f"unknown quota {key!r} (known: {', '.join(QUOTA_KEYS)})")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"quota {key} must be a whole number, got {raw!r}") from None
        if value < 0:
            raise ValueError(f"quota {key} must be at least 0, got {raw!r}")
        values[key] = value
    return values


def markdown_table() -> str:
    """docs/quotas.md's table (a test keeps the file equal to this)."""
    rows = ["| context key | default | unit | quota | source | checked | used for |", "|---|---|---|---|---|---|---|"]
    rows += [f"| `{q.key}` | {q.default:,} | {q.unit} | {q.what} | {q.source} | {q.checked} | {q.used} |" for q in QUOTAS]
    return "\n".join(rows) + "\n"


# --- history: Ray2 batches ----------------------------------------------------------------------------------------


def ray2_child_events(clips: int, max_polls: int) -> int:
    """Worst-case history events of the child execution of a Ray2 batch (pipeline/cloud/history.py derives the
    same from the ASL; tests/test_cloud_history.py holds the two equal)."""
    return RAY2_BATCH_EVENTS + clips * (RAY2_CLIP_EVENTS + RAY2_POLL_EVENTS * max_polls)


def ray2_batch_size(max_batch: int, max_polls: int | None) -> int:
    """The most Ray2 clips in one batch: at most `max_batch`, and few enough that the batch's child execution
    stays within HISTORY_BUDGET events when every clip polls `max_polls` times."""
    polls = max_polls or DEFAULT_RAY2_MAX_POLLS
    fits = (HISTORY_BUDGET - RAY2_BATCH_EVENTS) // (RAY2_CLIP_EVENTS + RAY2_POLL_EVENTS * polls)
    if fits < 1:
        raise ValueError(f"a Ray2 clip polled {polls} times takes {ray2_child_events(1, polls)} history events, more "
                         f"than the {HISTORY_BUDGET} planned per execution: lower CAMPAIGN_RAY2_MAX_POLLS")
    return max(1, min(max_batch, fits))


def spread_ray2(first: Sequence[ClipBatch], later: Sequence[Sequence[ClipBatch]], *, size: int,
                ) -> tuple[tuple[ClipBatch, ...], tuple[tuple[ClipBatch, ...], ...]]:
    """Split Ray2 batches to at most `size` clips and give each wave at most one of them (the next ones run as
    waves of their own right after), so the jobs in flight never pass the Ray2 batch Map's MaxConcurrency,
    the account's Ray2 quota. Wave 0's extra Ray2 batches become the first waves that wait."""

    def split(wave: Sequence[ClipBatch]) -> tuple[list[ClipBatch], list[ClipBatch]]:
        others = [b for b in wave if b.service != BEDROCK]
        ray2: list[ClipBatch] = []
        for b in (b for b in wave if b.service == BEDROCK):
            parts = [b.jobs[i:i + size] for i in range(0, len(b.jobs), size)]
            ray2 += [ClipBatch(b.id if len(parts) == 1 else f"{b.id}-{k + 1}", p, b.service) for k, p in enumerate(parts)]
        return others, ray2

    others, ray2 = split(first)
    new_first = tuple(others + ray2[:1])
    new_later: list[tuple[ClipBatch, ...]] = [(b,) for b in ray2[1:]]
    for wave in later:
        others, ray2 = split(wave)
        new_later.append(tuple(others + ray2[:1]))
        new_later += [(b,) for b in ray2[1:]]
    return new_first, tuple(w for w in new_later if w)


# --- SageMaker: the processing-instance quota ------------------------------------------------------------------


def sagemaker_quota_problems(campaign: Any, src: Any, video: str, instances: int | None) -> list[Problem]:
    """With the deployment's processing-instance quota at 0, every shot SageMaker would render is refused at
    planning, located, with the quota named (its batches would otherwise fail with ResourceLimitExceeded after
    an hour of retries). More batches than instances are not a problem: the batch Maps' MaxConcurrency is at
    most the quota, so the batches run in waves of that many."""
    if instances is None or instances > 0:
        return []
    names = video_backend_names(video)
    return [src.problem(("videos", i, "shots", j), f"{shot.model} shots render on SageMaker, and this deployment's "
                        "processing-instance quota (sagemaker_instances, e.g. 'ml.g6e.2xlarge for processing job "
                        "usage') is 0: request an increase in Service Quotas and deploy with the new value")
            for i, v in enumerate(campaign.videos) for j, shot in enumerate(v.shots)
            if next((n for n in names if makes(n, shot.model)), None) == "sagemaker"]


# --- wall time ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageTime:
    stage: str
    seconds: float
    text: str


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} minutes"
    if seconds < 48 * 3600:
        return f"about {seconds / 3600:.1f} hours"
    return f"about {seconds / 86400:.1f} days"


def wall_time(*, enhance: int, images: int, image_waves: int, sagemaker_clips: int, sagemaker_batches: int,
              ray2_clips: int, videos: int, job_concurrency: int, limits: Mapping[str, int]) -> list[StageTime]:
    """What the quotas imply for each stage, and the whole run (images and clips run side by side)."""
    out: list[StageTime] = []
    jobs_at_once = max(1, min(job_concurrency, limits["lambda_concurrency"]))
    if enhance:
        by_lambda = math.ceil(enhance / jobs_at_once) * LAMBDA_JOB_S["enhance"]
        by_tpm = enhance * ENHANCE_TOKENS / max(1, limits["claude_tpm"]) * 60
        out.append(StageTime("enhance", max(by_lambda, by_tpm),
                             f"{enhance} prompt(s), {jobs_at_once} at a time, about {LAMBDA_JOB_S['enhance']} s each, "
                             f"within {limits['claude_tpm']:,} Claude tokens/min"))
    if images:
        by_rpm = images / max(1, limits["stability_rpm"]) * 60
        by_lambda = max(image_waves, math.ceil(images / jobs_at_once)) * LAMBDA_JOB_S["image"]
        out.append(StageTime("images", max(by_rpm, by_lambda),
                             f"{images} image edit(s) at {limits['stability_rpm']} per minute (Stability quota, UNCONFIRMED)"))
    if ray2_clips:
        q = limits["ray2_concurrency"]
        seconds = math.ceil(ray2_clips / max(1, q)) * RAY2_CLIP_S if q else math.inf
        out.append(StageTime("ray2", seconds, f"{ray2_clips} Ray2 clip(s) at {q} at a time, about {RAY2_CLIP_S} s each"))
    if sagemaker_clips:
        n = limits["sagemaker_instances"]
        waves = math.ceil(sagemaker_batches / n) if n else 0
        per_batch = SAGEMAKER_START_S + math.ceil(sagemaker_clips / max(1, sagemaker_batches)) * SAGEMAKER_CLIP_S
        seconds = waves * per_batch + sagemaker_batches / max(1, limits["sagemaker_create_per_s"]) if n else math.inf
        out.append(StageTime("sagemaker", seconds, f"{sagemaker_clips} CogVideoX clip(s) in {sagemaker_batches} "
                             f"processing job(s) on {n} instance(s) at once ({waves} wave(s)), about "
                             f"{SAGEMAKER_START_S} s start-up + {SAGEMAKER_CLIP_S} s a clip"))
    if videos:
        out.append(StageTime("videos", math.ceil(videos / jobs_at_once) * LAMBDA_JOB_S["video"],
                             f"{videos} video(s), {jobs_at_once} at a time, about {LAMBDA_JOB_S['video']} s each"))
    by = {t.stage: t.seconds for t in out}
    total = (by.get("enhance", 0) + max(by.get("images", 0), by.get("sagemaker", 0)) + by.get("ray2", 0)
             + by.get("videos", 0))
    out.append(StageTime("total", total, "images and CogVideoX clips side by side, Ray2 clips one batch at a time"))
    return [StageTime(t.stage, t.seconds, f"{t.text}: {_duration(t.seconds) if t.seconds != math.inf else 'never'}")
            for t in out]
