"""Tenants of one deployment, tried as an attacker would: a manifest reads assets only under its own folder, what
`campaign submit` uploaded for it and the stack's shared folders (never another team's folder, never the output
bucket's runs/ or cache/); a manifest may sit outside a team folder only where the stack allows it; schedules have
a floor; a scheduled run is held to its budget. The real ASL runs under moto with the real task handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, REGION, Cloud, cloud_for_tasks
from fake_aws.validate import model_checked
from moto import mock_aws
from test_cloud_starter import MANIFEST, Fakes, event, fakes  # noqa: F401 - `fakes` is a fixture
from test_spend_control import CAMPAIGN as GATED
from test_spend_control import write_campaign

from pipeline.cloud.events import ManifestSource, PlanEvent
from pipeline.cloud.plan_step import plan_run
from pipeline.cloud.settings import CloudSettings
from pipeline.cloud.tenancy import Tenancy, manifest_key_problem, shared_prefix_problem
from pipeline.manifest.schedule_expr import min_interval_s
from pipeline.storage.store import LocalStore
from tasks import starter

ROOT = Path(__file__).resolve().parents[1]
SOFA = ROOT / "manifests" / "assets" / "sofa.png"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)


def manifest(assets: dict[str, str], *, extra: str = "") -> str:
    lines = "\n".join(f"  {aid}: {loc}" for aid, loc in assets.items())
    first = next(iter(assets))
    return (f"campaign: team-a-launch\nassets:\n{lines}\nvideos:\n  - id: v\n    shots:\n"
            f"      - prompt: A sofa in a sunlit loft.\n        image: {first}\n{extra}")


# --- the done-when check: the real state machine refuses other tenants' files, located ------------------------


def test_another_teams_file_and_another_campaigns_outputs_are_refused_with_located_errors(cloud: Cloud) -> None:
    body = SOFA.read_bytes()
    cloud.s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/other-team/x.png", Body=body)
    cloud.s3.put_object(Bucket=OUTPUT_BUCKET, Key="runs/other-campaign/r1/images/y.png", Body=body)
    cloud.s3.put_object(Bucket=OUTPUT_BUCKET, Key="cache/images/0123abcd/image.png", Body=body)
    cloud.s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/team-a/own.png", Body=body)
    text = manifest({
        "own": "own.png",  # this one is fine: it sits in the manifest's own folder
        "theirs": "../other-team/x.png",
        "outputs": f"s3://{OUTPUT_BUCKET}/runs/other-campaign/r1/images/y.png",
        "cached": f"s3://{OUTPUT_BUCKET}/cache/images/0123abcd/image.png",
        "dotted": f"s3://{INPUT_BUCKET}/manifests/team-a/../other-team/x.png",
        "neighbour": f"s3://{INPUT_BUCKET}/manifests/team-ab/x.png",
        "backslash": "..\\other-team\\x.png",
    })
    cloud.s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/team-a/launch.yaml", Body=text.encode())
    run = cloud.run("manifests/team-a/launch.yaml", name="tenant-run")

    assert run.status == "FAILED" and run.described["error"] == "ManifestInvalid", run.described
    assert [name for name, _, _ in run.calls.calls] == ["campaign-plan"]  # no job read anything
    report = cloud.json("runs/team-a-launch/tenant-run/report.json")
    errors = {e["path"]: e for e in report["errors"]}
    where = {path: (e["line"], e["col"]) for path, e in errors.items()}
    assert where == {"assets.theirs": (4, 11), "assets.outputs": (5, 12), "assets.cached": (6, 11),
                     "assets.dotted": (7, 11), "assets.neighbour": (8, 14), "assets.backslash": (9, 14)}
    uri = f"s3://{INPUT_BUCKET}/manifests/team-a/launch.yaml"
    assert errors["assets.theirs"]["message"].startswith(f"{uri}:4:11: error: assets.theirs: asset '../other-team/x.png'")
    assert "outside this manifest's prefixes" in errors["assets.theirs"]["message"]
    assert "manifests/team-a/" in errors["assets.theirs"]["message"]
    for path in ("assets.outputs", "assets.cached"):
        assert f"is in bucket '{OUTPUT_BUCKET}'" in errors[path]["message"]
    assert "'.' or '..' part" in errors["assets.dotted"]["message"]
    assert "backslash" in errors["assets.backslash"]["message"]
    assert "outside this manifest's prefixes" in errors["assets.neighbour"]["message"]
    # nothing of theirs was copied into this run, and the cache holds only what was there
    assert sorted(cloud.keys("runs/team-a-launch/")) == [
        "runs/team-a-launch/latest.json", "runs/team-a-launch/tenant-run/report.html",
        "runs/team-a-launch/tenant-run/report.json"]
    assert cloud.keys("cache/") == ["cache/images/0123abcd/image.png"]


# --- the plan step on moto's S3: what a manifest may read -----------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws(), model_checked():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=INPUT_BUCKET)
        yield client


def plan(s3: Any, tmp_path: Path, key: str, text: str | None, **settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """plan_run on the manifest at `key` (written there unless `text` is None); the summary and the report
    (None when the plan is valid)."""
    if text is not None:
        s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=text.encode())
    cloud = CloudSettings(enhancer="passthrough", images="local", video="preview", clips_per_batch=8, **settings)
    out = tmp_path / "out"
    summary = plan_run(PlanEvent(ManifestSource(INPUT_BUCKET, key), run_id="r1", started=0.0), store=LocalStore(out),
                       s3=s3, settings=cloud, workdir=tmp_path / "w")
    reports = list(out.glob("runs/*/r1/report.json"))
    return summary, json.loads(reports[0].read_text()) if reports else {}


def test_own_folder_submitted_assets_and_shared_folders_are_readable(s3: Any, tmp_path: Path) -> None:
    body = SOFA.read_bytes()
    for key in ("manifests/team-a/sofa.png", "assets/team-a/launch/0a1b/sofa.png", "brand/logos/sofa.png"):
        s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=body)
    text = manifest({"own": "sofa.png", "submitted": f"s3://{INPUT_BUCKET}/assets/team-a/launch/0a1b/sofa.png",
                     "brand": f"s3://{INPUT_BUCKET}/brand/logos/sofa.png"})
    summary, _ = plan(s3, tmp_path, "manifests/team-a/launch.yaml", text, shared_asset_prefixes="brand/")
    assert summary["valid"] is True
    # without the stack sharing brand/, the same manifest is refused at that asset only
    summary, report = plan(s3, tmp_path / "2", "manifests/team-a/launch.yaml", None)
    assert summary["valid"] is False
    assert [(e["path"], e["line"]) for e in report["errors"]] == [("assets.brand", 5)]


def test_assets_submitted_for_another_manifest_are_refused(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=INPUT_BUCKET, Key="assets/team-a/launch-2/0a1b/sofa.png", Body=SOFA.read_bytes())
    text = manifest({"theirs": f"s3://{INPUT_BUCKET}/assets/team-a/launch-2/0a1b/sofa.png"})
    summary, report = plan(s3, tmp_path, "manifests/team-a/launch.yaml", text)
    assert summary["valid"] is False
    [error] = report["errors"]
    assert error["path"] == "assets.theirs" and "assets/team-a/launch/" in error["message"]


def test_a_stack_that_requires_team_folders_refuses_a_manifest_outside_one(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/sofa.png", Body=SOFA.read_bytes())
    text = manifest({"own": "sofa.png"})
    summary, report = plan(s3, tmp_path, "manifests/launch.yaml", text, require_team_prefix="true")
    assert summary["valid"] is False
    [error] = report["errors"]
    assert (error["line"], error["col"]) == (1, 1)
    assert "requires each manifest under a team folder, manifests/<team>/" in error["message"]
    # the same manifest is fine where the stack does not require team folders
    assert plan(s3, tmp_path / "2", "manifests/launch.yaml", None)[0]["valid"] is True


def test_a_run_never_starts_from_a_key_outside_manifests(s3: Any, tmp_path: Path) -> None:
    """StartExecution (the studio's role may call it) names any key: only manifests/*.yaml is planned."""
    for key in ("assets/team-b/launch/notes.yaml", "manifests/team-a/../../assets/x.yaml", "manifests/a.png"):
        summary, report = plan(s3, tmp_path / key.replace("/", "_"), key, None)  # refused before any read
        assert summary["valid"] is False, key
        assert "is not under manifests/" in report["errors"][0]["message"], key


def test_shared_prefixes_must_be_plain_folders_that_open_no_team() -> None:
    for bad in ("brand", "/brand/", "manifests/", "assets/", "s3://x/brand/", "brand/../manifests/", "a//"):
        assert shared_prefix_problem(bad), bad
    assert shared_prefix_problem("brand/logos/") is None
    with pytest.raises(ValueError, match="CAMPAIGN_SHARED_ASSET_PREFIXES"):
        CloudSettings(shared_asset_prefixes="manifests/").tenancy()
    assert manifest_key_problem("manifests/team-a/x.yaml", Tenancy(require_team_prefix=True)) is None


def test_the_stack_reads_and_checks_the_tenant_settings() -> None:
    cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
    import sys

    if str(ROOT) not in sys.path:  # infra/ lives at the repository root
        sys.path.insert(0, str(ROOT))
    from infra.settings import StackSettings

    node = cdk.App(context={"shared_asset_prefixes": "brand/, legal/", "require_team_prefix": "true",
                            "min_schedule_interval_s": "7200"}).node
    settings = StackSettings.from_context(node)
    assert settings.shared_asset_prefixes == ("brand/", "legal/") and settings.require_team_prefix is True
    assert settings.min_schedule_interval_s == 7200
    assert StackSettings.from_context(cdk.App().node).min_schedule_interval_s == 3600
    for context, match in (({"shared_asset_prefixes": "manifests/"}, "every team's files"),
                           ({"shared_asset_prefixes": "../x/"}, "must be a folder"),
                           ({"require_team_prefix": "maybe"}, "true or false"),
                           ({"min_schedule_interval_s": "0"}, "at least 1")):
        with pytest.raises(ValueError, match=match):
            StackSettings.from_context(cdk.App(context=context).node)


# --- schedules: a floor on how often, and each scheduled run within its budget --------------------------------


@pytest.mark.parametrize(("expr", "seconds"), [
    ("rate(1 minute)", 60), ("rate(59 minutes)", 3540), ("rate(1 hour)", 3600), ("rate(2 days)", 172800),
    ("cron(*/5 * * * ? *)", 300), ("cron(0,30 9 * * ? *)", 1800), ("cron(50 9-10 * * ? *)", 3600),
    ("cron(59 0,1 * * ? *)", 3600), ("cron(0-5 * * * ? *)", 60), ("cron(0 9 ? * MON-FRI *)", 86400),
    ("cron(0 */6 * * ? *)", 21600), ("cron(0 0,23 * * ? *)", 3600), ("at(2027-01-01T00:00:00)", None),
])
def test_the_shortest_interval_of_a_schedule(expr: str, seconds: int | None) -> None:
    assert min_interval_s(expr) == seconds


def test_a_schedule_under_the_floor_is_refused_located(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=INPUT_BUCKET, Key="manifests/team-a/sofa.png", Body=SOFA.read_bytes())
    fast = manifest({"own": "sofa.png"}, extra='schedule: "rate(1 minute)"\n')
    summary, report = plan(s3, tmp_path, "manifests/team-a/launch.yaml", fast)
    assert summary["valid"] is False
    [error] = report["errors"]
    assert (error["path"], error["line"], error["col"]) == ("schedule", 9, 11)
    assert "may start a run every 1 minute; this deployment allows at most one run every 1 hour" in error["message"]
    hourly = manifest({"own": "sofa.png"}, extra='schedule: "cron(0 * * * ? *)"\n')
    assert plan(s3, tmp_path / "2", "manifests/team-a/launch.yaml", hourly)[0]["valid"] is True
    # the stack's min_schedule_interval_s raises the floor: twice a day is now too often
    twice = manifest({"own": "sofa.png"}, extra='schedule: "cron(0 9,17 * * ? *)"\n')
    summary, report = plan(s3, tmp_path / "3", "manifests/team-a/launch.yaml", twice, min_schedule_interval_s=86400)
    assert summary["valid"] is False and "every 8 hours" in report["errors"][0]["message"]


def test_the_trigger_registers_no_schedule_under_the_floor(fakes: Fakes) -> None:  # noqa: F811
    key = "manifests/teaser.yaml"
    starter.handler(event("Object Created", fakes.put(key, MANIFEST + 'schedule: "rate(1 day)"\n')))
    assert fakes.schedule(key) is not None
    answer = starter.handler(event("Object Created", fakes.put(key, MANIFEST + 'schedule: "rate(5 minutes)"\n')))
    assert answer["action"] == "started"  # the run starts and reports the refusal itself
    assert answer["schedule"].startswith("refused: schedule 'rate(5 minutes)' may start a run every 5 minutes")
    assert fakes.schedule(key) is None  # and the day-long one it replaced no longer starts runs either


def test_a_scheduled_run_is_held_to_its_budget(cloud: Cloud, tmp_path: Path) -> None:
    """What EventBridge Scheduler starts (its Input: no version id, trigger `schedule`; pipeline/cloud/trigger.py)
    goes through the same budget check as any run: over budget, it ends at planning with no job started."""
    write_campaign(tmp_path / "c", extra='budget: {max_usd: 0.001}\nschedule: "rate(1 day)"\n')
    cloud.upload_folder(tmp_path / "c")
    run = cloud.start({"bucket": INPUT_BUCKET, "key": "manifests/gated.yaml", "campaign": GATED,
                       "trigger": "schedule"}, name="scheduled-run")
    assert run.status == "FAILED" and run.described["error"] == "OverBudget", run.described
    assert [name for name, _, _ in run.calls.calls] == ["campaign-plan"]
    report = cloud.json(f"runs/{GATED}/scheduled-run/report.json")
    assert report["budget"]["max_usd"] == 0.001 and report["budget"]["within"] is False
    assert cloud.keys("cache/") == []

