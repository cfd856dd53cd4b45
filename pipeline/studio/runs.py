"""The run history: every report under the output folder, newest first, and what a run page shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = ("succeeded", "partial", "failed")


@dataclass(frozen=True)
class RunSummary:
    campaign: str
    run_id: str
    status: str
    started: str
    report_path: Path  # runs/<campaign>/<run-id>/report.json
    videos: int
    images: int
    errors: int
    cost_usd: float | None

    @property
    def folder(self) -> Path:
        return self.report_path.parent


def list_runs(out_dir: Path, *, campaigns: list[str] | None = None, statuses: list[str] | None = None) -> list[RunSummary]:
    """Every run with a report under out_dir/runs, newest first; empty filters keep everything."""
    found = []
    for path in out_dir.glob("runs/*/*/report.json"):
        report = load_report(path)
        if report is None:
            continue
        run = RunSummary(campaign=str(report.get("campaign", path.parent.parent.name)),
                         run_id=str(report.get("run_id", path.parent.name)), status=str(report.get("status", "?")),
                         started=str(report.get("started", "")), report_path=path,
                         videos=sum(1 for v in report.get("videos", []) if v.get("path")),
                         images=sum(1 for i in report.get("images", []) if i.get("path")),
                         errors=len(report.get("errors", [])),
                         cost_usd=(report.get("cost") or {}).get("total_usd"))
        if campaigns and run.campaign not in campaigns:
            continue
        if statuses and run.status not in statuses:
            continue
        found.append(run)
    # `started` has whole seconds; within one second the report written last is the newer run
    return sorted(found, key=lambda r: (r.started, _mtime(r.report_path)), reverse=True)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def load_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a report being written right now; it appears on the next refresh
    return data if isinstance(data, dict) else None


def campaigns(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.glob("runs/*") if p.is_dir())


def edited_images(out_dir: Path, *, limit: int = 50) -> list[tuple[str, Path]]:
    """(label, file) for the edited images of past runs, newest first: start images for image-to-video."""
    seen: set[tuple[int, int]] = set()  # a run's files are hard links into cache/: one entry per file
    images = []
    for run in list_runs(out_dir):
        report = load_report(run.report_path) or {}
        for im in report.get("images", []):
            if not im.get("path"):
                continue
            path = run.folder / im["path"]
            if not path.is_file() or (path.stat().st_dev, path.stat().st_ino) in seen:
                continue
            seen.add((path.stat().st_dev, path.stat().st_ino))
            images.append((f"{run.campaign} / {im['id']} ({run.run_id})", run.folder / im["path"]))
            if len(images) >= limit:
                return images
    return images
