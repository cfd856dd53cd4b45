"""The one schedule both runners follow: when a job is ready, which clips share a GPU batch, and in which
dependency wave each image and clip runs. Pure functions of the plan; no I/O.

The local runner asks `readiness` as results arrive and cuts batches with `batches`; the cloud's plan step
cuts the same batches ahead of time into `waves` (a Map per wave in the state machine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from pipeline.catalog import I2V_SUFFIX, VIDEO_MODELS

if TYPE_CHECKING:  # the schedule reads plans; at run time it imports only the registry (backends use it)
    from pipeline.plan.build import Plan
    from pipeline.plan.jobs import Job

_T = TypeVar("_T")


def pipeline_folder(model: str, *, i2v: bool) -> str:
    """The weights folder (and so the model load) that renders a clip: <model>, or <model>-i2v for a model with
    separate image-to-video weights (CogVideoX); one folder for a model that does both (Wan2.2 TI2V)."""
    entry = VIDEO_MODELS.get(model)
    return entry.folder(i2v=i2v) if entry is not None else model + (I2V_SUFFIX if i2v else "")


def clip_group(job: Job) -> str:
    """Clips of one group share a model load, so they may share a batch."""
    return pipeline_folder(job.clip.model, i2v=job.clip.i2v)


def batches(items: Iterable[_T], max_batch: int, *, group: Callable[[_T], str]) -> list[list[_T]]:
    """Items grouped by `group` (groups in order of first appearance, items in order within a group), each
    group cut into batches of at most `max_batch`."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
    by_group: dict[str, list[_T]] = {}
    for item in items:
        by_group.setdefault(group(item), []).append(item)
    return [members[i:i + max_batch] for members in by_group.values() for i in range(0, len(members), max_batch)]


class Readiness(Enum):
    WAITING = "waiting"  # a dependency has not finished
    READY = "ready"  # every dependency succeeded
    BLOCKED = "blocked"  # a dependency finished without an output: the job is skipped


def readiness(job: Job, finished: Mapping[str, bool]) -> tuple[Readiness, str | None]:
    """Whether `job` can run, given {job id: succeeded?} of the jobs finished so far; with BLOCKED, the
    first dependency that failed."""
    if any(d not in finished for d in job.deps):
        return Readiness.WAITING, None
    failed = next((d for d in job.deps if not finished[d]), None)
    return (Readiness.BLOCKED, failed) if failed else (Readiness.READY, None)


def waits_only_on_fast_jobs(plan: Plan, job: Job, finished: Mapping[str, bool]) -> bool:
    """A clip whose unfinished dependencies are prompts or images (no other clip): it will be ready soon, so
    a batch of its group is worth holding for it."""
    return all(d in finished or plan.job(d).kind != "clip" for d in job.deps)


# --- waves: what the cloud's Maps run in sequence -------------------------------------------------------


SAGEMAKER = "sagemaker"  # a batch rendered by one processing job (the default)
BEDROCK = "bedrock"  # a batch of Luma Ray2 clips: one Bedrock async job per clip, started by the state machine


@dataclass(frozen=True)
class ClipBatch:
    """Clips that one processing job renders: one pipeline folder (model, T2V or I2V), at most N clips.
    `service` says which branch of the state machine renders it (SAGEMAKER or BEDROCK)."""

    id: str
    jobs: tuple[str, ...]
    service: str = SAGEMAKER


def image_waves(plan: Plan) -> tuple[tuple[str, ...], ...]:
    """Image job ids in waves: an image made from (or masked/styled by) another image runs a wave after it."""
    wave: dict[str, int] = {}
    for job in plan.by_kind("image"):  # plan order puts an image after the images it uses
        wave[job.id] = 1 + max((wave[d] for d in job.deps if d in wave), default=0)
    return tuple(tuple(ids) for _, ids in sorted(_by_wave(wave).items()))


def clip_waves(plan: Plan, *, max_batch: int, service: Callable[[Job], str] | None = None,
               ) -> tuple[tuple[ClipBatch, ...], tuple[tuple[ClipBatch, ...], ...]]:
    """Clip batches of wave 0 (they wait for nothing but prompts) and of the waves after it: a clip that
    starts from an edited image waits for the images (wave >= 1); one that continues an earlier clip runs a
    wave after that clip. Within a wave, clips of one pipeline folder share batches of at most max_batch.
    `service(job)` names the service that renders a clip (default SAGEMAKER): clips of different services
    never share a batch, so Luma Ray2 clips on Bedrock form batches of their own."""
    service = service or (lambda _job: SAGEMAKER)

    def group(job: Job) -> str:
        return f"{service(job)}/{clip_group(job)}"

    wave: dict[str, int] = {}
    for job in plan.by_kind("clip"):  # plan order puts a continued clip after the clip it continues
        after = [wave[d] for d in job.deps if d in wave]
        wave[job.id] = (1 + max(after, default=0)) if job.stage >= 3 else 0
    by_wave: dict[int, list[ClipBatch]] = {}
    for w, ids in sorted(_by_wave(wave).items()):
        numbered: dict[str, int] = {}
        for members in batches([plan.job(i) for i in ids], max_batch, group=group):
            folder = clip_group(members[0])
            numbered[folder] = numbered.get(folder, 0) + 1
            by_wave.setdefault(w, []).append(ClipBatch(f"w{w}-{folder}-{numbered[folder]:02d}",
                                                       tuple(j.id for j in members), service(members[0])))
    first = tuple(by_wave.get(0, ()))
    later = tuple(tuple(by_wave[w]) for w in sorted(by_wave) if w > 0)
    return first, later


def _by_wave(wave: Mapping[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for job_id, w in wave.items():
        out.setdefault(w, []).append(job_id)
    return out
