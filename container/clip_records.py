"""Failures, provenance files and the runtime environment (generate.py's records of each clip and batch).

Part of the container image beside generate.py; generate.py re-exports these names.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import torch
from clip_jobs import Job, JobError, JobResult

Log = Callable[[str], None]


def record_failure(
    job: Job | dict[str, Any],
    exc: BaseException,
    out_dir: Path,
    environment: dict[str, Any],
    *,
    stage: str,
    log: Log,
    key: str | None = None,
    source: str = "",
    loaded: Any = None,  # a LoadedPipeline: its identity and placement go into the record
) -> JobResult:
    if isinstance(job, Job):
        key, source, as_dict = job.key, job.source, job.as_dict()
    else:
        as_dict = job
    message = str(exc)
    provenance: dict[str, Any] = {
        "status": "failed", "key": key, "job": as_dict, "source": source, "stage": stage,
        "error": message, "error_type": type(exc).__name__,
        "traceback": traceback.format_exception_only(type(exc), exc)[-1].strip()
        if isinstance(exc, JobError) else traceback.format_exc(limit=8),
        "environment": environment,
    }
    if loaded is not None:
        provenance["model"] = loaded.identity
        provenance["settings"] = {"dtype": loaded.dtype, "device": loaded.device, "memory_mode": loaded.memory_mode}
    if key is not None:
        stale = out_dir / f"{key}.mp4"
        if stale.exists():
            stale.unlink()  # a failed re-run must not leave an older clip looking like this run's output
        write_json(out_dir / f"{key}.json", provenance)
    log(f"{key or source}: FAILED at {stage}: {type(exc).__name__}: {message}")
    return JobResult(key=key, ok=False, mp4=None, provenance=provenance, error=message, error_type=type(exc).__name__)


def write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(partial, path)


def peak_memory(device: str) -> dict[str, Any]:
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; the whole process so far
    out: dict[str, Any] = {"process_rss_peak_gib": round(rss_kib / 2**20, 3)}
    if device == "cuda":
        out["gpu_allocated_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        out["gpu_reserved_peak_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    return out


def runtime_environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in ("torch", "diffusers", "transformers", "accelerate", "tokenizers", "imageio-ffmpeg", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env: dict[str, Any] = {"python": platform.python_version(), "libraries": versions, "ffmpeg": imageio_ffmpeg.get_ffmpeg_version(),
                           "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env
