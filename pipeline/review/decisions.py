"""Review decisions: approve, reject or regenerate one asset of a run, kept as append-only records beside the runs
(reviews/<campaign>/decisions/<time>-<random>.json, in the output folder or bucket), never in the user's manifest.

A decision is about one version of an item: the content key the item had in the run reviewed. A regenerated item
gets a new key, so the new version starts unreviewed while an unchanged item keeps its approval in later runs. In the
cloud a decision also names the manifest (its s3:// address) of the run reviewed, and counts for runs of that
manifest only (`for_run`): another team's approval of the same campaign name and content is not ours."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import ReviewRefused
from pipeline.plan.overrides import PROMPT_MAX, Override
from pipeline.storage.store import Store

APPROVE, REJECT, REGENERATE = "approve", "reject", "regenerate"
ACTIONS = (APPROVE, REJECT, REGENERATE)
APPROVED, REJECTED, UNREVIEWED, REPLACED = "approved", "rejected", "unreviewed", "replaced"
NOTE_MAX = 2000
RECORD_VERSION = 1
# what a report's job ids look like (pipeline/plan/build.py); ids are manifest ids, so the set is the manifest's
ITEM = re.compile(r"(image|video):[A-Za-z0-9][A-Za-z0-9._-]{0,127}|clip:[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[0-9]{2,3}")
CAMPAIGN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ID = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}")


def reviews_prefix(campaign: str) -> str:
    return f"reviews/{check_campaign(campaign)}/decisions/"


def check_campaign(campaign: str) -> str:
    if not CAMPAIGN.fullmatch(campaign or "") or ".." in campaign:
        raise ReviewRefused(f"{campaign[:80]!r} is not a campaign name")
    return campaign


def check_item(item: str) -> str:
    if not ITEM.fullmatch(item or ""):
        raise ReviewRefused(f"{item[:80]!r} is not an item of a report: image:<id>, clip:<video>/<NN> or video:<id>")
    return item


@dataclass(frozen=True)
class Decision:
    """One reviewer's answer about one version of one item. `version` holds what the reviewed version was made
    with (seed, prompt) as the report showed it; `seed`, `prompt` and `params` what a regenerate asks for;
    `regenerate_run` the run that makes the new version."""

    id: str
    campaign: str
    item: str
    action: str
    run_id: str
    key: str | None
    by: str
    time: str
    note: str = ""
    version: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    regenerate_run: str | None = None
    manifest: str = ""  # the manifest file (absolute) a regenerate applies to: its overrides plan that file only

    @property
    def override(self) -> Override:
        return Override(self.item, self.seed, self.prompt, dict(self.params))

    def to_json(self) -> dict[str, Any]:
        return {"record_version": RECORD_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, d: Any) -> Decision | None:
        """A stored record, or None when it is not one (records are data anyone with write access may craft)."""
        if not isinstance(d, dict):
            return None
        try:
            out = cls(id=str(d["id"]), campaign=check_campaign(str(d["campaign"])), item=check_item(str(d["item"])),
                      action=str(d["action"]), run_id=str(d["run_id"]),
                      key=str(d["key"]) if d.get("key") is not None else None, by=str(d.get("by") or "unknown"),
                      time=str(d["time"]), note=str(d.get("note") or "")[:NOTE_MAX],
                      version=dict(d["version"]) if isinstance(d.get("version"), dict) else {},
                      seed=d["seed"] if isinstance(d.get("seed"), int) and not isinstance(d["seed"], bool) else None,
                      prompt=str(d["prompt"]) if isinstance(d.get("prompt"), str) else None,
                      params=dict(d["params"]) if isinstance(d.get("params"), dict) else {},
                      regenerate_run=str(d["regenerate_run"]) if d.get("regenerate_run") else None,
                      manifest=str(d.get("manifest") or ""))
        except (KeyError, TypeError, ValueError, ReviewRefused):
            return None
        return out if out.action in ACTIONS and _ID.fullmatch(out.id) else None


def new_decision(*, campaign: str, item: str, action: str, run_id: str, key: str | None, by: str, note: str = "",
                 version: dict[str, Any] | None = None, seed: int | None = None, prompt: str | None = None,
                 params: dict[str, Any] | None = None, regenerate_run: str | None = None, manifest: str = "",
                 now: float | None = None) -> Decision:
    """A checked decision with its id (UTC time to the microsecond, then random: ids sort in time order)."""
    if action not in ACTIONS:
        raise ReviewRefused(f"{action!r}: a decision is approve, reject or regenerate")
    if len(note) > NOTE_MAX or "\x00" in note:
        raise ReviewRefused(f"--note: at most {NOTE_MAX} characters of text")
    if prompt is not None and (not prompt.strip() or len(prompt) > PROMPT_MAX or "\x00" in prompt):
        raise ReviewRefused(f"--prompt must be 1 to {PROMPT_MAX} characters of text")
    t = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f"{int(t * 1e6) % 1_000_000:06d}Z"
    return Decision(id=f"{stamp}-{secrets.token_hex(4)}", campaign=check_campaign(campaign), item=check_item(item),
                    action=action, run_id=run_id, key=key, by=by or "unknown",
                    time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), note=note, version=dict(version or {}),
                    seed=seed, prompt=prompt, params=dict(params or {}), regenerate_run=regenerate_run,
                    manifest=manifest)


def write_decision(store: Store, decision: Decision) -> str:
    """Append the decision: a new record under its own unique name, never a change to an earlier one."""
    key = f"{reviews_prefix(decision.campaign)}{decision.id}.json"
    if store.exists(key):  # a 32-bit random suffix within one microsecond: refuse rather than replace
        raise ReviewRefused(f"a review record {decision.id} exists already; try again")
    store.write_bytes(key, json.dumps(decision.to_json(), indent=1).encode())
    return key


def read_decisions(store: Store, campaign: str) -> list[Decision]:
    """Every readable decision about the campaign, oldest first; records that are not decisions are left out."""
    if not CAMPAIGN.fullmatch(campaign or "") or ".." in campaign:
        return []  # a name no manifest allows has no reviews
    prefix = reviews_prefix(campaign)
    found: list[Decision] = []
    for key in store.list_keys(prefix):
        if not key.endswith(".json"):
            continue
        try:
            decision = Decision.from_json(json.loads(store.read_bytes(key)))
        except (OSError, ValueError):
            continue
        if decision is not None and decision.campaign == campaign and key == f"{prefix}{decision.id}.json":
            found.append(decision)
    return sorted(found, key=lambda d: d.id)


def overrides_from(decisions: Iterable[Decision], manifest: str) -> dict[str, Override]:
    """Each item's regenerate requests for this manifest file (absolute path) folded in time order: what planning
    applies (pipeline/plan/overrides.py). Another manifest of the same campaign name is not changed by them."""
    out: dict[str, Override] = {}
    for d in decisions:
        if d.action == REGENERATE and d.manifest == manifest:
            out[d.item] = out[d.item].merged(d.override) if d.item in out else d.override
    return out


def for_run(decisions: Iterable[Decision], manifest: str) -> list[Decision]:
    """The decisions that count for a run of `manifest` (the manifest its report names).

    A cloud run's manifest is an s3:// address, and the output bucket holds the runs of every team: one campaign
    name may be several teams' manifests (manifests/<team>/..., pipeline/cloud/tenancy.py), whose identical content
    gives identical content keys. There a decision counts only when it names that very address, compared as
    written (no normalising: `manifests/team-b/../team-a/x.yaml` is not team A's manifest, and a record without a
    manifest, or of another bucket, counts for no cloud run). A local output folder has one owner: every decision
    in it counts, as before (local approvals record no manifest)."""
    if not manifest.startswith("s3://"):
        return list(decisions)
    return [d for d in decisions if d.manifest == manifest]


def verdict(decisions: Iterable[Decision], item: str, key: str | None) -> Decision | None:
    """The latest decision about this version of the item (approve, reject or regenerate), if any."""
    latest = None
    for d in decisions:
        if d.item == item and key is not None and d.key == key:
            latest = d
    return latest


def status_of(decision: Decision | None) -> str:
    if decision is None:
        return UNREVIEWED
    return {APPROVE: APPROVED, REJECT: REJECTED}.get(decision.action, REPLACED)


def overrides_for(out_dir: Any, campaign: str, manifest: str) -> dict[str, Override]:
    """The regenerate requests kept in a local output folder for this manifest file (`-`, standard input: none)."""
    from pathlib import Path

    from pipeline.storage.store import LocalStore

    if not out_dir or manifest == "-" or not (Path(out_dir) / "reviews").is_dir():
        return {}
    return overrides_from(read_decisions(LocalStore(Path(out_dir)), campaign), str(Path(manifest).resolve()))
