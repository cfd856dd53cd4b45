"""The S3 trigger (tasks/starter.py) on moto: one execution per manifest version, schedules kept in step with
the manifest; and `campaign submit` / `campaign status` against the same fakes."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fake_aws.validate import ModelCheck, model_checked
from moto import mock_aws

from pipeline.cli import main as cli_main
from pipeline.cloud import commands, names
from pipeline.cloud.contract import EXECUTION_NAME_MAX
from pipeline.errors import ManifestInvalid
from tasks import _runtime, starter

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "campaign-input"
GROUP = "campaign-schedules"
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/campaign-scheduler"
EXAMPLE_ASSETS = Path(__file__).resolve().parents[1] / "manifests" / "assets"

MANIFEST = textwrap.dedent("""\
    campaign: spring-teaser
    assets:
      sofa: assets/sofa.png
    videos:
      - id: teaser
        shots:
          - prompt: A sofa in a sunlit loft.
            image: sofa
    """)


class Fakes:
    def __init__(self, state_machine_arn: str, check: ModelCheck) -> None:
        self.check = check  # every request above was checked against its service model
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.scheduler = boto3.client("scheduler", region_name=REGION)
        self.state_machine_arn = state_machine_arn

    def put(self, key: str, text: str) -> dict[str, Any]:
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
        return {"key": key, "size": len(text), "etag": put["ETag"].strip('"'), "version-id": put["VersionId"],
                "sequencer": "0065A1B2C3D4E5F600"}

    def executions(self) -> list[dict[str, Any]]:
        return self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]

    def schedule(self, key: str) -> dict[str, Any] | None:
        try:
            return self.scheduler.get_schedule(Name=names.schedule_name(bucket=BUCKET, key=key), GroupName=GROUP)
        except self.scheduler.exceptions.ResourceNotFoundException:
            return None


def event(detail_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge event as S3 sends it (docs: AmazonS3/latest/userguide/ev-events)."""
    return {"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": detail_type,
            "source": "aws.s3", "account": ACCOUNT, "time": "2026-03-01T09:00:00Z", "region": REGION,
            "resources": [f"arn:aws:s3:::{BUCKET}"],
            "detail": {"version": "0", "bucket": {"name": BUCKET}, "object": obj, "request-id": "N4N7GDK58NMKJ12R",
                       "requester": ACCOUNT, "reason": "PutObject" if detail_type == "Object Created" else "DeleteObject"}}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "CAMPAIGN_SCHEDULER_ROLE_ARN": SCHEDULER_ROLE, "CAMPAIGN_SCHEDULE_GROUP": GROUP}.items():
        monkeypatch.setenv(name, value)
    # executions are recorded, not run: this is about starting them
    with mock_aws(), model_checked() as check:
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=GROUP)
        arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="campaign", roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
        monkeypatch.setenv("CAMPAIGN_STATE_MACHINE_ARN", arn)
        _runtime.reset()
        yield Fakes(arn, check)
    _runtime.reset()


def test_a_duplicate_event_starts_one_execution(fakes: Fakes) -> None:
    created = event("Object Created", fakes.put("manifests/spring.yaml", MANIFEST))
    first = starter.handler(created)
    again = starter.handler(json.loads(json.dumps(created)))  # EventBridge delivers at least once
    assert first["action"] == "started" and again["action"] == "duplicate"
    assert first["execution"] == again["execution"]
    [execution] = fakes.executions()
    assert execution["name"] == first["execution"]
    assert execution["name"].startswith("spring-teaser-") and len(execution["name"]) <= 80
    described = fakes.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"bucket": BUCKET, "key": "manifests/spring.yaml", "campaign": "spring-teaser",
                                              "version_id": created["detail"]["object"]["version-id"], "trigger": "s3"}


def test_a_new_version_of_the_manifest_starts_a_new_execution(fakes: Fakes) -> None:
    one = starter.handler(event("Object Created", fakes.put("manifests/spring.yaml", MANIFEST)))
    two = starter.handler(event("Object Created", fakes.put("manifests/spring.yaml", MANIFEST + "description: v2\n")))
    assert one["execution"] != two["execution"]
    assert len(fakes.executions()) == 2


def test_execution_names_are_deterministic_bounded_and_valid() -> None:
    long = "x" * 48
    name = names.execution_name(long, bucket="b", key="manifests/a.yaml", version="v1")
    assert name == names.execution_name(long, bucket="b", key="manifests/a.yaml", version="v1")
    assert len(name) <= EXECUTION_NAME_MAX
    assert name != names.execution_name(long, bucket="b", key="manifests/a.yaml", version="v2")
    assert names.execution_name("Spring Launch!", bucket="b", key="k", version='"etag"').startswith("spring-launch-")
    with pytest.raises(ValueError, match="version id or ETag"):
        names.execution_name("a", bucket="b", key="k", version="")


def test_a_manifest_with_a_schedule_registers_it_and_deleting_the_manifest_removes_it(fakes: Fakes) -> None:
    key = "manifests/weekly.yml"
    scheduled = MANIFEST + 'schedule: "cron(0 9 ? * MON *)"\n'
    answer = starter.handler(event("Object Created", fakes.put(key, scheduled)))
    assert answer["schedule"].startswith("created")
    schedule = fakes.schedule(key)
    assert schedule is not None and schedule["ScheduleExpression"] == "cron(0 9 ? * MON *)"
    target = schedule["Target"]
    assert target["Arn"] == fakes.state_machine_arn and target["RoleArn"] == SCHEDULER_ROLE
    assert json.loads(target["Input"]) == {"bucket": BUCKET, "key": key, "campaign": "spring-teaser", "trigger": "schedule"}

    # a new version with another expression updates it; one without `schedule:` removes it
    starter.handler(event("Object Created", fakes.put(key, MANIFEST + 'schedule: "rate(1 day)"\n')))
    assert fakes.schedule(key)["ScheduleExpression"] == "rate(1 day)"  # type: ignore[index]
    starter.handler(event("Object Created", fakes.put(key, MANIFEST)))
    assert fakes.schedule(key) is None

    starter.handler(event("Object Created", fakes.put(key, scheduled)))
    assert fakes.schedule(key) is not None
    fakes.s3.delete_object(Bucket=BUCKET, Key=key)
    deleted = starter.handler(event("Object Deleted", {"key": key, "sequencer": "0065A1B2C3D4E5F700"}))
    assert deleted["schedule"].startswith("deleted")
    assert fakes.schedule(key) is None
    # deleting again (a re-delivered event) is not an error
    assert starter.handler(event("Object Deleted", {"key": key}))["schedule"] == "none"


def test_an_invalid_manifest_still_starts_its_run_but_leaves_schedules_alone(fakes: Fakes) -> None:
    key = "manifests/weekly.yaml"
    starter.handler(event("Object Created", fakes.put(key, MANIFEST + 'schedule: "rate(1 day)"\n')))
    broken = MANIFEST.replace("image: sofa", "image: sofa-typo") + 'schedule: "rate(1 day)"\n'
    answer = starter.handler(event("Object Created", fakes.put(key, broken)))
    assert answer["action"] == "started"  # the run writes the validation problems as its report
    assert answer["schedule"] == "unchanged (manifest invalid)"
    assert fakes.schedule(key) is not None


def test_objects_that_are_not_manifests_are_ignored(fakes: Fakes) -> None:
    answer = starter.handler(event("Object Created", {"key": "manifests/assets/sofa.png", "etag": "abc"}))
    assert answer["action"] == "ignored"
    assert fakes.executions() == []


def test_submit_uploads_assets_rewrites_their_paths_and_names_the_execution_like_the_trigger(
        fakes: Fakes, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE_ASSETS, tmp_path / "assets")
    manifest = tmp_path / "spring.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    out = commands.submit(manifest, bucket=BUCKET, state_machine_arn=fakes.state_machine_arn, s3=fakes.s3)
    assert out["manifest"] == f"s3://{BUCKET}/manifests/spring-teaser.yaml"
    assert out["assets_uploaded"] == "1 of 1"
    uploaded = fakes.s3.get_object(Bucket=BUCKET, Key="manifests/spring-teaser.yaml")
    text = uploaded["Body"].read().decode()
    [address] = [line.split(": ", 1)[1] for line in text.splitlines() if line.strip().startswith("sofa:")]
    assert address.startswith(f"s3://{BUCKET}/assets/spring-teaser/") and address.endswith("/sofa.png")
    # the uploaded manifest is valid as it stands (its asset now lives in S3)
    from pipeline.manifest.campaign import load_manifest_text

    assert load_manifest_text(text, file="uploaded.yaml", base_dir=tmp_path, check_files=True).name == "spring-teaser"
    # the trigger, seeing this upload, names its execution exactly as submit said
    obj = {"key": "manifests/spring-teaser.yaml", "etag": uploaded["ETag"].strip('"'), "version-id": uploaded["VersionId"]}
    assert starter.handler(event("Object Created", obj))["execution"] == out["execution_name"]
    assert out["console_url"].startswith(f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/")
    assert out["console_url"].endswith(f":execution:campaign:{out['execution_name']}")
    # unchanged assets are not sent again
    assert commands.submit(manifest, bucket=BUCKET, s3=fakes.s3)["assets_uploaded"] == "0 of 1"


def test_submit_refuses_an_invalid_manifest_before_uploading_anything(fakes: Fakes, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")  # its asset file is missing
    with pytest.raises(ManifestInvalid, match="sofa.png"):
        commands.submit(manifest, bucket=BUCKET, s3=fakes.s3)
    assert fakes.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_an_url_encoded_key_in_the_event_is_decoded(fakes: Fakes) -> None:
    obj = fakes.put("manifests/red flower.yaml", MANIFEST)
    answer = starter.handler(event("Object Created", {**obj, "key": "manifests/red+flower.yaml"}))
    assert answer["action"] == "started" and answer["key"] == "manifests/red flower.yaml"
    [execution] = fakes.executions()
    described = fakes.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["key"] == "manifests/red flower.yaml"


def _linked_campaign(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest whose assets/sofa.png is a symbolic link to a file outside its folder, named without an
    extension (as /etc/passwd is)."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / "secret"
    shutil.copyfile(EXAMPLE_ASSETS / "sofa.png", target)
    folder = tmp_path / "campaign"
    (folder / "assets").mkdir(parents=True)
    (folder / "assets" / "sofa.png").symlink_to(target)
    manifest = folder / "spring.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    return manifest, outside


def test_submit_refuses_an_asset_linked_outside_the_manifest_folder(fakes: Fakes, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    manifest, outside = _linked_campaign(tmp_path)
    with pytest.raises(ManifestInvalid, match=r"assets.sofa: asset file 'assets/sofa.png' resolves to .*/elsewhere/secret, "
                                              r"outside the manifest's folder"):
        commands.submit(manifest, bucket=BUCKET, s3=fakes.s3)
    assert fakes.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0  # nothing was uploaded
    assert cli_main(["validate", str(manifest)]) == 2  # validate says the same, located
    assert f"{manifest}:3:9: error: assets.sofa:" in capsys.readouterr().out


def test_submit_with_allow_outside_uploads_under_the_name_written_in_the_manifest(fakes: Fakes, tmp_path: Path) -> None:
    manifest, outside = _linked_campaign(tmp_path)
    assert cli_main(["validate", str(manifest), "--allow-outside", str(outside)]) == 0
    out = commands.submit(manifest, bucket=BUCKET, s3=fakes.s3, allow_outside=[outside])
    assert out["assets_uploaded"] == "1 of 1"
    [key] = [o["Key"] for o in fakes.s3.list_objects_v2(Bucket=BUCKET, Prefix="assets/")["Contents"]]
    assert key.endswith("/sofa.png") and "secret" not in key  # the link's name, not its target's
    body = fakes.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == (EXAMPLE_ASSETS / "sofa.png").read_bytes()


# --- S3's documented event contract (AmazonS3/latest/userguide/EventBridge.html, ev-events.html) -----------------


def deleted(key: str, *, deletion_type: str, reason: str, version_id: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "sequencer": "0065A1B2C3D4E5F800"}
    if version_id:
        obj["version-id"] = version_id
    e = event("Object Deleted", obj)
    e["detail"].update({"reason": reason, "deletion-type": deletion_type})
    return e


SCHEDULED = MANIFEST + 'schedule: "cron(0 9 ? * MON *)"\n'


def test_a_lifecycle_expiration_of_an_old_version_keeps_the_live_schedule(fakes: Fakes) -> None:
    key = "manifests/weekly.yaml"
    old = fakes.put(key, SCHEDULED)
    starter.handler(event("Object Created", old))
    starter.handler(event("Object Created", fakes.put(key, SCHEDULED + "description: v2\n")))
    assert fakes.schedule(key) is not None
    # 90 days later the input bucket's lifecycle rule expires the noncurrent first version
    fakes.s3.delete_object(Bucket=BUCKET, Key=key, VersionId=old["version-id"])
    answer = starter.handler(deleted(key, deletion_type="Permanently Deleted", reason="Lifecycle Expiration",
                                     version_id=old["version-id"]))
    assert answer["action"] == "ignored"
    assert fakes.schedule(key) is not None
    # even if such an event got past the rule's filter with another reason, the current object keeps it
    answer = starter.handler(deleted(key, deletion_type="Permanently Deleted", reason="DeleteObject",
                                     version_id=old["version-id"]))
    assert answer["schedule"].startswith("kept ") and fakes.schedule(key) is not None


def test_a_delete_marker_removes_the_schedule_unless_a_newer_upload_is_current(fakes: Fakes) -> None:
    key = "manifests/weekly.yaml"
    starter.handler(event("Object Created", fakes.put(key, SCHEDULED)))
    fakes.s3.delete_object(Bucket=BUCKET, Key=key)  # a delete marker becomes current
    newer = fakes.put(key, SCHEDULED)  # ... and the manifest is uploaded again before the event is handled
    answer = starter.handler(deleted(key, deletion_type="Delete Marker Created", reason="DeleteObject"))
    assert answer["schedule"].startswith("kept ") and fakes.schedule(key) is not None
    starter.handler(event("Object Created", newer))
    fakes.s3.delete_object(Bucket=BUCKET, Key=key)
    answer = starter.handler(deleted(key, deletion_type="Delete Marker Created", reason="DeleteObject"))
    assert answer["schedule"].startswith("deleted ") and fakes.schedule(key) is None


def test_two_quick_uploads_handled_out_of_order_leave_the_newest_versions_schedule(fakes: Fakes) -> None:
    key = "manifests/weekly.yaml"
    first = fakes.put(key, MANIFEST + 'schedule: "rate(1 day)"\n')
    second = fakes.put(key, MANIFEST + 'schedule: "rate(7 days)"\n')
    newest = starter.handler(event("Object Created", second))
    stale = starter.handler(event("Object Created", first))  # EventBridge does not promise order
    assert newest["schedule"].startswith("created") and stale["schedule"].startswith("unchanged (current version")
    assert fakes.schedule(key)["ScheduleExpression"] == "rate(7 days)"  # type: ignore[index]
    assert stale["action"] == "started" and len(fakes.executions()) == 2  # one run per version, as ever


def test_create_and_delete_decode_an_url_encoded_key_the_same_way(fakes: Fakes) -> None:
    stored = "manifests/red flower.yaml"
    created = starter.handler(event("Object Created", {**fakes.put(stored, SCHEDULED), "key": "manifests/red+flower.yaml"}))
    assert created["key"] == stored and fakes.schedule(stored) is not None
    fakes.s3.delete_object(Bucket=BUCKET, Key=stored)
    answer = starter.handler(deleted("manifests/red+flower.yaml", deletion_type="Delete Marker Created",
                                     reason="DeleteObject"))
    assert fakes.schedule(stored) is None, answer


def test_manifest_keys_are_case_sensitive_like_the_rule(fakes: Fakes) -> None:
    for key in ("manifests/x.YAML", "manifests/x.Yml"):
        assert not names.is_manifest_key(key)
        assert starter.handler(event("Object Created", fakes.put(key, MANIFEST)))["action"] == "ignored"
    assert names.is_manifest_key("manifests/x.yaml") and names.is_manifest_key("manifests/a/b.yml")
    assert fakes.executions() == []


def test_a_failure_is_raised_for_lambdas_retries_and_on_failure_destination(fakes: Fakes) -> None:
    """The starter does not swallow errors: Lambda retries an async event twice, then sends it with its
    record to the on-failure destination (infra/triggers.py); swallowing would lose the event."""
    with pytest.raises(Exception, match="NoSuchKey|NoSuchVersion|404"):
        starter.handler(event("Object Created", {"key": "manifests/gone.yaml", "etag": "abc", "version-id": "v1"}))


def test_every_request_the_starter_makes_is_checked_against_the_service_model(fakes: Fakes) -> None:
    key = "manifests/weekly.yml"
    starter.handler(event("Object Created", fakes.put(key, SCHEDULED)))
    starter.handler(event("Object Created", fakes.put(key, MANIFEST + 'schedule: "rate(1 day)"\n')))
    fakes.s3.delete_object(Bucket=BUCKET, Key=key)
    starter.handler(deleted(key, deletion_type="Delete Marker Created", reason="DeleteObject"))
    assert {"CreateSchedule", "UpdateSchedule", "DeleteSchedule"} <= fakes.check.operations("scheduler")
    assert {"StartExecution", "DescribeExecution"} <= fakes.check.operations("stepfunctions")
    assert {"GetObject", "HeadObject"} <= fakes.check.operations("s3")
    assert fakes.check.violations == []
