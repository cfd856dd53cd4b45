"""Shared check: every file a run delivered reads back with c2pa's Reader, with no validation failure other than
the untrusted development certificate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import c2pa

MIME = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}


def delivered(report: dict[str, Any]) -> list[str]:
    """Every image, image step, clip, video format and poster the report names."""
    paths: list[str] = []
    for im in report["images"]:
        paths += [im["path"], *(s["path"] for s in im["steps"])]
    for v in report["videos"]:
        formats = v.get("formats") or [{"path": v["path"], "poster": v.get("poster")}]
        paths += [p for f in formats for p in (f["path"], f["poster"])] + [c["path"] for c in v["clips"]]
    return sorted({p for p in paths if p})


def failures(path: Path) -> set[str]:
    with open(path, "rb") as fh, c2pa.Reader(MIME[path.suffix], fh) as reader:
        store = json.loads(reader.json())
    return {f["code"] for f in (store.get("validation_results") or {}).get("activeManifest", {}).get("failure", [])}


def assert_every_delivered_file_signed(report: dict[str, Any], run_dir: Path) -> int:
    files = delivered(report)
    assert files
    for rel in files:
        assert failures(run_dir / rel) == {"signingCredential.untrusted"}, rel
    return len(files)
