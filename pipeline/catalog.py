"""The one registry of the Stability edit tools and the video models (CogVideoX, Wan2.2, Luma Ray2): ids, fields,
ranges, sizes, frame rules, licences, weights and the facts still unverified.

Facts from ../shared/reference/models-and-services.md (sections 1 and 2). The JSON Schema in
`pipeline/manifest/schema/campaign.schema.json` is generated from these tables (`python -m pipeline.manifest.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# --- Stability AI Image Services on Bedrock -------------------------------------------------------

STYLE_PRESETS: tuple[str, ...] = (
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
    "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
    "origami", "photographic", "pixel-art", "tile-texture",
)
ASPECT_RATIOS: tuple[str, ...] = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")
SEED_MAX = 4_294_967_294
PROMPT_MAX_CHARS = 10_000


@dataclass(frozen=True)
class FieldSpec:
    """One request field of an edit tool: its JSON type and range."""

    kind: str  # "text" | "image" | "int" | "number" | "enum"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "string", "minLength": 1, "maxLength": PROMPT_MAX_CHARS, "description": self.description}
        if self.kind == "image":
            return {"$ref": "#/$defs/ref", "description": self.description or "an asset id or an image id"}
        if self.kind == "enum":
            return {"enum": list(self.choices), "description": self.description}
        out: dict[str, Any] = {"type": "integer" if self.kind == "int" else "number", "description": self.description}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


PROMPT = FieldSpec("text", description="what the result should show")
NEGATIVE = FieldSpec("text", description="what the result should not show")
SEED = FieldSpec("int", 0, SEED_MAX, description="0 asks the service for a random seed")
FORMAT = FieldSpec("enum", choices=OUTPUT_FORMATS, description="image format of the result")
PRESET = FieldSpec("enum", choices=STYLE_PRESETS, description="a Stability style preset")
UNIT = FieldSpec("number", 0, 1)
PIXELS = FieldSpec("int", 0, 2000, description="pixels to add on this side")


@dataclass(frozen=True)
class EditTool:
    """One Stability image service: its manifest name, Bedrock model id and request fields."""

    name: str
    model_id: str
    group: str  # edit | upscale | control
    image_field: str  # the request field that carries the chain's input image
    required: tuple[str, ...]
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    any_of: tuple[str, ...] = ()  # at least one of these must be set
    summary: str = ""

    @property
    def image_fields(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.kind == "image")


EDIT_TOOLS: dict[str, EditTool] = {
    t.name: t
    for t in (
        EditTool(
            "erase-object", "us.stability.stable-image-erase-object-v1:0", "edit", "image", ("mask",),
            {"mask": FieldSpec("image", description="white where objects are erased"),
             "grow_mask": FieldSpec("int", 0, 20), "seed": SEED, "output_format": FORMAT},
            summary="removes what the mask covers and fills it in",
        ),
        EditTool(
            "remove-background", "us.stability.stable-image-remove-background-v1:0", "edit", "image", (),
            {"output_format": FORMAT},
            summary="cuts the subject out; the result has an alpha channel",
        ),
        EditTool(
            "search-recolor", "us.stability.stable-image-search-recolor-v1:0", "edit", "image",
            ("prompt", "select_prompt"),
            {"prompt": PROMPT, "select_prompt": FieldSpec("text", description="what to recolor"),
             "grow_mask": FieldSpec("int", 0, 20), "seed": SEED, "style_preset": PRESET,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="finds an object by description and recolors it",
        ),
        EditTool(
            "search-replace", "us.stability.stable-image-search-replace-v1:0", "edit", "image",
            ("prompt", "search_prompt"),
            {"prompt": PROMPT, "search_prompt": FieldSpec("text", description="what to replace"),
             "grow_mask": FieldSpec("int", 0, 20), "seed": SEED, "style_preset": PRESET,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="finds an object by description and replaces it",
        ),
        EditTool(
            "inpaint", "us.stability.stable-image-inpaint-v1:0", "edit", "image", ("prompt",),
            {"prompt": PROMPT, "mask": FieldSpec("image", description="white where to repaint; else the alpha"),
             "grow_mask": FieldSpec("int", 0, 100), "seed": SEED, "style_preset": PRESET,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="repaints the masked area from a prompt",
        ),
        EditTool(
            "outpaint", "us.stability.stable-outpaint-v1:0", "edit", "image", (),
            {"left": PIXELS, "right": PIXELS, "up": PIXELS, "down": PIXELS, "prompt": PROMPT,
             "creativity": UNIT, "seed": SEED, "style_preset": PRESET, "output_format": FORMAT},
            any_of=("left", "right", "up", "down"),
            summary="extends the canvas by exactly the pixels asked on each side",
        ),
        EditTool(
            "upscale-creative", "us.stability.stable-creative-upscale-v1:0", "upscale", "image", ("prompt",),
            {"prompt": PROMPT, "creativity": FieldSpec("number", 0.1, 0.35), "seed": SEED,
             "negative_prompt": NEGATIVE, "style_preset": PRESET, "output_format": FORMAT},
            summary="upscales to about 4K, reinterpreting detail",
        ),
        EditTool(
            "upscale-conservative", "us.stability.stable-conservative-upscale-v1:0", "upscale", "image", ("prompt",),
            {"prompt": PROMPT, "creativity": FieldSpec("number", 0.2, 0.5), "seed": SEED,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="upscales to about 4K, keeping the image as it is",
        ),
        EditTool(
            "upscale-fast", "us.stability.stable-fast-upscale-v1:0", "upscale", "image", (),
            {"output_format": FORMAT},
            summary="upscales exactly 4x in width and height",
        ),
        EditTool(
            "sketch", "us.stability.stable-image-control-sketch-v1:0", "control", "image", ("prompt",),
            {"prompt": PROMPT, "control_strength": UNIT, "seed": SEED, "style_preset": PRESET,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="renders a sketch into an image",
        ),
        EditTool(
            "structure", "us.stability.stable-image-control-structure-v1:0", "control", "image", ("prompt",),
            {"prompt": PROMPT, "control_strength": UNIT, "seed": SEED, "style_preset": PRESET,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="keeps the input's structure, renders new content",
        ),
        EditTool(
            "style-guide", "us.stability.stable-image-style-guide-v1:0", "control", "image", ("prompt",),
            {"prompt": PROMPT, "fidelity": UNIT, "aspect_ratio": FieldSpec("enum", choices=ASPECT_RATIOS),
             "seed": SEED, "style_preset": PRESET, "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="generates a new image in the input's style",
        ),
        EditTool(
            "style-transfer", "us.stability.stable-style-transfer-v1:0", "control", "init_image", ("style_image",),
            {"style_image": FieldSpec("image", description="the image whose style is applied"), "prompt": PROMPT,
             "style_strength": UNIT, "composition_fidelity": UNIT,
             "change_strength": FieldSpec("number", 0.1, 1), "seed": SEED,
             "negative_prompt": NEGATIVE, "output_format": FORMAT},
            summary="applies a style image's look to the input",
        ),
    )
}


# --- the video model registry ---------------------------------------------------------------------------
# One entry per model: which backends make it, its size and frame rule, fps, prompt token limit, licence, where
# its weights come from, the GPU time its price is estimated from, and which of these facts are unverified.
# Adding a model is one entry here (plus, for a new family, one module under container/: container/README.md).
# Sources: ../shared/reference/models-and-services.md §2 (CogVideoX) and toolchain.md (Wan2.2 in diffusers 0.42.1).

GPU_BACKENDS: tuple[str, ...] = ("preview", "diffusers", "sagemaker")  # the backends that make a self-hosted model


@dataclass(frozen=True)
class Licence:
    """A model's licence: its identifier and whether commercial use is allowed as downloaded."""

    id: str  # an SPDX identifier, or the licence's own name
    commercial: bool  # False: commercial use is forbidden, or needs an agreement beyond the download
    source: str  # where the licence text was read
    condition: str = ""  # when not commercial: what commercial use would need


@dataclass(frozen=True)
class VideoModel:
    """A self-hosted video model: native size, frame rule (step*N+1, 1<=N<=max_n), fps, limits, licence, weights."""

    name: str
    family: str  # the container module that runs it: container/family_<family>.py
    repo: str  # the Hugging Face repository the weights come from (pulled once, stored in S3)
    i2v_repo: str | None  # a separate image-to-video repository (its folder is <name>-i2v)
    width: int
    height: int
    frame_step: int
    max_n: int
    default_frames: int
    fps: int
    max_prompt_tokens: int
    dtype: str
    licence: Licence
    i2v_in_repo: bool = False  # one folder serves text- and image-to-video (Wan2.2 TI2V)
    size_multiple: int = 16  # width and height must be multiples of this (VAE x patch)
    default_guidance: float = 6.0
    # 50-step seconds for one clip at default_frames, per GPU kind: the cost estimate's basis
    gpu_seconds_50_steps: dict[str, float] = field(default_factory=dict)
    timing_source: str = ""
    backends: tuple[str, ...] = GPU_BACKENDS
    unverified: tuple[str, ...] = ()  # which facts above no primary source confirmed (or no GPU here measured)

    @property
    def frame_choices(self) -> tuple[int, ...]:
        return tuple(self.frame_step * n + 1 for n in range(1, self.max_n + 1))

    def frames_rule(self) -> str:
        choices = self.frame_choices
        listed = ", ".join(map(str, choices)) if len(choices) <= 12 else f"{choices[0]}, {choices[1]}, ..., {choices[-1]}"
        return f"{self.frame_step}N+1 with 1<=N<={self.max_n} ({listed})"

    @property
    def image_to_video(self) -> bool:
        return self.i2v_repo is not None or self.i2v_in_repo

    def folder(self, *, i2v: bool) -> str:
        """The weights folder (and so the model load) that renders a clip: <name>, or <name>-i2v."""
        return self.name + (I2V_SUFFIX if i2v and self.i2v_repo is not None else "")

    def folders(self) -> dict[str, str]:
        """`{folder: hub repo}`: what `campaign models pull` stores and the clip jobs mount."""
        out = {self.name: self.repo}
        if self.i2v_repo is not None:
            out[self.name + I2V_SUFFIX] = self.i2v_repo
        return out


I2V_SUFFIX = "-i2v"  # a separate image-to-video model's folder: <models>/<model>-i2v

# Licence texts read on the model repositories (search of stored Hub pages, 2026-12):
# huggingface.co/THUDM/CogVideoX-5b LICENSE ("The CogVideoX License", commit 4e56534) §2: free for academic
# research; commercial use needs registration for a basic commercial licence and stays under a visits limit.
# CogVideoX-1.5-5B(-I2V) ship the same text. CogVideoX-2b: Apache 2.0 per the CogVideo README [unverified: the
# Hub repo's first commit shipped the CogVideoX License; only third-party copies of the README were read].
# Wan2.2: "The models in this repository are licensed under the Apache 2.0 License" (github Wan-Video/Wan2.2
# README, "License Agreement", commit 0828876).
COGVIDEOX_LICENCE = Licence(
    "CogVideoX-License", commercial=False, source="huggingface.co/THUDM/CogVideoX-5b/blob/main/LICENSE",
    condition="commercial use needs a registered basic commercial licence (open.bigmodel.cn/mla/form) and is "
              "capped in service users",
)
APACHE_COGVIDEOX_2B = Licence("Apache-2.0", commercial=True, source="github.com/THUDM/CogVideo README (third-party copy)")
APACHE_WAN22 = Licence("Apache-2.0", commercial=True, source="github.com/Wan-Video/Wan2.2 README, License Agreement")

# THUDM/CogVideo README 50-step times (reference §2); Wan2.2 has no published A100/H100 time in text: its README
# says a 5 s 720P clip takes "under 9 minutes on a single consumer-grade GPU" (RTX 4090, with offload): used
# as the A100 figure, H100 assumed twice as fast [estimate, unmeasured: no GPU was lent to this work].
COGVIDEOX_TIMING = "THUDM/CogVideo README (A100/H100, 50 steps)"

VIDEO_MODELS: dict[str, VideoModel] = {
    m.name: m
    for m in (
        VideoModel("cogvideox-2b", "cogvideox", "THUDM/CogVideoX-2b", None, 720, 480, 8, 6, 49, 8, 226, "float16",
                   APACHE_COGVIDEOX_2B, gpu_seconds_50_steps={"a100": 90.0, "h100": 45.0},
                   timing_source=COGVIDEOX_TIMING, unverified=("licence",)),
        VideoModel("cogvideox-5b", "cogvideox", "THUDM/CogVideoX-5b", "THUDM/CogVideoX-5b-I2V", 720, 480, 8, 6, 49, 8,
                   226, "bfloat16", COGVIDEOX_LICENCE, gpu_seconds_50_steps={"a100": 180.0, "h100": 90.0},
                   timing_source=COGVIDEOX_TIMING),
        VideoModel("cogvideox1.5-5b", "cogvideox", "THUDM/CogVideoX1.5-5B", "THUDM/CogVideoX1.5-5B-I2V", 1360, 768, 16,
                   10, 81, 16, 224, "bfloat16", COGVIDEOX_LICENCE, gpu_seconds_50_steps={"a100": 1000.0, "h100": 550.0},
                   timing_source=COGVIDEOX_TIMING),
        # toolchain.md "Wan2.2 TI2V-5B in diffusers 0.42.1": WanPipeline with expand_timesteps, image-to-video by
        # WanImageToVideoPipeline.from_pipe on the same weights; sizes multiples of 32, frames 4k+1; the model's
        # own config 1280x704, 121 frames, 24 fps, 50 steps, guidance 5.0; UMT5 prompts up to 512 tokens.
        # max_n=30 stops at the model's own 121 frames (longer clips are possible but not what it was tuned for).
        VideoModel("wan2.2-ti2v-5b", "wan", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", None, 1280, 704, 4, 30, 121, 24, 512,
                   "bfloat16", APACHE_WAN22, i2v_in_repo=True, size_multiple=32, default_guidance=5.0,
                   gpu_seconds_50_steps={"a100": 540.0, "h100": 270.0},
                   timing_source="Wan2.2 README: 5 s 720P in under 9 min on one consumer GPU [estimate]",
                   unverified=("gpu_seconds_50_steps (no GPU measured it)",)),
    )
}

# The defaults a manifest may override under `defaults.video`; written here once.
DEFAULT_VIDEO_MODEL = "cogvideox-5b"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 6.0
DEFAULT_SEED = 42
STEPS_RANGE = (1, 200)
GUIDANCE_RANGE = (0.0, 30.0)
VIDEO_SEED_MAX = 2**32 - 1


# --- Luma Ray2 on Amazon Bedrock (a managed video model: no GPU quota, no weights) ------------------------
# Request fields, their ranges and the async API: the Bedrock user guide's "Luma AI models" page
# (docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-luma.html): prompt 1..5000 characters,
# aspect_ratio, loop, duration "5s"|"9s", resolution "540p"|"720p", sent to StartAsyncInvoke as `modelInput`.
# That page documents no start-image field (the model card lists Image as an input), so image-to-video is
# refused for this model rather than guessed. Lifecycle Active, launched 2025-01-23, billed through AWS
# Marketplace (model-card-luma-ai-ray2).
RAY2_ASPECT_RATIOS: tuple[str, ...] = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
RAY2_RESOLUTIONS: tuple[str, ...] = ("540p", "720p")
RAY2_DURATIONS_S: tuple[int, ...] = (5, 9)
RAY2_PROMPT_MAX_CHARS = 5000
# The output's frame rate and pixel size are not on the Bedrock page [unverified]: third-party write-ups give
# 24 fps and 960x540 / 1280x720 for 16:9; other ratios are assumed to keep the short side at the resolution's
# height. The bedrock backend checks the clip it gets back (aspect ratio and duration) and records the
# measured size, and assembly normalises a clip of another size, so a wrong guess here costs a letterbox.
RAY2_FPS = 24
RAY2_SHORT_SIDE: dict[str, int] = {"540p": 540, "720p": 720}


@dataclass(frozen=True)
class Ray2Settings:
    """One Ray2 shot's request settings (the Bedrock `modelInput` fields other than the prompt)."""

    duration_s: int
    resolution: str
    aspect_ratio: str
    loop: bool

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the clip [unverified, see RAY2_SHORT_SIDE]: the short side is the resolution."""
        short = RAY2_SHORT_SIDE[self.resolution]
        w, h = (int(x) for x in self.aspect_ratio.split(":"))
        long_side = 2 * round(short * max(w, h) / min(w, h) / 2)  # even, for H.264 4:2:0
        return (long_side, short) if w >= h else (short, long_side)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def fps(self) -> int:
        return RAY2_FPS

    @property
    def frames(self) -> int:
        return self.duration_s * RAY2_FPS

    def model_input(self, prompt: str) -> dict[str, Any]:
        """The documented `modelInput` body; every field is sent, so no service default decides a pixel."""
        return {"prompt": prompt, "aspect_ratio": self.aspect_ratio, "loop": self.loop,
                "duration": f"{self.duration_s}s", "resolution": self.resolution}


@dataclass(frozen=True)
class ManagedVideoModel:
    """A video model a service runs for us (no weights, no GPU): its manifest name and Bedrock id."""

    name: str
    model_id: str
    max_prompt_chars: int
    # The enhance job holds the prompt to a token budget (pipeline/tasks/prompts.py, an over-estimate): 1,000
    # estimated tokens keep any text at or under 5,000 characters (a token covers at most 4 letters and one
    # separator), so enhancement is bounded by the service's own limit, not by CogVideoX's 226 tokens.
    max_prompt_tokens: int
    defaults: Ray2Settings
    licence: Licence
    backends: tuple[str, ...] = ("preview", "bedrock")
    unverified: tuple[str, ...] = ()


RAY2 = ManagedVideoModel(
    name="luma-ray2", model_id="luma.ray-v2:0", max_prompt_chars=RAY2_PROMPT_MAX_CHARS, max_prompt_tokens=1000,
    # the documented example's values; every field is always sent (Bedrock's own defaults are not documented)
    defaults=Ray2Settings(duration_s=5, resolution="720p", aspect_ratio="16:9", loop=False),
    # A service, not weights: use is governed by the AWS Marketplace offer's terms (model-card-luma-ai-ray2);
    # that those allow commercial use of the output was not checked here.
    licence=Licence("Luma-AI-Marketplace-terms", commercial=True, source="AWS Marketplace offer for Luma Ray2"),
    unverified=("licence", "fps", "size", "price"),
)
MANAGED_VIDEO_MODELS: dict[str, ManagedVideoModel] = {RAY2.name: RAY2}
# The shot keys only Ray2 reads, and the CogVideoX ones it has no use for (refused on a Ray2 shot).
RAY2_SHOT_KEYS: tuple[str, ...] = ("duration", "resolution", "aspect_ratio", "loop")
COGVIDEOX_ONLY_SHOT_KEYS: tuple[str, ...] = ("frames", "steps", "guidance", "seed", "negative_prompt")


def all_video_model_names() -> list[str]:
    return [*VIDEO_MODELS, *MANAGED_VIDEO_MODELS]


def video_licence(name: str) -> Licence | None:
    model = VIDEO_MODELS.get(name) or MANAGED_VIDEO_MODELS.get(name)
    return model.licence if model is not None else None


def commercial_models() -> list[str]:
    """The video models whose licence allows commercial use as downloaded (for error messages)."""
    return [name for name in all_video_model_names() if (lic := video_licence(name)) is not None and lic.commercial]


def describe_video_models() -> list[dict[str, Any]]:
    """Every video model's registry facts as plain data (`campaign models list` adds the price)."""
    rows: list[dict[str, Any]] = []
    for m in VIDEO_MODELS.values():
        rows.append({
            "name": m.name, "family": m.family, "backends": list(m.backends), "width": m.width, "height": m.height,
            "size_multiple": m.size_multiple, "frames_rule": m.frames_rule(), "default_frames": m.default_frames,
            "fps": m.fps, "max_prompt_tokens": m.max_prompt_tokens, "image_to_video": m.image_to_video,
            "licence": {"id": m.licence.id, "commercial": m.licence.commercial, "source": m.licence.source,
                        "condition": m.licence.condition},
            "weights": m.folders(), "dtype": m.dtype, "default_guidance": m.default_guidance,
            "gpu_seconds_50_steps": dict(m.gpu_seconds_50_steps), "timing_source": m.timing_source,
            "unverified": list(m.unverified),
        })
    for r in MANAGED_VIDEO_MODELS.values():
        d = r.defaults
        rows.append({
            "name": r.name, "family": "bedrock", "backends": list(r.backends), "width": d.width, "height": d.height,
            "size_multiple": None, "frames_rule": f"duration {' or '.join(f'{s}s' for s in RAY2_DURATIONS_S)} "
                                                   f"at {RAY2_FPS} fps",
            "default_frames": d.frames, "fps": d.fps, "max_prompt_tokens": r.max_prompt_tokens,
            "image_to_video": False,
            "licence": {"id": r.licence.id, "commercial": r.licence.commercial, "source": r.licence.source,
                        "condition": r.licence.condition},
            "weights": {"bedrock": r.model_id}, "dtype": None, "default_guidance": None,
            "gpu_seconds_50_steps": {}, "timing_source": "", "unverified": list(r.unverified),
        })
    return rows
