"""The run history: every report under the output folder and, when configured, in the cloud's output bucket,
newest first, and how a run page reaches each run's files (a path, or a presigned URL)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pipeline.report.write import AWAITING_APPROVAL, EXPIRED, INTERRUPTED, REJECTED

STATUSES = ("succeeded", "partial", "failed", INTERRUPTED, AWAITING_APPROVAL, REJECTED, EXPIRED)
LOCAL = "local"
URL_SECONDS = 3600  # how long a presigned link lasts (less where the role session ends sooner, see BucketRuns.link)
BUCKET_RUNS_LIMIT = 200  # reports read per refresh from a bucket: the newest runs of each campaign, by run id
PARALLEL_READS = 8


class RunSource(Protocol):
    """Where runs live. Keys are the store's: runs/<campaign>/<run-id>/report.json and the files beside it."""

    label: str

    def report_keys(self) -> list[str]: ...

    def read(self, key: str) -> bytes | None: ...

    def media(self, key: str) -> str:
        """What st.video / st.image take: a local path or an https URL."""
        ...

    def link(self, key: str, *, filename: str) -> str | None:
        """A download link for the browser, or None where the page serves the bytes itself."""
        ...

    def mtime(self, key: str) -> int:
        """Orders runs started in the same second (0 where unknown)."""
        ...


class SourceUnavailable(Exception):
    """A bucket's runs could not be listed or read (no credentials, no access, no such bucket)."""


class OutsideRun(ValueError):
    """A report names a file that is not inside its own run folder (an absolute path, `..`, a link out)."""


def run_relative(relative: object) -> str:
    """A report's file path, checked: relative, POSIX, no `..`, nothing but a path. A report is data anyone who can
    write the output folder or bucket may have crafted, so its paths are never trusted."""
    text = relative if isinstance(relative, str) else ""
    parts = PurePosixPath(text).parts
    if (not text or "\\" in text or "\x00" in text or text.startswith("/") or not parts
            or any(p in ("..", ".") for p in text.split("/")) or ":" in parts[0]):
        raise OutsideRun(f"the report names a file outside its run: {str(relative)[:120]!r}")
    return PurePosixPath(text).as_posix()


def local_run_file(out_dir: Path, key: str) -> Path:
    """The file under a local run folder that `key` (runs/<campaign>/<run-id>/<relative>) names, after following
    links: it must stay inside runs/<campaign>/<run-id>/ (a run's files are hard links into cache/, not symlinks)."""
    parts = key.split("/")
    if len(parts) < 4 or parts[0] != "runs":
        raise OutsideRun(f"not a run file: {key[:120]!r}")
    run_relative("/".join(parts[1:]))
    run_dir = (out_dir / "/".join(parts[:3])).resolve()
    path = (out_dir / key).resolve()
    if not path.is_relative_to(run_dir) or path == run_dir:
        raise OutsideRun(f"the report names a file outside its run: {'/'.join(parts[3:])[:120]!r}")
    return path


class FolderRuns:
    """Runs under a local output folder (`campaign run --out`, the studio's own renders)."""

    label = LOCAL

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def report_keys(self) -> list[str]:
        return [p.relative_to(self.out_dir).as_posix() for p in self.out_dir.glob("runs/*/*/report.json")]

    def read(self, key: str) -> bytes | None:
        try:
            return local_run_file(self.out_dir, key).read_bytes()
        except (OSError, OutsideRun):
            return None

    def media(self, key: str) -> str:
        return str(local_run_file(self.out_dir, key))

    def link(self, key: str, *, filename: str) -> str | None:
        return None

    def mtime(self, key: str) -> int:
        try:
            return (self.out_dir / key).stat().st_mtime_ns
        except OSError:
            return 0


class BucketRuns:
    """Runs in the cloud's output bucket (the state machine writes the same runs/ layout there). Listing reads
    campaign and run prefixes with a delimiter, so its cost follows the number of runs, not of files; only
    the newest `limit` reports are read. The browser fetches videos and images straight from S3 through
    presigned GET URLs; the studio's role needs s3:ListBucket on runs/ and s3:GetObject on runs/* only."""

    def __init__(self, bucket: str, *, client: Any = None, limit: int = BUCKET_RUNS_LIMIT) -> None:
        self.bucket = bucket
        self.label = f"s3://{bucket}"
        self.limit = limit
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # SigV4 for presigning: botocore still signs presigned URLs with SigV2 in us-east-1 by default, and
            # buckets created after 24 June 2020 refuse SigV2 (S3 API Reference, "Specifying the Signature
            # Version in request authentication", docs.aws.amazon.com/AmazonS3/latest/API/specify-signature-version.html).
            # The client's region is the environment's: the stack's, in the deployed studio, where ECS sets
            # AWS_REGION (docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-environment-variables.html).
            self._client = boto3.client("s3", config=Config(signature_version="s3v4"))
        return self._client

    def _prefixes(self, prefix: str) -> list[str]:
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return found

    def report_keys(self) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            runs = [run for campaign in self._prefixes("runs/") for run in self._prefixes(campaign)]
        except (BotoCoreError, ClientError) as exc:
            raise SourceUnavailable(f"cannot list the runs in {self.label}/runs/: {exc}") from exc
        # run ids start with their UTC start time (report.new_run_id): the newest sort last
        runs.sort(key=lambda p: p.rstrip("/").rsplit("/", 1)[-1], reverse=True)
        return [f"{p}report.json" for p in runs[:self.limit]]

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None  # a run still going (or one whose report step has not written yet)
        except (BotoCoreError, ClientError) as exc:
            raise SourceUnavailable(f"cannot read {self.label}/{key}: {exc}") from exc
        return body

    def media(self, key: str) -> str:
        return self._presign(key, {})

    def link(self, key: str, *, filename: str) -> str | None:
        return self._presign(key, {"ResponseContentDisposition": f'attachment; filename="{filename}"'})

    def mtime(self, key: str) -> int:
        return 0  # run ids order a bucket's runs within one second

    def _presign(self, key: str, extra: dict[str, str]) -> str:
        # Signed locally, no request. A URL signed with a role's temporary credentials (the deployed studio's
        # task role) stops working when that session ends, even before ExpiresIn:
        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key, **extra}, ExpiresIn=URL_SECONDS)
        return url


@dataclass(frozen=True)
class RunSummary:
    campaign: str
    run_id: str
    status: str
    started: str
    source: RunSource
    key: str  # runs/<campaign>/<run-id>/report.json in its source
    videos: int
    images: int
    errors: int
    cost_usd: float | None

    @property
    def prefix(self) -> str:
        """runs/<campaign>/<run-id>: the report's paths are relative to it."""
        return self.key.rsplit("/", 1)[0]

    def file(self, relative: str) -> str:
        """The key of a file the report names; OutsideRun when that path would leave the run folder."""
        return f"{self.prefix}/{run_relative(relative)}"

    @property
    def label(self) -> str:
        where = "" if self.source.label == LOCAL else f" ({self.source.label})"
        return f"{self.campaign} / {self.run_id} — {self.status}{where}"


def list_runs(out_dir: Path, *, campaigns: list[str] | None = None,
              statuses: list[str] | None = None) -> list[RunSummary]:
    """Every run with a report under an output folder, newest first; empty filters keep everything."""
    return newest_first(filtered(read_runs(FolderRuns(out_dir)), campaigns=campaigns, statuses=statuses))


def read_runs(source: RunSource) -> list[RunSummary]:
    """Every run in one source that has a readable report (reports read a few at a time)."""
    keys = source.report_keys()
    with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
        reports = list(pool.map(lambda k: parse_report(source.read(k)), keys))
    return [summarize(report, source=source, key=key) for key, report in zip(keys, reports, strict=True) if report]


def filtered(found: list[RunSummary], *, campaigns: list[str] | None = None, statuses: list[str] | None = None,
             where: list[str] | None = None) -> list[RunSummary]:
    """The runs that pass every filter given (`where`: source labels, "local" or "s3://bucket")."""
    return [r for r in found if (not campaigns or r.campaign in campaigns) and (not statuses or r.status in statuses)
            and (not where or r.source.label in where)]


def newest_first(found: list[RunSummary]) -> list[RunSummary]:
    # `started` has whole seconds; within one second the report written last (local) or the later id is newer
    return sorted(found, key=lambda r: (r.started, r.source.mtime(r.key), r.run_id), reverse=True)


def summarize(report: dict[str, Any], *, source: RunSource, key: str) -> RunSummary:
    parts = key.split("/")  # runs/<campaign>/<run-id>/report.json
    return RunSummary(campaign=str(report.get("campaign", parts[-3])), run_id=str(report.get("run_id", parts[-2])),
                      status=str(report.get("status", "?")), started=str(report.get("started", "")),
                      source=source, key=key, videos=sum(1 for v in report.get("videos", []) if v.get("path")),
                      images=sum(1 for i in report.get("images", []) if i.get("path")),
                      errors=len(report.get("errors", [])), cost_usd=(report.get("cost") or {}).get("total_usd"))


def parse_report(data: bytes | None) -> dict[str, Any] | None:
    try:
        report = json.loads(data) if data is not None else None
    except ValueError:
        return None  # a report being written right now; it appears on the next refresh
    return report if isinstance(report, dict) else None


def load_report(path: Path) -> dict[str, Any] | None:
    try:
        return parse_report(path.read_bytes())
    except OSError:
        return None


def read_report(run: RunSummary) -> dict[str, Any] | None:
    return parse_report(run.source.read(run.key))


def campaigns(found: list[RunSummary]) -> list[str]:
    return sorted({r.campaign for r in found})


def edited_images(out_dir: Path, *, limit: int = 50) -> list[tuple[str, Path]]:
    """(label, file) for the edited images of past local runs, newest first: start images for image-to-video."""
    seen: set[tuple[int, int]] = set()  # a run's files are hard links into cache/: one entry per file
    images = []
    for run in list_runs(out_dir):
        for im in (read_report(run) or {}).get("images", []):
            if not im.get("path"):
                continue
            try:
                path = local_run_file(out_dir, run.file(im["path"]))
            except OutsideRun:
                continue
            if not path.is_file() or (path.stat().st_dev, path.stat().st_ino) in seen:
                continue
            seen.add((path.stat().st_dev, path.stat().st_ino))
            images.append((f"{run.campaign} / {im['id']} ({run.run_id})", path))
            if len(images) >= limit:
                return images
    return images


# --- review (the Runs page's approve / reject / regenerate) -------------------------------------------------


def review_items(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reviewable record of a report, as the page lists them: each video, its clips, then the images."""
    found: list[dict[str, Any]] = []
    for video in report.get("videos") or []:
        if isinstance(video, dict) and isinstance(video.get("job"), str):
            found.append(video)
            found += [c for c in video.get("clips") or [] if isinstance(c, dict) and isinstance(c.get("job"), str)]
    found += [i for i in report.get("images") or [] if isinstance(i, dict) and isinstance(i.get("job"), str)]
    return found


def may_review(admins: tuple[str, ...], started_by: str | None, user: str | None) -> bool:
    """The owner rules of cancelling a render: a studio run is reviewed by whoever started it or an administrator;
    a run made elsewhere (the CLI, the cloud) by any signed-in user. Every decision records who made it."""
    return user is not None and (started_by is None or user == started_by or user in admins)


def history_lines(record: dict[str, Any]) -> list[str]:
    """One plain line per version of an asset (oldest first): run, what it was made with, its state, decisions."""
    lines = []
    versions = (record.get("review") or {}).get("versions") or []
    for n, v in enumerate(v for v in versions if isinstance(v, dict)):
        made = ", ".join(f"{k} {val}" for k, val in (v.get("made_with") or {}).items() if k in ("seed", "prompt"))
        said = "; ".join(f"{d.get('decision')} by {d.get('by')} at {d.get('time')}"
                         + (f": {d.get('note')}" if d.get("note") else "")
                         for d in v.get("decisions") or [] if isinstance(d, dict))
        lines.append(f"v{n + 1}{' (this run)' if v.get('current') else ''} · run {v.get('run_id')} · {made or '-'} · "
                     f"{v.get('status')}" + (f" · {said}" if said else ""))
    return lines


def decide(out_dir: Path, run: RunSummary, item: str, *, action: str, user: str, note: str,
           override: Any = None, regenerate_run: str | None = None) -> Any:
    """Record a decision on a local run's item and rewrite that run's report to show it (ReviewRefused, one
    line, when the item or a value is not acceptable)."""
    from pipeline.report.write import refresh_review
    from pipeline.review import commands
    from pipeline.storage.store import LocalStore

    store = LocalStore(out_dir)
    reviewed = commands.find_item(store, run.campaign, item, run.run_id)
    manifest = str(reviewed.report.get("manifest") or "")
    decision = commands.record(store, reviewed, action=action, by=user, note=note, override=override,
                               regenerate_run=regenerate_run, manifest=str(Path(manifest).resolve()) if manifest else "")
    refresh_review(store, reviewed.prefix)
    return decision


def regenerate(config: Any, run: RunSummary, item: str, *, user: str, note: str, seed: int | None,
               prompt: str | None) -> Any:
    """Regenerate one item of a local run: the decision names the new run, which a studio worker then makes from
    the run's manifest with the override applied (only the item and what is made from it are new)."""
    from pipeline.errors import ReviewRefused
    from pipeline.manifest.campaign import load_manifest
    from pipeline.plan.overrides import Override, check_override
    from pipeline.report.write import new_run_id
    from pipeline.review.decisions import REGENERATE
    from pipeline.studio import jobs

    report = read_report(run) or {}
    manifest = Path(str(report.get("manifest") or ""))
    if not manifest.is_absolute() or not manifest.is_file():
        raise ReviewRefused(f"the manifest of run {run.run_id} ({str(manifest)[:120]}) is not a file here; "
                            "regenerate with `campaign review --manifest`")
    override = Override(item, seed, prompt or None, {})
    check_override(load_manifest(manifest), override)
    run_id = new_run_id()
    decide(config.out_dir, run, item, action=REGENERATE, user=user, note=note, override=override, regenerate_run=run_id)
    return jobs.start_job(config, campaign=run.campaign, manifest=manifest, owner=user, job_id=run_id)


NO_STATE_MACHINE = ("regenerate starts an execution of the stack's state machine: start the studio with "
                    "--state-machine-arn or CAMPAIGN_STATE_MACHINE_ARN")


def in_bucket(run: RunSummary) -> BucketRuns | None:
    """The bucket a cloud run lives in (None for a local run)."""
    return run.source if isinstance(run.source, BucketRuns) else None


def decide_in_bucket(run: RunSummary, item: str, *, action: str, user: str, note: str) -> Any:
    """Approve or reject an item of a cloud run: the decision is a record in the output bucket and the run's report
    there is rewritten to show it, exactly as `campaign review ... --bucket` does (the same function). Needs
    s3:PutObject on runs/* besides the listing's rights; AWS's refusal comes back as its own exception."""
    from pipeline.report.write import refresh_review
    from pipeline.review import commands
    from pipeline.storage.store import S3Store

    source = in_bucket(run)
    if source is None:
        raise ValueError(f"run {run.run_id} is not a cloud run")
    store = S3Store(source.bucket, client=source.client)
    _, decision = commands.approve_or_reject(store, run.campaign, item, run.run_id, action=action, by=user, note=note,
                                             cloud=True, refresh=refresh_review)
    return decision


def regenerate_in_cloud(run: RunSummary, item: str, *, state_machine_arn: str | None, user: str, note: str,
                        seed: int | None, prompt: str | None) -> dict[str, str]:
    """Regenerate an item of a cloud run as `campaign review ... --regenerate --bucket` does (the same function):
    the request is recorded in the output bucket, then one execution re-makes the item and what is made from it.
    With no new seed or prompt, a new random seed (as the CLI draws one). The studio's credentials need
    states:StartExecution on the state machine (docs.aws.amazon.com/step-functions/latest/dg/stepfunctions-iam.html)
    besides the bucket writes of decide_in_bucket."""
    import secrets

    from pipeline import catalog
    from pipeline.cloud import commands
    from pipeline.errors import ReviewRefused
    from pipeline.plan.overrides import Override

    source = in_bucket(run)
    if source is None:
        raise ValueError(f"run {run.run_id} is not a cloud run")
    if not state_machine_arn:
        raise ReviewRefused(NO_STATE_MACHINE)
    if seed is None and not prompt:
        seed = secrets.randbelow(catalog.VIDEO_SEED_MAX) + 1
    return commands.regenerate(output_bucket=source.bucket, campaign=run.campaign, item=item, run_id=run.run_id,
                               override=Override(item, seed, prompt or None, {}), note=note, by=user,
                               state_machine_arn=state_machine_arn, s3=source.client)
