"""Spend control in the cloud, executed: the real ASL under moto's Step Functions interpreter with the real task
handlers. A budget refusal ends the run at planning with no job started; `Await approval` (a `.waitForTaskToken`
Lambda task) holds the run with its report and token in S3 until `campaign approve` / `reject` answers the token
(SendTaskSuccess / SendTaskFailure on moto), or its timeout ends it as `expired`; the SNS topic gets the summaries."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, REGION, Cloud, handlers, lambda_env, moto_cloud
from fake_aws.container import preview_container
from fake_aws.stepfunctions import route_lambdas, route_sagemaker, wait_for
from test_spend_control import CAMPAIGN, write_campaign

from pipeline.cloud.approval_step import answer_approval, approval_token_key
from pipeline.cloud.contract import APPROVAL_TOKENS_PREFIX
from pipeline.report.write import EXPIRED, REJECTED
from pipeline.storage.store import S3Store
from tasks import _runtime

PLANNING_ONLY = ["campaign-plan"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name, value in lambda_env().items():
        monkeypatch.setenv(name, value)
    _runtime.reset()
    yield monkeypatch
    _runtime.reset()


def upload(cloud: Cloud, folder: Path) -> str:
    cloud.upload_folder(folder)
    return "manifests/gated.yaml"


def until(check: Callable[[], Any], *, what: str, timeout_s: float = 60.0) -> Any:
    """Poll until `check()` is truthy (the execution runs in moto's worker thread)."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout_s}s")
        time.sleep(0.05)
    return value


def topic_messages(env: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    """A topic for the task functions (CAMPAIGN_NOTIFY_TOPIC_ARN) with an SQS queue subscribed: what SNS delivered."""
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="campaign-runs")["TopicArn"]
    queue = sqs.create_queue(QueueName="runs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    env.setenv("CAMPAIGN_NOTIFY_TOPIC_ARN", topic)
    _runtime.reset()

    def received() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    return received


# --- budgets -------------------------------------------------------------------------------------------------


def test_a_run_over_budget_ends_at_planning_with_no_job_started(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_campaign(tmp_path / "c", extra="budget: {max_usd: 0.001}\n")
    with moto_cloud() as cloud:
        run = cloud.run(upload(cloud, tmp_path / "c"), name="over-budget")
        assert run.status == "FAILED" and run.described["error"] == "OverBudget", run.described
        assert f"s3://{OUTPUT_BUCKET}/runs/{CAMPAIGN}/over-budget/report.json" in run.described["cause"]
        assert [name for name, _, _ in run.calls.calls] == PLANNING_ONLY  # no job, no GPU, no report step
        report = cloud.json(f"runs/{CAMPAIGN}/over-budget/report.json")
        assert cloud.keys("cache/") == []
    assert report["status"] == "failed"
    [error] = report["errors"]
    assert error["error"] == "OverBudget" and (error["line"], error["col"], error["path"]) == (17, 10, "budget.max_usd")
    assert error["message"].startswith(f"s3://{INPUT_BUCKET}/manifests/gated.yaml:17:10: error: budget.max_usd: estimated $")
    budget = report["budget"]
    assert budget["max_usd"] == 0.001 and budget["within"] is False and budget["estimate_usd"] > 0.001
    assert budget["unknowns"] and report["cost"]["uncached_usd"] == budget["estimate_usd"]


def test_the_stack_ceiling_caps_every_manifest(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("CAMPAIGN_MAX_BUDGET_USD", "0.002")
    _runtime.reset()
    write_campaign(tmp_path / "a", extra="budget: {max_usd: 50}\n")  # more than the ceiling
    write_campaign(tmp_path / "b")  # no budget: the ceiling is its budget
    with moto_cloud() as cloud:
        over = cloud.run(upload(cloud, tmp_path / "a"), name="over-ceiling")
        [over_error] = cloud.json(f"runs/{CAMPAIGN}/over-ceiling/report.json")["errors"]
        bare = cloud.run(upload(cloud, tmp_path / "b"), name="no-budget")
        [bare_error] = cloud.json(f"runs/{CAMPAIGN}/no-budget/report.json")["errors"]
    assert over.described["error"] == bare.described["error"] == "OverBudget"
    assert [n for n, _, _ in over.calls.calls] == [n for n, _, _ in bare.calls.calls] == PLANNING_ONLY
    assert "budget $50.00 is over this deployment's ceiling of $0.00 (CDK context max_budget_usd)" in over_error["message"]
    assert (bare_error["line"], bare_error["col"], bare_error["path"]) == (1, 1, "budget")
    assert "is over the deployment's ceiling of $0.00" in bare_error["message"]


# --- the approval gate (callback pattern) ------------------------------------------------------------------------


def held_run(cloud: Cloud, key: str, *, name: str, answer: Callable[[Cloud], None]) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Start the run, wait until it is held at `Await approval`, look at it, answer, wait for the end."""
    head = cloud.s3.head_object(Bucket=INPUT_BUCKET, Key=key)
    with route_lambdas(handlers()) as calls, route_sagemaker(preview_container(cloud.s3)):
        arn = cloud.sfn.start_execution(stateMachineArn=cloud.state_machine_arn, name=name, input=json.dumps(
            {"bucket": INPUT_BUCKET, "key": key, "version_id": head.get("VersionId")}))["executionArn"]
        record_key = f"runs/{CAMPAIGN}/{name}/approval.json"
        until(lambda: record_key in cloud.keys(f"runs/{CAMPAIGN}/{name}/"), what="approval record")
        held = {"record": cloud.json(record_key), "report": cloud.json(f"runs/{CAMPAIGN}/{name}/report.json"),
                "token": cloud.json(f"{APPROVAL_TOKENS_PREFIX}{CAMPAIGN}/{name}.json")["task_token"], "arn": arn,
                "calls": [n for n, _, _ in calls.calls], "status": cloud.sfn.describe_execution(executionArn=arn)["status"]}
        answer(cloud)
        described = wait_for(cloud.sfn, arn, timeout_s=120)
    return held, described, {"calls": [n for n, _, _ in calls.calls]}


def test_the_run_waits_for_approval_then_renders(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_campaign(tmp_path / "c", extra="approval: before-render\n")
    with moto_cloud() as cloud:
        received = topic_messages(env)
        key = upload(cloud, tmp_path / "c")

        def approve(c: Cloud) -> None:
            answer_approval(S3Store(OUTPUT_BUCKET, client=c.s3), c.sfn, campaign=CAMPAIGN, run_id="gated",
                            approve=True, by="tester", reason=None)

        held, described, after = held_run(cloud, key, name="gated", answer=approve)
        final = cloud.json(f"runs/{CAMPAIGN}/gated/report.json")
        record = cloud.json(f"runs/{CAMPAIGN}/gated/approval.json")
        messages = until(received, what="notifications")
        messages += received()

    # 1. Held: prompts and the image made, no clip batch prepared; the execution RUNNING at the gate.
    assert held["status"] == "RUNNING"
    assert "campaign-prepare-batch" not in held["calls"]  # (the approval call is recorded once it returns)
    assert held["report"]["status"] == "awaiting-approval" and held["report"]["jobs"]["pending"] == 3
    assert [i["path"] for i in held["report"]["images"]] == ["images/sofa-big.png"]
    # the token is kept outside runs/ (which the studio and the reports read), not in the record or the report
    assert held["record"]["status"] == "awaiting" and held["token"] and not held["record"].get("task_token")
    assert held["record"]["expires"] and "task_token" not in held["report"]["approval"]
    # 2. Approved: every clip rendered after the answer (the first-wave clip moved behind the gate), all done.
    assert described["status"] == "SUCCEEDED", described
    assert after["calls"].count("campaign-prepare-batch") == 2  # the moved wave, then the clip of the edited image
    assert final["status"] == "succeeded" and final["jobs"]["failed"] == 0 and final["jobs"]["total"] == 6
    assert record["status"] == "approved" and record["answered_by"] == "tester"
    assert json.loads(described["output"])["status"] == "succeeded"
    # 3. The topic got the approval request (the `campaign approve` command and the run's link, never the task
    #    token), then the finished run's summary.
    by_subject = {m["Subject"]: m["Message"] for m in messages}
    waiting = by_subject[f"campaign {CAMPAIGN}: awaiting-approval"]
    assert f"approve: campaign approve {CAMPAIGN} --run gated --bucket {OUTPUT_BUCKET}" in waiting
    assert f"#/v2/executions/details/{held['arn']}" in waiting
    assert held["token"] not in waiting and "task-token" not in waiting
    assert "review: 2 enhanced prompt(s) and 1 edited image(s)" in waiting
    done = by_subject[f"campaign {CAMPAIGN}: succeeded"]
    assert done.startswith(f"{CAMPAIGN} run gated: succeeded\n")
    assert f"report: s3://{OUTPUT_BUCKET}/runs/{CAMPAIGN}/gated/report.html" in done


def test_a_rejected_run_renders_nothing_and_reports_rejected(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_campaign(tmp_path / "c", extra="approval: before-render\n")
    with moto_cloud() as cloud:
        def reject(c: Cloud) -> None:
            answer_approval(S3Store(OUTPUT_BUCKET, client=c.s3), c.sfn, campaign=CAMPAIGN, run_id=None,
                            approve=False, by="tester", reason="wrong colour")

        _, described, after = held_run(cloud, upload(cloud, tmp_path / "c"), name="gated-no", answer=reject)
        report = cloud.json(f"runs/{CAMPAIGN}/gated-no/report.json")
        record = cloud.json(f"runs/{CAMPAIGN}/gated-no/approval.json")
        history = cloud.sfn.get_execution_history(executionArn=described["executionArn"])["events"]
    assert described["status"] == "SUCCEEDED"  # ended at `Campaign not approved`
    assert "campaign-prepare-batch" not in after["calls"] and after["calls"][-1] == "campaign-report"
    assert report["status"] == REJECTED and record["status"] == "rejected" and record["reason"] == "wrong colour"
    clips = [r for r in report["job_results"] if r["kind"] == "clip"]
    assert clips and {r["status"] for r in clips} == {"skipped"}
    assert report["errors"][0] == {"job": "approval", "error": "Rejected", "message": "rejected by tester: wrong colour"}
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    assert "Await approval" in entered and entered[-1] == "Campaign not approved"


def test_an_unanswered_run_expires_after_the_timeout(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_campaign(tmp_path / "c", extra="approval: before-render\n")
    with moto_cloud(approval_timeout_s=1) as cloud:
        run = cloud.run(upload(cloud, tmp_path / "c"), name="gated-late")
        report = cloud.json(f"runs/{CAMPAIGN}/gated-late/report.json")
        record = cloud.json(f"runs/{CAMPAIGN}/gated-late/approval.json")
    assert run.status == "SUCCEEDED" and run.output["status"] == EXPIRED
    assert [n for n, _, _ in run.calls.calls][-2:] == ["campaign-approval", "campaign-report"]
    assert "campaign-prepare-batch" not in [n for n, _, _ in run.calls.calls]
    assert report["status"] == EXPIRED and record["status"] == "expired"
    assert report["errors"][0]["error"] == "Expired" and record["requested"] in report["errors"][0]["message"]


def test_answers_are_valid_send_task_requests(tmp_path: Path) -> None:
    """`campaign approve|reject --bucket`: SendTaskSuccess / SendTaskFailure validated against botocore's model of
    Step Functions (Stubber on a real client), the record answered once."""
    from botocore.stub import Stubber

    from pipeline.errors import ApprovalUnavailable
    from pipeline.run.approval import ApprovalRecord, write_record
    from pipeline.storage.store import LocalStore

    store = LocalStore(tmp_path)
    sfn = boto3.client("stepfunctions", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    for run_id, approve in (("r-yes", True), ("r-no", False)):
        # r-yes: the token where the approval step keeps it now; r-no: in the record, as runs held before did
        kept = run_id == "r-yes"
        write_record(store, ApprovalRecord(campaign=CAMPAIGN, run_id=run_id, status="awaiting", manifest="s3://b/m.yaml",
                                           requested="2026-11-25T00:00:00Z", task_token=None if kept else f"token-{run_id}"))
        if kept:
            store.write_bytes(approval_token_key(CAMPAIGN, run_id), json.dumps({"task_token": f"token-{run_id}"}).encode())
        with Stubber(sfn) as stub:
            if approve:
                stub.add_response("send_task_success", {}, {"taskToken": "token-r-yes", "output": pytest_any_json()})
            else:
                stub.add_response("send_task_failure", {}, {"taskToken": "token-r-no", "error": "ApprovalRejected",
                                                            "cause": "rejected by ops: too dark"})
            answered = answer_approval(store, sfn, campaign=CAMPAIGN, run_id=run_id, approve=approve, by="ops",
                                       reason=None if approve else "too dark")
            stub.assert_no_pending_responses()
        assert answered.status == ("approved" if approve else "rejected")
        with pytest.raises(ApprovalUnavailable, match="not awaiting approval"):
            answer_approval(store, sfn, campaign=CAMPAIGN, run_id=run_id, approve=True, by="ops", reason=None)


def test_the_record_says_who_answered_before_the_execution_can_go_on(tmp_path: Path) -> None:
    """The report step reads who rejected a run and why from approval.json as soon as Step Functions has the
    answer, so the record is answered first; an answer Step Functions refuses leaves the run awaiting."""
    from botocore.stub import Stubber

    from pipeline.run.approval import ApprovalRecord, read_record, write_record
    from pipeline.storage.store import LocalStore

    store = LocalStore(tmp_path)
    write_record(store, ApprovalRecord(campaign=CAMPAIGN, run_id="r", status="awaiting", manifest="s3://b/m.yaml",
                                       requested="2026-11-25T00:00:00Z", task_token="token-r"))
    sfn = boto3.client("stepfunctions", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    seen: list[tuple[str, str | None, str | None]] = []

    def look(**_: Any) -> None:  # what the report step would read at the moment the answer arrives
        r = read_record(store, CAMPAIGN, "r")
        seen.append((r.status, r.answered_by, r.reason))

    sfn.meta.events.register("before-parameter-build.sfn.SendTaskFailure", look)
    with Stubber(sfn) as stub:
        stub.add_client_error("send_task_failure", "TaskTimedOut", "Task Timed Out")
        with pytest.raises(ClientError):
            answer_approval(store, sfn, campaign=CAMPAIGN, run_id="r", approve=False, by="ops", reason="too dark")
        assert read_record(store, CAMPAIGN, "r").status == "awaiting"  # the refused answer is not recorded
        stub.add_response("send_task_failure", {}, {"taskToken": "token-r", "error": "ApprovalRejected",
                                                    "cause": "rejected by ops: too dark"})
        answer_approval(store, sfn, campaign=CAMPAIGN, run_id="r", approve=False, by="ops", reason="too dark")
        stub.assert_no_pending_responses()
    assert seen == [("rejected", "ops", "too dark")] * 2


def pytest_any_json() -> Any:
    """Matches any JSON text whose `approved` is true (the output carries who and when)."""

    class ApprovedJson:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, str) and json.loads(other).get("approved") is True

    return ApprovedJson()
