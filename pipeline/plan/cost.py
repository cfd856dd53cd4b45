"""A plan's estimated cloud cost: image requests, prompt enhancement and translation, voice, GPU time and
orchestration."""

from __future__ import annotations

from typing import Any

from pipeline.catalog import VIDEO_MODELS
from pipeline.plan import pricing
from pipeline.plan.build import Plan
from pipeline.plan.pricing import DEFAULT_INSTANCE_TYPE

TRANSITIONS_PER_JOB = 6  # Map iteration, Task, Retry/Catch bookkeeping, result write [estimate]
LAMBDA_GB_SECONDS_PER_JOB = 2.0 * 10  # a 2 GB task Lambda for ~10 s [estimate]


def default_instance_type() -> str:
    return DEFAULT_INSTANCE_TYPE


def estimate_cost(plan: Plan, *, instance_type: str | None = None, cached: dict[str, bool] | None = None) -> dict[str, Any]:
    """USD estimate if the plan ran on AWS; `uncached_usd` leaves out jobs already in the cache."""
    instance_type = instance_type or default_instance_type()
    cached = cached or {}
    items: dict[str, dict[str, Any]] = {}
    total = uncached = 0.0

    def add(what: str, usd: float, basis: str, job_id: str) -> None:
        nonlocal total, uncached
        item = items.setdefault(what, {"what": what, "count": 0, "usd": 0.0, "basis": basis})
        item["count"] += 1
        item["usd"] += usd
        total += usd
        if not cached.get(job_id):
            uncached += usd

    for job in plan.jobs:
        if job.kind == "enhance":
            add("prompt enhancement (Claude)", pricing.enhance_cost(len(job.enhance.prompt)),
                f"${pricing.CLAUDE_INPUT_PER_MTOK}/${pricing.CLAUDE_OUTPUT_PER_MTOK} per M tokens in/out", job.id)
        elif job.kind == "translate":
            add("translation (Claude)", pricing.translate_cost(len(job.translate.text)),
                f"${pricing.CLAUDE_INPUT_PER_MTOK}/${pricing.CLAUDE_OUTPUT_PER_MTOK} per M tokens in/out", job.id)
        elif job.kind == "image":
            for step in job.image.steps:
                add(f"image edit {step.tool}", pricing.image_edit_cost(step.tool),
                    f"${pricing.image_edit_cost(step.tool):.2f} per request", job.id)
        elif job.kind == "voice":
            vs = job.voice
            add(f"voiceover {vs.engine} (Polly)", pricing.voice_cost(vs.engine, len(vs.text), marks=vs.engine != "generative"),
                f"${pricing.POLLY_PER_MILLION_CHARS[vs.engine]:.2f} per M characters, speech marks billed again "
                "[unverified]", job.id)
        elif job.kind == "clip" and job.clip.ray2 is not None:
            r = job.clip.ray2
            add(f"clip {job.clip.model} {r.resolution} {r.duration_s}s (Bedrock)",
                pricing.ray2_clip_cost(r.resolution, r.duration_s),
                f"${pricing.RAY2_PER_SECOND[r.resolution]:.2f} per second of video [unverified]", job.id)
        elif job.kind == "clip":
            c = job.clip
            secs = pricing.clip_gpu_seconds(c.model, c.frames, c.steps, gpu=pricing.SAGEMAKER_INSTANCES[instance_type].gpu)
            add(f"clip {c.model} on {instance_type}", pricing.clip_cost(c.model, c.frames, c.steps, instance_type),
                f"~{secs:.0f} GPU-s per clip at ${pricing.SAGEMAKER_INSTANCES[instance_type].hourly}/h", job.id)
    unknowns = _unknowns(plan, instance_type)
    orchestration = pricing.orchestration_cost(
        transitions=TRANSITIONS_PER_JOB * len(plan.jobs) + 10,
        lambda_gb_seconds=LAMBDA_GB_SECONDS_PER_JOB * len(plan.jobs), lambda_requests=len(plan.jobs) + 2)
    items["orchestration"] = {"what": "Step Functions + Lambda", "count": len(plan.jobs), "usd": orchestration,
                              "basis": "transitions and Lambda GB-s per job [estimate]"}
    total += orchestration
    uncached += orchestration
    return {
        "total_usd": round(total, 4), "uncached_usd": round(uncached, 4), "instance_type": instance_type,
        "items": [dict(i, usd=round(i["usd"], 4)) for i in items.values()],
        "prices_as_of": pricing.PRICES_AS_OF,
        "unknowns": unknowns,
        "note": f"list prices as of {pricing.PRICES_AS_OF}, some estimated (see pipeline/plan/pricing.py); "
                "GPU time from the model registry's timings (pipeline/catalog.py); model loading excluded; Luma Ray2 per second of video",
    }


def _unknowns(plan: Plan, instance_type: str) -> list[str]:
    """What the estimate rests on that no primary price page confirmed (pipeline/plan/pricing.py marks each figure
    [unverified] or [estimate]): stated with every estimate, so a budget check never looks more exact than it is."""
    kinds = {j.kind for j in plan.jobs}
    out: list[str] = []
    if "image" in kinds:
        out.append(f"Stability image edit prices on Bedrock are unverified: ${pricing.STABILITY_EDIT_PER_REQUEST:.2f} per "
                   "request is one catalog's remove-background figure, assumed for the other tools; the upscalers' "
                   "prices are estimates")
    if "clip" in kinds:
        instance = pricing.SAGEMAKER_INSTANCES[instance_type]
        published = {g for times in pricing.PUBLISHED_50_STEP_S.values() for g in times}
        scaled = "" if instance.gpu in published else f", scaled to {instance.gpu} by an estimated speed factor"
        out.append(f"the {instance_type} price (${instance.hourly}/h) is unverified; GPU time per clip comes from "
                   f"THUDM's published A100/H100 timings{scaled}; model loading is excluded")
        models = sorted({j.clip.model for j in plan.jobs if j.kind == "clip" and j.clip.model in VIDEO_MODELS})
        for name in models:
            model = VIDEO_MODELS[name]
            if any(fact.startswith("gpu_seconds") for fact in model.unverified):
                out.append(f"{name}'s GPU time is an estimate, not a measurement ({model.timing_source})")
    if "enhance" in kinds:
        out.append(f"prompt enhancement tokens are estimated ({pricing.CHARS_PER_TOKEN:.0f} characters per token, "
                   f"{pricing.ENHANCE_OUTPUT_TOKENS} output tokens per prompt)")
    if "translate" in kinds:
        out.append(f"translation tokens are estimated ({pricing.CHARS_PER_TOKEN:.0f} characters per token, "
                   f"{pricing.TRANSLATE_OUTPUT_FACTOR:g}x as many tokens out as in); a local run's passthrough "
                   "translator costs nothing")
    if "voice" in kinds:
        out.append("Amazon Polly prices per character are unverified (a third-party copy of the price page); a local "
                   "run's placeholder voice costs nothing")
    out.append("Lambda prices are unverified; Step Functions transitions and Lambda time per job are estimates")
    return out
