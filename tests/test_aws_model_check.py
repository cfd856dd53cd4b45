"""The request check the cloud tests share (tests/fake_aws/validate.py) refuses what AWS would refuse."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from fake_aws.validate import ModelViolation, model_checked

ROLE = "arn:aws:iam::123456789012:role/campaign-scheduler"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:campaign"


def schedule(**change: object) -> dict[str, object]:
    args: dict[str, object] = {"Name": "weekly-0123456789abcdef", "GroupName": "campaign-schedules",
                               "ScheduleExpression": "rate(1 day)", "FlexibleTimeWindow": {"Mode": "OFF"},
                               "Target": {"Arn": MACHINE, "RoleArn": ROLE}}
    args.update(change)
    return args


@pytest.mark.parametrize(("change", "message"), [
    ({"FlexibleTimeWindow": {"Mode": "OF"}}, "is not one of"),  # enum: botocore itself does not check it
    ({"Name": "x" * 65}, "has length 65"),  # max length: nor this
    ({"Name": "weekly schedule"}, "does not match"),  # pattern: nor this
    ({"Target": {"Arn": MACHINE, "RoleArn": ROLE, "RetryPolicy": {"MaximumRetryAttempts": 186}}}, "outside"),
    ({"Targets": {"Arn": MACHINE}}, "Unknown parameter"),  # a misspelt field
])
def test_a_request_the_model_refuses_fails_at_the_call_and_at_the_end(change: dict[str, object], message: str) -> None:
    with pytest.raises(ModelViolation, match="requests the service model refuses"):  # kept even if swallowed
        with model_checked() as check:
            client = boto3.client("scheduler", region_name="us-east-1", aws_access_key_id="x",
                                  aws_secret_access_key="x")
            with Stubber(client) as stub:
                stub.add_response("create_schedule", {"ScheduleArn": MACHINE})
                with pytest.raises(ModelViolation, match=message):
                    client.create_schedule(**schedule(**change))
    assert check.checked == ["scheduler.CreateSchedule"]


def test_a_valid_request_passes_and_is_recorded() -> None:
    with model_checked() as check:
        client = boto3.session.Session().client("scheduler", region_name="us-east-1", aws_access_key_id="x",
                                                aws_secret_access_key="x")
        with Stubber(client) as stub:
            stub.add_response("create_schedule", {"ScheduleArn": MACHINE})
            client.create_schedule(**schedule())
            stub.assert_no_pending_responses()
    assert check.operations("scheduler") == {"CreateSchedule"} and check.violations == []
