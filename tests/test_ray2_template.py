"""The Luma Ray2 grants in the synthesized stack (infra/ray2.py), asserted on Template.from_stack: the state
machine may start (InvokeModel) Ray2 only, poll this account's async invocations, and write only Bedrock's output
prefix and its per-clip records; the plan step may read exactly the models' lifecycle. The synth runs cdk-nag's
AwsSolutions checks, so an unacknowledged finding fails here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cdk_synth import synth as cdk_synth

pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed")
from aws_cdk.assertions import Template  # noqa: E402

from pipeline.catalog import EDIT_TOOLS, RAY2  # noqa: E402
from pipeline.cloud.contract import RAY2_JOBS_FOLDER, RAY2_OUTPUT_PREFIX  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synth_stack(tmp: Path, **context: Any) -> Template:
    return cast(Template, cdk_synth(**context).template)  # tests/cdk_synth.py: once per context per process


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    yield synth_stack(tmp_path_factory.mktemp("ray2"))


def policies_of(t: Template, role_lid: str) -> list[dict[str, Any]]:
    found = t.find_resources("AWS::IAM::Policy")
    return [s for r in found.values() if {"Ref": role_lid} in r["Properties"]["Roles"]
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def role_of_state_machine(t: Template) -> str:
    [sm] = t.find_resources("AWS::StepFunctions::StateMachine").values()
    return str(sm["Properties"]["RoleArn"]["Fn::GetAtt"][0])


def test_the_state_machine_may_start_ray2_only_poll_its_jobs_and_write_only_their_prefix(template: Template) -> None:
    stmts = policies_of(template, role_of_state_machine(template))
    bedrock = [s for s in stmts if any(str(a).startswith("bedrock:") for a in _actions(s))]
    by_action = {a: json.dumps(s["Resource"]) for s in bedrock for a in _actions(s)}
    assert set(by_action) == {"bedrock:InvokeModel", "bedrock:GetAsyncInvoke"}
    assert f"foundation-model/{RAY2.model_id}" in by_action["bedrock:InvokeModel"]
    assert "stability" not in by_action["bedrock:InvokeModel"] and "*" not in by_action["bedrock:InvokeModel"]
    assert ":async-invoke/*" in by_action["bedrock:GetAsyncInvoke"]
    [put] = [s for s in stmts if _actions(s) == {"s3:PutObject"} and RAY2_OUTPUT_PREFIX in json.dumps(s["Resource"])]
    resources = json.dumps(put["Resource"])
    assert f"/{RAY2_OUTPUT_PREFIX}*" in resources and f"/runs/*/{RAY2_JOBS_FOLDER}/*" in resources
    # no KMS: the output bucket is SSE-S3, so Bedrock's writes need no key grant
    assert not any(str(a).startswith("kms:") for s in stmts for a in _actions(s))
    assert template.find_resources("AWS::S3::Bucket")  # and every bucket stays SSE-S3:
    for bucket in template.find_resources("AWS::S3::Bucket").values():
        rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_the_plan_step_may_read_the_lifecycle_of_exactly_the_models_called(template: Template) -> None:
    plan = next(r for r in template.find_resources("AWS::Lambda::Function").values()
                if r["Properties"].get("Handler") == "tasks.plan.handler")
    stmts = [s for s in policies_of(template, plan["Properties"]["Role"]["Fn::GetAtt"][0])
             if "bedrock:GetFoundationModel" in _actions(s)]
    [check] = stmts
    resources = json.dumps(check["Resource"])
    assert f"foundation-model/{RAY2.model_id}" in resources
    assert resources.count("foundation-model/stability.") == len({t.model_id for t in EDIT_TOOLS.values()})
    assert "anthropic.claude" in resources and "foundation-model/*" not in resources


def test_a_stack_without_bedrock_video_has_no_ray2_grants(tmp_path: Path) -> None:
    t = synth_stack(tmp_path, video_backend="sagemaker")
    stmts = policies_of(t, role_of_state_machine(t))
    assert not any(str(a).startswith("bedrock:") for s in stmts for a in _actions(s))
    assert RAY2_OUTPUT_PREFIX not in json.dumps(stmts)


def _actions(statement: dict[str, Any]) -> set[str]:
    a = statement["Action"]
    return {a} if isinstance(a, str) else set(a)
