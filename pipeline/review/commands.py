"""`campaign review` and `campaign export` short of running anything: their flags, finding the item in the run's
report, recording the decision; pipeline/cli.py runs a regenerate (it alone sits above the runner)."""

from __future__ import annotations

import argparse
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import catalog
from pipeline.errors import ReviewRefused
from pipeline.plan.overrides import Override
from pipeline.review.decisions import (
    APPROVE,
    REGENERATE,
    REJECT,
    Decision,
    check_campaign,
    check_item,
    new_decision,
    write_decision,
)
from pipeline.review.export import READ_ERRORS, RUN_ID, destination, export_approved, latest_run
from pipeline.review.history import version_of
from pipeline.storage.store import Store


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The two subcommands' parsers; the CLI adds `campaign run`'s backend and signing flags to `review`."""
    rv = sub.add_parser("review", help="approve, reject (with a note) or regenerate one image, clip or video of a run")
    rv.add_argument("campaign", metavar="CAMPAIGN")
    rv.add_argument("item", metavar="ITEM", help="the job id the report shows: image:sofa-navy, clip:teaser/01, video:teaser")
    what = rv.add_mutually_exclusive_group(required=True)
    what.add_argument("--approve", dest="action", action="store_const", const=APPROVE)
    what.add_argument("--reject", dest="action", action="store_const", const=REJECT)
    what.add_argument("--regenerate", dest="action", action="store_const", const=REGENERATE,
                      help="make it again (a new random seed unless --seed, --prompt or --param says otherwise) and "
                           "what is made from it; everything else comes from the cache")
    rv.add_argument("--note", default="", help="why (shown as text in the report)")
    rv.add_argument("--seed", type=int, default=None, help="the new seed (regenerate)")
    rv.add_argument("--prompt", default=None, help="the new prompt (regenerate)")
    rv.add_argument("--param", action="append", default=[], metavar="STEP.NAME=VALUE",
                    help="an image's edit parameter, e.g. 1.creativity=0.3 (regenerate); repeatable")
    rv.add_argument("--run", default=None, help="the run reviewed (default: the campaign's latest)")
    rv.add_argument("--manifest", type=Path, default=None,
                    help="the manifest to regenerate from (default: the one the run's report names)")
    rv.add_argument("--out", type=Path, default=Path("out"), help="local output folder (default ./out)")
    rv.add_argument("--bucket", default=None, help="the stack's output bucket: review a cloud run")
    rv.add_argument("--workers", type=int, default=2, help="jobs a regenerate runs in parallel")
    rv.add_argument("--quiet", action="store_true", help="no progress output")

    ex = sub.add_parser("export", help="copy the approved deliverables of a campaign's latest run, with export.json")
    ex.add_argument("campaign", metavar="CAMPAIGN")
    ex.add_argument("--to", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    ex.add_argument("--run", default=None, help="a run other than the latest")
    ex.add_argument("--out", type=Path, default=Path("out"), help="local output folder (default ./out)")
    ex.add_argument("--bucket", default=None, help="the stack's output bucket: export a cloud run")
    return [rv]


def open_store(args: argparse.Namespace) -> Store:
    from pipeline.storage.store import LocalStore, S3Store

    if args.bucket:
        return S3Store(args.bucket)
    if not (args.out / "runs").is_dir():
        raise ReviewRefused(f"--out {args.out}: no runs here")
    return LocalStore(args.out)


@dataclass(frozen=True)
class Reviewed:
    """The run and the item's record in its report."""

    campaign: str
    run_id: str
    report: dict[str, Any]
    record: dict[str, Any]

    @property
    def prefix(self) -> str:
        return f"runs/{self.campaign}/{self.run_id}"


def find_item(store: Store, campaign: str, item: str, run_id: str | None) -> Reviewed:
    check_campaign(campaign)
    check_item(item)
    run_id = run_id or latest_run(store, campaign)
    if not RUN_ID.fullmatch(run_id):
        raise ReviewRefused(f"{run_id[:80]!r} is not a run id")
    try:
        report = json.loads(store.read_bytes(f"runs/{campaign}/{run_id}/report.json"))
    except READ_ERRORS as exc:
        raise ReviewRefused(f"campaign {campaign} has no run {run_id} with a readable report") from exc
    records = [r for r in report.get("images") or [] if isinstance(r, dict)]
    for v in report.get("videos") or []:
        if isinstance(v, dict):
            records += [v] + [c for c in v.get("clips") or [] if isinstance(c, dict)]
    for record in records:
        if record.get("job") == item:
            return Reviewed(campaign, run_id, report, record)
    raise ReviewRefused(f"{item}: not an item of run {run_id} (its items: "
                        f"{', '.join(str(r.get('job')) for r in records)[:300]})")


def requested_override(item: str, args: argparse.Namespace) -> Override:
    """What a regenerate asks for; with no --seed, --prompt or --param, a new random seed."""
    params: dict[str, Any] = {}
    for text in args.param:
        name, sep, value = text.partition("=")
        if not sep or "." not in name:
            raise ReviewRefused(f"--param {text[:80]!r}: write STEP.NAME=VALUE (1.creativity=0.3)")
        params[name] = value
    if args.action != REGENERATE and (args.seed is not None or args.prompt is not None or params):
        raise ReviewRefused("--seed, --prompt and --param go with --regenerate")
    seed = args.seed
    if args.action == REGENERATE and seed is None and args.prompt is None and not params:
        seed = secrets.randbelow(catalog.VIDEO_SEED_MAX) + 1
    return Override(item, seed, args.prompt, params)


def record(store: Store, reviewed: Reviewed, *, action: str, by: str, note: str, override: Override | None = None,
           regenerate_run: str | None = None, manifest: str = "") -> Decision:
    ov = override or Override(str(reviewed.record.get("job")))
    decision = new_decision(campaign=reviewed.campaign, item=ov.item, action=action, run_id=reviewed.run_id,
                            key=reviewed.record.get("key"), by=by, note=note, version=version_of(reviewed.record),
                            seed=ov.seed, prompt=ov.prompt, params=ov.params, regenerate_run=regenerate_run,
                            manifest=manifest)
    write_decision(store, decision)
    return decision


def approve_or_reject(store: Store, campaign: str, item: str, run_id: str | None, *, action: str, by: str, note: str,
                      cloud: bool, refresh: Any) -> tuple[Reviewed, Decision]:
    """Record an approve or a reject and have `refresh(store, prefix)` rewrite the run's report to show it: `campaign
    review` and the studio's Runs page (a cloud run's) both decide through here. A cloud run's decision names the
    manifest it was planned from (its s3:// address), as a regenerate's does."""
    if action not in (APPROVE, REJECT):
        raise ReviewRefused(f"{action[:40]!r}: approve or reject")
    reviewed = find_item(store, campaign, item, run_id)
    manifest = str(reviewed.report.get("manifest") or "") if cloud else ""
    decision = record(store, reviewed, action=action, by=by, note=note, manifest=manifest)
    refresh(store, reviewed.prefix)
    return reviewed, decision


def run_export(args: argparse.Namespace, *, by: str) -> list[str]:
    store = open_store(args)
    result = export_approved(store, args.campaign, destination(args.to), by=by, run_id=args.run)
    lines = [f"exported {len(result.files)} approved file(s) of {result.campaign} run {result.run_id} to "
             f"{result.destination} (export.json lists them)"]
    lines += [f"  {f['path']}  ({f['item']}, approved by {f['approved_by']})" for f in result.files]
    lines += [f"  left out {x['item']}: {x['state']}" for x in result.left_out]
    lines += [f"  removed {rel} (no longer approved)" for rel in result.removed]
    return lines



def review(args: argparse.Namespace, *, by: str, load: Any, refresh: Any, new_run_id: Any) -> str | None:
    """`campaign review`: record the decision and have `refresh(store, prefix)` rewrite the run's report. For a
    local regenerate, the new run's id (the CLI then runs the manifest; `load()` gives its campaign), else None.
    The report's writer and run ids belong to a layer above this one: the CLI hands them in."""
    from pipeline.plan.overrides import check_override
    from pipeline.review.decisions import overrides_for

    store = open_store(args)
    override = requested_override(args.item, args)
    if args.action != REGENERATE:
        reviewed, decision = approve_or_reject(store, args.campaign, args.item, args.run, action=args.action, by=by,
                                               note=args.note, cloud=bool(args.bucket), refresh=refresh)
        print(f"{decision.item} of {decision.campaign} run {decision.run_id}: {args.action.rstrip('e')}ed by "
              f"{decision.by}; report: {store.location(f'{reviewed.prefix}/report.html')}")
        return None
    reviewed = find_item(store, args.campaign, args.item, args.run)
    if args.bucket:  # a cloud run's regenerate is an execution: pipeline/cloud/commands.py, started by the CLI
        raise ReviewRefused("a regenerate in the bucket is started by pipeline.cloud.commands.regenerate")
    args.manifest = args.manifest or Path(str(reviewed.report.get("manifest") or ""))
    args.json, args.force, args.verify = False, False, False
    campaign = load()
    manifest = str(Path(args.manifest).resolve())
    earlier = overrides_for(args.out, campaign.name, str(args.manifest)).get(args.item)
    check_override(campaign, earlier.merged(override) if earlier else override)  # refused before it is recorded
    run_id: str = new_run_id()
    record(store, reviewed, action=REGENERATE, by=by, note=args.note, override=override, regenerate_run=run_id,
           manifest=manifest)
    refresh(store, reviewed.prefix)
    return run_id
