"""Price constants and small estimators behind `campaign plan`'s cost estimate and the report's cost section.

Every price names its source and date. [unverified] marks a figure no primary AWS page confirmed when it was
written; [estimate] marks one derived by this project. All are USD, on-demand list prices, before tax, credits
and discounts. Check the AWS pricing pages before quoting a number to anyone: these are for ordering of
magnitude and for comparing plans, not for invoices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.catalog import EDIT_TOOLS, MANAGED_VIDEO_MODELS, VIDEO_MODELS, describe_video_models

PRICES_AS_OF = "2026-11-22"

# ml.g6e.2xlarge: 1x NVIDIA L40S, 48 GB, bf16 (AWS instance-type page). CogVideoX-5b in bf16 is ~19.7 GiB of
# weights (reference/toolchain.md), so it runs without any offload there. The sample's ml.g5.4xlarge
# (A10G, 24 GB) forces offloading, which THUDM measures 3-4x slower (reference §5, limitation 2);
# ml.p4d/p5 would also fit but rent 8 GPUs to use one. Override per deployment.
DEFAULT_INSTANCE_TYPE = "ml.g6e.2xlarge"

# --- Stability AI Image Services on Bedrock, per request ------------------------------------------------
# The only public figure found: one catalog lists $0.07 per remove-background request in Oregon, N. Virginia and
# Ohio (../shared/reference/models-and-services.md §1) [unverified]. The other edit and control tools are
# assumed to cost the same [estimate]. The upscalers cost more on Stability's own API (credits at $0.01), so they
# are scaled from its list [estimate, unverified on Bedrock]. AWS bills the Stability services through AWS
# Marketplace; see aws.amazon.com/bedrock/pricing (Stability AI) for the real numbers.
STABILITY_EDIT_PER_REQUEST = 0.07  # [unverified] remove-background; [estimate] the other edit/control tools
STABILITY_UPSCALE_FAST_PER_REQUEST = 0.03  # [estimate]
STABILITY_UPSCALE_CONSERVATIVE_PER_REQUEST = 0.40  # [estimate]
STABILITY_UPSCALE_CREATIVE_PER_REQUEST = 0.60  # [estimate]

IMAGE_EDIT_PRICES: dict[str, float] = {
    name: {
        "upscale-fast": STABILITY_UPSCALE_FAST_PER_REQUEST,
        "upscale-conservative": STABILITY_UPSCALE_CONSERVATIVE_PER_REQUEST,
        "upscale-creative": STABILITY_UPSCALE_CREATIVE_PER_REQUEST,
    }.get(name, STABILITY_EDIT_PER_REQUEST)
    for name in EDIT_TOOLS
}

# --- Claude on Bedrock (the default enhancer model, Claude Haiku 4.5) ----------------------------------------
# $1 / $5 per million input / output tokens: Anthropic's model page for Claude Haiku 4.5 (platform.claude.com,
# read 2026-11) and the Bedrock list price at launch (2025-10). Calls through a geographic (`us.`) profile may
# carry a ~10% premium over global ones [unverified].
CLAUDE_INPUT_PER_MTOK = 1.00
CLAUDE_OUTPUT_PER_MTOK = 5.00
CHARS_PER_TOKEN = 4.0  # English rule of thumb for Claude's tokenizer [estimate]
ENHANCE_SYSTEM_TOKENS = 160  # the Role/Task template (~600 characters) plus message framing [estimate]
ENHANCE_OUTPUT_TOKENS = 200  # a ~100-word paragraph is ~150 tokens; rounded up [estimate]

# --- SageMaker processing instances, us-east-1 on-demand, per hour ----------------------------------------
# [unverified] figures as last seen on aws.amazon.com/sagemaker/pricing (Processing) by this project; AWS cut
# P4/P5 prices in 2025, so the P-family figures may be high. GPU memory and counts from the EC2 instance pages.


@dataclass(frozen=True)
class GpuInstance:
    hourly: float
    gpus: int
    gpu: str  # a key of GPU_SPEED


SAGEMAKER_INSTANCES: dict[str, GpuInstance] = {
    "ml.g5.4xlarge": GpuInstance(2.03, 1, "a10g"),  # 1x A10G 24 GB; the reference sample's choice
    "ml.g6e.2xlarge": GpuInstance(3.14, 1, "l40s"),  # 1x L40S 48 GB
    "ml.p4d.24xlarge": GpuInstance(37.69, 8, "a100"),  # 8x A100 40 GB
    "ml.p5.48xlarge": GpuInstance(113.07, 8, "h100"),  # 8x H100 80 GB
}

# --- Luma Ray2 on Bedrock, per second of output video ---------------------------------------------------------
# $0.75 per second at 540p and $1.50 at 720p, as this project remembers the Bedrock pricing page's Luma AI table
# (aws.amazon.com/bedrock/pricing, read 2025) [unverified: the page renders its prices client-side and no copy
# with the figures was found on 2026-11-22]. Billed through AWS Marketplace (Bedrock model card
# model-card-luma-ai-ray2). A 5 s 720p clip is then $7.50; a failed or filtered job is not billed [unverified].
RAY2_PER_SECOND: dict[str, float] = {"540p": 0.75, "720p": 1.50}  # [unverified]

# --- orchestration -------------------------------------------------------------------------------------
# Amazon Polly, per million characters by engine (aws.amazon.com/polly/pricing, read through a third-party copy)
# [unverified]
POLLY_PER_MILLION_CHARS = {"standard": 4.00, "neural": 16.00, "long-form": 100.00, "generative": 30.00}


def voice_cost(engine: str, characters: int, *, marks: bool) -> float:
    """One utterance's Polly charge; a speech-marks request is billed for its characters too [unverified]."""
    return POLLY_PER_MILLION_CHARS[engine] * characters * (2 if marks else 1) / 1_000_000


STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1000  # Standard workflows (reference §4; aws.amazon.com/step-functions/pricing)
LAMBDA_PER_GB_SECOND = 0.0000166667  # x86, us-east-1, first tier (aws.amazon.com/lambda/pricing) [unverified]
LAMBDA_PER_REQUEST = 0.20 / 1_000_000  # same page [unverified]

# --- self-hosted model GPU time --------------------------------------------------------------------------
# 50-step time for one clip at the model's default frame count, in seconds, on A100 and H100: the registry's
# figures (pipeline/catalog.py: THUDM's published CogVideoX times, reference §2; Wan2.2 an estimate from its
# README, unmeasured). A10G and L40S are not published: they are scaled from A100 by relative BF16 tensor
# throughput [estimate].
PUBLISHED_50_STEP_S: dict[str, dict[str, float]] = {
    name: dict(model.gpu_seconds_50_steps) for name, model in VIDEO_MODELS.items()
}
GPU_SPEED: dict[str, float] = {  # time multiplier relative to A100, for GPUs without published times [estimate]
    "a100": 1.0,
    "h100": 0.5,  # only used if a model had no H100 figure
    "l40s": 1.1,
    "a10g": 4.0,
}


def image_edit_cost(tool: str) -> float:
    """Price of one request to `tool` on Bedrock (a retried request that failed is not billed [unverified])."""
    try:
        return IMAGE_EDIT_PRICES[tool]
    except KeyError:
        raise ValueError(f"unknown edit tool {tool!r} (tools: {', '.join(IMAGE_EDIT_PRICES)})") from None


def enhance_cost(prompt_chars: int) -> float:
    """Estimated price of enhancing one prompt of `prompt_chars` characters with the default Claude model."""
    if prompt_chars < 0:
        raise ValueError(f"prompt_chars must be >= 0, got {prompt_chars!r}")
    input_tokens = ENHANCE_SYSTEM_TOKENS + prompt_chars / CHARS_PER_TOKEN
    return (input_tokens * CLAUDE_INPUT_PER_MTOK + ENHANCE_OUTPUT_TOKENS * CLAUDE_OUTPUT_PER_MTOK) / 1_000_000


TRANSLATE_SYSTEM_TOKENS = 150  # the translation prompt (~550 characters) plus framing [estimate]
TRANSLATE_OUTPUT_FACTOR = 2.0  # a translation's tokens per source token: other scripts take more tokens [estimate]


def translate_cost(text_chars: int) -> float:
    """Estimated price of translating a text of `text_chars` characters with the default Claude model."""
    if text_chars < 0:
        raise ValueError(f"text_chars must be >= 0, got {text_chars!r}")
    source_tokens = text_chars / CHARS_PER_TOKEN
    input_tokens = TRANSLATE_SYSTEM_TOKENS + source_tokens + 30  # + the request line and tags
    output_tokens = source_tokens * TRANSLATE_OUTPUT_FACTOR + 10
    return (input_tokens * CLAUDE_INPUT_PER_MTOK + output_tokens * CLAUDE_OUTPUT_PER_MTOK) / 1_000_000


def _latent_frames(frames: int) -> int:
    return (frames - 1) // 4 + 1  # CogVideoX's and Wan2.2's VAEs compress time 4x (plus the first frame)


def clip_gpu_seconds(model: str, frames: int, steps: int, *, gpu: str = "a100") -> float:
    """Estimated denoising time of one clip on one GPU: the published 50-step time scaled linearly by steps and by
    latent frames. Linear is optimistic for longer clips (attention grows faster); model loading is not included
    (a batch job loads once)."""
    if model not in PUBLISHED_50_STEP_S:
        raise ValueError(f"unknown video model {model!r} (models: {', '.join(PUBLISHED_50_STEP_S)})")
    if frames < 1 or steps < 1:
        raise ValueError(f"frames and steps must be >= 1, got frames={frames!r}, steps={steps!r}")
    if gpu not in GPU_SPEED:
        raise ValueError(f"unknown GPU {gpu!r} (known: {', '.join(GPU_SPEED)})")
    published = PUBLISHED_50_STEP_S[model]
    base = published[gpu] if gpu in published else published["a100"] * GPU_SPEED[gpu]
    frame_ratio = _latent_frames(frames) / _latent_frames(VIDEO_MODELS[model].default_frames)
    return base * (steps / 50) * frame_ratio


def clip_cost(model: str, frames: int, steps: int, instance_type: str, *, clips_in_parallel: int = 1) -> float:
    """Estimated price of one clip on a SageMaker processing instance. The container renders one clip at a time on
    one GPU (container/generate.py), so a clip pays for the whole instance: on the 8-GPU types that is 8x what
    the GPU time is worth, unless a batch ever runs `clips_in_parallel` clips side by side."""
    try:
        instance = SAGEMAKER_INSTANCES[instance_type]
    except KeyError:
        raise ValueError(f"no price for instance type {instance_type!r} (known: {', '.join(SAGEMAKER_INSTANCES)})") from None
    if not 1 <= clips_in_parallel <= instance.gpus:
        raise ValueError(f"clips_in_parallel must be 1..{instance.gpus} on {instance_type}, got {clips_in_parallel!r}")
    seconds = clip_gpu_seconds(model, frames, steps, gpu=instance.gpu)
    return seconds / 3600 * instance.hourly / clips_in_parallel


def orchestration_cost(*, transitions: int, lambda_gb_seconds: float = 0.0, lambda_requests: int = 0) -> float:
    """Step Functions Standard transitions plus Lambda compute and requests."""
    return (transitions * STEP_FUNCTIONS_PER_TRANSITION + lambda_gb_seconds * LAMBDA_PER_GB_SECOND
            + lambda_requests * LAMBDA_PER_REQUEST)


def ray2_clip_cost(resolution: str, duration_s: int) -> float:
    """Price of one Luma Ray2 clip on Bedrock: per second of output at the clip's resolution [unverified]."""
    try:
        per_second = RAY2_PER_SECOND[resolution]
    except KeyError:
        raise ValueError(f"no Ray2 price for resolution {resolution!r} (known: {', '.join(RAY2_PER_SECOND)})") from None
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
    return per_second * duration_s


def registry_rows(instance_type: str = DEFAULT_INSTANCE_TYPE) -> list[dict[str, Any]]:
    """The model registry as `campaign models list` shows it: the catalog's facts plus each model's price for one
    clip at its defaults (a GPU model on `instance_type`, Ray2 per second of video)."""
    rows = describe_video_models()
    for row in rows:
        name = row["name"]
        if name in VIDEO_MODELS:
            usd = clip_cost(name, row["default_frames"], 50, instance_type)
            row["price"] = {"usd_per_clip": round(usd, 4), "basis": f"{row['default_frames']} frames, 50 steps on "
                            f"{instance_type} at ${SAGEMAKER_INSTANCES[instance_type].hourly}/h [estimate]"}
        else:
            d = MANAGED_VIDEO_MODELS[name].defaults
            row["price"] = {"usd_per_clip": ray2_clip_cost(d.resolution, d.duration_s),
                            "usd_per_second": {k: v for k, v in RAY2_PER_SECOND.items()},
                            "basis": f"{d.duration_s}s at {d.resolution} [unverified]"}
    return rows


def format_registry(rows: list[dict[str, Any]]) -> str:
    """`campaign models list`: one block per model, every registry fact on a line of its own."""
    out: list[str] = []
    for r in rows:
        lic = r["licence"]
        commercial = "commercial use allowed" if lic["commercial"] else f"NO commercial use ({lic['condition'] or 'forbidden'})"
        out += [
            f"{r['name']}  ({r['family']}; backends: {', '.join(r['backends'])})",
            f"  size      {r['width']}x{r['height']}" + (f" (multiples of {r['size_multiple']})" if r["size_multiple"] else ""),
            f"  frames    {r['frames_rule']}; default {r['default_frames']} at {r['fps']} fps",
            f"  prompt    up to {r['max_prompt_tokens']} tokens; image-to-video: {'yes' if r['image_to_video'] else 'no'}",
            f"  licence   {lic['id']}: {commercial} [{lic['source']}]",
            f"  weights   {', '.join(f'{k} <- {v}' for k, v in r['weights'].items())}",
            f"  price     ${r['price']['usd_per_clip']:.2f} per clip ({r['price']['basis']})",
            f"  unverified {', '.join(r['unverified']) or 'none'}",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"
