"""Buckets: input (manifests and assets, versioned, events to EventBridge), output (cache/ and runs/), access logs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline.cloud.contract import RAY2_OUTPUT_PREFIX

ACCESS_LOG_EXPIRY_DAYS = 365
NONCURRENT_MANIFEST_DAYS = 90  # older manifest versions; a run reads its version when it starts
MAP_RUN_EXPIRY_DAYS = 14  # Distributed Map result files are kept for inspecting a run, then removed
# Luma Ray2 jobs' raw output: the collect step copies each finished clip into cache/ with its provenance right
# after the job ends, so nothing reads these afterwards (failed or abandoned jobs' folders included)
BEDROCK_OUTPUT_EXPIRY_DAYS = 14


class CampaignBuckets(Construct):
    """Encrypted (SSE-S3), TLS-only, public access blocked, access-logged buckets; kept on `cdk destroy`."""

    def __init__(self, scope: Construct, construct_id: str, *, cache_expiry_days: int) -> None:
        super().__init__(scope, construct_id)
        common: dict[str, Any] = {  # what every bucket here has
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "removal_policy": RemovalPolicy.RETAIN,
        }
        self.access_logs = s3.Bucket(
            self, "AccessLogs", **{**common, "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_PREFERRED},
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(ACCESS_LOG_EXPIRY_DAYS))],
        )
        self.input = s3.Bucket(
            self, "Input", **common, versioned=True,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="input/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-old-versions",
                                 noncurrent_version_expiration=Duration.days(NONCURRENT_MANIFEST_DAYS)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
            ],
        )
        # S3 -> EventBridge through the bucket's own setting (event_bridge_enabled=True would add a custom
        # resource and its Lambda for the same thing).
        cfn_input = self.input.node.default_child
        assert isinstance(cfn_input, s3.CfnBucket)
        cfn_input.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)

        self.output = s3.Bucket(
            self, "Output", **common,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="output/",
            lifecycle_rules=[
                # content-addressed outputs can always be re-made; a run's named copies under runs/ stay
                s3.LifecycleRule(id="expire-cache", prefix="cache/", expiration=Duration.days(cache_expiry_days)),
                # Distributed Map result files: the report is built from runs/.../results/, nothing reads these later
                s3.LifecycleRule(id="expire-map-runs", prefix="map-runs/", expiration=Duration.days(MAP_RUN_EXPIRY_DAYS)),
                s3.LifecycleRule(id="expire-bedrock-output", prefix=RAY2_OUTPUT_PREFIX,
                                 expiration=Duration.days(BEDROCK_OUTPUT_EXPIRY_DAYS)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
            ],
        )
