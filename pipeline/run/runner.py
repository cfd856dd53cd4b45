"""The local runner: walks the plan's job graph with a bounded thread pool and shows progress per stage."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pipeline.backends import Backends
from pipeline.credentials.keys import SigningKey
from pipeline.errors import DependencyFailed
from pipeline.plan.build import STAGE_NAMES, Plan
from pipeline.plan.jobs import Job
from pipeline.plan.schedule import Readiness, batches, clip_group, readiness, waits_only_on_fast_jobs
from pipeline.report.write import new_run_id, write_run
from pipeline.run.approval import LocalHold, before_render, hold_for_approval
from pipeline.run.signals import JOB_THREAD_PREFIX
from pipeline.storage.outdir import acquire_lease, prepare_out_dir, sweep_work
from pipeline.storage.store import LocalStore, Store
from pipeline.tasks import JobResult, TaskContext, failure
from pipeline.tasks.clips import run_clip_batch
from pipeline.tasks.dispatch import run_job


@dataclass
class RunOutcome:
    report: dict[str, Any]
    results: list[JobResult]
    report_path: str


class Progress:
    """One bar per stage on a terminal; one line per finished job and stage otherwise (logs, CI)."""

    def __init__(self, plan: Plan, *, stream: TextIO | None, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream is not None  # None: standard error closed (`2>&-`)
        self.tty = self.enabled and _isatty(stream)
        self.totals = {s: len(jobs) for s, jobs in plan.stages().items()}
        self.counts: dict[int, dict[str, int]] = {s: {} for s in self.totals}
        self.started = time.perf_counter()
        self.bars: dict[int, Any] = {}
        if self.tty:
            try:
                self._open_bars()
            except (OSError, ValueError):
                self.enabled = self.tty = False

    def _open_bars(self) -> None:
        from tqdm import tqdm

        for i, (stage, total) in enumerate(self.totals.items()):
            self.bars[stage] = tqdm(total=total, desc=f"stage {stage} {STAGE_NAMES[stage]:<44}", position=i,
                                    leave=True, file=self.stream, unit="job", dynamic_ncols=True,
                                    bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}]{postfix}")

    def done(self, job: Job, result: JobResult) -> None:
        """Count a finished job and show it. Showing is best effort: output nobody reads any more (a closed pipe,
        `2>&1 | head -1`) turns progress off, and the run and its report go on."""
        try:
            self._show(job, result)
        except (OSError, ValueError):  # EPIPE and friends; ValueError: a stream closed under us
            self.enabled = self.tty = False
            self.bars = {}

    def _show(self, job: Job, result: JobResult) -> None:
        c = self.counts[job.stage]
        c[result.status] = c.get(result.status, 0) + 1
        finished = sum(c.values())
        if self.tty:
            bar = self.bars[job.stage]
            bar.set_postfix_str(", ".join(f"{v} {k}" for k, v in sorted(c.items())), refresh=False)
            bar.update(1)
        elif self.enabled and self.stream is not None:
            extra = f" — {result.error_type}: {result.message}" if not result.ok else ""
            self.stream.write(f"[{time.perf_counter() - self.started:7.1f}s] stage {job.stage} {finished}/"
                              f"{self.totals[job.stage]} {result.status:<8} {job.id}{extra}\n")
            self.stream.flush()

    def close(self) -> None:
        bars, self.bars = self.bars, {}
        for bar in bars.values():
            with contextlib.suppress(OSError, ValueError):
                bar.close()


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


class RunInterrupted(Exception):
    """Ctrl-C during a run: carries the results of the jobs that finished, so a report can still be written."""

    def __init__(self, results: list[JobResult]) -> None:
        super().__init__(f"interrupted after {len(results)} job(s)")
        self.results = results


def run_plan(plan: Plan, store: Store, backends: Backends, *, workdir: Path, workers: int = 2,
             progress: Progress | None = None, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Execute every job once its dependencies are done. Failures skip their dependents, never the rest.

    Clips wait briefly to fill a batch (up to the video backend's `max_batch`) while more clips of the same
    model are only waiting for prompts or images, so a GPU backend loads its model once for many clips."""
    ctx = TaskContext(plan=plan, store=store, backends=backends, workdir=workdir)
    results: dict[str, JobResult] = {}
    remaining = {j.id: j for j in plan.jobs}
    running: dict[Future[list[JobResult]], list[Job]] = {}
    held: dict[str, list[Job]] = {}  # ready clips by group, waiting to fill a batch
    max_batch = backends.video.max_batch

    finished: dict[str, bool] = {}  # job id -> produced its output

    def finish(job: Job, res: JobResult) -> None:
        results[job.id] = res
        finished[job.id] = res.ok
        if progress:
            progress.done(job, res)
        if on_result:
            on_result(res)

    def more_coming(group: str) -> bool:
        """Another clip of this group waits only on prompt or image jobs, so it will be ready soon."""
        return any(j.kind == "clip" and clip_group(j) == group and waits_only_on_fast_jobs(plan, j, finished)
                   for j in remaining.values())

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=JOB_THREAD_PREFIX)
    try:
        while remaining or running or held:
            for job in list(remaining.values()):
                state, failed = readiness(job, finished)
                if state is Readiness.WAITING:
                    continue
                del remaining[job.id]
                if state is Readiness.BLOCKED:
                    assert failed is not None
                    finish(job, failure(job, DependencyFailed(f"needs {failed}, which {results[failed].status}")))
                elif job.kind == "clip":
                    held.setdefault(clip_group(job), []).append(job)
                else:
                    running[pool.submit(_run_one, job, ctx)] = [job]
            for group in list(held):
                jobs = held[group]
                for batch in batches(jobs, max_batch, group=clip_group):
                    if len(batch) < max_batch and more_coming(group) and running:
                        held[group] = batch  # the last, partial batch keeps waiting
                        break
                    running[pool.submit(run_clip_batch, batch, ctx)] = batch
                else:
                    del held[group]
            if not running:
                if remaining and not held:  # nothing runs and nothing can start: a planner bug, not user input
                    raise RuntimeError(f"job graph is stuck: {sorted(remaining)}")
                continue
            done_futures, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done_futures:
                jobs = running.pop(fut)
                try:
                    batch_results = fut.result()
                except Exception as exc:  # task functions catch their own errors; this is a last guard
                    batch_results = [failure(j, exc) for j in jobs]
                for job, res in zip(jobs, batch_results, strict=True):
                    finish(job, res)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)  # queued jobs never start; running ones finish and are kept
        raise RunInterrupted([results[j.id] for j in plan.jobs if j.id in results]) from None
    pool.shutdown(wait=True)
    return [results[j.id] for j in plan.jobs]


def _run_one(job: Job, ctx: TaskContext) -> list[JobResult]:
    return [run_job(job, ctx)]


def run_local(plan: Plan, backends: Backends, *, out_dir: Path, workers: int = 2, show_progress: bool = True,
              stream: TextIO | None = None, run_id: str | None = None,
              cost: dict[str, Any] | None = None, force: bool = False, verify: bool = False,
              budget: dict[str, Any] | None = None, hold: LocalHold | None = None,
              signing: SigningKey | None = None) -> RunOutcome:
    """`campaign run`: execute the plan into out_dir (cache/ + runs/<campaign>/<run-id>/) and write the report.
    With `hold`, only the jobs before the approval gate run and the report waits for approval.

    The folder must be ours (pipeline.storage.outdir: marker file) unless `force`; the run holds a lock on its work
    folder for its whole life, so concurrent runs, here or in another container, never sweep each other's."""
    prepare_out_dir(out_dir, force=force)
    _sweep_workdirs(out_dir)
    lease = acquire_lease(out_dir, folder=True)
    try:
        store = LocalStore(out_dir, lease=lease, verify=verify)
        store.sweep_temp()
        run_id = run_id or new_run_id()
        started = time.time()
        to_run = before_render(plan) if hold else plan
        progress = Progress(to_run, stream=stream or sys.stderr, enabled=show_progress)
        assert lease.folder is not None
        work = lease.folder
        try:
            results = run_plan(to_run, store, backends, workdir=work, workers=workers, progress=progress)
        except RunInterrupted as stop:  # still write what was done, then let the CLI say so
            progress.close()
            write_run(plan, stop.results, store, run_id=run_id, started=started, finished=time.time(), cost=cost,
                      interrupted=True, signing=signing)
            raise KeyboardInterrupt from None
        finally:
            progress.close()
            shutil.rmtree(work, ignore_errors=True)
        if hold:
            report, _ = hold_for_approval(plan, results, store, run_id=run_id, started=started, cost=cost,
                                          budget=budget, manifest=hold.manifest, manifest_sha256=hold.manifest_sha256,
                                          backends=hold.backends, signing=signing)
        else:
            report = write_run(plan, results, store, run_id=run_id, started=started, finished=time.time(), cost=cost,
                               budget=budget, signing=signing)
    finally:
        lease.release()  # after the report: its temp files are alive only while the lock is held
    return RunOutcome(report, results, store.location(f"{report['prefix']}/report.json"))


def _sweep_workdirs(out_dir: Path) -> None:
    """Remove work folders whose run is gone: its lock is free (pipeline.storage.outdir), whatever host it ran on."""
    sweep_work(out_dir)
