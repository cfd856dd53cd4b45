"""`campaign export`: the approved deliverables (videos in every format with their captions, images) of a
campaign's latest run, copied to a folder or an S3 prefix with export.json saying what was exported.

Every check comes before any write: a file in the way that an earlier export did not write (export.json lists it
with its hash) stops the export with one line. Each file is written under a temporary name and renamed, or put as
one PutObject; export.json goes last, so an interrupted export never shows a half file under a final name. Files a
previous export wrote that are no longer approved are removed, so the destination holds only approved files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from botocore.exceptions import ClientError

from pipeline.errors import ReviewRefused
from pipeline.review.decisions import APPROVE, check_campaign, for_run, read_decisions, status_of, verdict
from pipeline.storage.store import Store, parse_s3_uri

MANIFEST = "export.json"
EXPORT_VERSION = 1
# a local run id (20261207T144641Z-1a2b) or a cloud run's, its Step Functions execution name (1 to 80 of
# A-Z a-z 0-9 - _): one path segment either way, never "." or ".."
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
# what reading a run's file may raise: a folder's OSError, a bucket's ClientError (NoSuchKey), bad JSON
READ_ERRORS = (OSError, ValueError, KeyError, ClientError)


@dataclass
class ExportResult:
    campaign: str
    run_id: str
    destination: str
    files: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)  # deliverables not approved: item, state
    removed: list[str] = field(default_factory=list)


class Destination(Protocol):
    label: str

    def read(self, rel: str) -> bytes | None: ...

    def write(self, rel: str, data: bytes) -> None: ...

    def remove(self, rel: str) -> None: ...


def safe_relative(text: object) -> str:
    """A report's run-relative path, checked (reports are data): relative, POSIX, no `..`, no scheme."""
    s = text if isinstance(text, str) else ""
    parts = PurePosixPath(s).parts
    if (not s or "\\" in s or s.startswith("/") or not parts or ":" in parts[0] or "\x00" in s
            or any(p in ("..", ".", "") for p in s.split("/"))):
        raise ReviewRefused(f"the report names a file outside its run: {str(text)[:120]!r}")
    return s


class FolderDestination:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.label = str(root)
        if self.root.exists() and not self.root.is_dir():
            raise ReviewRefused(f"--to {root}: a file, not a folder")

    def _path(self, rel: str) -> Path:
        path = self.root / safe_relative(rel)
        if path.is_symlink() or (path.parent.exists() and not path.parent.resolve().is_relative_to(self.root.resolve())):
            raise ReviewRefused(f"{path}: a link; export writes only plain files inside --to")
        return path

    def read(self, rel: str) -> bytes | None:
        path = self._path(rel)
        if path.exists() and not path.is_file():
            raise ReviewRefused(f"{path}: in the way (not a file); move it or choose another --to")
        return path.read_bytes() if path.is_file() else None

    def write(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.export-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(name, 0o644)
            os.replace(name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(rel).unlink()


class BucketDestination:
    def __init__(self, uri: str, *, client: Any = None) -> None:
        self.bucket, prefix = parse_s3_uri(uri)
        folder = prefix.strip("/")
        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html: 3 to 63 of a-z 0-9 . -,
        # starting and ending with a letter or digit
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket):
            raise ReviewRefused(f"--to {uri[:120]!r}: {self.bucket[:70]!r} is not a bucket name")
        if folder and (any(part in ("", ".", "..") for part in folder.split("/")) or "\\" in folder or "\x00" in folder):
            # S3 keeps such a key literally, but a client that normalises paths would write it elsewhere
            raise ReviewRefused(f"--to {uri[:120]!r}: a prefix with an empty, '.' or '..' part; write it plainly")
        self.prefix = folder + "/" if folder else ""
        self.label = f"s3://{self.bucket}/{self.prefix}"
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def read(self, rel: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + safe_relative(rel))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body

    def write(self, rel: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + safe_relative(rel), Body=data)

    def remove(self, rel: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + safe_relative(rel))


def destination(to: str, *, client: Any = None) -> Destination:
    return BucketDestination(to, client=client) if to.startswith("s3://") else FolderDestination(Path(to))


def latest_run(store: Store, campaign: str) -> str:
    check_campaign(campaign)
    try:
        latest = json.loads(store.read_bytes(f"runs/{campaign}/latest.json"))
    except READ_ERRORS as exc:
        raise ReviewRefused(f"campaign {campaign} has no runs in {store.location('runs')}") from exc
    run_id = str(latest.get("run_id", "")) if isinstance(latest, dict) else ""
    if not RUN_ID.fullmatch(run_id):
        raise ReviewRefused(f"runs/{campaign}/latest.json names no run")
    return run_id


def deliverables(report: dict[str, Any]) -> list[tuple[str, str | None, list[str]]]:
    """(item, its key, its files relative to the run) for every video and image the run delivered."""
    out: list[tuple[str, str | None, list[str]]] = []
    for v in report.get("videos") or []:
        if not isinstance(v, dict) or not v.get("path"):
            continue
        files = [f[k] for f in v.get("formats") or [] if isinstance(f, dict) for k in ("path", "captions") if f.get(k)]
        out.append((str(v.get("job")), v.get("key"), files or [v["path"]]))
    for im in report.get("images") or []:
        if isinstance(im, dict) and im.get("path"):
            out.append((str(im.get("job")), im.get("key"), [im["path"]]))
    return out


def export_approved(store: Store, campaign: str, dest: Destination, *, by: str, run_id: str | None = None) -> ExportResult:
    run_id = run_id or latest_run(store, campaign)
    if not RUN_ID.fullmatch(run_id):
        raise ReviewRefused(f"{run_id[:80]!r} is not a run id")
    prefix = f"runs/{campaign}/{run_id}"
    try:
        report = json.loads(store.read_bytes(f"{prefix}/report.json"))
    except READ_ERRORS as exc:
        raise ReviewRefused(f"run {run_id} of {campaign} has no readable report") from exc
    # a cloud run counts only the decisions naming its manifest: another team's approval never exports our file
    decisions = for_run(read_decisions(store, campaign), str(report.get("manifest") or ""))
    result = ExportResult(campaign=campaign, run_id=run_id, destination=dest.label)
    chosen: list[tuple[str, str | None, str, Any]] = []
    for item, key, files in deliverables(report):
        last = verdict(decisions, item, key)
        if last is None or last.action != APPROVE:
            result.left_out.append({"item": item, "state": status_of(last)})
            continue
        chosen += [(item, key, safe_relative(rel), last) for rel in files]

    previous = _previous(dest)
    for _, _, rel, _ in chosen:  # every check before any write
        _check_ours(dest, rel, previous)
    stale = [rel for rel in previous if rel not in {c[2] for c in chosen}]
    for rel in stale:
        _check_ours(dest, rel, previous)
    for item, key, rel, last in chosen:
        data = store.read_bytes(f"{prefix}/{rel}")
        dest.write(rel, data)
        result.files.append({"path": rel, "item": item, "key": key, "bytes": len(data),
                             "sha256": hashlib.sha256(data).hexdigest(), "approved_by": last.by,
                             "approved_at": last.time, "note": last.note})
    manifest = {"export_version": EXPORT_VERSION, "campaign": campaign, "run_id": run_id, "by": by,
                "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": result.files,
                "left_out": result.left_out}
    dest.write(MANIFEST, json.dumps(manifest, indent=1).encode())
    for rel in stale:  # after the new manifest: an interruption leaves extra files listed nowhere, never lost ones
        dest.remove(rel)
        result.removed.append(rel)
    return result


def _previous(dest: Destination) -> dict[str, str]:
    """path -> sha256 of the files an earlier export wrote here (its export.json); {} when there was none."""
    data = dest.read(MANIFEST)
    if data is None:
        return {}
    try:
        manifest = json.loads(data)
        files = {safe_relative(f["path"]): str(f["sha256"]) for f in manifest["files"]}
        if manifest.get("export_version") != EXPORT_VERSION:
            raise ValueError
    except (ValueError, KeyError, TypeError, ReviewRefused):
        raise ReviewRefused(f"{dest.label.rstrip('/')}/{MANIFEST} exists and was not written by campaign export; "
                            "choose another --to") from None
    return files


def _check_ours(dest: Destination, rel: str, previous: dict[str, str]) -> None:
    """ReviewRefused unless nothing is at `rel` or what is there is the very file an earlier export wrote."""
    data = dest.read(rel)
    if data is None:
        return
    if previous.get(rel) != hashlib.sha256(data).hexdigest():
        raise ReviewRefused(f"{dest.label.rstrip('/')}/{rel} exists and was not written by campaign export (or was "
                            "changed since); move it or choose another --to")
