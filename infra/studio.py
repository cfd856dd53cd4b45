"""The studio on AWS (optional, context `studio: true`): ECS Fargate behind an Application Load Balancer that
only `allowed_ips` can reach, reading runs from the output bucket and starting runs by dropping manifests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk.aws_ecr_assets import Platform
from constructs import Construct, Node

from pipeline.cloud.contract import MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX

ROOT = Path(__file__).resolve().parents[1]
PORT = 8501
# only what the image needs: the package and its metadata (Docker ignore syntax; `*` then exceptions)
IMAGE_EXCLUDE = ["*", "!pyproject.toml", "!README.md", "!pipeline/", "!pipeline/**", "!tasks/", "!tasks/**",
                 "**/__pycache__"]
SUBMITTED_PREFIXES = (MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX)  # where `campaign submit` writes


@dataclass(frozen=True)
class StudioSettings:
    enabled: bool = False
    allowed_ips: tuple[str, ...] = ()

    @classmethod
    def from_context(cls, node: Node) -> StudioSettings:
        enabled = str(node.try_get_context("studio") or "").lower() in ("true", "1", "yes")
        raw = node.try_get_context("allowed_ips") or ()
        ips = tuple(x.strip() for x in (raw.split(",") if isinstance(raw, str) else raw) if str(x).strip())
        settings = cls(enabled=enabled, allowed_ips=ips)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.enabled:
            return
        if not self.allowed_ips:
            raise ValueError("context studio=true needs allowed_ips (CIDRs that may open the studio, "
                             "e.g. -c allowed_ips=203.0.113.7/32)")
        for cidr in self.allowed_ips:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"context allowed_ips: {cidr!r} is not an IP address or CIDR: {exc}") from None
            if net.prefixlen == 0:
                raise ValueError(f"context allowed_ips: {cidr!r} opens the studio to the whole internet; "
                                 "name the addresses that may reach it")


class CampaignStudio(Construct):
    """VPC (2 AZs, one NAT, flow logs), a Fargate service in private subnets, and an internet-facing ALB whose
    security group admits only `allowed_ips`; the listener's default answer is 403 as a second fence."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StudioSettings, input_bucket: s3.IBucket,
                 output_bucket: s3.IBucket, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1, flow_logs={
            "All": ec2.FlowLogOptions(destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))})
        cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)

        # 1. The task: the studio image, its logs, and a role that reads runs and drops manifests, nothing else.
        self.task = ecs.FargateTaskDefinition(self, "Task", cpu=1024, memory_limit_mib=2048)
        app_logs = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.task.add_container(
            "Studio", image=ecs.ContainerImage.from_asset(str(ROOT), file="pipeline/studio/Dockerfile",
                                                         exclude=IMAGE_EXCLUDE, platform=Platform.LINUX_AMD64),
            port_mappings=[ecs.PortMapping(container_port=PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="studio", log_group=app_logs),
            environment={"CAMPAIGN_INPUT_BUCKET": input_bucket.bucket_name,
                         "CAMPAIGN_OUTPUT_BUCKET": output_bucket.bucket_name})
        role = self.task.task_role
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"],
                                                         resources=[output_bucket.arn_for_objects("runs/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[output_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": ["runs/*"]}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:GetObject"],
            resources=[input_bucket.arn_for_objects(f"{p}*") for p in SUBMITTED_PREFIXES]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[input_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in SUBMITTED_PREFIXES]}}))

        # 2. The load balancer: only allowed_ips get in, on its security group and again on its listener.
        alb_sg = ec2.SecurityGroup(self, "AlbSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
                                   description="campaign studio load balancer: allowed_ips only")
        for cidr in settings.allowed_ips:
            net = ipaddress.ip_network(cidr, strict=False)
            peer = ec2.Peer.ipv4(str(net)) if net.version == 4 else ec2.Peer.ipv6(str(net))
            alb_sg.add_ingress_rule(peer, ec2.Port.tcp(80), f"studio from {net}")
        self.load_balancer = elbv2.ApplicationLoadBalancer(self, "LoadBalancer", vpc=self.vpc, internet_facing=True,
                                                           security_group=alb_sg, drop_invalid_header_fields=True)
        service_sg = ec2.SecurityGroup(self, "ServiceSecurityGroup", vpc=self.vpc, allow_all_outbound=True,
                                       description="campaign studio tasks: from the load balancer only")
        service_sg.add_ingress_rule(alb_sg, ec2.Port.tcp(PORT), "from the studio load balancer")
        alb_sg.add_egress_rule(service_sg, ec2.Port.tcp(PORT), "to the studio tasks")
        self.service = ecs.FargateService(self, "Service", cluster=cluster, task_definition=self.task, desired_count=1,
                                          assign_public_ip=False, security_groups=[service_sg],
                                          vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS))
        listener = self.load_balancer.add_listener(
            "Http", port=80, open=False,
            default_action=elbv2.ListenerAction.fixed_response(403, content_type="text/plain", message_body="Forbidden"))
        listener.add_targets(
            "Studio", port=PORT, protocol=elbv2.ApplicationProtocol.HTTP, targets=[self.service], priority=1,
            conditions=[elbv2.ListenerCondition.source_ips(list(settings.allowed_ips))],
            health_check=elbv2.HealthCheck(path="/_stcore/health", interval=Duration.seconds(30)),
            # Streamlit keeps a websocket per browser tab: keep a tab on the task that holds its session
            stickiness_cookie_duration=Duration.hours(8))
        self._acknowledge(input_bucket, output_bucket)

    def _acknowledge(self, input_bucket: s3.IBucket, output_bucket: s3.IBucket) -> None:
        stack = Stack.of(self)

        def arn(bucket: s3.IBucket) -> str:
            child = bucket.node.default_child
            return f"<{stack.resolve(stack.get_logical_id(child))}.Arn>"  # type: ignore[arg-type]

        role = self.task.task_role
        reasons = {f"{arn(output_bucket)}/runs/*": "The studio lists and reads every run's report and outputs",
                   **{f"{arn(input_bucket)}/{p}*": "The studio submits manifests and their assets under this prefix"
                      for p in SUBMITTED_PREFIXES}}
        for resource, reason in reasons.items():
            Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=reason))
        if self.task.execution_role is not None:
            Validations.of(self.task.execution_role).acknowledge(Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]", reason="ecr:GetAuthorizationToken (pulling the studio image) has "
                "no resource scope"))
        Validations.of(self.task).acknowledge(Acknowledgment(
            id="AwsSolutions-ECS2", reason="The environment holds bucket names only, no secrets"))
        Validations.of(self.load_balancer).acknowledge(Acknowledgment(
            id="AwsSolutions-ELB2", reason="CDK's ALB access logging needs the stack's region at synth, and this stack "
            "names none (deploy-time values); the studio's own requests are in its container logs"))
        Validations.of(self.load_balancer).acknowledge(Acknowledgment(
            id="AwsSolutions-EC23", reason="Ingress is limited to the allowed_ips context, 0.0.0.0/0 is refused at synth"))
