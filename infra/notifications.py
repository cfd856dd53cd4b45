"""The operators' topic: run summaries from the report and approval steps, and the execution status changes that
end a run outside them (EventBridge rules), on one KMS-encrypted, TLS-only SNS topic."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# The event Step Functions sends EventBridge when an execution's status changes; its detail carries what
# DescribeExecution returns (name, status, error, cause, ...), status one of RUNNING, SUCCEEDED, FAILED,
# TIMED_OUT, ABORTED ("EventBridge (CloudWatch Events) for Step Functions execution status changes",
# https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html; source and detail-type in the EventBridge
# events reference, https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-states.html).
STATUS_CHANGE = "Step Functions Execution Status Change"
# A run that ends at `Campaign failed` was announced by its report step already.
ANNOUNCED_ERRORS = ["CampaignFailed"]


class RunNotifications(Construct):
    """Exposes `topic` (and its `key`). `watch(state_machine)` adds the rules for runs that end outside the
    report step: FAILED (but not CampaignFailed), TIMED_OUT and ABORTED."""

    def __init__(self, scope: Construct, construct_id: str, *, email: str | None) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True,
                           description="Encrypts the campaign notification topic")
        # EventBridge publishes to an encrypted topic only if the key lets it (SNS developer guide, "Enabling
        # compatibility between event sources from AWS services and encrypted topics") [unverified: not found
        # with the search tool; the grant is the documented shape of that page's policy].
        # The same page lists CloudWatch (cloudwatch.amazonaws.com) for alarm actions on an encrypted topic
        # [unverified likewise].
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("events.amazonaws.com"), iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"]))
        self.topic = sns.Topic(self, "Topic", display_name="Campaign runs", master_key=self.key, enforce_ssl=True)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """sns:Publish on the topic, and the two KMS actions a publisher to an encrypted topic needs on its key
        (kms:GenerateDataKey and kms:Decrypt, as the SNS encrypted-topic key policies in AWS's guides name
        them), without CDK's `kms:GenerateDataKey*` wildcard."""
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["sns:Publish"], resources=[self.topic.topic_arn]))
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn]))

    def grant_webhook_secret(self, grantee: iam.IGrantable, *, secret: str) -> None:
        """secretsmanager:GetSecretValue on the webhook's signing secret, nothing else (not DescribeSecret, as
        CDK's `grant_read` would add). GetSecretValue needs no more for a secret encrypted with the AWS managed
        key aws/secretsmanager; one under a customer managed key also needs kms:Decrypt on that key, which is
        not granted (API_GetSecretValue.html, "Required permissions")."""
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue"], resources=[webhook_secret_arn(Stack.of(self), secret)]))

    def watch(self, state_machine: sfn.IStateMachine) -> None:
        message = events.RuleTargetInput.from_text(
            f"campaign execution {events.EventField.from_path('$.detail.name')} ended "
            f"{events.EventField.from_path('$.detail.status')} outside its report step: "
            f"{events.EventField.from_path('$.detail.error')}: {events.EventField.from_path('$.detail.cause')} "
            f"(execution {events.EventField.from_path('$.detail.executionArn')})")
        patterns = {
            "Failed": {"status": ["FAILED"], "error": [{"anything-but": ANNOUNCED_ERRORS}]},
            "Stopped": {"status": ["TIMED_OUT", "ABORTED"]},
        }
        for name, detail in patterns.items():
            rule = events.Rule(self, name, description=f"campaign executions that ended outside the report step ({name})",
                               event_pattern=events.EventPattern(
                                   source=["aws.states"], detail_type=[STATUS_CHANGE],
                                   detail={"stateMachineArn": [state_machine.state_machine_arn], **detail}))
            rule.add_target(targets.SnsTopic(self.topic, message=message))


def webhook_secret_arn(stack: Stack, secret: str) -> str:
    """The IAM resource of one secret: its full ARN as given, or, for a name, the ARN with `-??????` for the six
    random characters Secrets Manager appends; `??????` (not `*`) matches exactly that one secret, not another
    whose name starts the same ("Limiting Access to Specific Secrets",
    https://docs.aws.amazon.com/secretsmanager/latest/userguide/permissions_grant-limited-resources.html)."""
    if secret.startswith("arn:"):
        return secret
    return stack.format_arn(service="secretsmanager", resource="secret", resource_name=f"{secret}-??????",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)
