"""Review of a cloud run, under moto through the real ASL: `campaign review --bucket` records approve / reject in the
output bucket and rewrites the run's report there; `--regenerate --bucket` starts one execution that makes only the
clip and its video (counted from the new run's jobs and its processing jobs) and records what it replaced;
`campaign export --to s3://...` delivers only approved files. Every AWS request is checked against botocore's
service model; names that try to leave their prefix, and another team's request, change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, Cloud, cloud_for_tasks, handlers
from fake_aws.container import preview_container
from fake_aws.stepfunctions import route_lambdas, route_sagemaker, wait_for
from fake_aws.validate import model_checked
from small_campaign import write_small_campaign

from pipeline.cli import main
from pipeline.cloud import commands
from pipeline.errors import ReviewRefused
from pipeline.plan.overrides import Override
from pipeline.review.decisions import for_run, new_decision, read_decisions, write_decision
from pipeline.storage.store import S3Store

CAMPAIGN = "cloud-review"
FIRST = "20261207T100000Z-first"  # the execution's name is the run's id
KEY = "manifests/team-a/campaign.yaml"
OTHER_TEAM = f"s3://{INPUT_BUCKET}/manifests/team-b/campaign.yaml"  # the same campaign name, another team's manifest
EXPORT_BUCKET = "delivery-bucket"


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One cloud run of the small campaign (an image, one video of two clips); its first clip rejected with a note,
    then regenerated with seed 11 from the command line: the second execution."""
    with pytest.MonkeyPatch.context() as mp:
        cloud_gen = cloud_for_tasks(mp)
        cloud = next(cloud_gen)
        try:
            yield _review_once(cloud, tmp_path_factory.mktemp("cloud-review"))
        finally:
            next(cloud_gen, None)


def _review_once(cloud: Cloud, base: Path) -> dict[str, Any]:
    folder = base / "team-a"
    write_small_campaign(folder, name=CAMPAIGN)
    cloud.upload_folder(folder, prefix="manifests/team-a/")
    first = cloud.run(KEY, name=FIRST)
    assert first.status == "SUCCEEDED" and first.output["status"] == "succeeded", first.described
    arn = cloud.state_machine_arn
    assert main(["review", CAMPAIGN, "clip:intro/01", "--reject", "--note", "too <b>dark</b>", "--bucket",
                 OUTPUT_BUCKET]) == 0
    # another team's request for the same campaign name and item: kept, never applied to team A's manifest
    write_decision(S3Store(OUTPUT_BUCKET, client=cloud.s3), new_decision(
        campaign=CAMPAIGN, item="clip:intro/01", action="regenerate", run_id=FIRST, key=None, by="team-b", seed=99,
        manifest=OTHER_TEAM))
    with ExitStack() as routes, model_checked() as check:
        calls = routes.enter_context(route_lambdas(handlers()))
        rendered: list[str] = []  # the batch of each processing job, as the container received it
        container = preview_container(cloud.s3)
        routes.enter_context(route_sagemaker(lambda req: rendered.append(req["Environment"]["CAMPAIGN_BATCH"])
                                             or container(req)))
        assert main(["review", CAMPAIGN, "clip:intro/01", "--regenerate", "--seed", "11", "--note", "again",
                     "--bucket", OUTPUT_BUCKET, "--state-machine-arn", arn]) == 0
        [started] = [e for e in cloud.sfn.list_executions(stateMachineArn=arn)["executions"] if e["name"] != FIRST]
        described = wait_for(cloud.sfn, started["executionArn"], timeout_s=90.0)
    assert described["status"] == "SUCCEEDED", described
    return {"cloud": cloud, "second": started["name"], "calls": calls, "check": check, "rendered": rendered,
            "input": json.loads(described["input"])}


def _report(cloud: Cloud, run_id: str) -> dict[str, Any]:
    return cloud.json(f"runs/{CAMPAIGN}/{run_id}/report.json")


def test_a_cloud_regenerate_makes_only_the_clip_and_its_video_and_records_what_it_replaced(
        reviewed: dict[str, Any]) -> None:
    cloud, second = reviewed["cloud"], reviewed["second"]
    assert reviewed["input"] == {"bucket": INPUT_BUCKET, "key": KEY, "campaign": CAMPAIGN, "trigger": "review",
                                 "version_id": cloud.json(f"runs/{CAMPAIGN}/{FIRST}/plan.json")["source"]["version_id"]}
    report = _report(cloud, second)
    assert report["status"] == "succeeded"
    made = {r["job"] for r in report["job_results"] if r["status"] == "executed"}
    assert made == {"clip:intro/01", "video:intro"}  # nothing else: the image, the other clip, the prompts cached
    assert report["jobs"]["cached"] == report["jobs"]["total"] - 2
    # one processing job, for that clip alone (the other clip's batch was prepared, found cached, not rendered)
    prepared = {e["batch"]: tuple(e["jobs"]) for _, e, _ in reviewed["calls"].named("campaign-prepare-batch")}
    [batch] = reviewed["rendered"]
    assert prepared[batch] == ("clip:intro/01",)
    clip = report["videos"][0]["clips"][0]
    assert clip["seed"] == 11  # ours; team B's seed 99 for its own manifest of that name is not applied
    old, new = clip["review"]["versions"]
    assert (old["run_id"], old["current"], new["run_id"], new["current"]) == (FIRST, False, second, True)
    assert [(d["decision"], d["note"]) for d in old["decisions"]] == [("reject", "too <b>dark</b>"), ("regenerate", "again")]
    [replaced] = report["review"]["replaces"]
    assert (replaced["item"], replaced["run_id"], replaced["asked"]) == ("clip:intro/01", FIRST, {"seed": 11})
    assert "This run replaces" in cloud.bytes(f"runs/{CAMPAIGN}/{second}/report.html").decode()
    # the decisions are records in the output bucket; the regenerate names team A's manifest
    decisions = read_decisions(S3Store(OUTPUT_BUCKET, client=cloud.s3), CAMPAIGN)
    ours = f"s3://{INPUT_BUCKET}/{KEY}"
    assert [(d.action, d.manifest) for d in decisions] == [("reject", ours), ("regenerate", OTHER_TEAM),
                                                           ("regenerate", ours)]
    # every request of the command and of the execution it started was checked against the service models
    check = reviewed["check"]
    assert {"StartExecution"} <= check.operations("stepfunctions")
    assert {"GetObject", "PutObject", "ListObjectsV2"} <= check.operations("s3")


def test_approve_in_the_bucket_then_export_to_s3_holds_only_approved_files(reviewed: dict[str, Any],
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cloud, second = reviewed["cloud"], reviewed["second"]
    cloud.s3.create_bucket(Bucket=EXPORT_BUCKET)
    with model_checked() as check:
        assert main(["review", CAMPAIGN, "video:intro", "--approve", "--note", "ship it", "--bucket", OUTPUT_BUCKET]) == 0
        assert _report(cloud, second)["videos"][0]["review"]["status"] == "approved"  # rewritten in the bucket
        to = f"s3://{EXPORT_BUCKET}/deliveries/{CAMPAIGN}"
        assert main(["export", CAMPAIGN, "--bucket", OUTPUT_BUCKET, "--to", to]) == 0
    assert {"PutObject", "GetObject"} <= check.operations("s3")
    listed = cloud.s3.list_objects_v2(Bucket=EXPORT_BUCKET)["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert keys == [f"deliveries/{CAMPAIGN}/export.json", f"deliveries/{CAMPAIGN}/videos/intro.mp4"]  # not the image
    manifest = json.loads(cloud.s3.get_object(Bucket=EXPORT_BUCKET, Key=keys[0])["Body"].read())
    assert manifest["run_id"] == second and [f["item"] for f in manifest["files"]] == ["video:intro"]
    assert {x["item"]: x["state"] for x in manifest["left_out"]} == {"image:sofa-big": "unreviewed"}
    exported = cloud.s3.get_object(Bucket=EXPORT_BUCKET, Key=keys[1])["Body"].read()
    assert exported == cloud.bytes(f"runs/{CAMPAIGN}/{second}/videos/intro.mp4")

    # rejected now: the next export removes the file it wrote, and keeps export.json saying so
    assert main(["review", CAMPAIGN, "video:intro", "--reject", "--bucket", OUTPUT_BUCKET]) == 0
    capsys.readouterr()
    assert main(["export", CAMPAIGN, "--bucket", OUTPUT_BUCKET, "--to", to]) == 0
    assert "removed videos/intro.mp4" in capsys.readouterr().out
    assert [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=EXPORT_BUCKET)["Contents"]] == [keys[0]]


@pytest.mark.parametrize(("argv", "said"), [
    (["../cloud-review", "clip:intro/01", "--approve"], "is not a campaign name"),
    ([CAMPAIGN, "clip:../../reviews/x", "--approve"], "is not an item of a report"),
    ([CAMPAIGN, "clip:intro/01", "--approve", "--run", "../other-team"], "is not a run id"),
    ([CAMPAIGN, "clip:intro/01", "--approve", "--run", "20990101T000000Z-none"], "no run"),
    ([CAMPAIGN, "clip:intro/02", "--regenerate", "--seed", "-1", "--state-machine-arn", "x"], "--seed must be"),
])
def test_names_that_leave_their_prefix_are_one_line_and_record_nothing(reviewed: dict[str, Any], argv: list[str],
                                                                        said: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cloud = reviewed["cloud"]
    before = sorted(_all_keys(cloud))
    with model_checked():
        assert main(["review", *argv, "--bucket", OUTPUT_BUCKET]) == 1
    err = capsys.readouterr().err.strip()
    assert said in err and err.count("\n") == 0 and "Traceback" not in err, err
    assert sorted(_all_keys(cloud)) == before


@pytest.mark.parametrize("to", ["s3://delivery-bucket/a/../../x", "s3://delivery-bucket/a//b", "s3:///x",
                                "s3://Not_A_Bucket/x"])
def test_an_export_prefix_that_is_not_plain_is_refused_before_any_write(reviewed: dict[str, Any], to: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", CAMPAIGN, "--bucket", OUTPUT_BUCKET, "--to", to]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--to" in err and "Traceback" not in err, err


def test_a_run_planned_from_outside_manifests_is_not_regenerated(reviewed: dict[str, Any]) -> None:
    """A run document naming a manifest elsewhere (another bucket's runs/, a crafted plan.json) starts nothing."""
    cloud = reviewed["cloud"]
    forged = f"runs/{CAMPAIGN}/20261207T120000Z-forged"
    cloud.s3.put_object(Bucket=OUTPUT_BUCKET, Key=f"{forged}/report.json",
                        Body=cloud.bytes(f"runs/{CAMPAIGN}/{FIRST}/report.json"))
    cloud.s3.put_object(Bucket=OUTPUT_BUCKET, Key=f"{forged}/plan.json", Body=json.dumps(
        {"source": {"bucket": OUTPUT_BUCKET, "key": f"runs/{CAMPAIGN}/{FIRST}/../../x.yaml"}}).encode())
    before = len(read_decisions(S3Store(OUTPUT_BUCKET, client=cloud.s3), CAMPAIGN))
    with pytest.raises(ReviewRefused, match="not planned from a manifest a run may start from"):
        commands.regenerate(output_bucket=OUTPUT_BUCKET, campaign=CAMPAIGN, item="clip:intro/02",
                            run_id="20261207T120000Z-forged", override=Override("clip:intro/02", 5), note="", by="x",
                            state_machine_arn=cloud.state_machine_arn, s3=cloud.s3, sfn=cloud.sfn)
    assert len(read_decisions(S3Store(OUTPUT_BUCKET, client=cloud.s3), CAMPAIGN)) == before
    assert len(cloud.sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]) == 2


def _all_keys(cloud: Cloud) -> list[str]:
    return [k for k in cloud.keys("")]


def test_another_teams_approval_of_the_same_campaign_and_content_counts_for_nothing(
        reviewed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Team B (its own manifest of the same campaign name, identical content, so identical content keys) plants
    approvals of team A's image in the shared output bucket: as B's own `review --approve` records them (naming
    B's manifest), and crafted ones (no manifest, A's key reached through B's folder, A's key in another bucket).
    A's report keeps the image unreviewed and A's export leaves it out; A's own approval then counts."""
    cloud, second = reviewed["cloud"], reviewed["second"]
    store = S3Store(OUTPUT_BUCKET, client=cloud.s3)
    [image] = _report(cloud, second)["images"]
    assert image["job"] == "image:sofa-big" and image["review"]["status"] == "unreviewed"
    ours = f"s3://{INPUT_BUCKET}/{KEY}"
    planted = [OTHER_TEAM, "", f"s3://{INPUT_BUCKET}/manifests/team-b/../team-a/campaign.yaml",
               f"s3://{EXPORT_BUCKET}/{KEY}"]
    to = f"s3://{EXPORT_BUCKET}/team-a/{CAMPAIGN}"
    if EXPORT_BUCKET not in _buckets(cloud):  # made by the export test when it ran first
        cloud.s3.create_bucket(Bucket=EXPORT_BUCKET)
    with model_checked() as check:
        for manifest in planted:
            write_decision(store, new_decision(campaign=CAMPAIGN, item="image:sofa-big", action="approve",
                                               run_id=second, key=image["key"], by="team-b", note="planted",
                                               manifest=manifest))
        # any later review by A rewrites A's report from the decisions stored now
        assert main(["review", CAMPAIGN, "clip:intro/02", "--reject", "--note", "a", "--bucket", OUTPUT_BUCKET]) == 0
        shown = _report(cloud, second)["images"][0]["review"]
        assert shown["status"] == "unreviewed" and shown["versions"][0]["decisions"] == []
        assert "planted" not in cloud.bytes(f"runs/{CAMPAIGN}/{second}/report.html").decode()
        assert main(["export", CAMPAIGN, "--bucket", OUTPUT_BUCKET, "--to", to]) == 0
        exported = _exported(cloud, f"team-a/{CAMPAIGN}/export.json")
        assert "image:sofa-big" not in [f["item"] for f in exported["files"]]
        assert {x["item"]: x["state"] for x in exported["left_out"]}["image:sofa-big"] == "unreviewed"
        assert f"team-a/{CAMPAIGN}/images/sofa-big.png" not in _export_keys(cloud)

        # A's own approval (the CLI records A's manifest) counts, in the report and in the export
        assert main(["review", CAMPAIGN, "image:sofa-big", "--approve", "--note", "ours", "--bucket",
                     OUTPUT_BUCKET]) == 0
        shown = _report(cloud, second)["images"][0]["review"]
        assert (shown["status"], shown["note"]) == ("approved", "ours")
        assert [d["note"] for d in shown["versions"][0]["decisions"]] == ["ours"]
        capsys.readouterr()
        assert main(["export", CAMPAIGN, "--bucket", OUTPUT_BUCKET, "--to", to]) == 0
    exported = _exported(cloud, f"team-a/{CAMPAIGN}/export.json")
    [mine] = [f for f in exported["files"] if f["item"] == "image:sofa-big"]
    assert (mine["approved_by"], mine["note"]) != ("team-b", "planted") and mine["note"] == "ours"
    path = f"team-a/{CAMPAIGN}/{mine['path']}"
    assert path in _export_keys(cloud)
    assert cloud.s3.get_object(Bucket=EXPORT_BUCKET, Key=path)["Body"].read() == cloud.bytes(
        f"runs/{CAMPAIGN}/{second}/{mine['path']}")
    assert [d.manifest for d in read_decisions(store, CAMPAIGN) if d.item == "image:sofa-big"] == [*planted, ours]
    assert {"GetObject", "PutObject", "ListObjectsV2"} <= check.operations("s3")


def _buckets(cloud: Cloud) -> list[str]:
    return [b["Name"] for b in cloud.s3.list_buckets()["Buckets"]]


def _export_keys(cloud: Cloud) -> list[str]:
    return [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=EXPORT_BUCKET).get("Contents", [])]


def _exported(cloud: Cloud, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cloud.s3.get_object(Bucket=EXPORT_BUCKET, Key=key)["Body"].read())
    return doc


def test_a_local_folder_counts_every_decision_a_cloud_run_only_its_manifests() -> None:
    """Unit level: a local output folder has one owner (its approvals record no manifest), so all count there."""
    def approve(manifest: str) -> Any:
        return new_decision(campaign=CAMPAIGN, item="image:x", action="approve", run_id=FIRST, key="k", by="u",
                            manifest=manifest)

    ours = f"s3://{INPUT_BUCKET}/{KEY}"
    local, theirs, mine = approve(""), approve(OTHER_TEAM), approve(ours)
    assert for_run([local, theirs, mine], "/home/u/campaign.yaml") == [local, theirs, mine]
    assert for_run([local, theirs, mine], ours) == [mine]
    assert for_run([local, theirs], ours) == []
