"""The one place that knows the Stability edit tools and the video models (CogVideoX, Luma Ray2): ids, fields, ranges, sizes.

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


# --- CogVideoX --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoModel:
    """A CogVideoX model: native size, frame rule (step*N+1, 1<=N<=max_n), fps and abilities."""

    name: str
    repo: str  # the Hugging Face repository the weights come from (pulled once, stored in S3)
    i2v_repo: str | None
    width: int
    height: int
    frame_step: int
    max_n: int
    default_frames: int
    fps: int
    max_prompt_tokens: int
    dtype: str

    @property
    def frame_choices(self) -> tuple[int, ...]:
        return tuple(self.frame_step * n + 1 for n in range(1, self.max_n + 1))

    def frames_rule(self) -> str:
        return f"{self.frame_step}N+1 with 1<=N<={self.max_n} ({', '.join(map(str, self.frame_choices))})"


VIDEO_MODELS: dict[str, VideoModel] = {
    m.name: m
    for m in (
        VideoModel("cogvideox-2b", "THUDM/CogVideoX-2b", None, 720, 480, 8, 6, 49, 8, 226, "float16"),
        VideoModel("cogvideox-5b", "THUDM/CogVideoX-5b", "THUDM/CogVideoX-5b-I2V", 720, 480, 8, 6, 49, 8, 226, "bfloat16"),
        VideoModel("cogvideox1.5-5b", "THUDM/CogVideoX1.5-5B", "THUDM/CogVideoX1.5-5B-I2V", 1360, 768, 16, 10, 81, 16, 224, "bfloat16"),
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


RAY2 = ManagedVideoModel(
    name="luma-ray2", model_id="luma.ray-v2:0", max_prompt_chars=RAY2_PROMPT_MAX_CHARS, max_prompt_tokens=1000,
    # the documented example's values; every field is always sent (Bedrock's own defaults are not documented)
    defaults=Ray2Settings(duration_s=5, resolution="720p", aspect_ratio="16:9", loop=False),
)
MANAGED_VIDEO_MODELS: dict[str, ManagedVideoModel] = {RAY2.name: RAY2}
# The shot keys only Ray2 reads, and the CogVideoX ones it has no use for (refused on a Ray2 shot).
RAY2_SHOT_KEYS: tuple[str, ...] = ("duration", "resolution", "aspect_ratio", "loop")
COGVIDEOX_ONLY_SHOT_KEYS: tuple[str, ...] = ("frames", "steps", "guidance", "seed", "negative_prompt")


def all_video_model_names() -> list[str]:
    return [*VIDEO_MODELS, *MANAGED_VIDEO_MODELS]
