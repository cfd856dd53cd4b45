"""Lambda step `Plan campaign`: the manifest from the input bucket -> a validated plan in the output bucket
-> the small summary the state carries (ids per inline stage; where a distributed stage's items are)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.backends import makes, video_backend_names
from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL
from pipeline.backends.lifecycle import ModelFinding, check_models, models_used
from pipeline.backends.sagemaker_jobs import DEFAULT_MAX_BATCH
from pipeline.cloud.contract import DEFAULT_DISTRIBUTED_THRESHOLD, MAX_SUMMARY_BYTES, MAX_WAVES
from pipeline.cloud.data_reader import s3_data_reader
from pipeline.cloud.events import PlanEvent
from pipeline.cloud.failures import client_error_code
from pipeline.cloud.names import RunRef, campaign_name_of, run_document_key
from pipeline.cloud.quotas import ray2_batch_size, sagemaker_quota_problems, spread_ray2
from pipeline.cloud.rundoc import CloudRun, choose_distributed, empty_stages
from pipeline.cloud.settings import CloudBackends, CloudSettings
from pipeline.cloud.tenancy import (
    Tenancy,
    asset_key_problem,
    manifest_key_problem,
    s3_asset_problem,
    schedule_floor_problem,
)
from pipeline.errors import JobFailed, ManifestInvalid, Problem, shown
from pipeline.manifest.campaign import load_manifest_text
from pipeline.manifest.inputs import AUDIO_EXTENSIONS, file_problem
from pipeline.manifest.yamlsrc import load_text
from pipeline.plan.build import build_plan
from pipeline.plan.jobs import Job
from pipeline.plan.schedule import BEDROCK, SAGEMAKER, clip_waves, image_waves
from pipeline.report.write import write_invalid, write_refused
from pipeline.review.decisions import overrides_from, read_decisions
from pipeline.run.approval import gate_applies
from pipeline.run.budget import check_budget, estimate_uncached
from pipeline.storage.store import Store, parse_s3_uri, s3_etag


def plan_run(event: PlanEvent, *, store: Store, s3: Any, settings: CloudSettings, workdir: Path,
             bedrock_for: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Read the manifest (and its relative assets) from the input bucket, validate, plan, write the run
    document and the item lists of the stages that run distributed (more Map items than `distributed_over`,
    or over the state's budgets); answer the summary the state carries. An invalid manifest writes its
    report and answers valid=false, so the execution ends before any job starts. `bedrock_for(region)` gives
    the Bedrock control-plane client for the model check (default: boto3's, from the environment)."""
    # 1. Where the manifest is, and its text (this exact version when the event named one).
    source, run_id, started_s = event.source, event.run_id, event.started
    bucket, key, version, uri = source.bucket, source.key, source.version_id, source.uri
    tenancy = settings.tenancy()
    refused = manifest_key_problem(key, tenancy)
    if refused:  # not read at all: a run starts only from a manifest where its team may put one
        ref = RunRef(campaign_name_of("", key), run_id)
        write_invalid(campaign=ref.campaign, manifest=uri, problems=[Problem(uri, 1, 1, "", refused)], store=store,
                      run_id=run_id, started=started_s)
        return _not_run(ref, store.location(f"{ref.prefix}/report.json"), problems=1, over_budget=False)
    get_args = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
    text = s3.get_object(**get_args)["Body"].read().decode("utf-8")

    # 2. Assets: relative paths resolve against the manifest's folder in the bucket and are fetched, so
    #    their keys are content hashes exactly as in a local run; s3:// assets are keyed by their ETag.
    root = Path(workdir) / "input"  # a mirror of the input bucket's part that the manifest uses
    local_dir = root / posixpath.dirname(key)
    local_dir.mkdir(parents=True, exist_ok=True)
    problems: list[Problem] = []
    etags: dict[str, str] = {}
    relative: dict[str, str] = {}
    try:
        src = load_text(text, uri)
    except ManifestInvalid as exc:
        src, problems = None, list(exc.problems)
    if src is not None:
        assets = src.data.get("assets") if isinstance(src.data, dict) else None
        for aid, loc in (assets.items() if isinstance(assets, dict) else ()):
            if not isinstance(loc, str) or not loc:
                continue
            if loc.startswith("s3://"):
                problem = (s3_asset_problem(bucket, key, loc, tenancy) or _head_asset(s3, loc, etags, aid)
                           or _s3_audio_problem(s3, loc, root))
            elif "://" in loc:
                continue  # validation reports it
            else:
                problem = _fetch_relative_asset(s3, bucket, key, loc, root, relative, aid, tenancy)
            if problem:
                problems.append(src.problem(("assets", aid), problem))

    # 3. Validate (every problem at once, with lines and columns of the manifest in S3).
    campaign = None
    try:
        campaign = load_manifest_text(text, file=uri, base_dir=local_dir, check_files=False,
                                      data_reader=s3_data_reader(s3, bucket=bucket, manifest_key=key, tenancy=tenancy))
    except ManifestInvalid as exc:
        problems = exc.problems + problems
    if campaign is not None and src is not None and campaign.enhancer_model:
        problem = _enhancer_model_problem(campaign.enhancer_model, settings)
        if problem:
            problems.append(src.problem(("defaults", "enhancer_model"), problem))
    if campaign is not None and src is not None:
        problems += _unmade_model_problems(campaign, src, settings.need("video"))
    if campaign is not None and src is not None and campaign.schedule:
        problem = schedule_floor_problem(campaign.schedule, settings.schedule_floor_s())
        if problem:
            problems.append(src.problem(("schedule",), problem))
    if campaign is not None and src is not None:
        problems += sagemaker_quota_problems(campaign, src, settings.need("video"), settings.sagemaker_instances)
    findings: list[ModelFinding] = []
    if campaign is not None and src is not None and not problems:
        # 3b. Every Bedrock model the run will call, asked for its lifecycle and access before any job runs:
        #     a retired model or a missing subscription is a located error, a Legacy one a warning.
        findings = check_models(models_used(campaign, settings.backend_names(),
                                            enhancer_model=campaign.enhancer_model or settings.enhancer_model),
                                client_for=bedrock_for)
        problems += [src.problem(f.use.path, f.message) for f in findings if f.level == "error"]
    ref = RunRef(campaign.name if campaign else campaign_name_of(text, key), run_id)
    report_uri = store.location(f"{ref.prefix}/report.json")
    if problems or campaign is None:
        problems = sorted(_dedupe(problems), key=lambda p: (p.line, p.col, p.message))
        write_invalid(campaign=ref.campaign, manifest=uri, problems=problems, store=store, run_id=run_id,
                      started=started_s)
        return _not_run(ref, report_uri, problems=len(problems), over_budget=False)

    # 4. Plan with the deployment's backends; the manifest's enhancer model wins over the stack's default. The
    #    review overrides (`campaign review --regenerate --bucket`) kept in the output bucket for this manifest
    #    (its s3:// address: another manifest of the same campaign name, another team's, is not changed) apply
    #    before keying, so only the regenerated items and what is made from them get new keys.
    enhancer_model = campaign.enhancer_model or settings.enhancer_model
    backends = CloudBackends(settings.backend_names(), enhancer_model=enhancer_model, settings=settings)
    overrides = overrides_from(read_decisions(store, campaign.name), uri)
    plan = build_plan(campaign, backends.key_source(), backends=backends.names(), s3_etags=etags, overrides=overrides)
    # Other tasks run elsewhere: they read relative assets from the input bucket (same bytes, same digest).
    plan = replace(plan, assets={
        aid: replace(a, path=None, uri=f"s3://{bucket}/{relative[aid]}") if aid in relative else a
        for aid, a in plan.assets.items()
    })
    # 5. Spend control before any job: the estimate of what is not cached against the budget (refused: the
    #    report says why and the execution ends at `Over budget`); the approval gate holds every clip, so the
    #    clips that would have rendered beside the images wait with the rest, after `Await approval`.
    uncached = estimate_uncached(plan, store, instance_type=settings.instance_type)
    budget = check_budget(campaign, uncached, ceiling_usd=settings.max_budget_usd)
    if budget.problem is not None:
        write_refused(campaign=ref.campaign, manifest=uri, problem=budget.problem, budget=budget.to_json(),
                      cost=dict(uncached.estimate) if uncached.estimate else None, store=store, run_id=run_id, started=started_s)
        return _not_run(ref, report_uri, problems=1, over_budget=True)
    store.write_bytes(f"{ref.prefix}/budget.json", json.dumps(budget.to_json()).encode())
    approval = campaign.approval is not None and gate_applies(plan, uncached.cached)
    first, later = clip_waves(plan, max_batch=settings.clips_per_batch or DEFAULT_MAX_BATCH,
                              service=clip_service(backends.names()["video"]))
    if approval and first:
        later = (first, *later)
        first = ()
    first, later = spread_ray2(first, later, size=ray2_batch_size(settings.clips_per_batch or DEFAULT_MAX_BATCH,
                                                                  settings.ray2_max_polls))
    run = CloudRun(ref=ref, plan=plan, source=source.to_json(),
                   started=started_s, enhancer_model=enhancer_model, image_waves=image_waves(plan),
                   clip_batches=first, clip_waves=later, notify_webhook=campaign.notify_webhook)
    threshold = DEFAULT_DISTRIBUTED_THRESHOLD if event.distributed_over is None else event.distributed_over
    distributed = choose_distributed(run, threshold=threshold, report_uri=report_uri)
    summary = run.summary(report_uri=report_uri, distributed=distributed) | {"over_budget": False, "approval": approval}
    size = len(json.dumps(summary))
    if size > MAX_SUMMARY_BYTES:  # every stage with items is distributed by now: only waves are left
        waves = len(run.image_waves) + len(run.clip_waves)
        raise JobFailed(f"the plan's {waves} dependency waves take {size} bytes of state, more than the "
                        f"{MAX_SUMMARY_BYTES} kept for them in the execution's 256 KB; split the campaign into "
                        "several manifests or shorten its chains of images made from images / shots continuing shots")
    waves = len(run.image_waves) + len(run.clip_waves)
    if waves > MAX_WAVES:  # each wave's Distributed Map adds to the parent's history (pipeline/cloud/history.py)
        raise JobFailed(f"the plan has {waves} dependency waves, more than the {MAX_WAVES} one execution's history "
                        "holds (25,000 events); split the campaign into several manifests")
    for stage_file, body in run.stage_files(distributed).items():
        store.write_bytes(stage_file, body)
    store.write_bytes(run_document_key(ref), run.to_json().encode())
    if findings:  # warnings only by now: kept beside the plan and in the function's log
        store.write_bytes(f"{ref.prefix}/model-check.json", json.dumps(
            [{"level": f.level, "model": f.use.model_id, "region": f.use.region, "message": f.message}
             for f in findings], indent=1).encode())
        for f in findings:
            print(f"model check: {f.level}: {f.message}")
    return summary


def _not_run(ref: RunRef, report_uri: str, *, problems: int, over_budget: bool) -> dict[str, Any]:
    """The summary of a run that ends at planning: nothing for any stage."""
    return {"valid": False, "ref": ref.to_dict(), "report": report_uri, "problems": problems,
            "enhance": [], "image_waves": [], "clip_batches": [], "voices": [], "clip_waves": [], "videos": [],
            "stages": empty_stages(), "over_budget": over_budget, "approval": False}


def _fetch_relative_asset(s3: Any, bucket: str, manifest_key: str, loc: str, root: Path,
                          found: dict[str, str], aid: str, tenancy: Tenancy) -> str | None:
    """Download a manifest-relative asset to the same relative place under `root` (a mirror of the bucket)."""
    asset_key = posixpath.normpath(posixpath.join(posixpath.dirname(manifest_key), loc))
    if loc.startswith("/") or asset_key == ".." or asset_key.startswith("../"):
        return f"asset path {shown(loc)} leaves the bucket (relative to s3://{bucket}/{manifest_key})"
    refused = asset_key_problem(bucket, manifest_key, bucket, asset_key, loc, tenancy)
    if refused:
        return refused
    dest = root / asset_key
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, asset_key, str(dest))
    except Exception as exc:  # noqa: BLE001 - reported as a located manifest problem
        return f"asset file {shown(loc)} not found (looked for s3://{bucket}/{asset_key}: {client_error_code(exc)})"
    bad = file_problem(dest, loc)  # really the image or audio its name says, whole (a cut-short MP3 is refused)
    if bad:
        return bad
    found[aid] = asset_key
    return None


def _enhancer_model_problem(model: str, settings: CloudSettings) -> str | None:
    """The stack grants InvokeModel on its enhancer model and the allowed alternatives only: a manifest that
    names another would fail every enhance job with AccessDenied, so it is refused at planning."""
    if settings.enhancer != "bedrock":
        return None
    allowed = [settings.enhancer_model or DEFAULT_ENHANCER_MODEL]
    allowed += [m.strip() for m in (settings.allowed_enhancer_models or "").split(",") if m.strip()]
    if model in allowed:
        return None
    return (f"enhancer model {model!r} is not enabled in this deployment (allowed: {', '.join(allowed)}); "
            "add it to the stack's allowed_enhancer_models context and deploy again")


def _unmade_model_problems(campaign: Any, src: Any, video: str) -> list[Problem]:
    """A shot whose model none of the deployment's video backends makes (e.g. a Luma Ray2 shot when the stack
    renders on SageMaker only) is refused at planning, located, instead of failing its batch."""
    names = video_backend_names(video)
    return [src.problem(("videos", i, "shots", j), f"{shot.model} shots cannot run in this deployment: its video "
                        f"backend {video!r} does not make them (deploy with video_backend sagemaker+bedrock, or run "
                        "this campaign locally with --video bedrock)")
            for i, v in enumerate(campaign.videos) for j, shot in enumerate(v.shots)
            if not any(makes(n, shot.model) for n in names)]


def clip_service(video: str) -> Callable[[Job], str]:
    """`job -> service` for pipeline.plan.schedule.clip_waves: BEDROCK for a clip the deployment's video backend
    (e.g. `sagemaker+bedrock`) sends to Bedrock, SAGEMAKER for the rest (the preview stand-in included)."""
    names = video_backend_names(video)

    def service(job: Job) -> str:
        first = next((n for n in names if makes(n, job.clip.model)), None)
        return BEDROCK if first == "bedrock" else SAGEMAKER

    return service


def _s3_audio_problem(s3: Any, uri: str, root: Path) -> str | None:
    """An s3:// audio asset decoded whole, as validation does a local one: a file cut short never reaches a run
    (images are decoded, with a clear error, by the job that reads them)."""
    if not uri.lower().endswith(AUDIO_EXTENSIONS):
        return None
    asset_bucket, asset_key = parse_s3_uri(uri)
    dest = root / "s3" / asset_bucket / asset_key
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(asset_bucket, asset_key, str(dest))
    except Exception as exc:  # noqa: BLE001 - reported as a located manifest problem
        return f"asset {shown(uri)} cannot be read by the pipeline ({client_error_code(exc)})"
    return file_problem(dest, asset_key)


def _head_asset(s3: Any, uri: str, etags: dict[str, str], aid: str) -> str | None:
    try:
        etags[aid] = s3_etag(s3, uri)
    except Exception as exc:  # noqa: BLE001 - reported as a located manifest problem
        return f"asset {shown(uri)} cannot be read by the pipeline ({client_error_code(exc)})"
    return None


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


