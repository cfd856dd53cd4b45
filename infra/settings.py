"""The stack's settings from CDK context (cdk.json or `-c key=value`): each read, typed and checked once.

Deployment-specific choices only; what the pipeline itself defaults (instance type, volume, batch size,
the Claude model) stays in pipeline/ and is used whenever the context leaves it unset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from constructs import Node

from pipeline.backends.sagemaker_jobs import container_args
from pipeline.cloud import DEFAULT_APPROVAL_TIMEOUT_S, DEFAULT_DISTRIBUTED_THRESHOLD
from pipeline.cloud.contract import DEFAULT_MIN_SCHEDULE_INTERVAL_S
from pipeline.cloud.quotas import QUOTA_KEYS
from pipeline.cloud.quotas import quotas as quota_values
from pipeline.cloud.tenancy import shared_prefix_problem

# context key -> (field, kind); every key is optional
CONTEXT_KEYS = {
    "enhancer": "enhancer", "image_backend": "images", "video_backend": "video",
    "enhancer_model": "enhancer_model", "allowed_enhancer_models": "allowed_enhancer_models",
    "stability_region": "stability_region",
    "instance_type": "instance_type", "volume_gb": "volume_gb", "max_runtime_s": "max_runtime_s",
    "container_args": "container_args", "compile_cache_prefix": "compile_cache_prefix",
    "clips_per_batch": "clips_per_batch", "gpu_concurrency": "gpu_concurrency", "job_concurrency": "job_concurrency",
    "distributed_map_threshold": "distributed_map_threshold",
    "weights_bucket": "weights_bucket", "weights_prefix": "weights_prefix",
    "cache_expiry_days": "cache_expiry_days", "log_retention": "log_retention", "layer_dir": "layer_dir",
    "max_budget_usd": "max_budget_usd", "approval_timeout_s": "approval_timeout_s", "notify_email": "notify_email",
    "shared_asset_prefixes": "shared_asset_prefixes", "require_team_prefix": "require_team_prefix",
    "min_schedule_interval_s": "min_schedule_interval_s",
    "ray2_product_id": "ray2_product_id",
    "webhook_url": "webhook_url", "webhook_secret": "webhook_secret",
}
# A Secrets Manager secret's full ARN: the name, a hyphen and the six random characters Secrets Manager adds
# (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html); a name is the
# characters CreateSecret's Name allows ("ASCII letters, numbers, and the following characters: /_+=.@-", 1 to 512 of
# them: botocore's secretsmanager model, CreateSecretRequest.Name).
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}")
SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")


@dataclass(frozen=True)
class StackSettings:
    # backends the cloud runner plans with (bedrock/bedrock/sagemaker: the AWS services)
    enhancer: str = "bedrock"
    images: str = "bedrock"
    video: str = "sagemaker+bedrock"  # CogVideoX on SageMaker, Luma Ray2 on Bedrock
    enhancer_model: str | None = None  # None: pipeline.backends.bedrock.DEFAULT_ENHANCER_MODEL
    allowed_enhancer_models: tuple[str, ...] = ()  # more ids a manifest's defaults.enhancer_model may name
    stability_region: str | None = None  # None: pipeline.backends.bedrock.DEFAULT_STABILITY_REGION
    instance_type: str | None = None  # None: pipeline.backends.sagemaker_jobs.DEFAULT_INSTANCE_TYPE
    # a saved torch.compile cache, relative to the weights prefix (e.g. "compile-cache/l40s/"): mounted into every
    # clip job, which then skips its cold compile (container/README.md "Compile cache between jobs")
    compile_cache_prefix: str | None = None
    container_args: str | None = None  # the clip container's speed options, e.g. "--compile --cache pab" (container/README.md)
    volume_gb: int | None = None
    max_runtime_s: int | None = None
    clips_per_batch: int | None = None
    gpu_concurrency: int = 2  # clip batches (processing jobs, one GPU instance each) at once, per wave
    job_concurrency: int = 8  # enhance / image / assemble Lambda jobs at once, per stage
    # a stage with more Map items than this runs as a Distributed Map reading its item list from S3
    # (0: every stage that has items)
    distributed_map_threshold: int = DEFAULT_DISTRIBUTED_THRESHOLD
    weights_bucket: str | None = None  # None: the output bucket
    weights_prefix: str = "models/"
    cache_expiry_days: int = 90
    log_retention: str = "ONE_MONTH"  # an aws_logs.RetentionDays name
    layer_dir: str = "build/lambda-layer"
    max_budget_usd: float | None = None  # the spending ceiling no manifest's budget may pass (None: none)
    approval_timeout_s: int = DEFAULT_APPROVAL_TIMEOUT_S  # how long `Await approval` waits, then `expired`
    notify_email: str | None = None  # subscribed to the notification topic
    # tenants (pipeline/cloud/tenancy.py): input-bucket folders every manifest may read assets from (besides its
    # own folder and what `campaign submit` uploaded for it), e.g. "brand/,legal/"; whether each manifest must
    # sit under manifests/<team>/; the shortest interval between two runs of one manifest's schedule
    shared_asset_prefixes: tuple[str, ...] = ()
    require_team_prefix: bool = False
    min_schedule_interval_s: int = DEFAULT_MIN_SCHEDULE_INTERVAL_S
    # Luma Ray2's AWS Marketplace product id (its Bedrock model card): the state machine's role may subscribe to
    # that product only (aws-marketplace:ProductId); unset, the role cannot subscribe (subscribe once by hand)
    ray2_product_id: str | None = None
    # webhooks: where a run's summary is POSTed when its manifest has no `notify: {webhook: ...}`, and the Secrets
    # Manager secret (full ARN or name) whose value signs every delivery; the report and approval functions may
    # read (GetSecretValue) that secret only
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # the account's quotas, each a context key of its own (docs/quotas.md; pipeline/cloud/quotas.py)
    quotas: dict[str, int] = field(default_factory=quota_values)

    @classmethod
    def from_context(cls, node: Node) -> StackSettings:
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for key, name in CONTEXT_KEYS.items():
            raw = node.try_get_context(key)
            if raw is None or raw == "":
                continue
            kind = str(types[name])
            if kind == "bool":
                values[name] = _bool(key, raw)
            elif "float" in kind:
                values[name] = _positive_float(key, raw)
            elif "int" in kind:
                values[name] = _int(key, raw, minimum=0 if name == "distributed_map_threshold" else 1)
            elif "tuple" in kind:
                values[name] = tuple(x.strip() for x in (raw.split(",") if isinstance(raw, str) else raw) if x.strip())
            else:
                values[name] = str(raw)
        try:  # every quota is a context key of its own, e.g. -c ray2_concurrency=2
            values["quotas"] = quota_values({k: raw for k in QUOTA_KEYS
                                             if (raw := node.try_get_context(k)) is not None and raw != ""})
        except ValueError as exc:
            raise ValueError(f"context {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.compile_cache_prefix is not None and (self.compile_cache_prefix.startswith("/")
                                                      or not self.compile_cache_prefix.endswith("/")):
            raise ValueError(f"context compile_cache_prefix must look like 'compile-cache/l40s/' (relative to "
                             f"weights_prefix), got {self.compile_cache_prefix!r}")
        if self.container_args:
            try:
                container_args(self.container_args)
            except ValueError as exc:
                raise ValueError(f"context container_args: {exc}") from None
        if not self.weights_prefix.endswith("/") or self.weights_prefix.startswith("/"):
            raise ValueError(f"context weights_prefix must look like 'models/', got {self.weights_prefix!r}")
        if self.weights_bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.weights_bucket):
            raise ValueError(f"context weights_bucket {self.weights_bucket!r} is not a bucket name")
        if self.images == "bedrock":
            from pipeline.backends.bedrock import DEFAULT_STABILITY_REGION, region_problem
            from pipeline.catalog import EDIT_TOOLS

            region = self.stability_region or DEFAULT_STABILITY_REGION
            problems = sorted({p for t in EDIT_TOOLS.values() if (p := region_problem(t.model_id, region))})
            if problems:
                raise ValueError(f"context stability_region {region!r}: the Stability tools are called through "
                                 f"their inference profiles, and {problems[0]}; choose a US region such as us-west-2")
        self.check_webhook()
        for prefix in self.shared_asset_prefixes:
            if problem := shared_prefix_problem(prefix):
                raise ValueError(f"context shared_asset_prefixes: {problem}")
        for name in ("gpu_concurrency", "job_concurrency", "cache_expiry_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"context {name} must be at least 1, got {getattr(self, name)!r}")
        self.check_quotas()

    def check_webhook(self) -> None:
        from pipeline.manifest.notify import webhook_problem

        if self.webhook_url and (problem := webhook_problem(self.webhook_url)):
            raise ValueError(f"context webhook_url: {problem}")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("context webhook_url needs webhook_secret: the Secrets Manager secret (ARN or name) that "
                             "signs the deliveries; summaries are never sent unsigned")
        secret = self.webhook_secret
        if secret and not (SECRET_ARN.fullmatch(secret) if secret.startswith("arn:") else SECRET_NAME.fullmatch(secret)):
            raise ValueError(f"context webhook_secret must be a Secrets Manager secret's full ARN "
                             f"(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-abc123) or its name, got {secret!r}")

    def check_quotas(self) -> None:
        """Every Map's MaxConcurrency within the account's quotas (docs/quotas.md)."""
        q = self.quotas
        if "sagemaker" in self.video.split("+") and 0 < q["sagemaker_instances"] < self.gpu_concurrency:
            raise ValueError(f"context gpu_concurrency {self.gpu_concurrency} is more than the quota sagemaker_instances "
                             f"({q['sagemaker_instances']} processing-job instances of the clip instance type): lower it "
                             "or raise the quota in Service Quotas and set -c sagemaker_instances=N")
        if self.job_concurrency > q["lambda_concurrency"]:
            raise ValueError(f"context job_concurrency {self.job_concurrency} is more than the quota lambda_concurrency "
                             f"({q['lambda_concurrency']} concurrent Lambda executions)")
        if q["polly_neural_tps"] < 1:
            raise ValueError("context polly_neural_tps is 0: no voiceover could be spoken; it is the account's Polly "
                             "SynthesizeSpeech quota (8 requests/s by default, 'Quotas in Amazon Polly')")
        if "bedrock" in self.video.split("+") and q["ray2_concurrency"] < 1:
            raise ValueError("context ray2_concurrency is 0: Luma Ray2 jobs cannot start; request the quota 'On-demand "
                             "model inference concurrent requests for Luma Ray V2' or deploy without the bedrock video "
                             "backend")

    @property
    def heavy_backends(self) -> bool:
        """Local image ops or preview clips need OpenCV in every task that touches those backends."""
        return self.images == "local" or self.video == "preview"


def _int(key: str, raw: Any, *, minimum: int = 1) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"context {key} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"context {key} must be at least {minimum}, got {raw!r}")
    return value


def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    raise ValueError(f"context {key} must be true or false, got {raw!r}")


def _positive_float(key: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"context {key} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"context {key} must be more than 0, got {raw!r}")
    return value
