"""A deployment's settings (the Lambda environment the CDK stack writes) and the backends they select."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.backends import (
    RoutingVideoBackend,
    make_enhancer,
    make_image_editor,
    make_translator,
    make_video_backend,
    make_voice_backend,
    video_backend_names,
)
from pipeline.backends.base import Enhancer, ImageEditor, Translator, VideoBackend, VoiceBackend
from pipeline.backends.sagemaker_jobs import DEFAULT_MAX_BATCH, DEFAULT_MAX_RUNTIME_S, DEFAULT_VOLUME_GB
from pipeline.backends.video_bedrock import BedrockVideoBackend
from pipeline.backends.video_sagemaker import SageMakerVideoBackend
from pipeline.cloud.contract import DEFAULT_MIN_SCHEDULE_INTERVAL_S, DEFAULT_POLLY_TPS, RAY2_OUTPUT_PREFIX, voice_pacing
from pipeline.cloud.tenancy import Tenancy
from pipeline.errors import BackendUnavailable
from pipeline.plan.build import KeySource
from pipeline.plan.pricing import DEFAULT_INSTANCE_TYPE

ENV_NAMES = {
    "output_bucket": "CAMPAIGN_OUTPUT_BUCKET",
    "state_machine_arn": "CAMPAIGN_STATE_MACHINE_ARN",
    "enhancer": "CAMPAIGN_ENHANCER",
    "images": "CAMPAIGN_IMAGES",
    "video": "CAMPAIGN_VIDEO",
    "voice": "CAMPAIGN_VOICE",  # polly unless set (the offline tests set local)
    "enhancer_model": "CAMPAIGN_ENHANCER_MODEL",
    "allowed_enhancer_models": "CAMPAIGN_ALLOWED_ENHANCER_MODELS",  # comma-separated, beside enhancer_model
    "clips_per_batch": "CAMPAIGN_CLIPS_PER_BATCH",
    "sagemaker_role_arn": "CAMPAIGN_SAGEMAKER_ROLE_ARN",
    "sagemaker_image_uri": "CAMPAIGN_SAGEMAKER_IMAGE_URI",
    "instance_type": "CAMPAIGN_SAGEMAKER_INSTANCE_TYPE",
    "container_args": "CAMPAIGN_SAGEMAKER_CONTAINER_ARGS",  # the container's speed options (shell words)
    "compile_cache_s3_uri": "CAMPAIGN_COMPILE_CACHE_S3_URI",  # a saved torch.compile cache under the weights
    "volume_gb": "CAMPAIGN_SAGEMAKER_VOLUME_GB",
    "max_runtime_s": "CAMPAIGN_SAGEMAKER_MAX_RUNTIME_S",
    "models_s3_uri": "CAMPAIGN_MODELS_S3_URI",
    "scheduler_role_arn": "CAMPAIGN_SCHEDULER_ROLE_ARN",
    "schedule_group": "CAMPAIGN_SCHEDULE_GROUP",
    "max_budget_usd": "CAMPAIGN_MAX_BUDGET_USD",  # the stack-wide ceiling no manifest's budget can pass
    "notify_topic_arn": "CAMPAIGN_NOTIFY_TOPIC_ARN",  # run summaries (pipeline/report/summary.py)
    # webhooks (pipeline/cloud/webhook_step.py): the URL a run's summary goes to when its manifest names none, and
    # the Secrets Manager secret (ARN or name) whose value signs every delivery
    "webhook_url": "CAMPAIGN_WEBHOOK_URL",
    "webhook_secret_id": "CAMPAIGN_WEBHOOK_SECRET_ID",
    "ray2_poll_s": "CAMPAIGN_RAY2_POLL_S",  # seconds between GetAsyncInvoke polls of a Luma Ray2 job (0 in tests)
    "ray2_max_polls": "CAMPAIGN_RAY2_MAX_POLLS",
    # tenants (pipeline/cloud/tenancy.py): input-bucket folders every manifest may read (comma-separated), and
    # whether each manifest must sit under manifests/<team>/; the shortest interval a manifest's schedule may have
    "shared_asset_prefixes": "CAMPAIGN_SHARED_ASSET_PREFIXES",
    "require_team_prefix": "CAMPAIGN_REQUIRE_TEAM_PREFIX",
    "min_schedule_interval_s": "CAMPAIGN_MIN_SCHEDULE_INTERVAL_S",
    # the account's processing-instance quota for the clip instance type (pipeline/cloud/quotas.py): 0 refuses
    # CogVideoX clips at planning instead of failing their batches an hour in
    "sagemaker_instances": "CAMPAIGN_SAGEMAKER_INSTANCES",
    # the account's Polly SynthesizeSpeech quota (requests/s): each voice Lambda spaces its requests by it
    # (pipeline/cloud/contract.py voice_pacing; the stack passes the same value to the voice Map's MaxConcurrency)
    "polly_tps": "CAMPAIGN_POLLY_TPS",
}
_INT_SETTINGS = ("clips_per_batch", "volume_gb", "max_runtime_s", "ray2_poll_s", "ray2_max_polls",
                 "min_schedule_interval_s", "sagemaker_instances", "polly_tps")
_MAY_BE_ZERO = ("ray2_poll_s", "sagemaker_instances")


@dataclass(frozen=True)
class CloudSettings:
    """What a task needs to know about its deployment. Unset values are None; `need` says which variable
    is missing. Values left unset fall back to the defaults in pipeline/backends/sagemaker_jobs.py."""

    output_bucket: str | None = None
    state_machine_arn: str | None = None
    enhancer: str | None = None
    images: str | None = None
    video: str | None = None
    voice: str | None = None  # None: polly
    enhancer_model: str | None = None
    allowed_enhancer_models: str | None = None
    clips_per_batch: int | None = None
    sagemaker_role_arn: str | None = None
    sagemaker_image_uri: str | None = None
    instance_type: str | None = None
    container_args: str | None = None
    compile_cache_s3_uri: str | None = None
    volume_gb: int | None = None
    max_runtime_s: int | None = None
    models_s3_uri: str | None = None
    scheduler_role_arn: str | None = None
    schedule_group: str | None = None
    max_budget_usd: float | None = None
    notify_topic_arn: str | None = None
    webhook_url: str | None = None
    webhook_secret_id: str | None = None
    ray2_poll_s: int | None = None
    ray2_max_polls: int | None = None
    shared_asset_prefixes: str | None = None
    require_team_prefix: str | None = None
    min_schedule_interval_s: int | None = None  # None: contract.DEFAULT_MIN_SCHEDULE_INTERVAL_S
    sagemaker_instances: int | None = None
    polly_tps: int | None = None  # None: contract.DEFAULT_POLLY_TPS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloudSettings:
        values: dict[str, Any] = {}
        for name, var in ENV_NAMES.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            if name == "max_budget_usd":
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise ValueError(f"{var} must be a number of US dollars, got {raw!r}") from None
                if not values[name] > 0:
                    raise ValueError(f"{var} must be more than 0, got {raw!r}")
            elif name in _INT_SETTINGS:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(f"{var} must be an integer, got {raw!r}") from None
                least = 0 if name in _MAY_BE_ZERO else 1
                if values[name] < least:
                    raise ValueError(f"{var} must be at least {least}, got {raw!r}")
            else:
                values[name] = raw
        return cls(**values)

    def need(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise BackendUnavailable(f"{ENV_NAMES[name]} is not set in this function's environment "
                                     "(the CDK stack sets it; is the function wired to this task?)")
        return value

    def tenancy(self) -> Tenancy:
        return Tenancy.from_setting(self.shared_asset_prefixes, self.require_team_prefix)

    def schedule_floor_s(self) -> int:
        return self.min_schedule_interval_s or DEFAULT_MIN_SCHEDULE_INTERVAL_S

    def backend_names(self) -> dict[str, str]:
        enhancer = self.need("enhancer")
        # translate jobs run in the enhance Lambda with the enhancer's model (CloudBackends.translator)
        return {"enhancer": enhancer, "images": self.need("images"), "video": self.need("video"),
                "voice": self.voice or "polly", "translator": "bedrock" if enhancer == "bedrock" else "passthrough"}


class CloudBackends:
    """The plan's backends by name, each constructed when first used, so a light task never builds (or
    imports the heavy modules of) a capability it does not touch. `with_video` swaps the video capability,
    as the collect step does with a batch's outputs."""

    def __init__(self, names: Mapping[str, str], *, enhancer_model: str | None, settings: CloudSettings,
                 video: VideoBackend | None = None, polly: Any = None) -> None:
        self._names = dict(names)
        self._enhancer_model = enhancer_model
        self._settings = settings
        self._polly = polly  # a Polly client (None: boto3's, made on first request)
        if video is not None:
            self.__dict__["video"] = video  # what the cached property would have made

    def names(self) -> dict[str, str]:
        return dict(self._names)

    def with_video(self, video: VideoBackend) -> CloudBackends:
        return CloudBackends(self._names, enhancer_model=self._enhancer_model, settings=self._settings, video=video)

    @functools.cached_property
    def enhancer(self) -> Enhancer:
        name = self._names["enhancer"]
        if name not in ("bedrock", "passthrough"):
            raise BackendUnavailable(f"enhancer {name!r} cannot run in the cloud runner (use bedrock or passthrough)")
        return make_enhancer(name, model=self._enhancer_model)

    @functools.cached_property
    def images(self) -> ImageEditor:
        return make_image_editor(self._names["images"])

    @functools.cached_property
    def video(self) -> VideoBackend:
        """The deployment's video backend: `sagemaker`, `preview` (offline tests), `bedrock` (Luma Ray2, whose
        jobs the state machine starts and polls), or several joined by '+' (`sagemaker+bedrock`)."""
        parts = video_backend_names(self._names["video"])
        if len(parts) > 1:
            return RoutingVideoBackend([self._video(n) for n in parts])
        return self._video(parts[0])

    def _video(self, name: str) -> VideoBackend:
        if name == "bedrock":  # names and keys Ray2 clips; the state machine runs the jobs (pipeline/cloud/ray2.py)
            return BedrockVideoBackend(output_s3_uri=f"s3://{self._settings.need('output_bucket')}/{RAY2_OUTPUT_PREFIX}")
        if name == "preview":  # the offline tests' stand-in for the container
            return make_video_backend(name)
        if name != "sagemaker":
            raise BackendUnavailable(f"video backend {name!r} cannot run in the cloud runner (use sagemaker, bedrock "
                                     "or sagemaker+bedrock)")
        s = self._settings
        return SageMakerVideoBackend(
            image_uri=s.need("sagemaker_image_uri"), role_arn=s.need("sagemaker_role_arn"),
            models_s3_uri=s.need("models_s3_uri"), work_s3_uri=f"s3://{s.need('output_bucket')}/runs",
            instance_type=s.instance_type or DEFAULT_INSTANCE_TYPE, volume_gb=s.volume_gb or DEFAULT_VOLUME_GB,
            max_runtime_s=s.max_runtime_s or DEFAULT_MAX_RUNTIME_S, max_batch=s.clips_per_batch or DEFAULT_MAX_BATCH,
            container_args=s.container_args or (), compile_cache_s3_uri=s.compile_cache_s3_uri)

    @functools.cached_property
    def voice(self) -> VoiceBackend:
        """Amazon Polly (the cloud's voice), or the plan's named voice backend (`local` in offline tests).

        Polly here is one slot of the voice Map: its requests `interval_s` apart, the slot held that long after
        the last, botocore's own retries off (the state machine retries, after its backoff), so the Map's
        MaxConcurrency slots together stay within the account's requests per second (contract.voice_pacing).
        SynthesizeSpeech only: a voiceover fits its shot (at most a few hundred characters, manifest validation),
        far under its 3,000-character limit, so no synthesis task (and no task bucket) is ever needed."""
        name = self._names.get("voice", "polly")
        if name != "polly":
            return make_voice_backend(name)
        from pipeline.backends.voice_polly import PollyVoiceBackend, RateLimiter

        _, interval_s = voice_pacing(self._settings.polly_tps or DEFAULT_POLLY_TPS)
        return PollyVoiceBackend(client=self._polly, task_bucket=None, limiter=RateLimiter(1.0 / interval_s),
                                 hold_slot=True, max_attempts=1)

    @functools.cached_property
    def translator(self) -> Translator:
        """Claude on Bedrock with the enhancer's model where the deployment enhances with Bedrock (one grant covers
        both: Converse "requires permission for the bedrock:InvokeModel action", API_runtime_Converse.html, the
        enhance Lambda's grant; translate jobs run in that Lambda), else the passthrough."""
        name = self._names.get("translator") or ("bedrock" if self._names["enhancer"] == "bedrock" else "passthrough")
        return make_translator(name, model=self._enhancer_model)

    def key_source(self) -> KeySource:
        return KeySource(enhancer=self.enhancer.identity(), images=self.images.identity, video=self.video.identity,
                         voice=self.voice.identity(), translator=self.translator.identity())
