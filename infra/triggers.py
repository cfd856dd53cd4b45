"""The S3 trigger (EventBridge rule -> starter Lambda, with the events it failed on kept in a queue) and the
EventBridge Scheduler group and role for manifests with `schedule:`."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# Case-sensitive, as EventBridge's wildcard matching is (eventbridge/latest/userguide/eb-create-pattern-operators.html);
# pipeline.cloud.names.is_manifest_key is the same rule.
MANIFEST_KEY_PATTERNS = ("manifests/*.yaml", "manifests/*.yml")
# Lambda retries a failed asynchronous invocation twice, then discards the event unless a destination or
# dead-letter queue keeps it (lambda/latest/dg/invocation-async-error-handling.html); the on-failure record
# carries the original event as `requestPayload` (lambda/latest/dg/invocation-async-retain-records.html).
STARTER_RETRIES = 2
STARTER_MAX_EVENT_AGE = Duration.hours(6)


def manifest_event_pattern(bucket_name: str) -> dict[str, Any]:
    """What the starter handles: any `Object Created`, and the `Object Deleted` that may end a manifest (a
    delete marker, or a DeleteObject call). A lifecycle expiration of a noncurrent version (`deletion-type`
    "Permanently Deleted", `reason` "Lifecycle Expiration": AmazonS3/latest/userguide/EventBridge.html) is
    left out; the starter ignores it too, and removes a schedule only when a HEAD finds no current object."""
    return {
        "source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"],
        "detail": {
            "bucket": {"name": [bucket_name]},
            "object": {"key": [{"wildcard": p} for p in MANIFEST_KEY_PATTERNS]},
            "$or": [{"deletion-type": [{"exists": False}]}, {"deletion-type": ["Delete Marker Created"]},
                    {"reason": ["DeleteObject"]}],
        },
    }


class ManifestTriggers(Construct):
    """Manifest events reach the starter. An event EventBridge cannot deliver, and one the starter failed on
    three times (a manifest it cannot read, a throttled StartExecution, a failed CreateSchedule), land in
    `failed_events` (an alarm watches it); schedules live in their own group and start the state machine
    through a role that can do only that."""

    def __init__(self, scope: Construct, construct_id: str, *, input_bucket: s3.IBucket, starter: lambda_.Function,
                 state_machine: sfn.StateMachine) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.schedule_group = scheduler.CfnScheduleGroup(self, "Schedules", name=f"{stack.stack_name}-schedules")
        # aws:SourceArn must be the schedule GROUP's ARN, never a schedule or a name prefix, or Scheduler
        # cannot assume the role (scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html).
        self.scheduler_role = iam.Role(
            self, "SchedulerRole", description="EventBridge Scheduler: start the campaign state machine",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": stack.account, "aws:SourceArn": self.schedule_group_arn},
            }))
        state_machine.grant_start_execution(self.scheduler_role)

        # One queue for both kinds of failure: a raw event (EventBridge's target dead-letter queue) or a Lambda
        # invocation record whose requestPayload is the event (the starter's on-failure destination).
        self.failed_events = sqs.Queue(self, "DeadLetters", enforce_ssl=True,
                                       encryption=sqs.QueueEncryption.SQS_MANAGED, retention_period=Duration.days(14))
        self.rule = events.Rule(
            self, "ManifestChanged", description="A campaign manifest was added, replaced or deleted",
            event_pattern=events.EventPattern(**_cdk_pattern(manifest_event_pattern(input_bucket.bucket_name))),
            targets=[targets.LambdaFunction(starter, dead_letter_queue=self.failed_events, retry_attempts=8,
                                            max_event_age=Duration.hours(6))],
        )
        starter.configure_async_invoke(on_failure=destinations.SqsDestination(self.failed_events),
                                       retry_attempts=STARTER_RETRIES, max_event_age=STARTER_MAX_EVENT_AGE)
        self.alarm = cloudwatch.Alarm(
            self, "FailedEventsAlarm", alarm_description="Manifest events the starter could not handle are waiting in "
            "the failed-events queue (DeadLetterQueueUrl output): read, fix, re-upload the manifest",
            metric=self.failed_events.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)

        starter.add_environment("CAMPAIGN_STATE_MACHINE_ARN", state_machine.state_machine_arn)
        starter.add_environment("CAMPAIGN_SCHEDULER_ROLE_ARN", self.scheduler_role.role_arn)
        starter.add_environment("CAMPAIGN_SCHEDULE_GROUP", self.schedule_group.ref)
        starter.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[input_bucket.arn_for_objects("manifests/*")]))
        state_machine.grant_start_execution(starter)
        starter.add_to_role_policy(iam.PolicyStatement(
            actions=["states:DescribeExecution"],
            resources=[stack.format_arn(service="states", resource="execution",
                                        resource_name=f"{state_machine.state_machine_name}:*",
                                        arn_format=ArnFormat.COLON_RESOURCE_NAME)]))
        starter.add_to_role_policy(iam.PolicyStatement(
            actions=["scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule",
                     "scheduler:GetSchedule"],
            resources=[self.schedule_arn("*")]))
        starter.add_to_role_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[self.scheduler_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}))

    @property
    def schedule_group_arn(self) -> str:
        return Stack.of(self).format_arn(service="scheduler", resource="schedule-group",
                                         resource_name=self.schedule_group.name)

    def schedule_arn(self, name: str) -> str:
        return Stack.of(self).format_arn(service="scheduler", resource="schedule",
                                         resource_name=f"{self.schedule_group.name}/{name}")


def _cdk_pattern(pattern: dict[str, Any]) -> dict[str, Any]:
    """events.EventPattern's keyword arguments for a pattern written as EventBridge spells it."""
    return {"source": pattern["source"], "detail_type": pattern["detail-type"], "detail": pattern["detail"]}
