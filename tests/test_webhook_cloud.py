"""Webhooks in the cloud: the signing secret read with GetSecretValue (a botocore Stubber on a real client checks
the request against the service model; moto's Secrets Manager in the end-to-end run), the summary POSTed to a
local http.server with a signature that verifies, the stack's default URL used when a manifest names none, a
secret that cannot be read recorded in report.json instead of failing the run, and the approval step's
`run.awaiting_approval` POST (the same summary as the topic's, never the task token)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fake_aws.cloud import Cloud, cloud_for_tasks
from small_campaign import write_small_campaign
from webhook_receiver import SECRET, Receiver, verify

from pipeline.cloud.approval_step import ApprovalEvent, approval_token_key, request_approval
from pipeline.cloud.names import RunRef, run_document_key
from pipeline.cloud.rundoc import CloudRun
from pipeline.cloud.settings import CloudSettings
from pipeline.cloud.webhook_step import send_cloud_webhook, webhook_url
from pipeline.manifest.campaign import load_manifest
from pipeline.plan.build import KeySource, build_plan
from pipeline.report.summary import Notification
from pipeline.storage.store import LocalStore

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:campaign/webhook-AbC123"
REPORT = {"campaign": "c", "run_id": "r", "status": "succeeded", "jobs": {"total": 1}, "errors": [], "prefix": "runs/c/r"}


def written_report(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path)
    store.write_bytes("runs/c/r/report.json", json.dumps(REPORT).encode())
    return store


def test_the_secret_is_read_with_get_secret_value_and_signs_the_post(receiver: Receiver, tmp_path: Path) -> None:
    store = written_report(tmp_path)
    settings = CloudSettings(webhook_url=receiver.url, webhook_secret_id=SECRET_ARN)
    secrets = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(secrets) as stub:
        stub.add_response("get_secret_value", {"ARN": SECRET_ARN, "Name": "campaign/webhook", "SecretString": SECRET,
                                               "VersionId": "a" * 32, "VersionStages": ["AWSCURRENT"]},
                          {"SecretId": SECRET_ARN})
        d = send_cloud_webhook(url=webhook_url(None, settings), report=REPORT, notification=Notification("s", "t\n"),
                               store=store, settings=settings, secrets=secrets)
        stub.assert_no_pending_responses()
    assert d is not None and d.ok and len(receiver.posts) == 1  # the stack's default URL: the manifest named none
    headers, body = receiver.posts[0]
    assert verify(headers, body) and json.loads(body)["run_id"] == "r"
    assert json.loads(store.read_bytes("runs/c/r/report.json"))["webhook"] == d.to_json()
    assert webhook_url("https://hooks.example.com/mine", settings) == "https://hooks.example.com/mine"  # manifest wins


def test_a_secret_that_cannot_be_read_is_recorded_and_nothing_is_sent(receiver: Receiver, tmp_path: Path) -> None:
    store = written_report(tmp_path)
    settings = CloudSettings(webhook_secret_id="campaign/webhook")
    secrets = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(secrets) as stub:
        stub.add_client_error("get_secret_value", service_error_code="AccessDeniedException", http_status_code=400,
                              expected_params={"SecretId": "campaign/webhook"})
        d = send_cloud_webhook(url=receiver.url, report=REPORT, notification=Notification("s", "t\n"), store=store,
                               settings=settings, secrets=secrets)
        stub.assert_no_pending_responses()
    assert receiver.posts == [] and d is not None and not d.ok
    recorded = json.loads(store.read_bytes("runs/c/r/report.json"))["webhook"]
    assert (recorded["attempts"], recorded["error"]) == (
        0, "the signing secret campaign/webhook could not be read (AccessDeniedException)")
    # a stack without a secret says which setting is missing; no URL at all: nothing is done, nothing recorded
    d = send_cloud_webhook(url=receiver.url, report=REPORT, notification=Notification("s", "t\n"), store=store,
                           settings=CloudSettings(), secrets=None)
    assert d is not None and "CAMPAIGN_WEBHOOK_SECRET_ID is not set" in (d.error or "") and receiver.posts == []
    assert send_cloud_webhook(url=None, report=REPORT, notification=Notification("s", "t\n"), store=store,
                              settings=CloudSettings(), secrets=None) is None


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    monkeypatch.setenv("CAMPAIGN_WEBHOOK_SECRET_ID", "campaign/webhook")
    yield from cloud_for_tasks(monkeypatch)


def test_a_cloud_run_posts_its_summary_once_signed_with_the_secret_from_secrets_manager(
        cloud: Cloud, receiver: Receiver, tmp_path: Path) -> None:
    """The real ASL under moto: the manifest's `notify: {webhook: ...}` reaches the report step through the run
    document; the report step reads the secret from (moto's) Secrets Manager and POSTs once; report.json says so."""
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="campaign/webhook", SecretString=SECRET)
    folder = tmp_path / "hooked"
    folder.mkdir()
    (folder / "hooked.yaml").write_text(textwrap.dedent(f"""\
        campaign: hooked-cloud
        notify: {{webhook: "{receiver.url}"}}
        defaults: {{enhance: false, video: {{frames: 9}}}}
        videos:
          - id: one
            shots: [{{prompt: A bee}}]
        """), encoding="utf-8")
    cloud.upload_folder(folder)
    run = cloud.run("manifests/hooked.yaml", name="hooked-run")
    assert run.status == "SUCCEEDED", run.described
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    assert verify(headers, body)
    doc: dict[str, Any] = json.loads(body)
    report = cloud.json("runs/hooked-cloud/hooked-run/report.json")
    assert (doc["event"], doc["run_id"], doc["status"], doc["jobs"]) == ("run.finished", "hooked-run", "succeeded",
                                                                         report["jobs"])
    assert {k: report["webhook"][k] for k in ("url", "delivery_id", "attempts", "ok", "status")} == {
        "url": receiver.url, "delivery_id": headers["x-campaign-delivery"], "attempts": 1, "ok": True, "status": 200}


TOPIC = "arn:aws:sns:us-east-1:123456789012:campaign-runs"
TOKEN = "AQCEAAAAKgAAAAMAAAAA-task-token-for-tests"  # what a `.waitForTaskToken` state hands the step


def test_a_run_awaiting_approval_posts_the_topics_summary_signed_without_the_token(receiver: Receiver,
                                                                                   tmp_path: Path) -> None:
    """The approval step called directly on a held run's document: the manifest's webhook (not the stack's
    default) gets `run.awaiting_approval`, signed with the secret read through GetSecretValue, with the same
    subject and text as the SNS topic's message; the task token is in neither; report.json records the delivery."""
    manifest = write_small_campaign(tmp_path / "c", name="held", extra=f'approval: before-render\nnotify: {{webhook: "{receiver.url}"}}\n')
    campaign = load_manifest(manifest)
    keys = KeySource(enhancer="passthrough:v1", images="local", video="preview")
    plan = build_plan(campaign, keys, backends={"enhancer": "passthrough", "images": "local", "video": "preview"})
    ref = RunRef("held", "held-run")
    store = LocalStore(tmp_path / "out")
    run = CloudRun(ref=ref, plan=plan, source={"bucket": "in", "key": "manifests/campaign.yaml"}, started=1.0e9,
                   enhancer_model=None, image_waves=(), clip_batches=(), clip_waves=(),
                   notify_webhook=campaign.notify_webhook)
    store.write_bytes(run_document_key(ref), run.to_json().encode())
    settings = CloudSettings(output_bucket="campaign-out", notify_topic_arn=TOPIC, webhook_secret_id=SECRET_ARN,
                             webhook_url="http://127.0.0.1:9/stack-default")
    creds = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    secrets, sns = boto3.client("secretsmanager", **creds), boto3.client("sns", **creds)
    published: list[dict[str, Any]] = []
    sns.meta.events.register("provide-client-params.sns.Publish", lambda params, **_: published.append(params))
    event = ApprovalEvent(token=TOKEN, run=ref, timeout_s=3600,
                          execution="arn:aws:states:us-east-1:123456789012:execution:campaign:held-run")
    with Stubber(secrets) as secrets_stub, Stubber(sns) as sns_stub:
        secrets_stub.add_response("get_secret_value", {"ARN": SECRET_ARN, "SecretString": SECRET}, {"SecretId": SECRET_ARN})
        sns_stub.add_response("publish", {"MessageId": "m-1"}, {"TopicArn": TOPIC, "Subject": ANY, "Message": ANY})
        answer = request_approval(event, store=store, settings=settings, sns=sns, secrets=secrets)
        secrets_stub.assert_no_pending_responses()
        sns_stub.assert_no_pending_responses()
    assert answer == {"status": "awaiting-approval", "notified": True}
    assert len(receiver.posts) == 1 and len(published) == 1
    headers, body = receiver.posts[0]
    assert verify(headers, body) and headers["x-campaign-event"] == "run.awaiting_approval"
    doc: dict[str, Any] = json.loads(body)
    report = json.loads(store.read_bytes("runs/held/held-run/report.json"))
    assert (doc["event"], doc["campaign"], doc["run_id"], doc["status"], doc["jobs"]) == (
        "run.awaiting_approval", "held", "held-run", "awaiting-approval", report["jobs"])
    assert (doc["subject"], doc["text"]) == (published[0]["Subject"], published[0]["Message"])
    assert "campaign approve held --run held-run --bucket campaign-out" in doc["text"]
    assert TOKEN not in body.decode() and all(TOKEN not in v for v in headers.values())
    assert json.loads(store.read_bytes(approval_token_key("held", "held-run"))) == {"task_token": TOKEN}
    assert {k: report["webhook"][k] for k in ("url", "delivery_id", "attempts", "ok", "status")} == {
        "url": receiver.url, "delivery_id": headers["x-campaign-delivery"], "attempts": 1, "ok": True, "status": 200}
