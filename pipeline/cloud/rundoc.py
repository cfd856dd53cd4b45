"""The run document (`runs/<campaign>/<run-id>/plan.json`): the plan, its waves and clip batches, and the
small summary the state carries, with each stage inline or distributed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cloud.contract import (
    INLINE_JOBS_BUDGET,
    INLINE_SUMMARY_BYTES,
    RUN_DOCUMENT_VERSION,
    STAGES,
    WAVE_STAGES,
)
from pipeline.cloud.names import RunRef, run_document_key, stage_key
from pipeline.cloud.settings import CloudBackends, CloudSettings
from pipeline.plan.build import Plan
from pipeline.plan.jobs import Job
from pipeline.plan.schedule import BEDROCK, SAGEMAKER, ClipBatch
from pipeline.storage.store import Store
from pipeline.tasks import TaskContext


def batch_to_json(batch: ClipBatch) -> dict[str, Any]:
    """A Map item: the state machine routes a batch on `service` (sagemaker or bedrock)."""
    return {"batch": batch.id, "jobs": list(batch.jobs), "service": batch.service}


@dataclass(frozen=True)
class CloudRun:
    """`runs/<campaign>/<run-id>/plan.json`: the plan and what the tasks need besides it."""

    ref: RunRef
    plan: Plan
    source: dict[str, Any]
    started: float
    enhancer_model: str | None
    image_waves: tuple[tuple[str, ...], ...]
    clip_batches: tuple[ClipBatch, ...]  # wave 0: clips that wait for no image and no clip
    clip_waves: tuple[tuple[ClipBatch, ...], ...]  # waves 1..n
    notify_webhook: str | None = None  # the manifest's `notify: {webhook: URL}` (pipeline/cloud/webhook_step.py)

    def to_json(self) -> str:
        return json.dumps({
            "version": RUN_DOCUMENT_VERSION, "ref": self.ref.to_dict(), "source": self.source,
            "started": self.started, "enhancer_model": self.enhancer_model, "plan": self.plan.to_dict(),
            "image_waves": [list(w) for w in self.image_waves],
            "clip_batches": [batch_to_json(b) for b in self.clip_batches],
            "clip_waves": [[batch_to_json(b) for b in w] for w in self.clip_waves],
            **({"notify_webhook": self.notify_webhook} if self.notify_webhook else {}),
        }, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: bytes | str) -> CloudRun:
        d = json.loads(text)
        if d.get("version") != RUN_DOCUMENT_VERSION:
            raise ValueError(f"run document version {d.get('version')!r}, expected {RUN_DOCUMENT_VERSION}")

        def batch(b: Mapping[str, Any]) -> ClipBatch:
            return ClipBatch(b["batch"], tuple(b["jobs"]), b.get("service", SAGEMAKER))

        return cls(
            ref=RunRef.from_dict(d["ref"]), plan=Plan.from_dict(d["plan"]), source=d["source"], started=d["started"],
            enhancer_model=d.get("enhancer_model"), image_waves=tuple(tuple(w) for w in d["image_waves"]),
            clip_batches=tuple(batch(b) for b in d["clip_batches"]),
            clip_waves=tuple(tuple(batch(b) for b in w) for w in d["clip_waves"]),
            notify_webhook=d.get("notify_webhook"),
        )

    def backends(self, settings: CloudSettings, *, polly: Any = None) -> CloudBackends:
        return CloudBackends(self.plan.backends, enhancer_model=self.enhancer_model, settings=settings, polly=polly)

    def task_context(self, *, store: Store, settings: CloudSettings, s3: Any, workdir: Path,
                     backends: CloudBackends | None = None, polly: Any = None) -> TaskContext:
        """What the local runner's task functions need, for this run's plan in the output bucket (`polly`: the
        Polly client the voice backend uses; None: boto3's)."""
        return TaskContext(plan=self.plan, store=store, backends=backends or self.backends(settings, polly=polly),
                           workdir=workdir, s3_client=s3)

    def stage_one(self) -> list[Job]:
        """The `Enhance prompts` stage's jobs: prompt enhancements and translations (the enhance Lambda runs both,
        so translation needs no state of its own)."""
        return self.plan.by_kind("enhance") + self.plan.by_kind("translate")

    def stage_items(self) -> dict[str, list[list[dict[str, Any]]]]:
        """Each stage's Map items in waves (a stage without waves is one wave): {"job_id"} per job, or a
        clip batch's {"batch", "jobs"}. What a Distributed Map reads from S3, one file per wave."""
        return {
            "enhance": [[{"job_id": j.id} for j in self.stage_one()]],
            "images": [[{"job_id": j} for j in w] for w in self.image_waves],
            "clips": [[batch_to_json(b) for b in self.clip_batches]],
            "voices": [[{"job_id": j.id} for j in self.plan.by_kind("voice")]],
            "waiting_clips": [[batch_to_json(b) for b in w] for w in self.clip_waves],
            "videos": [[{"job_id": j.id} for j in self.plan.by_kind("video")]],
        }

    def summary(self, *, report_uri: str, distributed: Iterable[str] = ()) -> dict[str, Any]:
        """The few KB the state carries: job ids per inline stage (Map items), and for each stage its mode
        and job count, plus, for a distributed stage, where its items are in S3 instead of the ids."""
        far = set(distributed)
        unknown = far - set(STAGES)
        if unknown:
            raise ValueError(f"no stage {sorted(unknown)}; stages are {STAGES}")
        items = self.stage_items()
        stages: dict[str, Any] = {}
        for name in STAGES:
            count = sum(_jobs_in(w) for w in items[name])
            entry: dict[str, Any] = {"mode": "distributed" if name in far else "inline", "count": count}
            if name in far and name in WAVE_STAGES:
                entry["waves"] = [{"wave": i + 1, "count": _jobs_in(w), "key": stage_key(self.ref, name, i + 1)}
                                  for i, w in enumerate(items[name])]
            elif name in far:
                entry["key"] = stage_key(self.ref, name)
            stages[name] = entry
        return {
            "valid": True, "ref": self.ref.to_dict(), "report": report_uri, "problems": 0,
            "enhance": [] if "enhance" in far else [j.id for j in self.stage_one()],
            "image_waves": [] if "images" in far else
            [{"wave": i + 1, "jobs": list(w)} for i, w in enumerate(self.image_waves)],
            "clip_batches": [] if "clips" in far else [batch_to_json(b) for b in self.clip_batches],
            "voices": [] if "voices" in far else [j.id for j in self.plan.by_kind("voice")],
            "clip_waves": [] if "waiting_clips" in far else
            [{"wave": i + 1, "batches": [batch_to_json(b) for b in w]} for i, w in enumerate(self.clip_waves)],
            "videos": [] if "videos" in far else [j.id for j in self.plan.by_kind("video")],
            "stages": stages,
        }

    def stage_files(self, distributed: Iterable[str]) -> dict[str, bytes]:
        """The S3 objects a distributed stage's Maps read: key -> JSON list of items."""
        items = self.stage_items()
        files: dict[str, bytes] = {}
        for name in distributed:
            if name in WAVE_STAGES:
                for i, wave in enumerate(items[name]):
                    files[stage_key(self.ref, name, i + 1)] = json.dumps(wave).encode()
            else:
                files[stage_key(self.ref, name)] = json.dumps(items[name][0]).encode()
        return files


def _jobs_in(items: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(item["jobs"]) if "jobs" in item else 1 for item in items)


def choose_distributed(run: CloudRun, *, threshold: int, report_uri: str) -> set[str]:
    """The stages that run as Distributed Maps: those with more jobs than `threshold` or with a Luma Ray2 batch
    (its polling loop must sit in a child execution's history, never the parent's), then the largest of the
    rest while the inline ones together pass INLINE_JOBS_BUDGET jobs or INLINE_SUMMARY_BYTES of state."""
    items = run.stage_items()
    counts = {name: sum(_jobs_in(w) for w in items[name]) for name in STAGES}
    sizes = {name: len(json.dumps(items[name])) for name in STAGES}
    distributed = {name for name in STAGES if counts[name] > threshold or _has_ray2(items[name])}
    while True:
        inline = [name for name in STAGES if name not in distributed and counts[name]]
        within = (sum(counts[n] for n in inline) <= INLINE_JOBS_BUDGET
                  and len(json.dumps(run.summary(report_uri=report_uri, distributed=distributed))) <= INLINE_SUMMARY_BYTES)
        if within or not inline:
            return distributed
        distributed.add(max(inline, key=lambda n: (counts[n], sizes[n])))


def _has_ray2(waves: Sequence[Sequence[Mapping[str, Any]]]) -> bool:
    return any(item.get("service") == BEDROCK for wave in waves for item in wave)


def empty_stages() -> dict[str, Any]:
    return {name: {"mode": "inline", "count": 0} for name in STAGES}


def load_run(store: Store, ref: RunRef) -> CloudRun:
    run = CloudRun.from_json(store.read_bytes(run_document_key(ref)))
    if run.ref != ref:
        raise ValueError(f"{run_document_key(ref)} belongs to {run.ref}, not {ref}")
    return run
