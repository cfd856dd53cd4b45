"""One generate.py worker per GPU (generate.py step 0): split a batch's clips across the GPUs, run a
child process per GPU on its own share, and merge their summaries.

Part of the container image beside generate.py. Each child sees one GPU (CUDA_VISIBLE_DEVICES) and loads
its own copy of the weights; clips of one pipeline folder and one size stay together on a worker, so each
worker loads as few folders and compiles for as few shapes as the split allows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class SplitJob(Protocol):
    key: str
    folder: str
    width: int
    height: int
    frames: int
    steps: int


@dataclass(frozen=True)
class WorkerShare:
    worker: int
    keys: tuple[str, ...]
    cost: int  # pixels x frames x steps: what a clip's denoise time grows with


def clip_cost(job: SplitJob) -> int:
    return job.width * job.height * job.frames * job.steps


def split_jobs(jobs: Sequence[SplitJob], workers: int) -> list[WorkerShare]:
    """Balance the batch's cost over `workers`, keeping (folder, size) groups whole where that costs nothing.

    Groups are dealt largest first to the least-loaded worker; a group bigger than a fair share is cut into
    runs of clips, so 8 identical clips on 8 GPUs still give one clip each. Deterministic: same batch, same split.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    groups: dict[tuple[Any, ...], list[SplitJob]] = {}
    for job in jobs:
        groups.setdefault((job.folder, job.width, job.height, job.frames), []).append(job)
    total = sum(clip_cost(job) for job in jobs)
    fair = total / workers if workers else total
    pieces: list[list[SplitJob]] = []
    for group in groups.values():
        piece: list[SplitJob] = []
        for job in group:
            if piece and sum(map(clip_cost, piece)) + clip_cost(job) > fair:
                pieces.append(piece)
                piece = []
            piece.append(job)
        pieces.append(piece)
    pieces.sort(key=lambda p: (-sum(map(clip_cost, p)), p[0].key))
    shares: list[list[SplitJob]] = [[] for _ in range(workers)]
    for piece in pieces:
        lightest = min(range(workers), key=lambda w: (sum(map(clip_cost, shares[w])), w))
        shares[lightest].extend(piece)
    return [WorkerShare(worker=w, keys=tuple(j.key for j in share), cost=sum(map(clip_cost, share)))
            for w, share in enumerate(shares) if share]


def run_workers(
    *,
    generate_py: Path,
    shares: Sequence[WorkerShare],
    lines_by_key: dict[str, dict[str, Any]],
    models_dir: Path,
    out_dir: Path,
    forwarded_args: Sequence[str],
    gpus: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """Start one child per share (each on its own GPU when `gpus` is given); wait; return their summaries."""
    work = out_dir / "_workers"
    work.mkdir(parents=True, exist_ok=True)
    children: list[tuple[WorkerShare, subprocess.Popen[bytes], Path]] = []
    for share in shares:
        jobs_file = work / f"worker-{share.worker}.jsonl"
        jobs_file.write_text("".join(json.dumps(lines_by_key[key]) + "\n" for key in share.keys), encoding="utf-8")
        env = dict(os.environ)
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus[share.worker]
        summary = work / f"worker-{share.worker}.json"
        command = [sys.executable, str(generate_py), "--jobs", str(jobs_file), "--models", str(models_dir),
                   "--out", str(out_dir), "--workers", "1", "--summary", str(summary), *forwarded_args]
        # Children inherit stdout/stderr: their flushed lines reach CloudWatch as they are written.
        children.append((share, subprocess.Popen(command, env=env), summary))
    summaries = []
    for share, child, summary in children:
        code = child.wait()
        data: dict[str, Any] = (json.loads(summary.read_text(encoding="utf-8")) if summary.is_file()
                                else {"results": [], "loads": []})
        data.update(worker=share.worker, exit_code=code, keys=list(share.keys),
                    gpu=gpus[share.worker] if gpus is not None else None)
        summaries.append(data)
    return summaries


def worker_count(text: str, *, gpu_count: int) -> int:
    """--workers: "auto" is one per visible GPU (at least one)."""
    if text == "auto":
        return max(1, gpu_count)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--workers must be 'auto' or a whole number >= 1, got {text!r}")
    return int(text)


def strip_options(argv: list[str], names: set[str]) -> list[str]:
    """argv without the named options (and their values): the parent sets those per worker."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
