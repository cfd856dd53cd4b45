"""The state machine (state_machines/campaign.asl.json, inline with its placeholders filled), the clip
container image and the SageMaker role that runs it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from pipeline.cloud import DEFAULT_APPROVAL_TIMEOUT_S
from pipeline.cloud.contract import DEFAULT_POLLY_TPS, voice_pacing

ROOT = Path(__file__).resolve().parents[1]
ASL_PATH = ROOT / "state_machines" / "campaign.asl.json"
CLIP_IMAGE_DIR = ROOT / "container"
# ASL placeholder -> task function key (infra/functions.py)
FUNCTION_PLACEHOLDERS = {
    "PlanFunctionArn": "plan", "EnhanceFunctionArn": "enhance", "ImageFunctionArn": "image",
    "PrepareBatchFunctionArn": "prepare_batch", "CollectBatchFunctionArn": "collect_batch",
    "AssembleFunctionArn": "assemble", "ReportFunctionArn": "report", "ApprovalFunctionArn": "approval",
    "VoiceFunctionArn": "voice",
}
# Step Functions' managed rule for `createProcessingJob.sync` (connect-sagemaker, IAM for the .sync pattern)
SAGEMAKER_SYNC_RULE = "StepFunctionsGetEventsForSageMakerProcessingJobsRule"
# Distributed Maps: the item lists the plan step writes (pipeline/cloud.py stage_key) and where their
# ResultWriter puts each Map Run's manifest and result files (the ASL's ResultWriter Prefix).
STAGE_FILES = "runs/*/stages/*"
MAP_RESULTS_PREFIX = "map-runs/"
# A clip batch's processing job that SageMaker could not start (FailureReason `CapacityError: ...` or
# `InternalServerError: ...`) is prepared again under a new name after this wait, up to this many jobs in all.
CAPACITY_WAIT_S = 60
RENDER_ATTEMPTS = 3


class ClipRenderer(Construct):
    """The processing image (built from container/ at deploy time) and the role its jobs run as: read the
    batch inputs and the weights, write the batch outputs, pull the image, write logs. Nothing else."""

    def __init__(self, scope: Construct, construct_id: str, *, output_bucket: s3.IBucket, weights_bucket: s3.IBucket,
                 weights_prefix: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.image = ecr_assets.DockerImageAsset(self, "Image", directory=str(CLIP_IMAGE_DIR),
                                                 platform=ecr_assets.Platform.LINUX_AMD64)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="SageMaker processing jobs that render clip batches")
        batches = output_bucket.arn_for_objects("runs/*/batches/*")
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[batches]))
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"],
                                                    resources=[weights_bucket.arn_for_objects(f"{weights_prefix}*")]))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[output_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": ["runs/*/batches/*"]}}))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[weights_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{weights_prefix}*"]}}))
        self.image.repository.grant_pull(self.role)
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[stack.format_arn(service="logs", resource="log-group",
                                        resource_name="/aws/sagemaker/ProcessingJobs*",
                                        arn_format=ArnFormat.COLON_RESOURCE_NAME)]))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/ProcessingJobs"}}))


class CampaignStateMachine(Construct):
    """Standard workflow, definition inline (cfn-lint sees it), logging at level ALL and X-Ray tracing."""

    def __init__(self, scope: Construct, construct_id: str, *, functions: Mapping[str, lambda_.IFunction],
                 output_bucket: s3.IBucket, renderer: ClipRenderer, job_concurrency: int, gpu_concurrency: int,
                 distributed_map_threshold: int, log_retention: logs.RetentionDays,
                 capacity_wait_s: int = CAPACITY_WAIT_S, render_attempts: int = RENDER_ATTEMPTS,
                 approval_timeout_s: int = DEFAULT_APPROVAL_TIMEOUT_S, ray2_concurrency: int = 1,
                 polly_tps: int = DEFAULT_POLLY_TPS) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(self, "Logs", log_group_name=f"/aws/vendedlogs/states/{stack.stack_name}-campaign",
                                       retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        substitutions = {placeholder: functions[key].function_arn for placeholder, key in FUNCTION_PLACEHOLDERS.items()}
        substitutions.update(OutputBucket=output_bucket.bucket_name, JobConcurrency=str(job_concurrency),
                             GpuConcurrency=str(gpu_concurrency), DistributedMapThreshold=str(distributed_map_threshold),
                             CapacityWaitSeconds=str(capacity_wait_s), RenderAttempts=str(render_attempts),
                             ApprovalTimeoutSeconds=str(approval_timeout_s),
                             # the Ray2 batch Map's MaxConcurrency: the account's quota (pipeline/cloud/quotas.py)
                             Ray2Concurrency=str(ray2_concurrency),
                             # the voice Map's MaxConcurrency: Polly's quota, with each voice Lambda spacing its
                             # requests to match (CAMPAIGN_POLLY_TPS; pipeline/cloud/contract.py voice_pacing)
                             VoiceConcurrency=str(voice_pacing(polly_tps)[0]))
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(ASL_PATH.read_text()),
            definition_substitutions=substitutions,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
            comment="Campaign pipeline: one execution per manifest version (state_machines/campaign.asl.json)",
        )
        role = self.state_machine.role
        for key in FUNCTION_PLACEHOLDERS.values():
            functions[key].grant_invoke(role)
        # the `Record ... failure` states write a failed job's error where its result would be
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[output_bucket.arn_for_objects("runs/*/results/*")]))
        # createProcessingJob.sync: create, poll, stop on abort, and the managed rule that reports completion
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                     "sagemaker:AddTags"],
            resources=[stack.format_arn(service="sagemaker", resource="processing-job", resource_name="*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[stack.format_arn(service="events", resource="rule", resource_name=SAGEMAKER_SYNC_RULE)]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[renderer.role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        # Distributed Maps (state-map-distributed, "IAM policies for running Distributed Map states"): the
        # ItemReader reads a stage's item list, the ResultWriter writes the Map Run's result files, and the
        # state machine starts its own child executions and can describe and stop them. In a policy of its
        # own: the role's default policy cannot name the state machine that depends on it.
        self.distributed_map_policy = iam.Policy(self, "DistributedMapPolicy", roles=[role], statements=[
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[output_bucket.arn_for_objects(STAGE_FILES)]),
            iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts",
                                         "s3:AbortMultipartUpload"],
                                resources=[output_bucket.arn_for_objects(f"{MAP_RESULTS_PREFIX}*")]),
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn]),
            iam.PolicyStatement(actions=["states:DescribeExecution", "states:StopExecution"],
                                resources=[stack.format_arn(
                                    service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME,
                                    resource_name=f"{self.state_machine.state_machine_name}/*")]),
        ])
