"""The optional studio deployment (context studio=true): synthesized with cdk-nag's AwsSolutions checks, the
load balancer admits only allowed_ips, 0.0.0.0/0 is refused, and the task role reads runs and drops manifests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, cast

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
from aws_cdk import Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synth(tmp_path: Path, **context: Any) -> Template:
    from cdk_app import DEFAULT_STACK_NAME, _cdk_json_context, build_app
    from infra.build_layer import build

    layer = build(tmp_path / "layer", stub=True)
    app = build_app({**_cdk_json_context(), "layer_dir": str(layer), **context}, outdir=str(tmp_path / "cdk.out"))
    app.synth()  # an unacknowledged AwsSolutions finding raises here
    return Template.from_stack(cast(Stack, app.node.find_child(DEFAULT_STACK_NAME)))


def props(template: Template, kind: str) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for r in template.find_resources(kind).values()]


def test_studio_is_off_by_default(tmp_path: Path) -> None:
    template = synth(tmp_path)
    assert props(template, "AWS::ECS::Service") == [] and props(template, "AWS::ElasticLoadBalancingV2::LoadBalancer") == []


def test_studio_behind_a_load_balancer_only_allowed_ips_reach(tmp_path: Path) -> None:
    template = synth(tmp_path, studio="true", allowed_ips="203.0.113.7/32,198.51.100.0/24")
    [service] = props(template, "AWS::ECS::Service")
    assert service["LaunchType"] == "FARGATE"
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    [alb] = props(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Scheme"] == "internet-facing"
    groups = [g for g in props(template, "AWS::EC2::SecurityGroup") if "allowed_ips" in g.get("GroupDescription", "")]
    [alb_sg] = groups
    assert sorted(r["CidrIp"] for r in alb_sg["SecurityGroupIngress"]) == ["198.51.100.0/24", "203.0.113.7/32"]
    [listener] = props(template, "AWS::ElasticLoadBalancingV2::Listener")
    assert listener["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "403"
    [rule] = props(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["Conditions"][0]["SourceIpConfig"]["Values"] == ["203.0.113.7/32", "198.51.100.0/24"]
    [group] = props(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["HealthCheckPath"] == "/_stcore/health" and group["Port"] == 8501


def test_the_studio_task_role_reads_runs_and_drops_manifests_only(tmp_path: Path) -> None:
    template = synth(tmp_path, studio=True, allowed_ips=["203.0.113.7/32"])
    [task] = props(template, "AWS::ECS::TaskDefinition")
    role_ref = task["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = [p for p in props(template, "AWS::IAM::Policy") if {"Ref": role_ref} in p["Roles"]]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    actions = sorted({a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})
    assert actions == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    text = json.dumps(statements)
    assert "/runs/*" in text and "/manifests/*" in text and "/assets/*" in text
    puts = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert all("manifests/" in json.dumps(s["Resource"]) or "assets/" in json.dumps(s["Resource"]) for s in puts)


@pytest.mark.parametrize("ips, message", [("0.0.0.0/0", "whole internet"), ("::/0", "whole internet"),
                                          ("", "needs allowed_ips"), ("not-an-ip", "not an IP address")])
def test_open_or_missing_allowed_ips_are_refused_at_synth(tmp_path: Path, ips: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth(tmp_path, studio="true", allowed_ips=ips)
