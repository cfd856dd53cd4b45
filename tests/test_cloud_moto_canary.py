"""Canary for the moto internals that tests/fake_aws/stepfunctions.py replaces: if an upgrade moves them, this
fails first and says what to look at (moto is pinned exactly for that reason)."""

from __future__ import annotations

import inspect
import json
from importlib import metadata
from typing import Any

import boto3
import pytest
from fake_aws.stepfunctions import MOTO_CONFIG, route_lambdas, route_sagemaker, wait_for
from moto import mock_aws

MOTO_VERSION = "5.2.5"


def test_moto_is_the_pinned_version() -> None:
    assert metadata.version("moto") == MOTO_VERSION, "re-check tests/fake_aws/stepfunctions.py against the new moto"


def test_the_replaced_internals_are_where_the_fakes_expect_them() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported import (
        StateTaskServiceUnsupported,
    )

    params = list(inspect.signature(LambdaSimpleBackend.invoke).parameters)
    assert params == ["self", "function_name", "qualifier", "body", "headers", "response_headers"]
    assert callable(state_task_factory.state_task_service_for)
    for name in ("_build_sync_resolver", "_eval_service_task", "_eval_parameters", "_get_supported_parameters"):
        assert hasattr(StateTaskServiceCallback, name), name
    # still unsupported as shipped, so the routing is still needed
    assert isinstance(state_task_factory.state_task_service_for("sagemaker"), StateTaskServiceUnsupported)


def _run(definition: dict[str, Any], run_input: dict[str, Any], **routes: Any) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(name="canary", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/x")["stateMachineArn"]
    started = sfn.start_execution(stateMachineArn=arn, input=json.dumps(run_input))
    return wait_for(sfn, started["executionArn"], timeout_s=30)


def test_moto_still_leaves_role_arn_paths_unresolved() -> None:
    """The routed SageMaker task resolves `"RoleArn.$"` itself (MOTO_ROLE_ARN_PATH_KEY); when this fails,
    moto resolves it and the workaround can go."""
    with mock_aws(config=MOTO_CONFIG):
        out = _run({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"RoleArn.$": "$.r"}, "End": True}}},
                   {"r": "arn:aws:iam::123456789012:role/x"})
    assert json.loads(out["output"]) == {"RoleArn.$": "$.r"}


@pytest.mark.parametrize("fail", [False, True])
def test_routed_lambda_retry_and_processing_job_sync(fail: bool) -> None:
    calls: list[str] = []

    class Throttled(Exception):
        pass

    def task(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append("task")
        if len(calls) == 1:
            raise Throttled("slow down")
        return {"role": "arn:aws:iam::123456789012:role/sm", "n": event["n"] + 1}

    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:t", "Payload.$": "$"},
              "ResultSelector": {"role.$": "$.Payload.role", "n.$": "$.Payload.n"},
              "Retry": [{"ErrorEquals": ["Throttled"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0,
                         "JitterStrategy": "FULL"}], "Next": "J"},
        "J": {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
              "Parameters": {
                  "ProcessingJobName": "canary-job", "RoleArn.$": "$.role",
                  "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"},
                  "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g6e.2xlarge",
                                                            "VolumeSizeInGB": 30}}},
              "ResultSelector": {"status.$": "$.ProcessingJobStatus"},
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Failed"}],
              "End": True},
        "Failed": {"Type": "Pass", "End": True},
    }}
    seen: list[dict[str, Any]] = []

    def container(request: dict[str, Any]) -> tuple[str, str | None]:
        seen.append(request)
        return ("Failed", "AlgorithmError: boom") if fail else ("Completed", None)

    with mock_aws(config=MOTO_CONFIG), route_lambdas({"t": task}), route_sagemaker(container):
        out = _run(definition, {"n": 1})
    assert out["status"] == "SUCCEEDED"
    assert calls == ["task", "task"]
    assert seen[0]["RoleArn"] == "arn:aws:iam::123456789012:role/sm"
    result = json.loads(out["output"])
    if fail:
        assert result["error"]["Error"] == "States.TaskFailed"
        assert json.loads(result["error"]["Cause"])["FailureReason"] == "AlgorithmError: boom"
    else:
        assert result == {"status": "Completed"}


def test_moto_runs_a_distributed_map_reading_its_items_from_s3_as_shipped() -> None:
    """What the campaign's distributed stages use, with no routing beyond the Lambda one: an ItemReader on
    `s3:getObject` (JSON), ItemSelector over `$$.Map.Item.Value.<field>`, MaxConcurrencyPath,
    ToleratedFailurePercentagePath, a ResultWriter with a fixed prefix, child executions whose Task fails,
    is caught and recorded with `aws-sdk:s3:putObject`, and a Choice/Pass loop over waves."""
    calls: list[str] = []

    def task(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event["job_id"])
        if event["job_id"] == "b":
            raise RuntimeError("boom")
        return {"status": "ok"}

    processor = {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:t",
                             "Payload": {"job_id.$": "$.job_id", "run.$": "$.run"}},
              "ResultSelector": {"status.$": "$.Payload.status"}, "ResultPath": "$.result",
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "R"}], "End": True},
        "R": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
              "Parameters": {"Bucket": "out", "Key.$": "States.Format('results/{}.json', $.job_id)",
                             "Body.$": "States.JsonToString($)"}, "ResultPath": None, "End": True}}}
    definition = {"StartAt": "Start", "States": {
        "Start": {"Type": "Pass", "Parameters": {"index": 0, "count.$": "States.ArrayLength($.waves)"},
                  "ResultPath": "$.loop", "Next": "More?"},
        "More?": {"Type": "Choice", "Choices": [{"Variable": "$.loop.index", "NumericLessThanPath": "$.loop.count",
                                                 "Next": "Pick"}], "Default": "Done"},
        "Pick": {"Type": "Pass", "ResultPath": "$.loop",
                 "Parameters": {"index.$": "$.loop.index", "count.$": "$.loop.count",
                                "wave.$": "States.ArrayGetItem($.waves, $.loop.index)"}, "Next": "Wave"},
        "Wave": {"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                                               "ReaderConfig": {"InputType": "JSON"},
                                               "Parameters": {"Bucket": "out", "Key.$": "$.loop.wave.key"}},
                 "ItemSelector": {"job_id.$": "$$.Map.Item.Value.job_id", "run.$": "$.run"},
                 "MaxConcurrencyPath": "$.limits.jobs", "ToleratedFailurePercentagePath": "$.limits.tolerated",
                 "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                                  "Parameters": {"Bucket": "out", "Prefix": "map-runs"}},
                 "ItemProcessor": processor, "ResultPath": None, "Next": "Count"},
        "Count": {"Type": "Pass", "ResultPath": "$.loop", "Next": "More?",
                  "Parameters": {"index.$": "States.MathAdd($.loop.index, 1)", "count.$": "$.loop.count"}},
        "Done": {"Type": "Succeed"}}}
    with mock_aws(config=MOTO_CONFIG), route_lambdas({"t": task}):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="out")
        s3.put_object(Bucket="out", Key="w1.json", Body=json.dumps([{"job_id": j} for j in "abc"]).encode())
        s3.put_object(Bucket="out", Key="w2.json", Body=json.dumps([{"job_id": "d"}]).encode())
        out = _run(definition, {"waves": [{"key": "w1.json"}, {"key": "w2.json"}], "run": "r1",
                                "limits": {"jobs": 2, "tolerated": 100}})
        record = json.loads(s3.get_object(Bucket="out", Key="results/b.json")["Body"].read())
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"]]
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        map_runs = sfn.list_map_runs(executionArn=out["executionArn"])["mapRuns"]
    assert out["status"] == "SUCCEEDED", out
    assert sorted(calls[:3]) == ["a", "b", "c"] and calls[3] == "d"  # wave 2 after wave 1
    assert record["job_id"] == "b" and record["run"] == "r1" and record["error"]["Error"] == "RuntimeError"
    assert len(map_runs) == 2 and sum(k.startswith("map-runs/") and k.endswith("/manifest.json") for k in keys) == 2


def test_moto_still_differs_from_aws_where_the_distributed_maps_work_around_it() -> None:
    """1. moto's lexer takes an integer `ToleratedFailurePercentage` for no number (AWS takes 100; statelint
    wants an integer): the ASL reads it from `$.limits` with ToleratedFailurePercentagePath instead.
    2. moto evaluates a ResultWriter's `Prefix.$` against the Map's results, not its input: the ASL's
    ResultWriter prefix is fixed. When this test fails, moto changed: re-check both choices."""
    item_reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                   "Parameters": {"Bucket": "out", "Key": "items.json"}}
    processor = {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P",
                 "States": {"P": {"Type": "Pass", "End": True}}}
    with mock_aws(config=MOTO_CONFIG):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="out")
        s3.put_object(Bucket="out", Key="items.json", Body=b'[{"job_id": "a"}]')
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        integer = {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemReader": item_reader, "ItemProcessor": processor,
                                                     "ToleratedFailurePercentage": 100, "End": True}}}
        with pytest.raises(sfn.exceptions.ClientError, match="ToleratedFailurePercentage"):
            sfn.create_state_machine(name="integer", definition=json.dumps(integer),
                                     roleArn="arn:aws:iam::123456789012:role/x")
        prefix_path = {"StartAt": "M", "States": {"M": {
            "Type": "Map", "ItemReader": item_reader, "ItemProcessor": processor, "End": True,
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                             "Parameters": {"Bucket": "out", "Prefix.$": "$.prefix"}}}}}
        out = _run(prefix_path, {"prefix": "runs/x"})
    assert out["status"] == "FAILED" and "$.prefix" in out.get("cause", ""), out


def test_built_components_are_shared_per_definition_and_keyed_before_any_execution() -> None:
    """The fake builds a definition's components once per routing and shares them between executions
    (fake_aws/stepfunctions.py, _program). That holds while no component keeps an execution's state: the heap
    key (a Retry's attempt count is stored under it) is drawn before any execution reads it, and this checks it
    is, and that moto still keeps it where the fake draws it."""
    from fake_aws import stepfunctions as fake
    from moto.stepfunctions.parser.asl.component.common.retry.max_attempts_decl import MaxAttemptsDecl
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    retry = [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}]
    definition = json.dumps({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "End": True, "Retry": retry,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": True,
            "Retry": retry}}}}}})
    program = fake._program(definition, "routing-a")
    assert fake._program(definition, "routing-a") is program  # kept: built once
    assert fake._program(definition, "routing-b") is not program  # another routing builds its own services

    found = [c for c in fake.components(program) if isinstance(c, EvalComponent)]
    attempts = [c for c in found if isinstance(c, MaxAttemptsDecl)]
    assert len(attempts) == 2  # the Map's Retry and the one inside its ItemProcessor
    assert all(c._EvalComponent__heap_key is not None for c in found)
