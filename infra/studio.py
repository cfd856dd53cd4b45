"""The studio on AWS (optional, context `studio: true`): ECS Fargate behind an Application Load Balancer that
only `allowed_ips` can reach, over HTTPS only, where users sign in (a Cognito user pool, through the listener's
authenticate action) before any request reaches the task; reading runs from the output bucket and starting runs
by dropping manifests."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.aws_ecr_assets import Platform
from constructs import Construct, Node

from pipeline.cloud.contract import MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX

ROOT = Path(__file__).resolve().parents[1]
PORT = 8501
# only what the image needs: the package and its metadata (Docker ignore syntax; `*` then exceptions)
IMAGE_EXCLUDE = ["*", "!pyproject.toml", "!README.md", "!pipeline/", "!pipeline/**", "!tasks/", "!tasks/**",
                 "**/__pycache__"]
SUBMITTED_PREFIXES = (MANIFEST_PREFIX, SUBMITTED_ASSETS_PREFIX)  # where `campaign submit` writes
# The form ACM documents for a certificate ARN, arn:aws:acm:region:123456789012:certificate/<uuid>
# (https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/acm/aws.sdk.kotlin.services.acm.model/-describe-certificate-request/certificate-arn.html);
# `aws[a-z-]*` admits the other partitions (aws-cn, aws-us-gov).
CERTIFICATE_ARN = re.compile(r"arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:certificate/"
                             r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]", re.IGNORECASE)
# AWS recommends this post-quantum TLS 1.3/1.2 policy for new HTTPS listeners, and it is the console's default;
# CloudFormation and CDK would otherwise give ELBSecurityPolicy-2016-08 (TLS 1.0+)
# (https://docs.amazonaws.cn/en_us/elasticloadbalancing/latest/application/describe-ssl-policies.md).
# CDK's enum value is 'ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09' (aws-elasticloadbalancingv2/lib/shared/enums.ts).
SSL_POLICY = elbv2.SslPolicy.TLS13_12_RES_PQ
DOMAIN_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a Cognito domain prefix: one DNS label
SCRATCH = "/tmp"  # the task's one writable folder (a Fargate ephemeral-storage volume): outputs, workspace, home


@dataclass(frozen=True)
class StudioSettings:
    enabled: bool = False
    allowed_ips: tuple[str, ...] = ()
    certificate_arn: str | None = None  # HTTPS on 443 with it; plain HTTP on 80 (and a synth warning) without
    domain_name: str | None = None  # the name users open (the certificate's), for StudioUrl; HTTPS only
    auth_domain_prefix: str | None = None  # the Cognito sign-in domain's prefix (default campaign-studio-<account>)
    admins: tuple[str, ...] = ()  # users (their user pool `sub`) who may cancel anyone's render

    @classmethod
    def from_context(cls, node: Node) -> StudioSettings:
        enabled = str(node.try_get_context("studio") or "").lower() in ("true", "1", "yes")
        raw = node.try_get_context("allowed_ips") or ()
        ips = tuple(x.strip() for x in (raw.split(",") if isinstance(raw, str) else raw) if str(x).strip())
        admins = node.try_get_context("studio_admins") or ()
        settings = cls(enabled=enabled, allowed_ips=ips,
                       certificate_arn=str(node.try_get_context("studio_certificate_arn") or "").strip() or None,
                       domain_name=str(node.try_get_context("studio_domain_name") or "").strip() or None,
                       auth_domain_prefix=str(node.try_get_context("studio_auth_domain_prefix") or "").strip() or None,
                       admins=tuple(x.strip() for x in (admins.split(",") if isinstance(admins, str) else admins)
                                    if str(x).strip()))
        settings.check()
        return settings

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None

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
        if self.certificate_arn is None:
            # the load balancer signs users in only on HTTPS listeners (ELB User Guide, "Authenticate users using an
            # Application Load Balancer"), and prompts and sign-in cookies must not cross the internet in clear
            raise ValueError("context studio=true needs studio_certificate_arn (an ACM certificate in the stack's "
                             "region): the studio is served over HTTPS only, where the load balancer signs users in")
        if not CERTIFICATE_ARN.fullmatch(self.certificate_arn):
            raise ValueError(f"context studio_certificate_arn: {self.certificate_arn!r} is not an ACM certificate ARN "
                             "(arn:aws:acm:<region>:<account>:certificate/<id>, in the stack's region)")
        if self.domain_name is not None:
            if self.certificate_arn is None:
                raise ValueError(f"context studio_domain_name: {self.domain_name!r} needs studio_certificate_arn "
                                 "(the name is only used for the HTTPS address, which the certificate must match)")
            if not HOST_NAME.fullmatch(self.domain_name):
                raise ValueError(f"context studio_domain_name: {self.domain_name!r} is not a DNS name "
                                 "(e.g. studio.example.com, no scheme or path)")
        prefix = self.auth_domain_prefix
        if prefix is not None and (not DOMAIN_PREFIX.fullmatch(prefix)
                                   or any(w in prefix for w in ("aws", "amazon", "cognito"))):
            # Cognito refuses prefixes with these words (Cognito Developer Guide, "Using the Amazon Cognito domain")
            raise ValueError(f"context studio_auth_domain_prefix: {prefix[:80]!r} is not a Cognito domain prefix "
                             "(lowercase letters, digits and hyphens; without aws, amazon or cognito)")


class CampaignStudio(Construct):
    """VPC (2 AZs, one NAT, flow logs), a Fargate service in private subnets, and an internet-facing ALB whose
    security group admits only `allowed_ips`; the HTTPS listener's default answer is 403 as a second fence, its one
    rule signs users in (Cognito) and then forwards; port 80 only redirects to HTTPS; `url` is where users open it."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StudioSettings, input_bucket: s3.IBucket,
                 output_bucket: s3.IBucket, log_retention: logs.RetentionDays,
                 state_machine: sfn.IStateMachine | None = None) -> None:
        super().__init__(scope, construct_id)
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1, flow_logs={
            "All": ec2.FlowLogOptions(destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))})
        cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)

        # 1. The task: the studio image, its logs, and a role that reads runs and drops manifests, nothing else.
        # Its root filesystem is read-only (the code cannot be changed by anything it runs); the one writable folder
        # is a scratch volume (a task-level volume without a host path: Fargate ephemeral storage, gone with the
        # task; ECS Developer Guide, "Fargate task ephemeral storage").
        self.task = ecs.FargateTaskDefinition(self, "Task", cpu=1024, memory_limit_mib=2048,
                                              volumes=[ecs.Volume(name="scratch")])
        app_logs = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        container = self.task.add_container(
            "Studio", image=ecs.ContainerImage.from_asset(str(ROOT), file="pipeline/studio/Dockerfile",
                                                         exclude=IMAGE_EXCLUDE, platform=Platform.LINUX_AMD64),
            port_mappings=[ecs.PortMapping(container_port=PORT)], readonly_root_filesystem=True,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="studio", log_group=app_logs),
            environment={"CAMPAIGN_INPUT_BUCKET": input_bucket.bucket_name,
                         "CAMPAIGN_OUTPUT_BUCKET": output_bucket.bucket_name,
                         "CAMPAIGN_STUDIO_ADMINS": ",".join(settings.admins),
                         "HOME": f"{SCRATCH}/home", "TMPDIR": SCRATCH, "PYTHONDONTWRITEBYTECODE": "1",
                         **({"CAMPAIGN_STATE_MACHINE_ARN": state_machine.state_machine_arn} if state_machine else {})})
        container.add_mount_points(ecs.MountPoint(source_volume="scratch", container_path=SCRATCH, read_only=False))
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
        # Review on the Runs page (pipeline/studio/runs.py, the same functions as `campaign review --bucket`): a
        # decision is a new object under reviews/, and the reviewed run's report.json and report.html are rewritten
        # to show it (pipeline/report/write.py refresh_review); nothing else under runs/ is writable. A regenerate
        # reads the manifest version the run was made from and starts one execution of this state machine.
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[output_bucket.arn_for_objects("reviews/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[output_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": ["reviews/*"]}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[output_bucket.arn_for_objects(f"runs/*/{name}")
                                                 for name in ("report.json", "report.html")]))
        if state_machine is not None:
            role.add_to_principal_policy(iam.PolicyStatement(
                actions=["s3:GetObjectVersion"], resources=[input_bucket.arn_for_objects(f"{MANIFEST_PREFIX}*")]))
            state_machine.grant_start_execution(role)

        # 2. The load balancer: only allowed_ips get in, on its security group and again on its listener.
        alb_sg = ec2.SecurityGroup(self, "AlbSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
                                   description="campaign studio load balancer: allowed_ips only")
        ports = (443, 80)  # 80 stays open, to redirect
        for cidr in settings.allowed_ips:
            net = ipaddress.ip_network(cidr, strict=False)
            peer = ec2.Peer.ipv4(str(net)) if net.version == 4 else ec2.Peer.ipv6(str(net))
            for port in ports:
                alb_sg.add_ingress_rule(peer, ec2.Port.tcp(port), f"studio from {net}")
        self.load_balancer = elbv2.ApplicationLoadBalancer(self, "LoadBalancer", vpc=self.vpc, internet_facing=True,
                                                           security_group=alb_sg, drop_invalid_header_fields=True)
        service_sg = ec2.SecurityGroup(self, "ServiceSecurityGroup", vpc=self.vpc, allow_all_outbound=True,
                                       description="campaign studio tasks: from the load balancer only")
        service_sg.add_ingress_rule(alb_sg, ec2.Port.tcp(PORT), "from the studio load balancer")
        alb_sg.add_egress_rule(service_sg, ec2.Port.tcp(PORT), "to the studio tasks")
        self.service = ecs.FargateService(self, "Service", cluster=cluster, task_definition=self.task, desired_count=1,
                                          assign_public_ip=False, security_groups=[service_sg],
                                          vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS))
        # 3. The listeners. open=False everywhere: CDK would otherwise add 0.0.0.0/0 ingress for the listener port.
        forbidden = elbv2.ListenerAction.fixed_response(403, content_type="text/plain", message_body="Forbidden")
        assert settings.certificate_arn is not None  # StudioSettings.check refuses a studio without one
        # WebSockets (Streamlit's channel to the browser) work on HTTPS listeners as on HTTP ones
        # (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-listeners.html).
        # ACM certificates are regional: it must be in the stack's region
        # (https://docs.amazonaws.cn/en_us/acm/latest/userguide/acm-regions.html); the stack names no region at
        # synth, so that is not checked here (what a deployment with another region's certificate reports: unverified).
        self.listener = self.load_balancer.add_listener(
            "Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS, open=False, ssl_policy=SSL_POLICY,
            certificates=[elbv2.ListenerCertificate.from_arn(settings.certificate_arn)], default_action=forbidden)
        # Port 80 answers every request with a permanent redirect to the same host and path on HTTPS:443
        # (RedirectConfig: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-elasticloadbalancingv2-listenerrule-redirectconfig.html;
        # redirect actions: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/rule-action-types.html).
        self.redirect_listener = self.load_balancer.add_listener(
            "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, open=False,
            default_action=elbv2.ListenerAction.redirect(protocol="HTTPS", port="443", permanent=True))
        self.url = f"https://{settings.domain_name or self.load_balancer.load_balancer_dns_name}"

        # 4. Sign-in: a user pool of its own (no self sign-up: an administrator adds each user), whose hosted
        # sign-in the listener's authenticate-cognito action sends users to; only then does the request go on to
        # the task, carrying the user's identity (x-amzn-oidc-identity), which the studio reads (campaign studio
        # --auth alb). Authenticate actions exist on HTTPS listeners only (ELB User Guide, "Authenticate users using
        # an Application Load Balancer"); the load balancer talks to Cognito's endpoints over HTTPS 443, which the
        # action opens on its security group (CDK's AuthenticateCognitoAction).
        self.user_pool = cognito.UserPool(
            self, "Users", self_sign_up_enabled=False, sign_in_aliases=cognito.SignInAliases(email=True),
            mfa=cognito.Mfa.REQUIRED, mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(min_length=12, require_digits=True, require_lowercase=True,
                                                   require_uppercase=True, require_symbols=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY, removal_policy=RemovalPolicy.RETAIN)
        domain = self.user_pool.add_domain("SignIn", cognito_domain=cognito.CognitoDomainOptions(
            domain_prefix=settings.auth_domain_prefix or f"campaign-studio-{Aws.ACCOUNT_ID}"))
        client = self.user_pool.add_client(
            "Studio", generate_secret=True,  # the load balancer is a confidential client (it needs a secret)
            o_auth=cognito.OAuthSettings(flows=cognito.OAuthFlows(authorization_code_grant=True),
                                         scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                                         callback_urls=[f"{self.url}/oauth2/idpresponse"]),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO])
        targets = elbv2.ApplicationTargetGroup(
            self, "StudioTargets", vpc=self.vpc, port=PORT, protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service], health_check=elbv2.HealthCheck(path="/_stcore/health", interval=Duration.seconds(30)),
            # Streamlit keeps a websocket per browser tab: keep a tab on the task that holds its session
            stickiness_cookie_duration=Duration.hours(8))
        self.listener.add_action(
            "Studio", priority=1, conditions=[elbv2.ListenerCondition.source_ips(list(settings.allowed_ips))],
            action=elbv2_actions.AuthenticateCognitoAction(
                user_pool=self.user_pool, user_pool_client=client, user_pool_domain=domain,
                session_timeout=Duration.hours(8), next=elbv2.ListenerAction.forward([targets])))
        self._acknowledge(input_bucket, output_bucket)

    def _acknowledge(self, input_bucket: s3.IBucket, output_bucket: s3.IBucket) -> None:
        stack = Stack.of(self)

        def arn(bucket: s3.IBucket) -> str:
            child = bucket.node.default_child
            return f"<{stack.resolve(stack.get_logical_id(child))}.Arn>"  # type: ignore[arg-type]

        role = self.task.task_role
        reasons = {f"{arn(output_bucket)}/runs/*": "The studio lists and reads every run's report and outputs",
                   f"{arn(output_bucket)}/reviews/*": "Review decisions: each a new object under this prefix",
                   **{f"{arn(output_bucket)}/runs/*/{name}": "A reviewed run's report is rewritten to show the decision"
                      for name in ("report.json", "report.html")},
                   **{f"{arn(input_bucket)}/{p}*": "The studio submits manifests and their assets under this prefix"
                      for p in SUBMITTED_PREFIXES}}
        for resource, reason in reasons.items():
            Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=reason))
        if self.task.execution_role is not None:
            Validations.of(self.task.execution_role).acknowledge(Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]", reason="ecr:GetAuthorizationToken (pulling the studio image) has "
                "no resource scope"))
        Validations.of(self.user_pool).acknowledge(Acknowledgment(
            id="AwsSolutions-COG8", reason="The Plus tier's threat protection is billed per active user; this pool "
            "holds a few studio users whom an administrator adds, each with a strong password and required MFA"))
        Validations.of(self.task).acknowledge(Acknowledgment(
            id="AwsSolutions-ECS2", reason="The environment holds bucket names only, no secrets"))
        Validations.of(self.load_balancer).acknowledge(Acknowledgment(
            id="AwsSolutions-ELB2", reason="CDK's ALB access logging needs the stack's region at synth, and this stack "
            "names none (deploy-time values); the studio's own requests are in its container logs"))
        Validations.of(self.load_balancer).acknowledge(Acknowledgment(
            id="AwsSolutions-EC23", reason="Ingress is limited to the allowed_ips context, 0.0.0.0/0 is refused at synth"))
