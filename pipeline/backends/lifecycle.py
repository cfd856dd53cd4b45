"""`plan --check-models`: each Bedrock model a campaign will call, asked for its lifecycle and access before any
job runs (GetFoundationModel), so a retired model or a missing subscription shows up as a located finding
instead of as failed jobs.

GetFoundationModel (bedrock control plane, `GET /foundation-models/{modelIdentifier}`) answers
`modelDetails.modelLifecycle` {status ACTIVE|LEGACY, endOfLifeTime, legacyTime, ...} (botocore's bedrock
model, 2023-04-20). It takes a foundation model id, not an inference profile: a `us.`/`eu.`/`apac.`/`global.`
prefix is removed (the profile serves that model). Access is granted on first call through AWS Marketplace
for third-party models; a role without it gets AccessDeniedException (reference §6, "Bedrock model access").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL, DEFAULT_REGION, DEFAULT_STABILITY_REGION
from pipeline.catalog import EDIT_TOOLS, RAY2
from pipeline.manifest.campaign import Campaign
from pipeline.manifest.yamlsrc import load_file

PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.")


@dataclass(frozen=True)
class ModelUse:
    """A Bedrock model the campaign calls, where (its manifest path) and in which region."""

    model_id: str
    what: str
    path: tuple[Any, ...]
    region: str


@dataclass(frozen=True)
class ModelFinding:
    level: str  # "error" | "warning"
    use: ModelUse
    message: str
    checked: bool = True  # False: the check itself could not run (no credentials, no network, throttled)


def foundation_model_id(model_id: str) -> str:
    for prefix in PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix):]
    return model_id


def models_used(campaign: Campaign, backends: Mapping[str, str], *, enhancer_model: str | None,
                env: Mapping[str, str] = os.environ) -> list[ModelUse]:
    """The Bedrock models the chosen backends will call for this campaign, each once (first use wins)."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    uses: list[ModelUse] = []
    enhanced = [("videos", i, "shots", j) for i, v in enumerate(campaign.videos) for j, s in enumerate(v.shots) if s.enhance]
    if backends.get("enhancer") == "bedrock" and enhanced:
        path: tuple[Any, ...] = ("defaults", "enhancer_model") if campaign.enhancer_model else enhanced[0]
        uses.append(ModelUse(enhancer_model or DEFAULT_ENHANCER_MODEL, "prompt enhancement", path, region))
    if backends.get("images") == "bedrock":
        stability_region = env.get("CAMPAIGN_STABILITY_REGION") or DEFAULT_STABILITY_REGION
        for i, image in enumerate(campaign.images):
            for j, edit in enumerate(image.edits):
                uses.append(ModelUse(EDIT_TOOLS[edit.tool].model_id, f"image edit {edit.tool}",
                                     ("images", i, "edits", j, edit.tool), stability_region))
    if "bedrock" in backends.get("video", "").split("+"):
        for i, video in enumerate(campaign.videos):
            for j, shot in enumerate(video.shots):
                if shot.ray2 is not None:
                    uses.append(ModelUse(RAY2.model_id, f"{RAY2.name} clips", ("videos", i, "shots", j), region))
    first: dict[tuple[str, str], ModelUse] = {}
    for use in uses:
        first.setdefault((foundation_model_id(use.model_id), use.region), use)
    return list(first.values())


def check_models(uses: list[ModelUse], *, client_for: Callable[[str], Any] | None = None,
                 now: datetime | None = None) -> list[ModelFinding]:
    """GetFoundationModel for each use: Legacy is a warning (an error once its end of life has passed), no
    access or an unknown model an error, a check that could not run a warning."""
    from botocore.exceptions import BotoCoreError, ClientError

    now = now or datetime.now(UTC)
    client_for = client_for or _client_for()
    findings: list[ModelFinding] = []
    for use in uses:
        fm = foundation_model_id(use.model_id)
        try:
            details = client_for(use.region).get_foundation_model(modelIdentifier=fm)["modelDetails"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
            if code == "AccessDeniedException":
                findings.append(ModelFinding("error", use, f"no access to {fm} in {use.region} (used for {use.what}): "
                                             "the calling role needs bedrock:GetFoundationModel and bedrock:InvokeModel on it, "
                                             f"and aws-marketplace:Subscribe for a third-party model ({message})"))
            elif code in ("ResourceNotFoundException", "ValidationException"):
                findings.append(ModelFinding("error", use, f"{fm} is not offered in {use.region} (used for "
                                             f"{use.what}): {message}"))
            else:
                findings.append(ModelFinding("warning", use, f"could not check {fm} in {use.region}: {code}: {message}",
                                             checked=False))
            continue
        except BotoCoreError as exc:
            findings.append(ModelFinding("warning", use, f"could not check {fm} in {use.region}: {exc}", checked=False))
            continue
        lifecycle = details.get("modelLifecycle") or {}
        status = str(lifecycle.get("status", "ACTIVE"))
        eol = lifecycle.get("endOfLifeTime")
        eol_text = f" (end of life {eol:%Y-%m-%d})" if isinstance(eol, datetime) else ""
        if isinstance(eol, datetime) and eol <= now:
            findings.append(ModelFinding("error", use, f"{fm} reached its end of life on {eol:%Y-%m-%d} (used for "
                                         f"{use.what}); choose a current model"))
        elif status == "LEGACY":
            findings.append(ModelFinding("warning", use, f"{fm} is Legacy{eol_text} (used for {use.what}); plan a "
                                         "move to a current model"))
    return findings


def _client_for() -> Callable[[str], Any]:
    clients: dict[str, Any] = {}

    def get(region: str) -> Any:
        if region not in clients:
            import boto3

            clients[region] = boto3.client("bedrock", region_name=region)
        return clients[region]

    return get


def print_model_check(manifest: str | Path, campaign: Campaign, backends: Mapping[str, str], *,
                      enhancer_model: str | None, stream: TextIO | None = None) -> int:
    """`campaign plan --check-models`: each finding located in the manifest (FILE:LINE:COL: error|warning:
    PATH: MESSAGE) on stderr, then the models checked and those that could not be; returns the number of errors
    and of checks that could not run (a check that did not run has not passed)."""
    out = stream or sys.stderr
    src = load_file(str(manifest))
    uses = models_used(campaign, backends, enhancer_model=enhancer_model)
    findings = check_models(uses)
    for f in findings:
        p = src.problem(f.use.path, f.message)
        print(f"{p.file}:{p.line}:{p.col}: {f.level}: {p.path}: {f.message}", file=out)
    unchecked = {f.use.model_id for f in findings if not f.checked}
    checked = ", ".join(sorted({u.model_id for u in uses} - unchecked)) or "none"
    print(f"models checked: {checked if uses else 'none (no Bedrock backend chosen)'}", file=out)
    if unchecked:
        print(f"could not check: {', '.join(sorted(unchecked))} (see the warnings above; fix and run again)", file=out)
    return sum(f.level == "error" for f in findings) + sum(not f.checked for f in findings)
