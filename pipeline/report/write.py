"""The run's report: named outputs copied out of the cache, report.json (the contract) and report.html."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

from pipeline.credentials.keys import SigningKey
from pipeline.credentials.sign import open_publisher
from pipeline.errors import AssetChanged, Problem
from pipeline.manifest.formats import file_tag
from pipeline.manifest.variables import Variant, group_by_template
from pipeline.plan.build import AssetRef, Plan, expected_duration
from pipeline.plan.jobs import AssetImage, EditedImage, output_key, ref_to_json
from pipeline.report.html import render_html
from pipeline.report.records import (
    ClipRecord,
    EnhancementRecord,
    ErrorRecord,
    FormatRecord,
    ImageRecord,
    JobCounts,
    JobResultRecord,
    StepRecord,
    VideoRecord,
)
from pipeline.report.sound import translation_records, voice_records
from pipeline.review.decisions import read_decisions
from pipeline.review.history import annotate
from pipeline.storage.integrity import put_asset_copy
from pipeline.storage.store import Store
from pipeline.tasks import JobResult

REPORT_VERSION = 1
PARALLEL_COPIES = 16
# Statuses besides run_status()'s succeeded/partial/failed: a run held at the approval gate, and how it ended
# there (pipeline/run/approval.py, pipeline/cloud/approval_step.py).
AWAITING_APPROVAL, REJECTED, EXPIRED = "awaiting-approval", "rejected", "expired"
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: what finished is kept, the rest is `not_run`


def run_prefix(campaign: str, run_id: str) -> str:
    return f"runs/{campaign}/{run_id}"


def new_run_id(now: float | None = None) -> str:
    import secrets

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


def run_status(results: list[JobResult]) -> str:
    if not results or all(r.ok for r in results):
        return "succeeded"
    produced = any(r.ok and r.kind in ("video", "image") for r in results)
    return "partial" if produced else "failed"


def job_counts(results: list[JobResult]) -> JobCounts:
    return {
        "total": len(results),
        "executed": sum(r.status == "executed" for r in results),
        "cached": sum(r.status == "cached" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
    }


def build_report(plan: Plan, results: list[JobResult], *, run_id: str, started: float, finished: float,
                 store: Store, cost: dict[str, Any] | None = None, budget: dict[str, Any] | None = None,
                 approval: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report dict, and the list of (cache key -> run-relative path) copies that give outputs their names."""
    by_id = {r.job_id: r for r in results}
    prefix = run_prefix(plan.campaign, run_id)
    errors: list[ErrorRecord] = [{"job": r.job_id, "error": r.error_type or "JobFailed", "message": r.message or ""}
                                 for r in results if not r.ok]
    errors_of = {e["job"]: e for e in errors}

    def rel(path: str) -> str:
        return str(PurePosixPath(path))

    copies: list[tuple[str, str]] = []
    asset_copies: list[tuple[AssetRef, str]] = []
    images: list[ImageRecord] = []
    for job in plan.by_kind("image"):
        res = by_id.get(job.id)
        spec = job.image
        entry: ImageRecord = {"id": spec.image_id, "job": job.id, "key": job.key,
                              "source": ref_to_json(spec.source), "edits": [s.tool for s in spec.steps],
                              "status": res.status if res else "not-run", "path": None, "source_path": None,
                              "steps": [], "backend": None, "placeholder": False,
                              **_variant_fields(spec.variant, [errors_of[job.id]] if job.id in errors_of else [])}
        info = (res.info if res else {}) or {}
        steps_info = {s["key"]: s for s in info.get("steps", [])}
        if res and res.ok:
            path = rel(f"images/{spec.image_id}.{job.ext}")
            copies.append((job.output_key, path))
            entry["path"] = path
            entry["cached"] = res.status == "cached"
        src = spec.source
        if res and res.ok:
            if isinstance(src, EditedImage):
                sjob = plan.job(f"image:{src.image}")
                source_path = rel(f"images/{spec.image_id}/step-0-source.{sjob.ext}")
                entry["source_path"] = source_path
                copies.append((sjob.output_key, source_path))
            elif isinstance(src, AssetImage) and src.asset in plan.assets:
                asset = plan.assets[src.asset]
                ext = PurePosixPath(asset.location).suffix.lstrip(".") or "png"
                source_path = rel(f"images/{spec.image_id}/step-0-source.{ext}")
                entry["source_path"] = source_path
                asset_copies.append((asset, source_path))
        steps: list[StepRecord] = []
        for i, step in enumerate(spec.steps):
            s_info = steps_info.get(step.key, {})
            s_path = None
            if res and res.ok:
                s_path = rel(f"images/{spec.image_id}/step-{i + 1}-{step.tool}.{step.ext}")
                copies.append((output_key("image", step.key, step.ext), s_path))
            steps.append({"tool": step.tool, "params": step.params,
                          "refs": {f: ref_to_json(r) for f, r in step.refs.items()}, "path": s_path,
                          "backend": s_info.get("backend"), "placeholder": s_info.get("placeholder"),
                          "note": s_info.get("note"), "seconds": s_info.get("seconds")})
        entry["steps"] = steps
        entry["backend"] = info.get("backend") or plan.backends.get("images")
        entry["placeholder"] = bool(info.get("placeholder"))
        images.append(entry)

    videos: list[VideoRecord] = []
    for vjob in plan.by_kind("video"):
        res = by_id.get(vjob.id)
        info = (res.info if res else {}) or {}
        vspec = vjob.video
        vid = vspec.video_id
        video: VideoRecord = {"id": vid, "job": vjob.id, "key": vjob.key, "status": res.status if res else "not-run",
                 "path": None, "poster": None, "duration_s": info.get("duration_s"),
                 "expected_duration_s": round(expected_duration(plan, vjob), 6),
                 "width": info.get("width"), "height": info.get("height"), "fps": info.get("fps"),
                 "frames": info.get("frames"), "method": info.get("method"), "cached": res.status == "cached" if res else False,
                 "crossfade": vspec.crossfade, "continuity": vspec.continuity,
                 "audio": asdict(vspec.audio) if vspec.audio else None, "formats": [], "clips": [],
                 **_variant_fields(vspec.variant, [errors_of[j] for j in (*vspec.clips, vjob.id) if j in errors_of])}
        if res and res.ok and info.get("outputs"):  # formats and captions: one file (poster, sidecar) per format
            for out in info["outputs"]:
                name = f"videos/{vid}-{file_tag(out['format'])}" if out.get("format") else f"videos/{vid}"
                fmt: FormatRecord = {
                    "format": out.get("format"), "width": out.get("width"), "height": out.get("height"),
                    "frames": out.get("frames"), "duration_s": out.get("duration_s"), "fit": out.get("fit"),
                    "burned": out.get("burned"), "method": out.get("method"), "cached": out.get("cached"),
                    "path": rel(f"{name}.mp4"), "poster": rel(f"{name}.png"),
                    "captions": rel(f"{name}.vtt") if out.get("captions") else None, "sound": out.get("sound")}
                copies += [(out["video"], fmt["path"]), (out["poster"], fmt["poster"])]
                if out.get("captions") and fmt["captions"]:
                    copies.append((out["captions"], fmt["captions"]))
                video["formats"].append(fmt)
            first = video["formats"][0]
            video["path"], video["poster"], video["captions"] = first["path"], first["poster"], first["captions"]
            video["language"] = info.get("language")
        elif res and res.ok:
            video["sound"] = info.get("sound")
            video["path"] = path = rel(f"videos/{vid}.mp4")
            copies.append((vjob.output_key, path))
            if info.get("poster"):
                video["poster"] = poster = rel(f"videos/{vid}.png")
                copies.append((info["poster"], poster))
        clips: list[ClipRecord] = []
        for cid in vspec.clips:
            cjob = plan.job(cid)
            cspec = cjob.clip
            cres = by_id.get(cid)
            cinfo = (cres.info if cres else {}) or {}
            c: ClipRecord = {
                "job": cid, "key": cjob.key, "shot": cspec.shot + 1, "status": cres.status if cres else "not-run",
                "prompt": cspec.prompt, "enhanced_prompt": None, "model_prompt": cinfo.get("model_prompt"),
                "enhance": cspec.enhance_job is not None, "seed": cspec.seed,
                "model": cspec.model, "i2v": cspec.i2v, "start": ref_to_json(cspec.start) if cspec.start else None,
                "frames": cspec.frames, "fps": cspec.fps, "width": cspec.width,
                "height": cspec.height, "backend": cinfo.get("backend") or plan.backends.get("video"),
                "placeholder": cinfo.get("placeholder"), "cached": cres.status == "cached" if cres else False,
                "prompt_trimmed": cinfo.get("prompt_trimmed"), "path": None,
                "seconds": round(cres.seconds, 3) if cres else None,
            }
            if cspec.enhance_job:
                eres = by_id.get(cspec.enhance_job)
                einfo = (eres.info if eres else {}) or {}
                c["enhanced_prompt"] = einfo.get("enhanced_prompt", cinfo.get("model_prompt"))
                c["enhancer"] = einfo.get("backend")
                c["enhance_trimmed"] = einfo.get("trimmed")
            if cres and cres.ok:
                c["path"] = clip_path = rel(f"clips/{vid}-{cspec.shot + 1:02d}.mp4")
                copies.append((cjob.output_key, clip_path))
            clips.append(c)
        video["clips"] = clips
        if any(vspec.voices):
            video["voiceover"] = voice_records(plan, vjob, by_id)
        videos.append(video)
    report = {
        "report_version": REPORT_VERSION,
        "campaign": plan.campaign,
        "description": plan.description,
        "run_id": run_id,
        "status": run_status(results),
        "manifest": plan.manifest_file,
        "started": _iso(started),
        "finished": _iso(finished),
        "duration_s": round(finished - started, 3),
        "backends": plan.backends,
        "videos": videos,
        "images": images,
        "variants": _variant_groups(images, videos),
        "enhancements": [_enhancement(j.id, j.enhance.prompt, by_id.get(j.id)) for j in plan.by_kind("enhance")],
        "translations": translation_records(plan, by_id),
        "jobs": job_counts(results),
        "job_results": [JobResultRecord(job=r.job_id, kind=r.kind, status=r.status, seconds=round(r.seconds, 3),
                                        key=r.key) for r in results],
        "errors": errors,
        "cost": cost or {},
        "budget": budget or {},
        "prefix": prefix,
    }
    if approval is not None:
        report["approval"] = approval
    report["review"] = {"overrides": plan.overrides}  # annotate() adds each asset's history (write_run)
    report["_copies"] = copies
    report["_asset_copies"] = asset_copies
    return report


class _VariantFields(TypedDict):
    template: str | None
    combination: dict[str, str] | None
    errors: list[ErrorRecord]


def _enhancement(job_id: str, prompt: str, res: JobResult | None) -> EnhancementRecord:
    info = (res.info if res else {}) or {}
    return {"job": job_id, "prompt": prompt, "enhanced_prompt": info.get("enhanced_prompt"),
            "backend": info.get("backend"), "tokens": info.get("tokens"), "max_tokens": info.get("max_tokens"),
            "trimmed": info.get("trimmed"), "changed": info.get("changed"), "status": res.status if res else "not-run"}


def _variant_fields(variant: Variant | None, errors: list[ErrorRecord]) -> _VariantFields:
    """The template and combination an expanded image or video came from, and the errors of its own jobs."""
    return {"template": variant.template if variant else None,
            "combination": dict(variant.combination) if variant else None, "errors": errors}


def _variant_groups(images: list[ImageRecord], videos: list[VideoRecord]) -> list[dict[str, Any]]:
    """One entry per template: its variants' ids and how many of them have errors."""
    entries: list[tuple[str, ImageRecord | VideoRecord]] = [("image", e) for e in images] + [("video", e) for e in videos]
    failed = {(kind, e["id"]) for kind, e in entries if e["errors"]}
    groups = group_by_template((kind, e["id"], Variant(e["template"], tuple((e["combination"] or {}).items()))
                                if e["template"] else None) for kind, e in entries)
    return [{**g.to_json(), "failed": sum((g.kind, i) in failed for i in g.ids)} for g in groups]


def write_run(plan: Plan, results: list[JobResult], store: Store, *, run_id: str, started: float,
              finished: float, cost: dict[str, Any] | None = None, interrupted: bool = False,
              budget: dict[str, Any] | None = None, approval: dict[str, Any] | None = None,
              status: str | None = None, signing: SigningKey | None = None) -> dict[str, Any]:
    """Give the run's outputs their names, then write report.json and report.html (always, also on failure).
    An interrupted run (status `interrupted`) reports the jobs that finished; the rest are `not-run` (counted
    as `not_run`). `status` overrides the one the results give (AWAITING_APPROVAL, REJECTED, EXPIRED); a run
    held for approval counts its jobs not run yet as `pending`."""
    report = build_report(plan, results, run_id=run_id, started=started, finished=finished, store=store, cost=cost,
                          budget=budget, approval=approval)
    if status is not None:
        report["status"] = status
    annotate(report, read_decisions(store, plan.campaign))  # each asset's versions and review decisions
    if status == AWAITING_APPROVAL:
        report["jobs"]["pending"] = len(plan.jobs) - len(results)
        report["jobs"]["total"] = len(plan.jobs)
    if interrupted:  # every planned job accounted for: finished (executed, cached), failed, skipped or not run
        report["status"] = INTERRUPTED
        report["jobs"]["not_run"] = len(plan.jobs) - len(results)
        report["jobs"]["total"] = len(plan.jobs)
        report["errors"].insert(0, {"job": "run", "error": "Interrupted",
                                    "message": f"stopped after {len(results)} of {len(plan.jobs)} job(s); "
                                               "run again to finish (done work is kept)"})
    # damaged cache entries this run found, moved to quarantine/ and made again (pipeline.storage.integrity)
    report["cache_repairs"] = [r.to_dict() for r in getattr(store, "repairs", [])]
    prefix = report["prefix"]
    copies = report.pop("_copies")
    asset_copies = report.pop("_asset_copies")
    publisher = open_publisher(plan, {r.job_id: r.info or {} for r in results}, store, report=report, run_id=run_id,
                               key=signing)

    def give_name(copy: tuple[str, str]) -> dict[str, str] | None:
        src, dst = copy
        try:
            return publisher.publish(src, dst, f"{prefix}/{dst}")  # signed on the way, or copied
        except Exception as exc:  # a missing output must not stop the report from being written
            return {"job": "report", "error": "OutputMissing", "message": f"{dst}: {exc}"}

    with ThreadPoolExecutor(max_workers=PARALLEL_COPIES) as pool:  # S3 copies are round trips: overlap them
        report["errors"].extend(e for e in pool.map(give_name, copies) if e)
    report["credentials"] = publisher.finish(report)  # a file that could not be signed was not delivered
    for asset, dst in asset_copies:
        try:
            if asset.path:
                put_asset_copy(store, f"{prefix}/{dst}", Path(asset.path), digest=asset.digest,
                               what=f"asset {asset.id!r}")
            elif asset.uri:
                store.copy_from_uri(asset.uri, f"{prefix}/{dst}")
        except AssetChanged as exc:  # never a new version beside outputs of the old: the item says why
            for im in report["images"]:
                if im.get("source_path") == dst:
                    im["source_path"] = None
                    report["errors"].append({"job": im["job"], "error": "AssetChanged", "message": f"{dst}: {exc}"})
                    report["status"] = "partial" if report["status"] == "succeeded" else report["status"]
        except Exception:  # the source picture is a convenience for reviewers; its absence is not an error
            for im in report["images"]:
                if im.get("source_path") == dst:
                    im["source_path"] = None
    _write_report_files(store, prefix, report)
    return report


def write_invalid(*, campaign: str, manifest: str, problems: list[Problem], store: Store, run_id: str,
                  started: float | None = None) -> dict[str, Any]:
    """A failed report whose errors are the manifest's validation problems (nothing else ran)."""
    errors = [{"job": "validate", "error": "ManifestInvalid", "message": str(p), "line": p.line, "col": p.col,
               "path": p.path} for p in problems]
    return _write_unplanned(campaign=campaign, manifest=manifest, errors=errors, store=store, run_id=run_id,
                            started=started)


def write_failed(*, campaign: str, manifest: str, error: str, message: str, store: Store, run_id: str,
                 started: float | None = None) -> dict[str, Any]:
    """A failed report for a run that could not even be planned (the plan step itself crashed)."""
    return _write_unplanned(campaign=campaign, manifest=manifest, store=store, run_id=run_id, started=started,
                            errors=[{"job": "plan", "error": error, "message": message}])


def write_refused(*, campaign: str, manifest: str, problem: Problem, budget: dict[str, Any],
                  cost: dict[str, Any] | None, store: Store, run_id: str, started: float | None = None) -> dict[str, Any]:
    """A failed report for a run refused before any job: its estimate is over its budget (pipeline/run/budget.py)."""
    errors = [{"job": "budget", "error": "OverBudget", "message": str(problem), "line": problem.line,
               "col": problem.col, "path": problem.path}]
    return _write_unplanned(campaign=campaign, manifest=manifest, errors=errors, store=store, run_id=run_id,
                            started=started, extra={"budget": budget, "cost": cost or {}})


def _write_unplanned(*, campaign: str, manifest: str, errors: list[dict[str, Any]], store: Store, run_id: str,
                     started: float | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    now = time.time()
    report = {
        "report_version": REPORT_VERSION, "campaign": campaign, "description": "", "run_id": run_id,
        "status": "failed", "manifest": manifest, "started": _iso(started or now), "finished": _iso(now),
        "duration_s": round(now - (started or now), 3), "backends": {}, "videos": [], "images": [], "variants": [],
        "enhancements": [], "jobs": {"total": 0, "executed": 0, "cached": 0, "failed": 0, "skipped": 0},
        "job_results": [], "errors": errors, "cost": {}, "budget": {}, "prefix": run_prefix(campaign, run_id),
        **(extra or {}),
    }
    _write_report_files(store, run_prefix(campaign, run_id), report)
    return report


def restate_report(store: Store, prefix: str, *, status: str, error: dict[str, str],
                   approval: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite a written report with a new status and its reason first among the errors (a run held for
    approval that was rejected); nothing else about the run changed."""
    report: dict[str, Any] = json.loads(store.read_bytes(f"{prefix}/report.json"))
    report["status"] = status
    report["errors"] = [error, *report.get("errors", [])]
    if approval is not None:
        report["approval"] = approval
    _write_report_files(store, prefix, report)
    return report


def refresh_review(store: Store, prefix: str) -> dict[str, Any]:
    """Rewrite a written report's review entries from the decisions stored now (after `campaign review`), so its
    report.json and report.html show the decision; nothing else about the run changes."""
    report: dict[str, Any] = json.loads(store.read_bytes(f"{prefix}/report.json"))
    annotate(report, read_decisions(store, str(report["campaign"])))
    _write_report_files(store, prefix, report, latest=False)
    return report


def record_webhook(store: Store, prefix: str, webhook: dict[str, Any]) -> dict[str, Any]:
    """Add the webhook's delivery (pipeline/report/webhook.py Delivery.to_json) to a written report: it is sent
    after the report is written, since its body is the summary made from that report."""
    report: dict[str, Any] = json.loads(store.read_bytes(f"{prefix}/report.json"))
    report["webhook"] = webhook
    _write_report_files(store, prefix, report, latest=False)
    return report


def _write_report_files(store: Store, prefix: str, report: dict[str, Any], *, latest: bool = True) -> None:
    store.write_bytes(f"{prefix}/report.html", render_html(report).encode())
    store.write_bytes(f"{prefix}/report.json", json.dumps(report, indent=2, default=str).encode())
    if latest:
        store.write_bytes(f"runs/{report['campaign']}/latest.json",
                          json.dumps({"run_id": report["run_id"], "status": report["status"],
                                      "report": f"{report['run_id']}/report.json"}).encode())


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
