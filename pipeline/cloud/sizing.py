"""A plan as the cloud would run it: the waves and batches the plan step makes, which stages go distributed, the
worst-case history events of every execution (history.py over the committed ASL) and the wall time the quotas
imply (quotas.py). What `campaign plan` prints for the cloud, and what the history tests size."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.backends.sagemaker_jobs import DEFAULT_MAX_BATCH
from pipeline.cloud.contract import (
    DEFAULT_DISTRIBUTED_THRESHOLD,
    DEFAULT_RAY2_MAX_POLLS,
    HISTORY_BUDGET,
    HISTORY_LIMIT,
)
from pipeline.cloud.history import PARENT, RunShape, load_asl, worst_case_events
from pipeline.cloud.names import RunRef
from pipeline.cloud.quotas import StageTime, quotas, ray2_batch_size, spread_ray2, wall_time
from pipeline.cloud.rundoc import CloudRun, choose_distributed
from pipeline.plan.build import Plan
from pipeline.plan.schedule import BEDROCK, SAGEMAKER, clip_waves, image_waves

RENDER_ATTEMPTS = 3  # infra/workflow.py RENDER_ATTEMPTS (the stack's default)
DEFAULT_VIDEO = "sagemaker+bedrock"  # the stack's default video backends


@dataclass(frozen=True)
class CloudSizing:
    distributed: frozenset[str]
    events: dict[str, int]  # execution -> worst-case history events
    times: list[StageTime]
    ray2_batch: int

    def to_json(self) -> dict[str, Any]:
        return {"history": {"limit": HISTORY_LIMIT, "budget": HISTORY_BUDGET, "worst_case_events": self.events},
                "distributed_stages": sorted(self.distributed), "ray2_clips_per_batch": self.ray2_batch,
                "wall_time": [{"stage": t.stage, "seconds": round(t.seconds) if t.seconds != float("inf") else None,
                               "text": t.text} for t in self.times]}

    def lines(self) -> list[str]:
        out = ["in the cloud (the stack's default quotas, docs/quotas.md):"]
        out += [f"  {t.stage:<9} {t.text}" for t in self.times]
        worst = max(self.events.items(), key=lambda kv: kv[1])
        out.append(f"  history: worst case {worst[1]:,} events ({worst[0]}) of the {HISTORY_LIMIT:,} an execution may "
                   f"hold; planned to stay within {HISTORY_BUDGET:,}")
        return out


def size_for_cloud(plan: Plan, *, video: str = DEFAULT_VIDEO, limits: Mapping[str, int] | None = None,
                   clips_per_batch: int = DEFAULT_MAX_BATCH, max_polls: int = DEFAULT_RAY2_MAX_POLLS,
                   job_concurrency: int = 8, threshold: int = DEFAULT_DISTRIBUTED_THRESHOLD,
                   render_attempts: int = RENDER_ATTEMPTS, asl: Mapping[str, Any] | None = None) -> CloudSizing:
    """`plan` as the plan step would lay it out in a deployment with these settings."""
    from pipeline.cloud.plan_step import clip_service  # the plan step's own routing of clips to services

    q = quotas(limits)
    first, later = clip_waves(plan, max_batch=clips_per_batch, service=clip_service(video))
    size = ray2_batch_size(clips_per_batch, max_polls)
    first, later = spread_ray2(first, later, size=size)
    run = CloudRun(ref=RunRef(plan.campaign, "plan"), plan=plan, source={}, started=0.0, enhancer_model=None,
                   image_waves=image_waves(plan), clip_batches=first, clip_waves=later)
    distributed = frozenset(choose_distributed(run, threshold=threshold, report_uri="s3://plan/report.json"))
    batches = [*first, *(b for w in later for b in w)]
    shape = RunShape(distributed=distributed, enhance=len(plan.by_kind("enhance")),
                     image_waves=tuple(len(w) for w in run.image_waves), clip_batches=len(first),
                     clip_waves=tuple(len(w) for w in later), videos=len(plan.by_kind("video")),
                     ray2_batch=max((len(b.jobs) for b in batches if b.service == BEDROCK), default=0),
                     max_polls=max_polls, render_attempts=render_attempts, voices=len(plan.by_kind("voice")))
    source = dict(asl) if asl is not None else load_asl()
    events = worst_case_events(source, shape.load(source))
    events = {PARENT: events[PARENT], **{k: v for k, v in events.items() if k != PARENT}}
    sagemaker = [b for b in batches if b.service == SAGEMAKER]
    times = wall_time(enhance=shape.enhance, images=sum(shape.image_waves), image_waves=len(shape.image_waves),
                      sagemaker_clips=sum(len(b.jobs) for b in sagemaker), sagemaker_batches=len(sagemaker),
                      ray2_clips=sum(len(b.jobs) for b in batches if b.service == BEDROCK), videos=shape.videos,
                      job_concurrency=job_concurrency, limits=q)
    return CloudSizing(distributed=distributed, events=events, times=times, ray2_batch=size)
