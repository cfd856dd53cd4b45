"""Real prompt and image backends on Amazon Bedrock: Claude (Converse) enhances shot prompts, the 13 Stability
AI Image Services (InvokeModel) run the image edit chains.

Clients are made on first use, never at import, through standard boto3 configuration: profiles, `AWS_REGION`,
`AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (how the tests point this at a local fake). botocore's own retries are off
(`total_max_attempts=1`): this module retries throttling, 5xx and "Inference error" itself, with exponential
backoff and full jitter, so a retry is counted once and reported as one of ours.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from PIL import Image, UnidentifiedImageError

from pipeline.backends.base import EditOutcome
from pipeline.catalog import EDIT_TOOLS, EditTool
from pipeline.errors import (
    BackendUnavailable,
    ContentFiltered,
    InputRejected,
    JobFailed,
    PipelineError,
    Throttled,
    TransientError,
)

# --- defaults (each written once, here) -----------------------------------------------------------

# Claude Haiku 4.5 through its US cross-region inference profile: fast, cheap, and enough for a one-paragraph
# rewrite. Configurable: the manifest's defaults, `--enhancer-model` and the stack's context pass another id
# (e.g. a Sonnet 4.x profile). Id from the Bedrock model card "Claude Haiku 4.5" (docs.aws.amazon.com,
# model-card-anthropic-claude-haiku-4-5), checked 2026.
DEFAULT_ENHANCER_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
# Used when standard AWS configuration names no region. `us.` profiles can be called from any US region.
DEFAULT_REGION = "us-west-2"
# Geographic cross-Region inference profiles (bedrock/latest/userguide/geographic-cross-region-inference.html,
# cross-region-inference-support.html): `us.`, `eu.`, `apac.` + the model id, each invoked from a source
# region of its geography and routed within it. Which regions are source regions differs per model and is
# unverified here beyond the rule below (us-* but not GovCloud, eu-*, ap-*); a region outside these
# (ca-, sa-, me-, af-, il-, mx-) has no geographic profile for the default enhancer and is refused.
GEOGRAPHIES = {"us": "us", "eu": "eu", "ap": "apac"}  # a region name's first part -> profile prefix
# The Stability services are called in us-west-2 by the reference notebook; overridable per deployment.
DEFAULT_STABILITY_REGION = "us-west-2"
STABILITY_REGION_ENV = "CAMPAIGN_STABILITY_REGION"



def region_geography(region: str) -> str | None:
    """The geographic profile prefix a region can invoke (`us`, `eu`, `apac`), else None."""
    if region.startswith("us-gov"):
        return None
    return GEOGRAPHIES.get(region.split("-", 1)[0])


def model_geography(model_id: str) -> str | None:
    """The geography of a geographic inference profile id (`eu.anthropic...` -> `eu`); None for a base
    model id or a global profile."""
    prefix = model_id.split(".", 1)[0]
    return prefix if prefix in GEOGRAPHIES.values() else None


def model_for_region(model_id: str, region: str) -> str:
    """The same model through the profile of `region`'s geography (the default enhancer in any stack)."""
    geography = region_geography(region)
    if geography is None:
        raise ValueError(f"{region} has no geographic inference profile (us., eu., apac.) for {model_id}: "
                         "name a model id that region can invoke (context enhancer_model, --enhancer-model)")
    base = model_id.split(".", 1)[1] if model_geography(model_id) else model_id
    return f"{geography}.{base}"


def region_problem(model_id: str, region: str) -> str | None:
    """Why `model_id` cannot be invoked from `region` (a geographic profile of another geography), or None."""
    wanted = model_geography(model_id)
    if wanted is None or region_geography(region) == wanted:
        return None
    hint = (f"use {model_for_region(model_id, region)}" if region_geography(region)
            else "use a model id that region can invoke")
    return (f"{model_id} is a {wanted}. cross-Region inference profile, which can be invoked only from "
            f"{wanted} source regions, not {region}: {hint}")


DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BASE_DELAY_S = 1.0
DEFAULT_MAX_DELAY_S = 30.0

# --- the prompt template ----------------------------------------------------------------------------

# The seed blog's template (aws-samples/sample-video-generation-on-amazon-sagemaker, app/streamlit_app.py):
# <Role>/<Task> as the system prompt, the user's prompt in <Prompt> tags, temperature 0.1. Two changes, hence
# the version: a length hint (CogVideoX reads at most 226 tokens, so a longer paragraph only gets trimmed) and
# English only (CogVideoX's text encoder is English). Bump the version whenever the text changes: it is part of
# every enhanced prompt's cache key.
PROMPT_TEMPLATE_VERSION = "role-task-v1"
SYSTEM_PROMPT = """<Role>
Your role is to enhance the user prompt that is given to you by providing additional details to the prompt. The end goal is to
convert the user prompt into a short video clip, so it is necessary to provide as much information as you can.
</Role>
<Task>
You must add details to the user prompt in order to enhance it for video generation: subject, setting, lighting, colours,
camera framing and movement. You must provide a 1 paragraph response, in English, of about 100 words. No more and no less.
Only include the enhanced prompt in your response. Do not include anything else.
</Task>"""
ENHANCE_TEMPERATURE = 0.1
ENHANCE_MAX_TOKENS = 512  # a 100-word paragraph is ~150 tokens; this bounds cost if the model rambles


def user_message(prompt: str) -> str:
    return f"<Prompt>\n{prompt}\n</Prompt>"


# --- input limits of the Stability services ---------------------------------------------------------


@dataclass(frozen=True)
class InputLimits:
    """What a tool accepts as its input image. Larger inputs are downscaled (and the outcome says so);
    smaller ones are rejected, since upscaling them here would hide the problem."""

    min_side: int = 64
    max_side: int | None = None
    max_pixels: int = 9_437_184  # 4096 x 2304; Stability REST API limit, assumed for Bedrock [unverified]
    source: str = "Stability REST API docs: every side >= 64 px, at most 9,437,184 px [unverified on Bedrock]"


ONE_MEGAPIXEL = 1_048_576  # 1024 x 1024
GENERAL_LIMITS = InputLimits()
TOOL_LIMITS: dict[str, InputLimits] = {
    "upscale-creative": InputLimits(max_pixels=ONE_MEGAPIXEL, source="reference §1: input 64x64 to 1 MP"),
    "upscale-conservative": InputLimits(max_pixels=ONE_MEGAPIXEL, source="reference §1: input 64x64 to 1 MP"),
    "upscale-fast": InputLimits(
        min_side=32, max_side=1536, max_pixels=ONE_MEGAPIXEL,
        source="Stability REST API docs: sides 32..1536 px, at most 1,048,576 px [unverified on Bedrock]",
    ),
}
OUTPAINT_SIDES = ("left", "right", "up", "down")

FILTER_PREFIX = "Filter reason"
INFERENCE_ERROR = "Inference error"

# Error codes (botocore's `Error.Code`) by what we do about them.
THROTTLE_CODES = frozenset({
    "ThrottlingException", "TooManyRequestsException", "ThrottledException", "RequestThrottled",
    "RequestLimitExceeded", "SlowDown",
})
TRANSIENT_CODES = frozenset({
    "ServiceUnavailableException", "ServiceUnavailable", "InternalServerException", "InternalFailure",
    "ModelNotReadyException", "ModelTimeoutException", "ModelErrorException",
})
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "ExpiredTokenException", "InvalidSignatureException",
    "IncompleteSignature", "MissingAuthenticationToken",
})

T = TypeVar("T")


# --- retries and error mapping ----------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: before attempt n+1 sleep U(0, min(max, base * 2**n))."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    max_delay_s: float = DEFAULT_MAX_DELAY_S

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"delays must be >= 0, got base {self.base_delay_s!r}, max {self.max_delay_s!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Sleep before the attempt after `attempt` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class _Where:
    """What a call was about, for error messages."""

    what: str  # e.g. "inpaint" or "prompt enhancement"
    model_id: str
    region: str


def _map_error(exc: Exception, where: _Where) -> PipelineError:
    """One botocore failure -> one pipeline error; retryable ones are TransientError (or Throttled)."""
    head = f"{where.what}: {where.model_id} in {where.region}"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return BackendUnavailable(f"{head}: no usable AWS credentials ({exc}); configure a profile or AWS_* variables")
    if isinstance(exc, NoRegionError):
        return BackendUnavailable(f"{head}: no AWS region configured ({exc})")
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return TransientError(f"{head}: connection failed: {exc}")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLE_CODES or (status == 429 and code not in TRANSIENT_CODES):
            return Throttled(f"{head}: throttled ({code or status}): {message}")
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(f"{head}: service error ({code or status}): {message}")
        if code == "AccessDeniedException":
            # bedrock/latest/userguide/model-access.html: the first call to a third-party model subscribes the
            # account through AWS Marketplace; until that completes (minutes) calls answer AccessDeniedException.
            # Not retried here: it may as well be a missing permission, which no wait cures.
            return JobFailed(
                f"{head}: access denied ({message}). The role needs bedrock:InvokeModel on this model, and for a "
                "third-party model aws-marketplace:Subscribe, Unsubscribe and ViewSubscriptions: the first call "
                "subscribes the account through AWS Marketplace, which can take some minutes, during which calls "
                "are denied (re-run the job then). Anthropic models also need the account's one-time use-case "
                "form (Bedrock console, model catalog)"
            )
        if code in CREDENTIAL_CODES:
            return BackendUnavailable(f"{head}: AWS credentials rejected ({code}): {message}")
        if code == "ResourceNotFoundException":
            return JobFailed(f"{head}: model not found ({message}); check the model id and the region")
        if code == "ValidationException":
            return JobFailed(f"{head}: request rejected as invalid: {message}")
        return JobFailed(f"{head}: {code or status}: {message}")
    if isinstance(exc, BotoCoreError):
        return JobFailed(f"{head}: {exc}")
    raise exc  # not ours to classify: a bug, let it surface with its own traceback


def _check_region(where: _Where) -> None:
    """Refuse before calling: a geographic profile invoked from outside its geography is denied by AWS with a
    message that does not say why."""
    problem = region_problem(where.model_id, where.region)
    if problem:
        # The enhancer's region is the session's (AWS_REGION); only the Stability tools read STABILITY_REGION_ENV.
        chooser = "AWS_REGION chooses" if where.what in ("prompt enhancement", "translation") else f"{STABILITY_REGION_ENV} chooses"
        raise BackendUnavailable(f"{where.what}: {problem} ({chooser} the region)")


def _with_retries(call: Callable[[], T], *, where: _Where, policy: RetryPolicy, rng: random.Random,
                  sleep: Callable[[float], None]) -> tuple[T, int]:
    """Run `call` until it succeeds or a non-retryable error; return its result and the attempts used.

    `call` raises TransientError itself for failures seen in a 200 response (finish reason "Inference error")."""
    last: TransientError | None = None
    for attempt in range(1, policy.max_attempts + 1):
        if attempt > 1:
            sleep(policy.delay(attempt - 1, rng))
        try:
            return call(), attempt
        except TransientError as exc:
            last = exc
        except (BotoCoreError, ClientError) as exc:
            mapped = _map_error(exc, where)
            if not isinstance(mapped, TransientError):
                raise mapped from exc
            last = mapped
    assert last is not None
    kind = type(last)
    raise kind(f"{last} (gave up after {policy.max_attempts} attempts)") from last


class _LazyClient:
    """A bedrock-runtime client made on first use (thread-safe), or the one the caller gave."""

    def __init__(self, *, region: str | None, client: Any | None, read_timeout_s: int) -> None:
        self._client = client
        self._region = region
        self._read_timeout_s = read_timeout_s
        self._lock = threading.Lock()

    @property
    def region(self) -> str:
        if self._client is not None:
            return str(self._client.meta.region_name)
        return self._region or "<default region>"

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    session = boto3.session.Session()
                    # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION is what Lambda and the other SDKs set
                    region = self._region or os.environ.get("AWS_REGION") or session.region_name or DEFAULT_REGION
                    config = Config(
                        retries={"total_max_attempts": 1, "mode": "standard"},  # we retry (see module doc)
                        connect_timeout=10,
                        read_timeout=self._read_timeout_s,
                        max_pool_connections=32,  # the local runner calls from a thread pool
                    )
                    self._client = session.client("bedrock-runtime", region_name=region, config=config)
                    self._region = region
        return self._client


# --- prompt enhancement -----------------------------------------------------------------------------


class ConverseModel:
    """A Claude model called through the Converse API: its id, the lazily made client (region rules) and the
    retry policy; the enhancer and the translator (translate_bedrock.py) share it."""

    name = "bedrock"

    def __init__(self, model_id: str = DEFAULT_ENHANCER_MODEL, *, region: str | None = None, client: Any | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, base_delay_s: float = DEFAULT_BASE_DELAY_S,
                 max_delay_s: float = DEFAULT_MAX_DELAY_S, seed: int | None = None) -> None:
        if not model_id:
            raise ValueError(f"model_id must name a Bedrock model or inference profile, got {model_id!r}")
        self.model_id = model_id
        self._client = _LazyClient(region=region, client=client, read_timeout_s=120)
        self._policy = RetryPolicy(max_attempts, base_delay_s, max_delay_s)
        self._rng = random.Random(seed)
        self._sleep: Callable[[float], None] = time.sleep


class BedrockEnhancer(ConverseModel):
    """Claude on Bedrock via the Converse API, with the seed blog's Role/Task template."""

    def __init__(self, model_id: str = DEFAULT_ENHANCER_MODEL, **options: Any) -> None:
        super().__init__(model_id, **options)
        self.last_usage: dict[str, int] = {}  # token counts of the latest call, for the cost report

    def identity(self) -> str:
        return f"bedrock:{self.model_id}:{PROMPT_TEMPLATE_VERSION}"

    def request(self, prompt: str) -> dict[str, Any]:
        """The Converse request for `prompt` (keyword arguments of `converse`)."""
        return {
            "modelId": self.model_id,
            "system": [{"text": SYSTEM_PROMPT}],
            "messages": [{"role": "user", "content": [{"text": user_message(prompt)}]}],
            "inferenceConfig": {"temperature": ENHANCE_TEMPERATURE, "maxTokens": ENHANCE_MAX_TOKENS},
        }

    def enhance(self, prompt: str) -> str:
        if not prompt.strip():
            raise InputRejected(f"prompt enhancement needs a non-empty prompt, got {prompt!r}")
        client = self._client.get()
        where = _Where("prompt enhancement", self.model_id, self._client.region)
        _check_region(where)
        response, _ = _with_retries(lambda: client.converse(**self.request(prompt)), where=where,
                                    policy=self._policy, rng=self._rng, sleep=self._sleep)
        return self._parse(response, where)

    def _parse(self, response: Mapping[str, Any], where: _Where) -> str:
        stop = response.get("stopReason")
        if stop in ("guardrail_intervened", "content_filtered"):
            raise ContentFiltered(f"{where.what}: {where.model_id} refused the prompt (stopReason {stop})")
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = " ".join(block["text"].strip() for block in content if isinstance(block, dict) and "text" in block)
        text = " ".join(text.split())  # one paragraph, whatever line breaks the model chose
        if not text:
            raise JobFailed(f"{where.what}: {where.model_id} returned no text (stopReason {stop!r})")
        usage = response.get("usage", {})
        self.last_usage = {k: int(usage[k]) for k in ("inputTokens", "outputTokens") if k in usage}
        return text  # may exceed the video model's limit (stopReason max_tokens included): the caller trims


# --- image edits ------------------------------------------------------------------------------------


def encode_png(image: Image.Image) -> str:
    """PNG bytes of `image` as a plain base64 string (what every Stability service field expects)."""
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode in ("PA", "P") else "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(b64: str, where: str) -> Image.Image:
    try:
        raw = base64.b64decode(b64, validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise JobFailed(f"{where}: the service returned an image that cannot be decoded: {exc}") from exc
    return image


def _fit(image: Image.Image, limits: InputLimits, what: str) -> tuple[Image.Image, tuple[int, int] | None]:
    """Check `image` against `limits`: reject if too small, downscale (keeping the aspect) if too large."""
    w, h = image.size
    if min(w, h) < limits.min_side:
        raise InputRejected(
            f"{what}: input is {w}x{h} px; every side must be at least {limits.min_side} px ({limits.source})"
        )
    scale = 1.0
    if w * h > limits.max_pixels:
        scale = math.sqrt(limits.max_pixels / (w * h))
    if limits.max_side is not None and max(w, h) * scale > limits.max_side:
        scale = limits.max_side / max(w, h)
    if scale >= 1.0:
        return image, None
    nw, nh = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    while nw * nh > limits.max_pixels:  # floor rounding can still leave a few pixels over
        nw, nh = nw - 1, max(1, math.floor((nw - 1) * h / w))
    if min(nw, nh) < limits.min_side:
        raise InputRejected(
            f"{what}: input is {w}x{h} px; no size within the limits keeps its aspect ratio ({limits.source})"
        )
    return image.resize((nw, nh), Image.Resampling.LANCZOS), (w, h)


def _check_params(tool: EditTool, params: Mapping[str, Any], refs: Mapping[str, Image.Image]) -> None:
    """Only the fields the catalog lists, within their ranges; the required ones present. Loud, never corrected."""
    image_fields = set(tool.image_fields)
    for name, value in params.items():
        spec = tool.fields.get(name)
        if spec is None or name in image_fields:
            where = "an image field: pass it in refs" if spec is not None else "not a field of this tool"
            raise InputRejected(f"{tool.name}: parameter {name!r} is {where} (fields: {', '.join(tool.fields)})")
        if spec.kind in ("int", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (spec.kind == "int" and value != int(value)):
                raise InputRejected(f"{tool.name}: {name} must be {'an integer' if spec.kind == 'int' else 'a number'}, got {value!r}")
            if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
                raise InputRejected(f"{tool.name}: {name}={value!r} is outside {spec.minimum}..{spec.maximum}")
        elif spec.kind == "enum" and value not in spec.choices:
            raise InputRejected(f"{tool.name}: {name}={value!r} is not one of {', '.join(spec.choices)}")
        elif spec.kind == "text" and (not isinstance(value, str) or not value.strip()):
            raise InputRejected(f"{tool.name}: {name} must be non-empty text, got {value!r}")
    for name in refs:
        if name not in image_fields:
            raise InputRejected(f"{tool.name}: image {name!r} is not an image field of this tool "
                                f"(image fields: {', '.join(sorted(image_fields)) or 'none'})")
    missing = [name for name in tool.required if name not in params and name not in refs]
    if missing:
        raise InputRejected(f"{tool.name}: missing required field(s) {', '.join(missing)}")
    if tool.any_of and not any(params.get(name) for name in tool.any_of):
        raise InputRejected(f"{tool.name}: set at least one of {', '.join(tool.any_of)} to a value above 0")


@dataclass(frozen=True)
class EditRequest:
    """One InvokeModel body, with the size of the image it carries (and the original size if downscaled)."""

    body: dict[str, Any]
    sent_size: tuple[int, int]
    resized_from: tuple[int, int] | None


class BedrockImageEditor:
    """Every Stability AI Image Service through Bedrock InvokeModel; `finish_reasons` checked on every reply."""

    name = "bedrock"

    def __init__(self, *, region: str | None = None, client: Any | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, base_delay_s: float = DEFAULT_BASE_DELAY_S,
                 max_delay_s: float = DEFAULT_MAX_DELAY_S, seed: int | None = None) -> None:
        # The Stability services live in few regions, so AWS_REGION (often elsewhere) is not used here.
        region = region or os.environ.get(STABILITY_REGION_ENV) or DEFAULT_STABILITY_REGION
        self._client = _LazyClient(region=region, client=client, read_timeout_s=300)  # upscales take a while
        self._policy = RetryPolicy(max_attempts, base_delay_s, max_delay_s)
        self._rng = random.Random(seed)
        self._sleep: Callable[[float], None] = time.sleep

    def identity(self, tool: str) -> str:
        return f"bedrock:{self._tool(tool).model_id}"

    @staticmethod
    def _tool(tool: str) -> EditTool:
        try:
            return EDIT_TOOLS[tool]
        except KeyError:
            raise InputRejected(f"unknown edit tool {tool!r} (tools: {', '.join(EDIT_TOOLS)})") from None

    def request(self, tool: str, image: Image.Image, params: Mapping[str, Any],
                refs: Mapping[str, Image.Image]) -> EditRequest:
        """The JSON body for one call, checked against the tool's fields and input limits."""
        spec = self._tool(tool)
        _check_params(spec, params, refs)
        # 1. the chain's input image, within the tool's limits
        sent, resized_from = _fit(image, TOOL_LIMITS.get(tool, GENERAL_LIMITS), f"{tool} input image")
        body: dict[str, Any] = {spec.image_field: encode_png(sent)}
        # 2. plain parameters, as given
        body.update(params)
        # 3. image-valued parameters, base64-encoded once; a mask follows its image if that was downscaled
        for name, ref in refs.items():
            if name == "mask" and resized_from is not None:
                ref = ref.resize(sent.size, Image.Resampling.NEAREST)
            else:
                ref, _ = _fit(ref, GENERAL_LIMITS, f"{tool} {name}")
            body[name] = encode_png(ref)
        body.setdefault("output_format", "png")
        return EditRequest(body=body, sent_size=sent.size, resized_from=resized_from)

    def edit(self, tool: str, image: Image.Image, params: Mapping[str, Any],
             refs: Mapping[str, Image.Image]) -> EditOutcome:
        spec = self._tool(tool)
        req = self.request(tool, image, params, refs)
        payload = json.dumps(req.body)
        client = self._client.get()
        where = _Where(tool, spec.model_id, self._client.region)
        _check_region(where)

        def call() -> tuple[Image.Image, int | None]:
            response = client.invoke_model(modelId=spec.model_id, body=payload,
                                           contentType="application/json", accept="application/json")
            return self._parse(response["body"].read(), where)

        (result, seed), attempts = _with_retries(call, where=where, policy=self._policy, rng=self._rng,
                                                 sleep=self._sleep)
        extra: dict[str, Any] = {"model_id": spec.model_id, "region": where.region, "attempts": attempts}
        note = ""
        if req.resized_from is not None:
            (w, h), (sw, sh) = req.resized_from, req.sent_size
            extra["resized_from"] = [w, h]
            extra["sent_size"] = [sw, sh]
            note = (f"input downscaled from {w}x{h} to {sw}x{sh} px to fit {tool}'s input limit "
                    f"({TOOL_LIMITS.get(tool, GENERAL_LIMITS).source})")
        return EditOutcome(image=result, backend=self.name, note=note, seed=seed, extra=extra)

    @staticmethod
    def _parse(raw: bytes, where: _Where) -> tuple[Image.Image, int | None]:
        """Decode `{"seeds":[...],"finish_reasons":[...],"images":[...]}`; a non-null reason is never an image."""
        head = f"{where.what} ({where.model_id})"
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise JobFailed(f"{head}: response is not JSON: {raw[:200]!r}") from exc
        reasons = reply.get("finish_reasons") or [None]
        reason = reasons[0]
        if reason is not None:
            if str(reason).startswith(FILTER_PREFIX):
                raise ContentFiltered(f"{head}: content filtered: {reason}")
            if reason == INFERENCE_ERROR:
                raise TransientError(f"{head}: {reason}")
            raise JobFailed(f"{head}: unexpected finish reason {reason!r}")
        images = reply.get("images") or []
        if not images:
            raise JobFailed(f"{head}: response has no image (keys: {', '.join(sorted(reply))})")
        seeds = reply.get("seeds") or []
        seed = int(seeds[0]) if seeds and seeds[0] is not None else None
        return decode_image(images[0], head), seed
