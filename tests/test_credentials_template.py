"""infra/signing.py synthesized (aws_cdk.assertions): an ECC P-256 signing key in KMS, its chain in SSM, and a
grant of kms:Sign / kms:GetPublicKey on that key alone to the function that publishes; no key material anywhere
in the template."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
from aws_cdk import App, Stack  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402
from aws_cdk.assertions import Match, Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.signing import CampaignSigning  # noqa: E402
from pipeline.credentials.keys import DEV_CHAIN_VALUE, ENV_CHAIN_PARAMETER, ENV_KMS_KEY, make_development_chain  # noqa: E402


def _template(chain_file: str | None) -> Template:
    stack = Stack(App(), "Bare")
    fn = lambda_.Function(stack, "Report", runtime=lambda_.Runtime.PYTHON_3_12, handler="tasks.report.handler",
                          code=lambda_.Code.from_inline("def handler(e, c): pass"))
    signing = CampaignSigning(stack, "Signing", chain_file=chain_file)
    signing.grant_sign(fn)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def template() -> Template:
    return _template(None)


def test_the_key_is_an_ecc_p256_signing_key_kept_on_delete(template: Template) -> None:
    template.has_resource("AWS::KMS::Key", {
        "Properties": Match.object_like({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        "DeletionPolicy": "Retain"})
    template.has_resource_properties("AWS::SSM::Parameter", {"Type": "String", "Value": DEV_CHAIN_VALUE})


def test_the_function_may_sign_with_that_key_only_and_is_told_where_it_is(template: Template) -> None:
    [(key_id, _)] = template.find_resources("AWS::KMS::Key").items()
    [(param_id, _)] = template.find_resources("AWS::SSM::Parameter").items()
    [policy] = template.find_resources("AWS::IAM::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    kms = [s for s in statements if any(str(a).startswith("kms:") for a in _list(s["Action"]))]
    assert kms == [{"Action": ["kms:Sign", "kms:GetPublicKey"], "Effect": "Allow",
                    "Resource": {"Fn::GetAtt": [key_id, "Arn"]}}]
    ssm = [s for s in statements if any(str(a).startswith("ssm:") for a in _list(s["Action"]))]
    assert [s["Action"] for s in ssm] == ["ssm:GetParameter"] and param_id in json.dumps(ssm[0]["Resource"])
    env = next(iter(template.find_resources("AWS::Lambda::Function").values()))["Properties"]["Environment"]["Variables"]
    assert env[ENV_KMS_KEY] == {"Fn::GetAtt": [key_id, "Arn"]} and env[ENV_CHAIN_PARAMETER] == {"Ref": param_id}
    assert "PRIVATE KEY" not in json.dumps(template.to_json())


def test_a_chain_given_at_deploy_is_kept_in_the_parameter(tmp_path: Path) -> None:
    chain, _ = make_development_chain()
    (tmp_path / "chain.pem").write_bytes(chain)
    _template(str(tmp_path / "chain.pem")).has_resource_properties("AWS::SSM::Parameter", {"Value": chain.decode()})
    (tmp_path / "bad.pem").write_text("not a chain")
    with pytest.raises(ValueError, match="bad.pem: -c signing_chain must name a PEM certificate chain"):
        _template(str(tmp_path / "bad.pem"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
