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
