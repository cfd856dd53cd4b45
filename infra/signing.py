"""The key that signs delivered files' Content Credentials in the cloud: an AWS KMS ECC P-256 key (the private key
never leaves KMS) and its certificate chain kept with the stack in an SSM parameter."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from pipeline.credentials.keys import DEV_CHAIN_VALUE, ENV_CHAIN_PARAMETER, ENV_KMS_KEY

MAX_CHAIN_CHARS = 4096  # a Standard-tier SSM parameter holds up to 4 KB (SSM user guide, "Managing parameter tiers")


class CampaignSigning(Construct):
    """Exposes `key` (KMS, ECC_NIST_P256, SIGN_VERIFY) and `chain` (the SSM parameter with the PEM chain, leaf first,
    whose leaf certifies the key's public key; `development` until one is issued: the functions then issue an
    untrusted development chain in memory for each run). `grant_sign(fn)` lets a function sign and nothing more."""

    def __init__(self, scope: Construct, construct_id: str, *, chain_file: str | None) -> None:
        super().__init__(scope, construct_id)
        chain = DEV_CHAIN_VALUE
        if chain_file:
            text = Path(chain_file).read_text(encoding="ascii")
            if "-----BEGIN CERTIFICATE" not in text or len(text) > MAX_CHAIN_CHARS:
                raise ValueError(f"{chain_file}: -c signing_chain must name a PEM certificate chain of at most "
                                 f"{MAX_CHAIN_CHARS} characters")
            chain = text
        # Asymmetric KMS keys do not rotate (KMS developer guide, "Rotating AWS KMS keys": automatic rotation is
        # for symmetric encryption keys only); retained, because a deleted key can no longer sign re-deliveries.
        self.key = kms.Key(self, "Key", key_spec=kms.KeySpec.ECC_NIST_P256, key_usage=kms.KeyUsage.SIGN_VERIFY,
                           description="Signs the Content Credentials (C2PA) of delivered campaign files",
                           removal_policy=RemovalPolicy.RETAIN)
        self.chain = ssm.StringParameter(self, "Chain", string_value=chain, tier=ssm.ParameterTier.STANDARD,
                                         description="PEM certificate chain of the campaign signing key (leaf first), "
                                                     f"or '{DEV_CHAIN_VALUE}' for an untrusted development chain")

    def grant_sign(self, fn: lambda_.Function) -> None:
        # kms:Sign and kms:GetPublicKey on this key only (KMS API reference: Sign, GetPublicKey); the chain read
        # with ssm:GetParameter on this parameter only.
        fn.add_to_role_policy(iam.PolicyStatement(actions=["kms:Sign", "kms:GetPublicKey"],
                                                  resources=[self.key.key_arn]))
        fn.add_to_role_policy(iam.PolicyStatement(actions=["ssm:GetParameter"],
                                                  resources=[self.chain.parameter_arn]))
        fn.add_environment(ENV_KMS_KEY, self.key.key_arn)
        fn.add_environment(ENV_CHAIN_PARAMETER, self.chain.parameter_name)
