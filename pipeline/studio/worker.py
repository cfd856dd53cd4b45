"""A studio job's worker process: load_manifest -> build_plan -> run_local, exactly as `campaign run`, while
keeping status.json (state, jobs done of total, report) up to date for the page.

Run as `python -m pipeline.studio.worker JOB_FOLDER` by jobs.start_job, with the studio's config in the
environment. SIGINT or SIGTERM cancels it the way Ctrl-C cancels `campaign run`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

from pipeline.studio.config import StudioConfig
from pipeline.studio.shots import write_text_atomic

# Backends that render on this machine's GPU: one renderer per model at a time, or two would share its memory.
# (sagemaker gives every job its own instance; preview is CPU and cheap, so those run side by side.)
LOCAL_GPU_BACKENDS = ("diffusers",)
LOCKS_DIR = "locks"
STEP_WRITE_S = 0.25  # how often a clip's step progress is written (the page refreshes every second)


class StatusFile:
    """status.json, rewritten atomically on every change so a reader never sees half of it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "status.json"
        self.data: dict[str, Any] = {"state": "queued", "done": 0, "total": 0, "message": "", "report": None,
                                     "rendering": {}}
        self._lock = threading.Lock()  # the runner's threads and the renderers' step reports both write it

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.data.update(changes, updated=time.time())
            write_text_atomic(self.path, json.dumps(self.data, indent=1))


class ClipSteps:
    """A backend's step (or frame) reports, as `rendering` in status.json: {job id: [done, of, unit]}. Written at
    most every STEP_WRITE_S per clip, and always on its last step; the page reads it on its next refresh."""

    def __init__(self, status: StatusFile, job_ids: dict[str, str]) -> None:
        self.status = status
        self.job_ids = job_ids  # clip key -> job id (clip:<video>/<shot>)
        self.last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, done: int, total: int, unit: str) -> None:
        now = time.monotonic()
        with self._lock:
            if done < total and now - self.last.get(key, 0.0) < STEP_WRITE_S:
                return
            self.last[key] = now
            rendering = {**self.status.data.get("rendering", {}), self.job_ids.get(key, key): [done, total, unit]}
            self.status.update(rendering=rendering)


class ProgressStream:
    """The runner's progress output (one line per finished job when not a terminal), counted into status."""

    def __init__(self, status: StatusFile, log: Any) -> None:
        self.status = status
        self.log = log
        self.pending = ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.status.update(done=min(self.status.data["done"] + 1, self.status.data["total"] or 10**9),
                                   message=line.strip())
        return len(text)

    def flush(self) -> None:
        self.log.flush()

    def isatty(self) -> bool:
        return False  # line-per-job output, never bars


@contextlib.contextmanager
def gpu_locks(studio_dir: Path, *, backend: str, models: list[str], on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock per model on a local-GPU backend (the OS drops it if the worker dies)."""
    if backend not in LOCAL_GPU_BACKENDS:
        yield
        return
    (studio_dir / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for model in sorted(set(models)):  # one order for every worker: no two wait on each other
            f = stack.enter_context(open(studio_dir / LOCKS_DIR / f"{backend}-{model}.lock", "a"))
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_wait(model)
                fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_job(folder: Path, config: StudioConfig) -> int:
    from pipeline.backends.base import set_step_reporter
    from pipeline.errors import ManifestInvalid, PipelineError
    from pipeline.manifest.campaign import load_manifest
    from pipeline.plan.cost import estimate_cost
    from pipeline.run.runner import run_local
    from pipeline.studio.engine import plan_campaign

    request = json.loads((folder / "request.json").read_text())
    status = StatusFile(folder)
    status.update(state="queued", message="planning")
    log = sys.stderr
    try:
        campaign = load_manifest(request["manifest"])
        backends, plan = plan_campaign(campaign, config)
        models = sorted({j.clip.model for j in plan.jobs if j.kind == "clip"})
        status.update(total=len(plan.jobs), backends=backends.names())
        set_step_reporter(ClipSteps(status, {j.key: j.id for j in plan.jobs if j.kind == "clip"}))
        with gpu_locks(config.studio_dir, backend=backends.video.name, models=models,
                       on_wait=lambda m: status.update(message=f"waiting for the {backends.video.name} {m} renderer")):
            status.update(state="running", message=f"{len(plan.jobs)} job(s)", started=time.time())
            outcome = run_local(plan, backends, out_dir=config.out_dir, workers=config.workers, show_progress=True,
                                stream=cast(TextIO, ProgressStream(status, log)), run_id=request["id"], cost=estimate_cost(plan))
        report = outcome.report
        errors = "; ".join(f"{e['job']}: {e['error']}: {e['message']}" for e in report["errors"])
        status.update(state=report["status"], report=f"{report['prefix']}/report.json", finished=time.time(),
                      message=errors or f"{report['jobs']['executed']} executed, {report['jobs']['cached']} cached")
        return 0 if report["status"] == "succeeded" else 1
    except KeyboardInterrupt:
        report_rel = f"runs/{request['campaign']}/{request['id']}/report.json"
        status.update(state="cancelled", finished=time.time(),
                      report=report_rel if (config.out_dir / report_rel).is_file() else None,
                      message="cancelled: finished outputs are kept in the cache; generate again to resume")
        return 130
    except ManifestInvalid as exc:
        status.update(state="failed", message="; ".join(str(p) for p in exc.problems), finished=time.time())
        return 2
    except PipelineError as exc:
        status.update(state="failed", message=f"{type(exc).__name__}: {exc}", finished=time.time())
        return 1
    except Exception as exc:  # anything else is a bug: keep the traceback in worker.log, a line on the page
        traceback.print_exc(file=log)
        status.update(state="failed", message=f"internal error: {type(exc).__name__}: {exc} (see worker.log)",
                      finished=time.time())
        return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Cancel is SIGINT (jobs.cancel_job). Set it here rather than trust Python's default: a studio started where
    # SIGINT is ignored (`nohup campaign studio &`, a shell without job control) passes that on to its children.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    return run_job(Path(args[0]), StudioConfig.from_env())


if __name__ == "__main__":
    sys.exit(main())
