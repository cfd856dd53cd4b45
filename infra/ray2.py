"""What Luma Ray2 clips on Bedrock need in the cloud, granted narrowly: the state machine starts and polls the async
jobs and lets Bedrock write their MP4s under the output bucket's Bedrock prefix; the plan step reads each model's
lifecycle (GetFoundationModel) before any job runs.

IAM facts relied on:
- StartAsyncInvoke "requires permission for the bedrock:InvokeModel action" (Bedrock Runtime API reference,
  StartAsyncInvoke; https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_StartAsyncInvoke.html).
- "Because Amazon Bedrock writes a file to an Amazon S3 bucket on your behalf, the AWS role that you use needs ...
  s3:PutObject", and bedrock:GetAsyncInvoke to track the job (Amazon Nova user guide, video-gen-access.html:
  documented for Nova Reel, the same async API Ray2 uses; for Ray2 itself [unverified]).
- GetAsyncInvoke's resource is the invocation, `arn:...:bedrock:<region>:<account>:async-invoke/<id>` (the ARN
  format GetAsyncInvoke answers with; the IAM resource type for the action [unverified]).
- The output bucket is SSE-S3 (infra/storage.py), so Bedrock needs no KMS key grant; a bucket with a customer
  managed key would also need kms:GenerateDataKey on that key for the same role.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, ArnFormat, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline.backends.lifecycle import foundation_model_id
from pipeline.catalog import RAY2
from pipeline.cloud.contract import RAY2_JOBS_FOLDER, RAY2_OUTPUT_PREFIX


class Ray2Jobs(Construct):
    """A policy on the state machine's role: InvokeModel (StartAsyncInvoke) on Luma Ray2 only, GetAsyncInvoke on
    this account's async invocations in this region, PutObject for Bedrock's output under RAY2_OUTPUT_PREFIX and
    for the per-clip records under runs/*/<RAY2_JOBS_FOLDER>/. Exposes `policy`."""

    def __init__(self, scope: Construct, construct_id: str, *, role: iam.IRole, output_bucket: s3.IBucket,
                 product_id: str | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.model_arn = stack.format_arn(service="bedrock", account="", resource="foundation-model",
                                          resource_name=RAY2.model_id)
        invocations = stack.format_arn(service="bedrock", resource="async-invoke", resource_name="*")
        output = output_bucket.arn_for_objects(f"{RAY2_OUTPUT_PREFIX}*")
        records = output_bucket.arn_for_objects(f"runs/*/{RAY2_JOBS_FOLDER}/*")
        self.policy = iam.Policy(self, "Policy", roles=[role], statements=[
            iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=[self.model_arn]),
            iam.PolicyStatement(actions=["bedrock:GetAsyncInvoke"], resources=[invocations]),
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[output, records]),
            *marketplace_statements(product_id),
        ])
        for resource, reason in (
            (invocations, "Bedrock assigns each async invocation's id when it starts: GetAsyncInvoke on this account's "
                          "invocations in this region only"),
            (output, "Bedrock writes each Ray2 job's MP4 under <prefix>/<clip content key>/<invocation id>/ (PutObject "
                     "only, this prefix only)"),
            (records, "The `Record ... Ray2 job ...` states write how each clip's job ended under its run's folder"),
        ):
            Validations.of(self.policy).acknowledge(Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{_nag_text(stack, resource)}]", reason=reason))
        Validations.of(self.policy).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]", reason="The AWS Marketplace subscription actions have no resource type; "
            "Subscribe is narrowed to Ray2's product with aws-marketplace:ProductId"))


# Bedrock's first call to a Marketplace model subscribes the account and needs aws-marketplace:Subscribe,
# Unsubscribe and ViewSubscriptions on the calling role ("Request access to models", bedrock/latest/userguide/
# model-access.html). They have no resource type; "For the aws-marketplace:Subscribe action only, you can use the
# aws-marketplace:ProductId condition key to restrict subscription to specific models" ("Grant IAM permissions to
# request access to Amazon Bedrock foundation models", model-access-permissions.html), so Subscribe is narrowed to
# Ray2's product and the other two, which carry no product id, are granted as that page's example grants them.
# Ray2's product id is on its model card, not in the stored table (model-access-product-ids.html) [unverified]: it
# is the stack's ray2_product_id context; unset, the role gets no Subscribe (subscribe once in the console).
MARKETPLACE_VIEW = ("aws-marketplace:Unsubscribe", "aws-marketplace:ViewSubscriptions")


def marketplace_statements(product_id: str | None) -> list[iam.PolicyStatement]:
    statements = [iam.PolicyStatement(actions=list(MARKETPLACE_VIEW), resources=["*"])]
    if product_id:
        statements.append(iam.PolicyStatement(
            actions=["aws-marketplace:Subscribe"], resources=["*"],
            conditions={"ForAnyValue:StringEquals": {"aws-marketplace:ProductId": [product_id]}}))
    return statements


class ModelLifecycleCheck(Construct):
    """bedrock:GetFoundationModel for the plan step (pipeline/backends/lifecycle.py) on exactly the foundation
    models the deployment calls, in the regions it calls them (an inference profile's model in any region)."""

    def __init__(self, scope: Construct, construct_id: str, *, plan: lambda_.IFunction,
                 models: Iterable[tuple[str, str | None]]) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        arns: list[str] = []
        for model_id, region in models:
            base = foundation_model_id(model_id)
            any_region = base != model_id  # a cross-region profile serves the model from several regions
            arn = stack.format_arn(service="bedrock", account="", region="*" if any_region else (region or stack.region),
                                   resource="foundation-model", resource_name=base, arn_format=ArnFormat.SLASH_RESOURCE_NAME)
            if arn not in arns:
                arns.append(arn)
        if plan.role is None:
            raise ValueError(f"{plan.node.path} has no role to grant the model check to")
        self.policy = iam.Policy(self, "Policy", roles=[plan.role], statements=[
            iam.PolicyStatement(actions=["bedrock:GetFoundationModel"], resources=arns)])
        for arn in arns:
            if ":*::" in arn:
                Validations.of(self.policy).acknowledge(Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{_nag_text(stack, arn)}]",
                    reason="A cross-region inference profile routes to this foundation model in several regions"))


def _nag_text(stack: Stack, token: str) -> str:
    """An ARN as cdk-nag prints it in a finding's id: intrinsic references as <Logical.Attr> and <AWS::Pseudo>."""
    resolved = stack.resolve(token)
    if isinstance(resolved, str):
        return resolved
    parts = []
    for part in resolved["Fn::Join"][1]:
        if isinstance(part, str):
            parts.append(part)
        elif "Ref" in part:
            parts.append(f"<{part['Ref']}>")
        else:
            lid, attr = part["Fn::GetAtt"]
            parts.append(f"<{lid}.{attr}>")
    return "".join(parts)
