"""The optional studio deployment (context studio=true): synthesized with cdk-nag's AwsSolutions checks, the
load balancer admits only allowed_ips, 0.0.0.0/0 is refused, the task role reads runs and drops manifests, it
serves HTTPS only (no certificate, no studio) and port 80 only redirects, users sign in through the listener's
authenticate action (a Cognito user pool without self sign-up) before anything reaches the task, and the task's
root filesystem is read-only with one scratch volume."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from cdk_synth import synth as cdk_synth

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
from aws_cdk import Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
IPS = "203.0.113.7/32,198.51.100.0/24"


def synth_stack(tmp_path: Path, **context: Any) -> Stack:
    return cast(Stack, cdk_synth(**context).stack)  # tests/cdk_synth.py: once per context per process


def synth(tmp_path: Path, **context: Any) -> Template:
    return Template.from_stack(synth_stack(tmp_path, **context))


@pytest.fixture(scope="module")
def https_stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return synth_stack(tmp_path_factory.mktemp("https"), studio="true", allowed_ips=IPS,
                       studio_certificate_arn=CERTIFICATE, studio_domain_name="studio.example.com")


def props(template: Template, kind: str) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for r in template.find_resources(kind).values()]


def test_studio_is_off_by_default(tmp_path: Path) -> None:
    template = synth(tmp_path)
    assert props(template, "AWS::ECS::Service") == [] and props(template, "AWS::ElasticLoadBalancingV2::LoadBalancer") == []


def test_studio_behind_a_load_balancer_only_allowed_ips_reach(https_stack: Stack) -> None:
    template = Template.from_stack(https_stack)
    [service] = props(template, "AWS::ECS::Service")
    assert service["LaunchType"] == "FARGATE"
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    [alb] = props(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Scheme"] == "internet-facing"
    groups = [g for g in props(template, "AWS::EC2::SecurityGroup") if "allowed_ips" in g.get("GroupDescription", "")]
    [alb_sg] = groups
    assert sorted({r["CidrIp"] for r in alb_sg["SecurityGroupIngress"]}) == ["198.51.100.0/24", "203.0.113.7/32"]
    assert {(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in alb_sg["SecurityGroupIngress"]} == {
        (cidr, port, port) for cidr in IPS.split(",") for port in (80, 443)}
    _, listener = listeners_by_port(template)[443]
    assert listener["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "403"
    [rule] = props(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["Conditions"][0]["SourceIpConfig"]["Values"] == ["203.0.113.7/32", "198.51.100.0/24"]
    [group] = props(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["HealthCheckPath"] == "/_stcore/health" and group["Port"] == 8501


def test_the_studio_task_role_reads_runs_drops_manifests_and_records_reviews_only(tmp_path: Path) -> None:
    template = synth(tmp_path, studio="true", allowed_ips=IPS, studio_certificate_arn=CERTIFICATE)
    [task] = props(template, "AWS::ECS::TaskDefinition")
    role_ref = task["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = [p for p in props(template, "AWS::IAM::Policy") if {"Ref": role_ref} in p["Roles"]]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    actions = sorted({a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})
    assert actions == ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:PutObject", "states:StartExecution"]
    text = json.dumps(statements)
    assert "/runs/*" in text and "/manifests/*" in text and "/assets/*" in text and "/reviews/*" in text
    # writes: submitted manifests and assets, review decisions, and a reviewed run's two report files; no other run file
    puts = [json.dumps(s["Resource"]) for s in statements if "s3:PutObject" in s["Action"]]
    allowed = ("manifests/*", "assets/*", "reviews/*", "runs/*/report.json", "runs/*/report.html")
    assert all(any(f'/{a}"' in put for a in allowed) for put in puts), puts
    assert not any('/runs/*"' in put for put in puts)
    # a regenerate starts this stack's state machine, and only it; the task is told which
    [start] = [s for s in statements if s["Action"] == "states:StartExecution"]
    [machine] = template.find_resources("AWS::StepFunctions::StateMachine")
    assert start["Resource"] == {"Ref": machine}
    [container] = task["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["CAMPAIGN_STATE_MACHINE_ARN"] == {"Ref": machine}


@pytest.mark.parametrize("ips, message", [("0.0.0.0/0", "whole internet"), ("::/0", "whole internet"),
                                          ("", "needs allowed_ips"), ("not-an-ip", "not an IP address")])
def test_open_or_missing_allowed_ips_are_refused_at_synth(tmp_path: Path, ips: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth(tmp_path, studio="true", allowed_ips=ips)


def alb_ingress(template: Template) -> set[tuple[str, int, int]]:
    [alb_sg] = [g for g in props(template, "AWS::EC2::SecurityGroup") if "allowed_ips" in g.get("GroupDescription", "")]
    return {(r.get("CidrIp") or r["CidrIpv6"], r["FromPort"], r["ToPort"]) for r in alb_sg["SecurityGroupIngress"]}


def listeners_by_port(template: Template) -> dict[int, tuple[str, dict[str, Any]]]:
    found = template.find_resources("AWS::ElasticLoadBalancingV2::Listener")
    return {r["Properties"]["Port"]: (logical_id, r["Properties"]) for logical_id, r in found.items()}


def test_with_a_certificate_the_studio_serves_https_with_a_tls13_policy(https_stack: Stack) -> None:
    template = Template.from_stack(https_stack)
    listeners = listeners_by_port(template)
    assert sorted(listeners) == [80, 443]
    https_id, https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
    assert https["DefaultActions"] == [{"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "403", "ContentType": "text/plain", "MessageBody": "Forbidden"}}]
    # the one forwarding rule (source IPs -> the studio's target group) sits on the HTTPS listener
    [rule] = props(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["ListenerArn"] == {"Ref": https_id}
    assert rule["Conditions"] == [{"Field": "source-ip", "SourceIpConfig": {"Values": IPS.split(",")}}]
    [group] = props(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert [a["Type"] for a in sorted(rule["Actions"], key=lambda a: a["Order"])] == ["authenticate-cognito", "forward"]
    assert group["HealthCheckPath"] == "/_stcore/health" and group["Port"] == 8501 and group["Protocol"] == "HTTP"
    assert {"Key": "stickiness.enabled", "Value": "true"} in group["TargetGroupAttributes"]


def test_with_a_certificate_port_80_only_redirects_to_https(https_stack: Stack) -> None:
    template = Template.from_stack(https_stack)
    http_id, http = listeners_by_port(template)[80]
    assert http["Protocol"] == "HTTP" and "Certificates" not in http
    assert http["DefaultActions"] == [{"Type": "redirect", "RedirectConfig": {
        "StatusCode": "HTTP_301", "Protocol": "HTTPS", "Port": "443"}}]
    rules = props(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert all(r["ListenerArn"] != {"Ref": http_id} for r in rules)  # nothing on port 80 forwards to the studio


def test_with_a_certificate_443_and_80_are_open_to_allowed_ips_only(https_stack: Stack) -> None:
    template = Template.from_stack(https_stack)
    assert alb_ingress(template) == {(cidr, port, port) for cidr in IPS.split(",") for port in (80, 443)}


def test_studio_url_is_https_on_the_domain_name_with_a_certificate(https_stack: Stack) -> None:
    outputs = Template.from_stack(https_stack).find_outputs("*")
    assert outputs["StudioUrl"]["Value"] == "https://studio.example.com"
    # the name is the user's to point at the load balancer: its DNS name is an output
    assert outputs["StudioLoadBalancerDnsName"]["Value"]["Fn::GetAtt"][1] == "DNSName"


def test_studio_url_is_https_on_the_load_balancer_without_a_domain_name(tmp_path: Path) -> None:
    outputs = synth(tmp_path, studio="true", allowed_ips=IPS, studio_certificate_arn=CERTIFICATE).find_outputs("*")
    parts = outputs["StudioUrl"]["Value"]["Fn::Join"][1]
    assert parts[0] == "https://" and parts[1]["Fn::GetAtt"][1] == "DNSName"
    assert "StudioLoadBalancerDnsName" not in outputs


def test_without_a_certificate_there_is_no_studio(tmp_path: Path) -> None:
    """Plain HTTP would carry prompts and sign-in cookies in clear, and the load balancer signs users in on HTTPS
    listeners only: synth refuses, naming the context key."""
    with pytest.raises(ValueError, match="needs studio_certificate_arn .* HTTPS only"):
        synth(tmp_path, studio="true", allowed_ips=IPS)


def test_users_sign_in_through_the_listener_before_anything_reaches_the_studio(https_stack: Stack) -> None:
    template = Template.from_stack(https_stack)
    https_id, _ = listeners_by_port(template)[443]
    [rule] = props(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["ListenerArn"] == {"Ref": https_id}
    auth, forward = sorted(rule["Actions"], key=lambda a: a["Order"])
    config = auth["AuthenticateCognitoConfig"]
    [pool_id] = template.find_resources("AWS::Cognito::UserPool")
    assert config["UserPoolArn"] == {"Fn::GetAtt": [pool_id, "Arn"]}
    [client_id] = template.find_resources("AWS::Cognito::UserPoolClient")
    assert config["UserPoolClientId"] == {"Ref": client_id}
    assert forward["Type"] == "forward" and forward["TargetGroupArn"]["Ref"] in template.find_resources(
        "AWS::ElasticLoadBalancingV2::TargetGroup")
    # an administrator adds each user; MFA is required
    [pool] = props(template, "AWS::Cognito::UserPool")
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True and pool["MfaConfiguration"] == "ON"
    [client] = props(template, "AWS::Cognito::UserPoolClient")
    assert client["GenerateSecret"] is True and client["AllowedOAuthFlows"] == ["code"]
    assert client["CallbackURLs"] == ["https://studio.example.com/oauth2/idpresponse"]
    # the load balancer reaches the sign-in endpoints over HTTPS only
    [alb_sg] = [g for g in props(template, "AWS::EC2::SecurityGroup") if "allowed_ips" in g.get("GroupDescription", "")]
    egress = [r for r in alb_sg.get("SecurityGroupEgress", []) if "CidrIp" in r]
    assert egress and all((r["FromPort"], r["ToPort"], r["IpProtocol"]) == (443, 443, "tcp") for r in egress)


def test_the_studio_task_has_a_read_only_root_and_one_scratch_volume(https_stack: Stack) -> None:
    template = Template.from_stack(https_stack)
    [task] = props(template, "AWS::ECS::TaskDefinition")
    [container] = task["ContainerDefinitions"]
    assert container["ReadonlyRootFilesystem"] is True
    assert task["Volumes"] == [{"Name": "scratch"}]  # no host path: Fargate ephemeral storage
    assert container["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "scratch"}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["HOME"].startswith("/tmp/") and env["TMPDIR"] == "/tmp"
    dockerfile = (ROOT / "pipeline" / "studio" / "Dockerfile").read_text()
    assert "--auth alb" in dockerfile and "--workspace /tmp/workspace" in dockerfile and "--out /tmp/out" in dockerfile


@pytest.mark.parametrize("arn", [
    "not-an-arn",
    "arn:aws:acm:eu-west-1:123456789012:certificate/",  # no certificate id
    "arn:aws:acm:eu-west-1:1234:certificate/12345678-1234-1234-1234-123456789012",  # short account
    "arn:aws:iam::123456789012:server-certificate/studio",  # an IAM server certificate, not ACM
    "arn:aws:acm::123456789012:certificate/12345678-1234-1234-1234-123456789012",  # no region
    f"{CERTIFICATE}/extra",  # trailing text
])
def test_a_malformed_certificate_arn_is_refused_naming_its_context_key(tmp_path: Path, arn: str) -> None:
    with pytest.raises(ValueError, match="context studio_certificate_arn: .* is not an ACM certificate ARN"):
        synth(tmp_path, studio="true", allowed_ips=IPS, studio_certificate_arn=arn)


@pytest.mark.parametrize("context, message", [
    ({"studio_domain_name": "studio.example.com"}, "needs studio_certificate_arn"),
    ({"studio_certificate_arn": CERTIFICATE, "studio_auth_domain_prefix": "My_Studio"}, "not a Cognito domain prefix"),
    ({"studio_certificate_arn": CERTIFICATE, "studio_auth_domain_prefix": "aws-studio"}, "not a Cognito domain prefix"),
    ({"studio_domain_name": "https://studio.example.com", "studio_certificate_arn": CERTIFICATE},
     "studio_domain_name: .* is not a DNS name"),
])
def test_a_domain_name_needs_a_certificate_and_a_dns_name(tmp_path: Path, context: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth(tmp_path, studio="true", allowed_ips=IPS, **context)
