"""Who may read what in the input bucket: a manifest's own prefix, the assets `campaign submit` uploaded for it,
and the prefixes the stack shares explicitly; never another team's folder nor the output bucket's runs/ or cache/.
One lambda serves every team, so this is checked per manifest in the plan step (IAM narrows the bucket as a whole)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from pipeline.cloud.contract import MANIFEST_PREFIX, MANIFEST_SUFFIXES, SUBMITTED_ASSETS_PREFIX
from pipeline.errors import shown
from pipeline.manifest.schedule_expr import min_interval_s
from pipeline.storage.store import parse_s3_uri


@dataclass(frozen=True)
class Tenancy:
    """The stack's rules on tenants: `shared_prefixes` (keys in the input bucket every manifest may read, each
    ending in '/'), and whether every manifest must sit one folder down, `manifests/<team>/...`."""

    shared_prefixes: tuple[str, ...] = ()
    require_team_prefix: bool = False

    @classmethod
    def from_setting(cls, shared: str | None, require_team: str | None) -> Tenancy:
        prefixes = tuple(p.strip() for p in (shared or "").split(",") if p.strip())
        for p in prefixes:
            problem = shared_prefix_problem(p)
            if problem:
                raise ValueError(f"CAMPAIGN_SHARED_ASSET_PREFIXES: {problem}")
        return cls(prefixes, (require_team or "").strip().lower() in ("1", "true", "yes"))


def shared_prefix_problem(prefix: str) -> str | None:
    """A shared prefix is a folder of the input bucket that is not a team's manifests folder as a whole."""
    if (not prefix.endswith("/") or prefix.startswith("/") or "://" in prefix
            or any(part in ("", ".", "..") for part in prefix[:-1].split("/"))):
        return f"{shown(prefix)} must be a folder of the input bucket written like 'brand/logos/'"
    if prefix in (MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX):
        return f"{shown(prefix)} would open every team's files to every manifest"
    return None


def team_of(key: str) -> str | None:
    """`manifests/<team>/...` -> the team; None for a manifest directly under manifests/."""
    rest = key[len(MANIFEST_PREFIX):] if key.startswith(MANIFEST_PREFIX) else ""
    team, sep, _ = rest.partition("/")
    return team if sep and team else None


def manifest_key_problem(key: str, tenancy: Tenancy) -> str | None:
    """A run reads its manifest from manifests/ only (and from a team's folder there when the stack says so)."""
    if not key.startswith(MANIFEST_PREFIX) or not key.endswith(MANIFEST_SUFFIXES) or _unsafe(key):
        return (f"the manifest key {shown(key)} is not under {MANIFEST_PREFIX} (a run starts only from "
                f"{MANIFEST_PREFIX}*.yaml)")
    if tenancy.require_team_prefix and team_of(key) is None:
        return (f"this deployment requires each manifest under a team folder, {MANIFEST_PREFIX}<team>/; "
                f"{shown(key)} is not (campaign submit --team TEAM)")
    return None


def submitted_assets_prefix(manifest_key: str) -> str:
    """Where `campaign submit` uploads a manifest's local assets: keyed by the manifest's own key, so only the
    writer of `manifests/[team/]name.yaml` puts files under `assets/[team/]name/`."""
    stem = posixpath.splitext(manifest_key[len(MANIFEST_PREFIX):])[0]
    return f"{SUBMITTED_ASSETS_PREFIX}{stem}/"


def own_prefixes(manifest_key: str) -> tuple[str, str]:
    """The folder of the manifest's key, and the assets `campaign submit` uploaded for it."""
    return posixpath.dirname(manifest_key) + "/", submitted_assets_prefix(manifest_key)


def asset_key_problem(input_bucket: str, manifest_key: str, bucket: str, asset_key: str, written: str,
                      tenancy: Tenancy) -> str | None:
    """None when the manifest at `manifest_key` may read s3://bucket/asset_key, else why not (for the report)."""
    where = f"s3://{bucket}/{asset_key}"
    if bucket != input_bucket:
        return (f"asset {shown(written)} is in bucket {shown(bucket)}; assets are read from the input bucket "
                f"{input_bucket} only (never another campaign's runs/ or cache/)")
    if _unsafe(asset_key):
        return f"asset {shown(written)}: its key has an empty, '.' or '..' part or a backslash; write the key plainly"
    allowed = (*own_prefixes(manifest_key), *tenancy.shared_prefixes)
    if any(asset_key.startswith(p) for p in allowed):
        return None
    return (f"asset {shown(written)} ({shown(where)}) is outside this manifest's prefixes; a manifest reads "
            f"only under {', '.join(allowed)} of s3://{input_bucket}/ (the stack's shared_asset_prefixes "
            "context shares more)")


def s3_asset_problem(input_bucket: str, manifest_key: str, uri: str, tenancy: Tenancy) -> str | None:
    """`asset_key_problem` for an s3:// address written in the manifest."""
    try:
        asset_bucket, asset_key = parse_s3_uri(uri)
    except ValueError:
        return None  # validation reports a malformed address
    return asset_key_problem(input_bucket, manifest_key, asset_bucket, asset_key, uri, tenancy)


def schedule_floor_problem(expr: str, floor_s: int) -> str | None:
    """Each scheduled run is a full run: the stack bounds how often one manifest may start one."""
    interval = min_interval_s(expr)
    if interval is None or interval >= floor_s:
        return None
    return (f"schedule {shown(expr)} may start a run every {_duration(interval)}; this deployment allows at most "
            f"one run every {_duration(floor_s)} (the stack's min_schedule_interval_s)")


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def _unsafe(key: str) -> bool:
    """A key S3 would store literally but that a path-normalising client may send elsewhere."""
    return any(part in ("", ".", "..") for part in key.split("/")) or "\\" in key
