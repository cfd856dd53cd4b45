"""CampaignStack: buckets, task functions, the clip renderer, the state machine and its triggers, wired with
explicit, narrow grants; cdk-nag's AwsSolutions findings that remain are acknowledged below with reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.loaders
from aws_cdk import (
    Acknowledgment,
    CfnElement,
    CfnMapping,
    CfnOutput,
    CfnRule,
    CfnRuleAssertion,
    Fn,
    Stack,
    Validations,
)
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.functions import TaskFunctions
from infra.notifications import RunNotifications
from infra.ray2 import ModelLifecycleCheck, Ray2Jobs
from infra.settings import StackSettings
from infra.signing import CampaignSigning
from infra.storage import CampaignBuckets
from infra.studio import CampaignStudio, StudioSettings
from infra.triggers import ManifestTriggers
from infra.workflow import CampaignStateMachine, ClipRenderer
from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL
from pipeline.cloud.contract import MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE_ENHANCER = DEFAULT_ENHANCER_MODEL.split(".", 1)[1]  # the model behind the default's `us.` profile
# which task functions touch which bucket (infra/functions.py TASKS keys)
READS_INPUT = ("plan", "image", "prepare_batch", "collect_batch", "assemble", "report")  # manifests and assets
# (the report copies each edited image's source asset beside it)
USES_OUTPUT = ("plan", "enhance", "image", "prepare_batch", "collect_batch", "voice", "assemble", "report",
               "approval")
PUBLISHES = ("report", "approval")  # run summaries to the notification topic
SIGNS = ("report", "approval")  # they publish delivered files under runs/..., signed (pipeline/credentials/)


class CampaignStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.bedrock_foundation_model_arns: list[str] = []
        self._geography: str | None = None  # see _region_geography
        retention = logs.RetentionDays[settings.log_retention]

        # what the task functions may read of the input bucket (pipeline/cloud/tenancy.py narrows it per manifest)
        self.input_read_prefixes = (MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX, *settings.shared_asset_prefixes)

        # 1. Storage; the weights live in the output bucket unless the context names another bucket.
        self.buckets = CampaignBuckets(self, "Buckets", cache_expiry_days=settings.cache_expiry_days)
        weights: s3.IBucket = (s3.Bucket.from_bucket_name(self, "Weights", settings.weights_bucket)
                               if settings.weights_bucket else self.buckets.output)
        self.weights_s3_uri = f"s3://{weights.bucket_name}/{settings.weights_prefix}"

        # 1b. The operators' topic (its ARN goes into the task functions' environment).
        self.notifications = RunNotifications(self, "Notifications", email=settings.notify_email)

        # 2. The processing image and role, then the task functions that build its requests.
        self.renderer = ClipRenderer(self, "ClipRenderer", output_bucket=self.buckets.output, weights_bucket=weights,
                                     weights_prefix=settings.weights_prefix)
        self.tasks = TaskFunctions(self, "Tasks", layer_dir=(ROOT / settings.layer_dir), environment=self._environment(),
                                   log_retention=retention, all_media=settings.heavy_backends)
        fns = self.tasks.functions
        for key in READS_INPUT:  # manifests, submitted assets and the shared folders: nothing else in the bucket
            _grant_objects(fns[key], self.buckets.input, ["s3:GetObject", "s3:GetObjectVersion"],
                           prefixes=self.input_read_prefixes)
        for key in USES_OUTPUT:
            _grant_objects(fns[key], self.buckets.output, ["s3:GetObject", "s3:PutObject"])
        self._grant_bedrock(fns)
        # Polly: SynthesizeSpeech only (the cloud never starts a synthesis task: pipeline/cloud/settings.py). Its
        # resource is "*": without lexicons the action names no resource ("Amazon Polly API Permissions: Actions,
        # Permissions, and Resources Reference", polly/latest/dg/api-permissions-reference.html: SynthesizeSpeech, *)
        fns["voice"].add_to_role_policy(iam.PolicyStatement(actions=["polly:SynthesizeSpeech"], resources=["*"]))
        for key in PUBLISHES:
            self.notifications.grant_publish(fns[key])
            if settings.webhook_secret:  # they POST the same summary to the webhook, signed with this secret
                self.notifications.grant_webhook_secret(fns[key], secret=settings.webhook_secret)
        self.signing = CampaignSigning(self, "Signing", chain_file=self.node.try_get_context("signing_chain"))
        for key in SIGNS:
            self.signing.grant_sign(fns[key])

        # 3. The state machine and its triggers.
        self.workflow = CampaignStateMachine(
            self, "Workflow", functions=fns, output_bucket=self.buckets.output, renderer=self.renderer,
            job_concurrency=settings.job_concurrency, gpu_concurrency=settings.gpu_concurrency,
            distributed_map_threshold=settings.distributed_map_threshold, log_retention=retention,
            approval_timeout_s=settings.approval_timeout_s, ray2_concurrency=settings.quotas["ray2_concurrency"],
            polly_tps=settings.quotas["polly_neural_tps"])
        state_machine = self.workflow.state_machine
        self.notifications.watch(state_machine)
        # Luma Ray2 on Bedrock: the state machine starts and polls the jobs; the plan step checks every model first
        if "bedrock" in settings.video.split("+"):
            self.ray2 = Ray2Jobs(self, "Ray2Jobs", role=state_machine.role, output_bucket=self.buckets.output,
                                 product_id=settings.ray2_product_id)
        checked = self._models_called()
        if checked:
            ModelLifecycleCheck(self, "ModelLifecycleCheck", plan=fns["plan"], models=checked)
        self.triggers = ManifestTriggers(self, "Triggers", input_bucket=self.buckets.input, starter=fns["starter"],
                                         state_machine=state_machine)

        # 4. What an operator needs (also `campaign submit` / `campaign status`).
        CfnOutput(self, "InputBucketName", value=self.buckets.input.bucket_name,
                  description="Drop manifests into manifests/ here (or: campaign submit --bucket)")
        CfnOutput(self, "OutputBucketName", value=self.buckets.output.bucket_name,
                  description="cache/ and runs/<campaign>/<run-id>/ (report.json, report.html, videos, images)")
        CfnOutput(self, "AccessLogsBucketName", value=self.buckets.access_logs.bucket_name)
        CfnOutput(self, "NotificationTopicArn", value=self.notifications.topic.topic_arn,
                  description="Run summaries and approval requests; subscribe with -c notify_email=... or in the console")
        CfnOutput(self, "StateMachineArn", value=state_machine.state_machine_arn,
                  description="CAMPAIGN_STATE_MACHINE_ARN for `campaign status`")
        CfnOutput(self, "ExecutionsConsoleUrl", description="The state machine's executions in the console",
                  value=Fn.join("", ["https://", self.region, ".console.aws.amazon.com/states/home?region=", self.region,
                                     "#/statemachines/view/", state_machine.state_machine_arn]))
        # What `campaign run --video sagemaker` from a laptop passes as --sagemaker-option role_arn=... image_uri=...
        # (the caller of CreateProcessingJob needs iam:PassRole on RoleArn: SageMaker API reference, RoleArn)
        CfnOutput(self, "SageMakerRoleArn", value=self.renderer.role.role_arn,
                  description="--sagemaker-option role_arn=<this> (the clip jobs' role; your user needs iam:PassRole on it)")
        CfnOutput(self, "SageMakerImageUri", value=self.renderer.image.image_uri,
                  description="--sagemaker-option image_uri=<this> (the clip container in ECR)")
        CfnOutput(self, "WeightsS3Uri", value=self.weights_s3_uri,
                  description="Put model weights here: campaign models pull MODEL --to <this>")
        CfnOutput(self, "ScheduleGroupName", value=self.triggers.schedule_group.ref)
        CfnOutput(self, "SigningKeyArn", value=self.signing.key.key_arn,
                  description="KMS key (ECC P-256) that signs Content Credentials; certify its public key and put the "
                              "chain in SigningChainParameter (or deploy with -c signing_chain=chain.pem)")
        CfnOutput(self, "SigningChainParameter", value=self.signing.chain.parameter_name)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.triggers.failed_events.queue_url,
                  description="Manifest events that were not handled: raw events EventBridge could not deliver, "
                  "and Lambda records (requestPayload = the event) the starter failed on 3 times")
        # the failed-events alarm tells the operators' topic (and so the notify_email subscriber)
        self.triggers.alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.notifications.topic))
        CfnOutput(self, "FailedEventsAlarmName", value=self.triggers.alarm.alarm_name)
        # 5. The studio, when context studio=true (behind a load balancer only allowed_ips reach).
        studio = StudioSettings.from_context(self.node)
        if studio.enabled:
            self.studio = CampaignStudio(self, "Studio", settings=studio, input_bucket=self.buckets.input,
                                         output_bucket=self.buckets.output, log_retention=retention,
                                         state_machine=state_machine)
            CfnOutput(self, "StudioUrl", value=self.studio.url,
                      description="campaign studio (reachable from allowed_ips only)")
            if studio.domain_name:  # the name in StudioUrl must point here (CNAME or alias): no DNS record is made
                CfnOutput(self, "StudioLoadBalancerDnsName", value=self.studio.load_balancer.load_balancer_dns_name)
        self._acknowledge_nag_findings()

    def _environment(self) -> dict[str, str]:
        s = self.settings
        env = {
            "CAMPAIGN_OUTPUT_BUCKET": self.buckets.output.bucket_name,
            "CAMPAIGN_ENHANCER": s.enhancer, "CAMPAIGN_IMAGES": s.images, "CAMPAIGN_VIDEO": s.video,
            "CAMPAIGN_SAGEMAKER_ROLE_ARN": self.renderer.role.role_arn,
            "CAMPAIGN_SAGEMAKER_IMAGE_URI": self.renderer.image.image_uri,
            "CAMPAIGN_MODELS_S3_URI": self.weights_s3_uri,
            "CAMPAIGN_NOTIFY_TOPIC_ARN": self.notifications.topic.topic_arn,
        }
        if s.enhancer == "bedrock" or s.enhancer_model:
            env["CAMPAIGN_ENHANCER_MODEL"] = self._enhancer_model()
        optional = {"CAMPAIGN_STABILITY_REGION": s.stability_region,
                    "CAMPAIGN_SAGEMAKER_INSTANCE_TYPE": s.instance_type, "CAMPAIGN_SAGEMAKER_VOLUME_GB": s.volume_gb,
                    "CAMPAIGN_SAGEMAKER_CONTAINER_ARGS": s.container_args,
                    "CAMPAIGN_COMPILE_CACHE_S3_URI": (f"{self.weights_s3_uri}{s.compile_cache_prefix}"
                                                      if s.compile_cache_prefix else None),
                    "CAMPAIGN_SAGEMAKER_MAX_RUNTIME_S": s.max_runtime_s, "CAMPAIGN_CLIPS_PER_BATCH": s.clips_per_batch,
                    "CAMPAIGN_ALLOWED_ENHANCER_MODELS": ",".join(s.allowed_enhancer_models) or None,
                    "CAMPAIGN_MAX_BUDGET_USD": s.max_budget_usd,
                    "CAMPAIGN_SHARED_ASSET_PREFIXES": ",".join(s.shared_asset_prefixes) or None,
                    "CAMPAIGN_REQUIRE_TEAM_PREFIX": "true" if s.require_team_prefix else None,
                    "CAMPAIGN_MIN_SCHEDULE_INTERVAL_S": s.min_schedule_interval_s,
                    "CAMPAIGN_SAGEMAKER_INSTANCES": s.quotas["sagemaker_instances"],
                    "CAMPAIGN_POLLY_TPS": s.quotas["polly_neural_tps"],
                    "CAMPAIGN_WEBHOOK_URL": s.webhook_url, "CAMPAIGN_WEBHOOK_SECRET_ID": s.webhook_secret}
        env.update({k: str(v) for k, v in optional.items() if v is not None})
        return env

    def _enhancer_model(self) -> str:
        """The enhancer's model id for this stack: the context's, else the default through the geographic
        profile of the stack's region (a CloudFormation mapping: the region is a deploy-time value)."""
        if self.settings.enhancer_model:
            return self.settings.enhancer_model
        return Fn.join(".", [self._region_geography(), DEFAULT_BASE_ENHANCER])

    def _region_geography(self) -> str:
        """`us`/`eu`/`apac` for the stack's region, from a mapping of the commercial regions botocore lists
        (offline) by their geography; deploying anywhere else stops at a template Rule that says why. Whether
        each listed region is a source region of the model's profile is unverified (see region_geography)."""
        if self._geography is None:
            from pipeline.backends.bedrock import region_geography

            endpoints = botocore.loaders.create_loader().load_data("endpoints")  # bundled with botocore: offline
            [aws] = [p for p in endpoints["partitions"] if p["partition"] == "aws"]
            regions = {r: g for r in aws["regions"] if (g := region_geography(r))}
            mapping = CfnMapping(self, "BedrockGeography", mapping={r: {"prefix": g} for r, g in sorted(regions.items())})
            CfnRule(self, "BedrockRegion", assertions=[CfnRuleAssertion(
                assert_=Fn.condition_contains(sorted(regions), self.region),
                assert_description="The default prompt enhancer is Claude through a geographic cross-Region inference "
                "profile (us., eu., apac.), invoked from a source region of its geography: deploy in one of these "
                "regions, or set context enhancer_model to a model id this region can invoke")])
            self._geography = mapping.find_in_map(self.region, "prefix")
        return self._geography

    def _grant_bedrock(self, fns: dict[str, Any]) -> None:
        """InvokeModel on exactly the models the backends call (the enhancer and any allowed alternatives, the
        13 Stability tools, through their cross-region inference profiles), and what the first call of a
        third-party model needs to subscribe the account through AWS Marketplace."""
        from pipeline import catalog
        from pipeline.backends.bedrock import DEFAULT_STABILITY_REGION

        s = self.settings
        if s.enhancer == "bedrock":
            resources = [arn for m in (s.enhancer_model, *s.allowed_enhancer_models) if m
                         for arn in self._model_arns(m, None)]
            if not s.enhancer_model:  # the default, through the region's geographic profile (a deploy-time value)
                resources += [self.format_arn(service="bedrock", resource="inference-profile",
                                              resource_name=self._enhancer_model()),
                              f"arn:{self.partition}:bedrock:*::foundation-model/{DEFAULT_BASE_ENHANCER}"]
                self.bedrock_foundation_model_arns.append(
                    f"arn:<AWS::Partition>:bedrock:*::foundation-model/{DEFAULT_BASE_ENHANCER}")
            fns["enhance"].add_to_role_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=resources))
            _grant_marketplace(fns["enhance"])
        if s.images == "bedrock":
            region = s.stability_region or DEFAULT_STABILITY_REGION
            tools = sorted({t.model_id for t in catalog.EDIT_TOOLS.values()})
            fns["image"].add_to_role_policy(iam.PolicyStatement(
                actions=["bedrock:InvokeModel"], resources=[arn for m in tools for arn in self._model_arns(m, region)]))
            _grant_marketplace(fns["image"])

    def _models_called(self) -> list[tuple[str, str | None]]:
        """(model id, region or None for the stack's) of every Bedrock model the backends call: what the plan
        step's lifecycle check asks GetFoundationModel about (pipeline/backends/lifecycle.py models_used)."""
        from pipeline import catalog
        from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL, DEFAULT_STABILITY_REGION

        s = self.settings
        models: list[tuple[str, str | None]] = []
        if s.enhancer == "bedrock":
            models += [(m, None) for m in (s.enhancer_model or DEFAULT_ENHANCER_MODEL, *s.allowed_enhancer_models)]
        if s.images == "bedrock":
            region = s.stability_region or DEFAULT_STABILITY_REGION
            models += [(m, region) for m in sorted({t.model_id for t in catalog.EDIT_TOOLS.values()})]
        if "bedrock" in s.video.split("+"):
            models.append((catalog.RAY2.model_id, None))
        return models

    def _model_arns(self, model_id: str, region: str | None) -> list[str]:
        """A model id, or a cross-region inference profile (`us.`/`eu.`/`apac.`/`global.` + model; the default
        enhancer's prefix is a deploy-time value) plus the foundation model in the regions the profile routes to."""
        prefix, _, base = model_id.partition(".")
        if prefix in ("us", "eu", "apac", "global", "jp", "au", "ca"):
            profile = self.format_arn(service="bedrock", region=region or self.region, resource="inference-profile",
                                      resource_name=model_id)
            self.bedrock_foundation_model_arns.append(f"arn:<AWS::Partition>:bedrock:*::foundation-model/{base}")
            return [profile, f"arn:{self.partition}:bedrock:*::foundation-model/{base}"]
        return [f"arn:{self.partition}:bedrock:{region or self.region}::foundation-model/{model_id}"]

    def _acknowledge_nag_findings(self) -> None:
        """Each remaining AwsSolutions finding, acknowledged where it arises, with why it stays. Granular
        findings (IAM4/IAM5) are acknowledged one by one, by the exact resource or action they name."""
        out, inp = self._arn_token(self.buckets.output), self._arn_token(self.buckets.input)
        lambda_logs = "AWSLambdaBasicExecutionRole only lets the function write its own CloudWatch logs"
        xray = "X-Ray's PutTraceSegments/PutTelemetryRecords have no resource scope"
        objects = ("Object keys are content hashes and run ids known only at run time: the task reads and writes "
                   "objects of its bucket (GetObject/PutObject only, no delete)")
        _acknowledge(self.buckets.access_logs, "AwsSolutions-S1",
                     "This is the access-log bucket; logging it into itself would loop")
        _acknowledge(self.triggers.failed_events, "AwsSolutions-SQS3",
                     "This queue is the dead-letter queue (of the rule and of the starter's async invocations)")
        for key, fn in self.tasks.functions.items():
            findings = {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]":
                    lambda_logs,
                "AwsSolutions-IAM5[Resource::*]": xray + (
                    "; aws-marketplace Subscribe/Unsubscribe/ViewSubscriptions have no resource type either "
                    "(bedrock/latest/userguide/model-access-permissions.html)" if key in ("enhance", "image") else
                    "; polly:SynthesizeSpeech names no resource unless a lexicon is used, and none is "
                    "(polly/latest/dg/api-permissions-reference.html)" if key == "voice" else ""),
            }
            if key in USES_OUTPUT:
                findings[f"AwsSolutions-IAM5[Resource::{out}/*]"] = objects
            for prefix in self.input_read_prefixes if key in READS_INPUT else ():
                findings[f"AwsSolutions-IAM5[Resource::{inp}/{prefix}*]"] = (
                    "Manifests, the assets submitted for them and the stack's shared asset folders; the plan step "
                    "lets each manifest read only its own folder, its submitted assets and the shared folders")
            if not isinstance(fn, lambda_.DockerImageFunction):
                findings["AwsSolutions-L1"] = ("The layer is built for the pinned Python 3.12 runtime "
                                               "(infra/build_layer.py); moving on is a deliberate change of both")
            for rule, reason in findings.items():
                _acknowledge(fn, rule, reason)
        for model_arn in self.bedrock_foundation_model_arns:
            _acknowledge(self, f"AwsSolutions-IAM5[Resource::{model_arn}]",
                         "A cross-region inference profile routes to this foundation model in several regions")
        starter = self.tasks.functions["starter"]
        sm_name = f"<{self._logical_id(self.workflow.state_machine)}.Name>"
        _acknowledge(starter, f"AwsSolutions-IAM5[Resource::{inp}/manifests/*]",
                     "The starter reads any manifest version under manifests/")
        _acknowledge(starter, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                     f"execution:{sm_name}:*]", "Executions are named per manifest version at run time")
        _acknowledge(starter, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:"
                     f"<AWS::AccountId>:schedule/{self.triggers.schedule_group.name}/*]",
                     "Schedules are named per manifest at run time, inside this stack's schedule group only")
        sm = self.workflow.state_machine
        for key, fn in self.tasks.functions.items():
            if key != "starter":
                _acknowledge(sm, f"AwsSolutions-IAM5[Resource::<{self._logical_id(fn)}.Arn>:*]",
                             "CDK's grantInvoke also covers the function's versions and aliases")
        _acknowledge(sm, f"AwsSolutions-IAM5[Resource::{out}/runs/*/results/*]",
                     "The `Record ... failure` states write a failed job's error under its run's results/")
        _acknowledge(sm, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                     "processing-job/*]", "Processing jobs are named per clip batch at run time")
        _acknowledge(sm, "AwsSolutions-IAM5[Resource::*]", xray)
        distributed = self.workflow.distributed_map_policy
        _acknowledge(distributed, f"AwsSolutions-IAM5[Resource::{out}/runs/*/stages/*]",
                     "A Distributed Map's ItemReader reads the item list the plan step wrote under its run's stages/ "
                     "(GetObject only)")
        _acknowledge(distributed, f"AwsSolutions-IAM5[Resource::{out}/map-runs/*]",
                     "A Distributed Map's ResultWriter writes each Map Run's result files under map-runs/<map run id>/")
        _acknowledge(distributed, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
                     f"<AWS::AccountId>:execution:{sm_name}/*]",
                     "A Distributed Map's child executions are named per Map Run at run time; the state machine may "
                     "only describe and stop its own")
        role = self.renderer.role
        weights = (f"arn:<AWS::Partition>:s3:::{self.settings.weights_bucket}" if self.settings.weights_bucket else out)
        _acknowledge(role, f"AwsSolutions-IAM5[Resource::{out}/runs/*/batches/*]",
                     "A job reads its batch's inputs and writes its outputs under runs/<campaign>/<run-id>/batches/")
        _acknowledge(role, f"AwsSolutions-IAM5[Resource::{weights}/{self.settings.weights_prefix}*]",
                     "A job reads the model folders under the weights prefix")
        _acknowledge(role, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                     "log-group:/aws/sagemaker/ProcessingJobs*]", "SageMaker names each job's log stream itself")
        _acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                     "ecr:GetAuthorizationToken and cloudwatch:PutMetricData (namespace-conditioned) have no resource scope")

    def _logical_id(self, construct: Construct) -> str:
        child = construct.node.default_child
        assert isinstance(child, CfnElement), construct.node.path
        return str(self.resolve(self.get_logical_id(child)))

    def _arn_token(self, bucket: s3.Bucket) -> str:
        return f"<{self._logical_id(bucket)}.Arn>"


def _grant_objects(fn: lambda_.IFunction, bucket: s3.IBucket, actions: list[str],
                   prefixes: tuple[str, ...] = ("",)) -> None:
    """Object actions on the bucket's objects (under `prefixes`) and ListBucket (so a missing key reads as 404,
    not 403)."""
    fn.add_to_role_policy(iam.PolicyStatement(actions=actions,
                                              resources=[bucket.arn_for_objects(f"{p}*") for p in prefixes]))
    fn.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))


# Bedrock's first call to a third-party model subscribes the account through AWS Marketplace and needs these on
# the calling role (bedrock/latest/userguide/model-access.html). They have no resource type; only Subscribe
# takes the aws-marketplace:ProductId condition (model-access-permissions.html), and the product ids of the 13
# Stability Image Services are not in AWS's table (model-access-product-ids.html), so Subscribe is not narrowed.
MARKETPLACE_ACTIONS = ("aws-marketplace:Subscribe", "aws-marketplace:Unsubscribe", "aws-marketplace:ViewSubscriptions")


def _grant_marketplace(fn: lambda_.IFunction) -> None:
    fn.add_to_role_policy(iam.PolicyStatement(actions=list(MARKETPLACE_ACTIONS), resources=["*"]))


def _acknowledge(construct: Construct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
