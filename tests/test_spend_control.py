"""Spend control on one machine: the budget refused before any job (located at the `budget` key, exit 2), the
approval gate (stop, approve, finish; reject), and the run summary shared with the cloud's notifications."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from small_campaign import write_small_campaign

from pipeline.cli import EXIT_AWAITING_APPROVAL, EXIT_INVALID, EXIT_OK
from pipeline.cli import main as campaign
from pipeline.report.summary import publish, summarize

CAMPAIGN = "gated-launch"


def write_campaign(folder: Path, *, extra: str = "", prompt: str = "A bee on a flower.") -> Path:
    return write_small_campaign(folder, name=CAMPAIGN, file_name="gated.yaml", extra=extra, prompt=prompt)


def latest(out: Path) -> tuple[str, dict[str, Any]]:
    run_id = json.loads((out / "runs" / CAMPAIGN / "latest.json").read_text())["run_id"]
    return run_id, json.loads((out / "runs" / CAMPAIGN / run_id / "report.json").read_text())


def cache_files(out: Path, kind: str) -> set[str]:
    return {p.name for p in (out / "cache" / kind).glob("*") if p.suffix != ".json"} if (out / "cache" / kind).exists() else set()


# --- budgets -------------------------------------------------------------------------------------------------


def test_a_budget_under_the_estimate_is_refused_before_any_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign(tmp_path / "c", extra="budget:\n  max_usd: 0.001\n")
    out = tmp_path / "out"
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_INVALID
    err = capsys.readouterr().err
    # FILE:LINE:COL of the budget's max_usd key (line 18: the template is 16 lines), the estimate and the budget side by side
    assert err.startswith(f"{manifest}:18:3: error: budget.max_usd: estimated $"), err
    assert "for the 6 job(s) not yet cached is over the budget of $0.00" in err
    assert "unverified figure(s)" in err
    assert not (out / "cache").exists() or not any((out / "cache").rglob("*"))  # no job ran
    # `campaign plan` says the same, after listing the plan, the estimate's unknowns and the budget
    assert campaign(["plan", str(manifest), "--out", str(out)]) == EXIT_INVALID
    captured = capsys.readouterr()
    assert "unverified: Stability image edit prices on Bedrock are unverified" in captured.out
    assert "budget: $0.00; estimate for what is not cached: $" in captured.out
    assert "error: budget.max_usd: estimated $" in captured.err


def test_a_budget_counts_only_what_is_not_cached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same campaign, once run: its estimate for what is not cached is the orchestration alone, so a budget
    that refused the first run admits the second; the report shows estimate and budget side by side."""
    manifest = write_campaign(tmp_path / "c")
    out = tmp_path / "out"
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_OK
    _, first = latest(out)
    full = first["budget"]["estimate_usd"]
    assert first["budget"]["limit_usd"] is None and first["budget"]["within"] is None and first["budget"]["unknowns"]

    budget = round(full / 2, 4)
    write_campaign(tmp_path / "c", extra=f"budget: {{max_usd: {budget}}}\n")
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_OK
    _, second = latest(out)
    assert second["jobs"]["cached"] == second["jobs"]["total"]
    section = second["budget"]
    assert section["max_usd"] == budget and section["limit_usd"] == budget and section["within"] is True
    assert 0 < section["estimate_usd"] < budget and section["jobs_to_run"] == 0
    html = (out / "runs" / CAMPAIGN / second["run_id"] / "report.html").read_text()
    assert f"${budget:,.2f}" in html and "unverified" in html
    printed = capsys.readouterr().out
    assert f"budget ${budget:,.2f}" in printed and printed.startswith(f"{CAMPAIGN} run ")


# --- the approval gate ---------------------------------------------------------------------------------------


def test_the_gate_stops_before_any_clip_then_approve_renders_from_the_cache(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign(tmp_path / "c", extra="approval: before-render\n")
    out = tmp_path / "out"

    # 1. The run stops at the gate: prompts and the image are made, no clip, no video; exit 3.
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_AWAITING_APPROVAL
    run_id, held = latest(out)
    assert held["status"] == "awaiting-approval"
    assert held["jobs"] == {"total": 6, "executed": 3, "cached": 0, "failed": 0, "skipped": 0, "pending": 3}
    assert cache_files(out, "clip") == set() and cache_files(out, "video") == set()
    # every enhanced prompt and every edited image is in the report for review
    assert [c["enhanced_prompt"] for c in held["videos"][0]["clips"]] == ["A bee on a flower.", "The sofa in a sunlit loft."]
    [image] = held["images"]
    assert image["path"] == "images/sofa-big.png" and (out / "runs" / CAMPAIGN / run_id / image["path"]).is_file()
    assert held["approval"]["status"] == "awaiting" and held["approval"]["remaining_usd"] > 0
    record = json.loads((out / "runs" / CAMPAIGN / run_id / "approval.json").read_text())
    assert record["manifest"] == str(manifest.resolve()) and record["backends"]["video"] is None
    html = (out / "runs" / CAMPAIGN / run_id / "report.html").read_text()
    assert "awaiting approval" in html.lower() and "campaign approve" in html
    printed = capsys.readouterr().out
    assert f"approve: campaign approve {CAMPAIGN} --run {run_id} --out {out}" in printed
    assert "review: 2 enhanced prompt(s) and 1 edited image(s)" in printed

    # 2. Approved: the same run goes on from the cache and finishes.
    assert campaign(["approve", CAMPAIGN, "--out", str(out), "--quiet"]) == EXIT_OK
    again_id, done = latest(out)
    assert again_id == run_id and done["status"] == "succeeded"
    assert done["jobs"] == {"total": 6, "executed": 3, "cached": 3, "failed": 0, "skipped": 0}
    assert len(cache_files(out, "clip")) == 2 and {Path(f).suffix for f in cache_files(out, "video")} == {".mp4", ".png"}
    assert json.loads((out / "runs" / CAMPAIGN / run_id / "approval.json").read_text())["status"] == "approved"
    # an answered run cannot be answered again
    capsys.readouterr()
    assert campaign(["reject", CAMPAIGN, "--out", str(out)]) == 1
    assert "is not awaiting approval (it is approved)" in capsys.readouterr().err


def test_an_edited_prompt_is_reviewed_again_and_only_it_is_remade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign(tmp_path / "c", extra="approval: before-render\n")
    out = tmp_path / "out"
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_AWAITING_APPROVAL
    first_id, _ = latest(out)
    write_campaign(tmp_path / "c", extra="approval: before-render\n", prompt="A bee on a red flower.")
    # approving what was reviewed is refused once the manifest changed ...
    assert campaign(["approve", CAMPAIGN, "--out", str(out), "--run", first_id]) == 1
    assert "changed since run" in capsys.readouterr().err
    # ... running it again remakes only the changed prompt's enhancement, and holds again for review
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_AWAITING_APPROVAL
    _, held = latest(out)
    assert held["jobs"]["executed"] == 1 and held["jobs"]["cached"] == 2
    # `run --approve` continues that held run through the gate
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet", "--approve"]) == EXIT_OK
    _, done = latest(out)
    assert done["run_id"] == held["run_id"] and done["status"] == "succeeded"
    assert done["videos"][0]["clips"][0]["prompt"] == "A bee on a red flower."


def test_reject_ends_a_held_run_as_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign(tmp_path / "c")
    out = tmp_path / "out"
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet", "--approval"]) == EXIT_AWAITING_APPROVAL
    run_id, _ = latest(out)
    capsys.readouterr()
    assert campaign(["reject", CAMPAIGN, "--out", str(out), "--run", run_id, "--reason", "wrong sofa colour"]) == EXIT_OK
    _, report = latest(out)
    assert report["status"] == "rejected"
    assert report["errors"][0]["error"] == "Rejected" and report["errors"][0]["message"].endswith(": wrong sofa colour")
    assert report["approval"]["status"] == "rejected" and report["approval"]["reason"] == "wrong sofa colour"
    assert cache_files(out, "clip") == set()
    assert f"{CAMPAIGN} run {run_id}: rejected" in capsys.readouterr().out
    assert campaign(["approve", CAMPAIGN, "--out", str(out)]) == 1  # nothing left to approve


def test_the_gate_does_not_hold_a_run_whose_clips_are_all_cached(tmp_path: Path) -> None:
    manifest = write_campaign(tmp_path / "c")
    out = tmp_path / "out"
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_OK
    assert campaign(["run", str(manifest), "--out", str(out), "--quiet", "--approval"]) == EXIT_OK  # no GPU to spend


# --- the summary (printed locally, published in the cloud) ---------------------------------------------------


def report_of(status: str, **extra: Any) -> dict[str, Any]:
    jobs = {"total": 6, "executed": 4, "cached": 1, "failed": 0, "skipped": 0}
    base: dict[str, Any] = {"campaign": CAMPAIGN, "run_id": "r1", "status": status, "jobs": jobs, "errors": [],
                            "cost": {"total_usd": 1.5, "uncached_usd": 1.5},
                            "budget": {"limit_usd": 5.0, "estimate_usd": 1.2, "unknowns": ["Lambda prices are unverified"]}}
    return base | extra


def test_summary_of_a_succeeded_run() -> None:
    n = summarize(report_of("succeeded"), report_location="out/runs/x/report.html")
    assert n.subject == f"campaign {CAMPAIGN}: succeeded"
    assert n.text.splitlines() == [
        f"{CAMPAIGN} run r1: succeeded",
        "jobs: 6 (4 executed, 1 cached, 0 failed, 0 skipped)",
        "cost: estimated cloud cost $1.50 ($1.20 for what was not cached at the start); budget $5.00",
        "the estimate rests on 1 unverified figure(s):",
        "  - Lambda prices are unverified",
        "report: out/runs/x/report.html",
    ]


def test_summary_of_partial_and_failed_runs_puts_errors_first() -> None:
    errors = [{"job": f"clip:v/{i:02d}", "error": "JobFailed", "message": f"boom {i}"} for i in range(7)]
    n = summarize(report_of("partial", errors=errors), report_location="s3://b/runs/x/report.html")
    lines = n.text.splitlines()
    assert lines[:3] == [f"{CAMPAIGN} run r1: partial", "errors (7):", "  clip:v/00: JobFailed: boom 0"]
    assert lines[7] == "  ... and 2 more in the report" and n.subject == f"campaign {CAMPAIGN}: partial, 7 error(s)"
    failed = summarize(report_of("failed", errors=errors[:1], cost={}, budget={}), report_location="r")
    assert failed.text.splitlines()[:3] == [f"{CAMPAIGN} run r1: failed", "errors (1):", "  clip:v/00: JobFailed: boom 0"]
    assert "cost: no cost estimate; budget none" in failed.text


def test_summary_of_a_run_awaiting_approval_says_what_to_review_and_how_to_answer() -> None:
    report = report_of("awaiting-approval", jobs={"total": 6, "executed": 3, "cached": 0, "failed": 0, "skipped": 0,
                                                  "pending": 3},
                       enhancements=[{"enhanced_prompt": "a"}, {"enhanced_prompt": "b"}],
                       images=[{"path": "images/x.png"}, {"path": None}],
                       approval={"remaining_usd": 0.75, "expires": "2026-12-01T00:00:00Z"})
    n = summarize(report, report_location="s3://b/r/report.html", actions=["approve: campaign approve x"])
    assert n.text.splitlines() == [
        f"{CAMPAIGN} run r1 awaits approval before rendering 3 job(s)",
        "review: 2 enhanced prompt(s) and 1 edited image(s) in the report",
        "waits until 2026-12-01T00:00:00Z, then ends as expired",
        "jobs: 6 (3 executed, 0 cached, 0 failed, 0 skipped, 3 pending)",
        "cost: remaining estimate $0.75; budget $5.00",
        "the estimate rests on 1 unverified figure(s):",
        "  - Lambda prices are unverified",
        "report: s3://b/r/report.html",
        "approve: campaign approve x",
    ]


def test_the_published_message_is_a_valid_sns_publish_request() -> None:
    """botocore validates the request against SNS's model (Stubber); the subject stays within its rules."""
    sns = boto3.client("sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    report = report_of("partial", campaign="ü" * 30 + "-launch", errors=[{"job": "j", "error": "E", "message": "m\nx"}])
    n = summarize(report, report_location="s3://b/report.html")
    topic = "arn:aws:sns:us-east-1:123456789012:campaign-runs"
    with Stubber(sns) as stub:
        stub.add_response("publish", {"MessageId": "m-1"}, {"TopicArn": topic, "Subject": n.subject, "Message": n.text})
        assert publish(sns, topic_arn=topic, notification=n) == "m-1"
        stub.assert_no_pending_responses()
    assert len(n.subject) < 100 and n.subject.isascii() and "\n" not in n.subject
