"""`campaign submit` between teams, on moto with two real IAM identities: it never replaces a manifest someone
else wrote (another team's campaign name) unless told --replace, writes conditionally so a write in between is
not lost, and with --team puts the manifest and its assets in the team's folders, which the plan step accepts."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fake_aws.validate import model_checked
from moto import mock_aws

from pipeline.cli import main as cli_main
from pipeline.cloud import commands
from pipeline.cloud.events import ManifestSource, PlanEvent
from pipeline.cloud.plan_step import plan_run
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import SubmitRefused
from pipeline.storage.store import LocalStore

REGION = "us-east-1"
BUCKET = "campaign-input"
KEY = "manifests/spring-teaser.yaml"
EXAMPLE_ASSETS = Path(__file__).resolve().parents[1] / "manifests" / "assets"


class Identity:
    """An IAM user of the mocked account and its S3 / STS clients (moto answers GetCallerIdentity by key)."""

    def __init__(self, name: str) -> None:
        iam = boto3.client("iam", region_name=REGION)
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        creds = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"],
                 "region_name": REGION}
        self.s3 = boto3.client("s3", **creds)
        self.sts = boto3.client("sts", **creds)
        self.arn = self.sts.get_caller_identity()["Arn"]

    def submit(self, manifest: Path, **kwargs: Any) -> dict[str, str]:
        return commands.submit(manifest, bucket=BUCKET, s3=self.s3, sts=self.sts, **kwargs)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(), model_checked():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield s3


def write_manifest(folder: Path, prompt: str = "A sofa in a sunlit loft.") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE_ASSETS / "sofa.png", folder / "sofa.png")
    path = folder / "teaser.yaml"
    path.write_text(textwrap.dedent(f"""\
        campaign: spring-teaser
        assets:
          sofa: sofa.png
        videos:
          - id: teaser
            shots:
              - prompt: {prompt}
                image: sofa
        """), encoding="utf-8")
    return path


def versions(s3: Any, key: str = KEY) -> list[str]:
    return [v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])]


def text_of(s3: Any, key: str = KEY) -> str:
    return str(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def test_submit_refuses_to_replace_another_identitys_manifest_unless_told(aws: Any, tmp_path: Path) -> None:
    alice, bob = Identity("alice"), Identity("bob")
    alice.submit(write_manifest(tmp_path / "a", "Alice's sofa."))
    head = aws.head_object(Bucket=BUCKET, Key=KEY)
    assert head["Metadata"] == {commands.WRITER_METADATA: alice.arn}
    before = versions(aws)

    with pytest.raises(SubmitRefused) as refused:
        bob.submit(write_manifest(tmp_path / "b", "Bob's sofa."))
    message = str(refused.value)
    assert f"s3://{BUCKET}/{KEY} was written by '{alice.arn}', not by you ({bob.arn})" in message
    assert "--replace" in message and "\n" not in message
    assert versions(aws) == before and "Alice's sofa." in text_of(aws)  # untouched

    alice.submit(write_manifest(tmp_path / "a", "Alice's sofa, again."))  # its writer may replace it
    assert "Alice's sofa, again." in text_of(aws)

    bob.submit(write_manifest(tmp_path / "b", "Bob's sofa."), replace=True)
    assert "Bob's sofa." in text_of(aws)
    assert aws.head_object(Bucket=BUCKET, Key=KEY)["Metadata"] == {commands.WRITER_METADATA: bob.arn}
    with pytest.raises(SubmitRefused):  # and now it is Bob's
        alice.submit(write_manifest(tmp_path / "a"))


def test_a_manifest_dropped_into_the_bucket_by_hand_is_not_replaced(aws: Any, tmp_path: Path) -> None:
    aws.put_object(Bucket=BUCKET, Key=KEY, Body=b"campaign: spring-teaser\n")
    with pytest.raises(SubmitRefused, match="written by someone else \\(not campaign submit\\)"):
        Identity("carol").submit(write_manifest(tmp_path))
    assert text_of(aws) == "campaign: spring-teaser\n"
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="assets/").get("KeyCount") == 0  # refused before any upload


def test_a_write_between_the_check_and_the_upload_is_not_overwritten(aws: Any, tmp_path: Path) -> None:
    """The race the conditional write closes: someone writes the key after submit looked (If-None-Match: *)."""
    dave, erin = Identity("dave"), Identity("erin")

    def erin_first(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == KEY and not versions(aws):  # once, just before dave's manifest goes up
            erin.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"campaign: spring-teaser\n# erin's\n")

    dave.s3.meta.events.register_first("before-parameter-build.s3.PutObject", erin_first)
    with pytest.raises(SubmitRefused, match="changed while this submit ran"):
        dave.submit(write_manifest(tmp_path))
    assert text_of(aws).endswith("# erin's\n") and len(versions(aws)) == 1


def test_one_role_is_one_writer_whatever_its_session() -> None:
    a = "arn:aws:sts::123456789012:assumed-role/team-a/alice@example.com"
    b = "arn:aws:sts::123456789012:assumed-role/team-a/ci-4711"
    c = "arn:aws:sts::123456789012:assumed-role/team-b/alice@example.com"
    assert commands.writer_principal(a) == commands.writer_principal(b) == "arn:aws:iam::123456789012:role/team-a"
    assert commands.writer_principal(c) != commands.writer_principal(a)
    assert commands.writer_principal("arn:aws:iam::123456789012:user/bob") == "arn:aws:iam::123456789012:user/bob"


def test_the_cli_refuses_in_one_line_and_exits_non_zero(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    aws.put_object(Bucket=BUCKET, Key=KEY, Body=b"campaign: spring-teaser\n")
    code = cli_main(["submit", str(write_manifest(tmp_path)), "--bucket", BUCKET])
    captured = capsys.readouterr()
    assert code != 0 and "Traceback" not in captured.err
    [line] = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert "was written by someone else" in line and "--replace" in line
    assert cli_main(["submit", str(write_manifest(tmp_path)), "--bucket", BUCKET, "--replace"]) == 0
    assert "# uploaded by `campaign submit`" in text_of(aws)


def test_submit_with_a_team_writes_in_the_teams_folders_and_the_plan_step_accepts_it(aws: Any, tmp_path: Path) -> None:
    frank = Identity("frank")
    out = frank.submit(write_manifest(tmp_path), team="team-a")
    key = "manifests/team-a/spring-teaser.yaml"
    assert out["manifest"] == f"s3://{BUCKET}/{key}"
    uploaded = [o["Key"] for o in aws.list_objects_v2(Bucket=BUCKET, Prefix="assets/")["Contents"]]
    assert len(uploaded) == 1 and uploaded[0].startswith("assets/team-a/spring-teaser/")
    with pytest.raises(SubmitRefused, match="--team"):
        frank.submit(write_manifest(tmp_path), team="../team-b")
    # the run of what was submitted: its assets are its own, in a stack that requires team folders
    settings = CloudSettings(enhancer="passthrough", images="local", video="preview", clips_per_batch=8,
                             require_team_prefix="true")
    summary = plan_run(PlanEvent(ManifestSource(BUCKET, key), run_id="r1", started=0.0),
                       store=LocalStore(tmp_path / "out"), s3=aws, settings=settings, workdir=tmp_path / "w")
    assert summary["valid"] is True, json.dumps(summary)[:500]
