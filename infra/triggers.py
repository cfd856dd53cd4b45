"""The S3 trigger (EventBridge rule -> starter Lambda) and the EventBridge Scheduler group and role for
manifests with `schedule:`."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

MANIFEST_KEY_PATTERNS = ("manifests/*.yaml", "manifests/*.yml")  # pipeline.cloud.is_manifest_key agrees


class ManifestTriggers(Construct):
    """`Object Created`/`Object Deleted` of a manifest in the input bucket reach the starter (events it
    could not take land in a dead-letter queue); schedules live in their own group and start the state
    machine through a role that can do only that."""

    def __init__(self, scope: Construct, construct_id: str, *, input_bucket: s3.IBucket, starter: lambda_.Function,
                 state_machine: sfn.StateMachine) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.schedule_group = scheduler.CfnScheduleGroup(self, "Schedules", name=f"{stack.stack_name}-schedules")
        self.scheduler_role = iam.Role(
            self, "SchedulerRole", description="EventBridge Scheduler: start the campaign state machine",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": self.schedule_arn("*")},
            }))
        state_machine.grant_start_execution(self.scheduler_role)

        self.dead_letters = sqs.Queue(self, "DeadLetters", enforce_ssl=True, encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      retention_period=Duration.days(14))
        self.rule = events.Rule(
            self, "ManifestChanged", description="A campaign manifest was added, replaced or deleted",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created", "Object Deleted"],
                detail={"bucket": {"name": [input_bucket.bucket_name]},
                        "object": {"key": [{"wildcard": p} for p in MANIFEST_KEY_PATTERNS]}}),
            targets=[targets.LambdaFunction(starter, dead_letter_queue=self.dead_letters, retry_attempts=8,
                                            max_event_age=Duration.hours(6))],
        )

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

    def schedule_arn(self, name: str) -> str:
        return Stack.of(self).format_arn(service="scheduler", resource="schedule",
                                         resource_name=f"{self.schedule_group.name}/{name}")
