"""Each asset's review history as the report shows it: its versions (one per content key it has had), the
decisions on each (what, who, when, the note) and the state of the version this run delivered."""

from __future__ import annotations

from typing import Any

from pipeline.review.decisions import REGENERATE, Decision, for_run, status_of, verdict


def version_of(record: dict[str, Any]) -> dict[str, Any]:
    """What a report record says its version was made with: a clip's seed and prompt, an image's edit parameters."""
    if "seed" in record or "prompt" in record:
        return {k: record.get(k) for k in ("seed", "prompt") if record.get(k) is not None}
    if isinstance(record.get("steps"), list):
        return {"edits": [{"tool": s.get("tool"), "params": s.get("params")} for s in record["steps"]
                          if isinstance(s, dict)]}
    return {}


def item_history(decisions: list[Decision], item: str, key: str | None, *, run_id: str,
                 current: dict[str, Any]) -> dict[str, Any]:
    """The `review` entry of one asset: the delivered version's state and every version before it, oldest first."""
    versions: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if d.item != item or d.key is None:
            continue
        v = versions.setdefault(d.key, {"key": d.key, "run_id": d.run_id, "made_with": d.version, "decisions": []})
        v["decisions"].append({"decision": d.action, "note": d.note, "by": d.by, "time": d.time, "run_id": d.run_id,
                               **({"asked": d.override.to_json()} if d.action == REGENERATE else {})})
    if key is not None:
        versions.setdefault(key, {"key": key, "run_id": run_id, "made_with": current, "decisions": []})
    out = []
    for k, v in versions.items():
        last = verdict(decisions, item, k)
        out.append({**v, "status": status_of(last), "current": k == key})
    last = verdict(decisions, item, key)
    return {"status": status_of(last), "note": last.note if last else "", "by": last.by if last else None,
            "time": last.time if last else None, "versions": out}


def annotate(report: dict[str, Any], decisions: list[Decision]) -> dict[str, Any]:
    """The report with a `review` entry on every image, video and clip, and a run-level `review` saying what this
    run replaced (the regenerate decisions it was started for). Only the decisions that count for the run's
    manifest are shown (`for_run`: a cloud run, another team's are not). Changes `report` in place and returns it."""
    decisions = for_run(decisions, str(report.get("manifest") or ""))
    run_id = str(report.get("run_id"))
    for image in report.get("images") or []:
        if isinstance(image, dict):
            image["review"] = item_history(decisions, str(image.get("job")), image.get("key"), run_id=run_id,
                                           current=version_of(image))
    for video in report.get("videos") or []:
        if not isinstance(video, dict):
            continue
        video["review"] = item_history(decisions, str(video.get("job")), video.get("key"), run_id=run_id,
                                       current={})
        for clip in video.get("clips") or []:
            if isinstance(clip, dict):
                clip["review"] = item_history(decisions, str(clip.get("job")), clip.get("key"), run_id=run_id,
                                              current=version_of(clip))
    replaced = [{"item": d.item, "run_id": d.run_id, "key": d.key, "by": d.by, "time": d.time, "note": d.note,
                 "asked": d.override.to_json()} for d in decisions if d.action == REGENERATE and d.regenerate_run == run_id]
    report["review"] = {"replaces": replaced, "decisions": len(decisions),
                        "overrides": (report.get("review") or {}).get("overrides", {})}
    return report
