"""Background generation: each run is a worker process with a status file, so it survives a browser refresh,
shows progress, and can be cancelled by whoever started it; several preview runs go at once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.report.write import new_run_id
from pipeline.storage.outdir import prepare_out_dir
from pipeline.studio.config import ENV_VAR, StudioConfig
from pipeline.studio.gate import TOKEN_ENV
from pipeline.studio.shots import ShotSpec, manifest_text, write_text_atomic

JOBS_DIR = "jobs"
ACTIVE_STATES = ("queued", "running")
JOB_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9-]{1,64}")  # report.new_run_id: a folder name, never a path


class NotAllowed(Exception):
    """A user asked to cancel a render that is not theirs (and is no administrator)."""


@dataclass(frozen=True)
class StudioJob:
    """One background run as the page shows it. `report` is relative to the output folder."""

    id: str
    campaign: str
    manifest: str
    state: str  # queued | running | succeeded | partial | failed | cancelled | lost
    done: int = 0
    total: int = 0
    message: str = ""
    report: str | None = None
    shot: ShotSpec | None = None
    pid: int | None = None
    rendering: tuple[tuple[str, int, int, str], ...] = ()  # (job id, done, of, "step" | "frame") as backends report
    owner: str | None = None  # who started it: the gate's user (the local user, or the load balancer's sign-in)

    @property
    def in_progress(self) -> tuple[tuple[str, int, int, str], ...]:
        """The clips rendering now, with their steps (or frames) so far."""
        return tuple(r for r in self.rendering if r[1] < r[2])

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def jobs_dir(config: StudioConfig) -> Path:
    return config.studio_dir / JOBS_DIR


def start_job(config: StudioConfig, *, campaign: str, owner: str | None, manifest: Path | None = None,
              shot: ShotSpec | None = None, job_id: str | None = None) -> StudioJob:
    """Start a worker that runs `manifest` like `campaign run`; given a shot instead, its one-video manifest is
    written into the job's folder first. The job id is the run id: the report lands at runs/<campaign>/<id>/.
    `owner` is recorded with the request: only they (or an administrator) may cancel it. `job_id` (a run id made
    by new_run_id) is given by a regenerate, whose review decision names the run before it starts."""
    job_id = job_id or new_run_id()
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a run id: {job_id[:80]!r}")
    folder = jobs_dir(config) / job_id
    prepare_out_dir(config.out_dir)  # ours (its marker) before the studio writes in it, as `campaign run` would
    folder.mkdir(parents=True)
    if shot is not None and manifest is None:
        manifest = folder / "manifest.yaml"
        write_text_atomic(manifest, manifest_text([shot], campaign=campaign, manifest_dir=folder, video_ids=["shot"]))
    if manifest is None:
        raise ValueError("start_job needs a manifest or a shot")
    request = {"id": job_id, "campaign": campaign, "manifest": str(Path(manifest).resolve()),
               "shot": shot.to_dict() if shot else None, "owner": owner}
    write_text_atomic(folder / "request.json", json.dumps(request, indent=1))
    with open(folder / "worker.log", "ab") as log:
        # its own session: a terminal's Ctrl-C reaches it once, forwarded by `campaign studio` (server.shut_down)
        proc = subprocess.Popen(worker_command(folder), env=worker_env(config), cwd=folder, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    write_text_atomic(folder / "pid", str(proc.pid))
    return read_job(folder)


def worker_command(folder: Path) -> list[str]:
    """`python -I`: no working folder, PYTHONPATH or user site on sys.path, so nothing in the workspace (a
    yaml.py beside a manifest) is ever imported by a render (Python docs, Command line: -I)."""
    return [sys.executable, "-I", "-m", "pipeline.studio.worker", str(folder)]


def worker_env(config: StudioConfig) -> dict[str, str]:
    """The server's environment without the studio's token (a render has no use for it), with the config."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env[ENV_VAR] = config.to_env()
    return env


def read_job(folder: Path) -> StudioJob:
    """The request merged with the worker's latest status; an active job whose worker is gone is `lost`."""
    request = _read_json(folder / "request.json") or {"id": folder.name, "campaign": "?", "manifest": ""}
    status = _read_json(folder / "status.json") or {"state": "queued", "message": "starting"}
    pid = _read_pid(folder)
    state = str(status.get("state", "queued"))
    message = str(status.get("message", ""))
    if state in ACTIVE_STATES and pid is not None and not _alive(pid):
        status = _read_json(folder / "status.json") or status  # it may have finished between the two reads
        state = str(status.get("state", state))
        if state in ACTIVE_STATES:
            state, message = "lost", "the worker stopped without a result (killed?); see worker.log"
    shot = request.get("shot")
    return StudioJob(id=str(request["id"]), campaign=str(request["campaign"]), manifest=str(request["manifest"]),
                     state=state, done=int(status.get("done", 0)), total=int(status.get("total", 0)),
                     message=message, report=status.get("report"),
                     shot=ShotSpec.from_dict(shot) if shot else None, pid=pid,
                     owner=str(request["owner"]) if request.get("owner") else None,
                     rendering=tuple((str(k), int(v[0]), int(v[1]), str(v[2]))
                                     for k, v in sorted((status.get("rendering") or {}).items())))


def list_jobs(config: StudioConfig) -> list[StudioJob]:
    """Every studio job, newest first (job ids start with their UTC start time)."""
    root = jobs_dir(config)
    if not root.is_dir():
        return []
    return [read_job(d) for d in sorted(root.iterdir(), key=lambda d: d.name, reverse=True)
            if (d / "request.json").is_file()]


def may_cancel(config: StudioConfig, job: StudioJob, user: str | None) -> bool:
    """Its owner may cancel a render, and an administrator any; everyone else only watches."""
    return user is not None and (user == job.owner or user in config.admins)


def cancel_job(config: StudioConfig, job_id: str, *, user: str | None) -> bool:
    """Ask the worker to stop, as Ctrl-C stops `campaign run`: queued jobs never start, finished outputs stay
    in the cache, and a report of what finished is written. False when it had already ended; NotAllowed when
    `user` may not cancel it."""
    if not JOB_ID.fullmatch(job_id):
        raise NotAllowed(f"no such render: {job_id[:80]!r}")
    folder = jobs_dir(config) / job_id
    job = read_job(folder)
    if not may_cancel(config, job, user):
        raise NotAllowed(f"render {job_id} was started by {job.owner or 'an unknown user'}; only they or an "
                         "administrator may cancel it")
    if not job.active or job.pid is None:
        return False
    try:
        os.kill(job.pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_pid(folder: Path) -> int | None:
    try:
        return int((folder / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:  # reap it first if it is our own finished child, or it would look alive as a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
