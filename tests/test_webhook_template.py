"""The stack's webhook settings in the synthesized template (one synth for the module, cdk-nag's checks
included): the report and approval functions, and only they, may call secretsmanager:GetSecretValue, on the
one secret the context names and nothing wider; the default URL and the secret reach their environment.
The context is checked before any synth: a bad URL, a URL without a secret, a malformed ARN."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
from aws_cdk import App, Stack  # noqa: E402
from aws_cdk import aws_iam as iam  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

URL = "https://hooks.example.com/campaign"
SECRET_NAME = "campaign/webhook"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    from cdk_synth import synth

    # tests/cdk_synth.py: cdk-nag's AwsSolutions checks run; an unacknowledged finding (e.g. on the grant) raises
    yield synth(webhook_url=URL, webhook_secret=SECRET_NAME).template


def _handler_of(template: Template, lid: str) -> str:
    p = template.find_resources("AWS::Lambda::Function")[lid]["Properties"]
    return str(p.get("Handler") or p.get("ImageConfig", {}).get("Command", [""])[0])


def _secret_statements(template: Template) -> dict[str, list[dict[str, Any]]]:
    """Each function's handler -> its policy statements that name a secretsmanager action."""
    roles = {fn["Properties"]["Role"]["Fn::GetAtt"][0]: _handler_of(template, lid)
             for lid, fn in template.find_resources("AWS::Lambda::Function").items()
             if isinstance(fn["Properties"].get("Role"), dict)}
    out: dict[str, list[dict[str, Any]]] = {}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(str(a).startswith("secretsmanager:") for a in actions):
                for role in policy["Properties"]["Roles"]:
                    out.setdefault(roles.get(role["Ref"], role["Ref"]), []).append(statement)
    return out


def test_only_the_notifying_functions_may_read_exactly_the_webhook_secret(template: Template) -> None:
    grants = _secret_statements(template)
    assert set(grants) == {"tasks.report.handler", "tasks.approval.handler"}
    want = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"}, ":secretsmanager:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
        f":secret:{SECRET_NAME}-??????"]]}}
    for statements in grants.values():
        assert statements == [want]  # one action, one secret (`??????`: its six random characters, not `*`)


def test_the_default_url_and_the_secret_reach_the_functions_environment(template: Template) -> None:
    for lid, fn in template.find_resources("AWS::Lambda::Function").items():
        if _handler_of(template, lid) in ("tasks.report.handler", "tasks.approval.handler"):
            env = fn["Properties"]["Environment"]["Variables"]
            assert (env["CAMPAIGN_WEBHOOK_URL"], env["CAMPAIGN_WEBHOOK_SECRET_ID"]) == (URL, SECRET_NAME)


def test_a_full_secret_arn_is_granted_as_given() -> None:
    """The grant on a bare stack (no synth of the whole app): a full ARN is the resource itself."""
    from infra.notifications import RunNotifications

    stack = Stack(App(), "Bare")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:campaign/webhook-AbC123"
    RunNotifications(stack, "Notifications", email=None).grant_webhook_secret(role, secret=arn)
    [policy] = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}]


@pytest.mark.parametrize(("context", "message"), [
    ({"webhook_url": "http://hooks.example.com/x", "webhook_secret": SECRET_NAME},
     "context webhook_url: webhook 'http://hooks.example.com/x' must use https:// (plain http:// only for localhost)"),
    ({"webhook_url": URL}, "context webhook_url needs webhook_secret"),
    ({"webhook_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:campaign/webhook"},
     "context webhook_secret must be a Secrets Manager secret's full ARN"),
    ({"webhook_secret": "bad name!"}, "context webhook_secret must be"),
])
def test_bad_webhook_settings_are_refused_before_synth(context: dict[str, str], message: str) -> None:
    from infra.settings import StackSettings

    with pytest.raises(ValueError) as raised:
        StackSettings.from_context(App(context=context).node)
    assert str(raised.value).startswith(message)
