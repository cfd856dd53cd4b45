"""Typed job specs: what each job kind needs besides the store, as frozen dataclasses (the plan's vocabulary).

A `Job` carries one spec (`EnhanceSpec`, `TranslateSpec`, `ImageSpec`, `ClipSpec`, `VideoSpec`, `VoiceSpec`); image references are an
`ImageRef` union. `to_json`/`from_json` give the plain-JSON form the cloud's run document stores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from pipeline.catalog import Ray2Settings
from pipeline.manifest.campaign import Card
from pipeline.manifest.variables import Variant

JobKind = Literal["enhance", "translate", "image", "clip", "video", "voice"]


# --- image references ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetImage:
    """An input asset of the manifest."""

    asset: str


@dataclass(frozen=True)
class EditedImage:
    """The output of an image job (its last edit)."""

    image: str


@dataclass(frozen=True)
class ClipLastFrame:
    """The last frame of a clip job (continuity), optionally colour-matched to another clip's last frame."""

    clip: str
    color_match_to: str | None = None


ImageRef = AssetImage | EditedImage | ClipLastFrame


def ref_to_json(ref: ImageRef) -> dict[str, str]:
    return {k: v for k, v in asdict(ref).items() if v is not None}


def ref_from_json(d: dict[str, Any]) -> ImageRef:
    if "asset" in d:
        return AssetImage(str(d["asset"]))
    if "image" in d:
        return EditedImage(str(d["image"]))
    if "clip" in d:
        return ClipLastFrame(str(d["clip"]), d.get("color_match_to"))
    raise ValueError(f"not an image reference: {d!r}")


# --- specs, one per job kind ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnhanceSpec:
    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class TranslateSpec:
    """One caption or voiceover text into a video's language (one job per distinct text and languages, shared
    between shots, videos, captions and voiceover). `source_language` is None where the manifest does not say."""

    text: str
    source_language: str | None
    target_language: str


@dataclass(frozen=True)
class VoiceSpec:
    """One utterance: the text a voice speaks (one job per distinct text and voice, shared between shots). With
    `translation` (a translate job's id) the voice speaks that job's output, not `text` (its source)."""

    text: str
    voice_id: str
    engine: str
    language: str
    translation: str | None = None


@dataclass(frozen=True)
class EditStep:
    """One edit of an image chain, keyed on its own so an unchanged prefix of a chain is reused."""

    tool: str
    params: dict[str, Any]  # the manifest's fields, image-valued ones removed (they are in `refs`)
    refs: dict[str, ImageRef]
    key: str
    ext: str


@dataclass(frozen=True)
class ImageSpec:
    image_id: str
    source: ImageRef
    steps: tuple[EditStep, ...]
    variant: Variant | None = None  # its template and combination, when expanded from `variables:` (not keyed)

    @property
    def ext(self) -> str:
        return self.steps[-1].ext


@dataclass(frozen=True)
class ClipSpec:
    video_id: str
    shot: int  # 0-based index in its video
    prompt: str  # as written in the manifest
    enhance_job: str | None  # the job whose output is the prompt the model reads
    model: str
    i2v: bool
    frames: int
    fps: int
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str | None
    max_tokens: int
    start: ImageRef | None  # the start image of an image-to-video clip
    ray2: Ray2Settings | None = None  # a Luma Ray2 clip's request settings (then steps/guidance/seed are unused)


@dataclass(frozen=True)
class AudioSpec:
    asset: str
    fade_in: float
    fade_out: float
    volume: float


@dataclass(frozen=True)
class LogoSpec:
    """The brand's logo on every delivered file of a video (pipeline/manifest/brand.py, pipeline/media/brand.py)."""

    asset: str
    corner: str
    size: float


@dataclass(frozen=True)
class BrandFonts:
    """The brand's fonts a video uses (asset ids): for its title and end cards, for its burned captions; each
    only when the video has what it draws."""

    cards: str | None = None
    captions: str | None = None


@dataclass(frozen=True)
class VideoOutput:
    """One delivered file of a video: a format (None: the clips' own shape) at its size, stored under its own
    key (so adding a format re-makes nothing else), with the captions burned in or not; and the key of the
    WebVTT sidecar, when it has one."""

    format: str | None
    width: int
    height: int
    key: str
    burn: bool
    captions_key: str | None


@dataclass(frozen=True)
class VideoSpec:
    video_id: str
    clips: tuple[str, ...]  # clip job ids in shot order
    continuity: str | None
    crossfade: float
    audio: AudioSpec | None = None
    title: Card | None = None
    end_card: Card | None = None
    variant: Variant | None = None  # its template and combination, when expanded from `variables:` (not keyed)
    # formats and captions (pipeline/manifest/formats.py); empty `outputs`: one file in the clips' shape, as before them
    fit: str = "blur-pad"
    captions: tuple[str | None, ...] = ()  # per shot
    language: str = "und"
    outputs: tuple[VideoOutput, ...] = ()
    # sound (pipeline/media/mix.py): the voice job of each shot (None: silent), the loudness target in LUFS
    # (None: the audio as before, not normalised) and where captions come from (None: the shots' `caption`)
    voices: tuple[str | None, ...] = ()
    loudness: float | None = None
    caption_from: str | None = None
    logo: LogoSpec | None = None  # the brand's logo, drawn on every output (absent from the JSON when None)
    # translate: true: each shot's caption comes from this translate job's output (None: the caption as written);
    # empty when the video is not translated (absent from the JSON then)
    caption_translations: tuple[str | None, ...] = ()
    fonts: BrandFonts | None = None  # the brand's fonts (absent from the JSON when None)


Spec = EnhanceSpec | TranslateSpec | ImageSpec | ClipSpec | VideoSpec | VoiceSpec
_EXT: dict[str, str] = {"enhance": "txt", "translate": "txt", "clip": "mp4", "video": "mp4", "voice": "wav"}


def output_key(kind: str, key: str, ext: str) -> str:
    return f"cache/{kind}/{key}.{ext}"


def provenance_key(kind: str, key: str) -> str:
    return f"cache/{kind}/{key}.json"


@dataclass(frozen=True)
class Job:
    """One unit of work: its content key, the jobs it waits for, and its typed spec."""

    id: str
    kind: JobKind
    key: str
    stage: int
    deps: tuple[str, ...]
    spec: Spec
    label: str = field(default="", compare=False)

    @property
    def ext(self) -> str:
        return self.spec.ext if isinstance(self.spec, ImageSpec) else _EXT[self.kind]

    @property
    def output_key(self) -> str:
        return output_key(self.kind, self.key, self.ext)

    @property
    def provenance_key(self) -> str:
        return provenance_key(self.kind, self.key)

    # typed views: a caller that knows the kind gets its spec without a cast
    @property
    def enhance(self) -> EnhanceSpec:
        return _as(self, EnhanceSpec)

    @property
    def image(self) -> ImageSpec:
        return _as(self, ImageSpec)

    @property
    def clip(self) -> ClipSpec:
        return _as(self, ClipSpec)

    @property
    def video(self) -> VideoSpec:
        return _as(self, VideoSpec)

    @property
    def voice(self) -> VoiceSpec:
        return _as(self, VoiceSpec)

    @property
    def translate(self) -> TranslateSpec:
        return _as(self, TranslateSpec)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "key": self.key, "stage": self.stage, "deps": list(self.deps),
                "label": self.label, "spec": spec_to_json(self.spec)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Job:
        kind = d["kind"]
        return cls(id=d["id"], kind=kind, key=d["key"], stage=int(d["stage"]), deps=tuple(d["deps"]),
                   spec=spec_from_json(kind, d["spec"]), label=d.get("label", ""))


_T = TypeVar("_T")


def _as(job: Job, cls: type[_T]) -> _T:
    if not isinstance(job.spec, cls):
        raise TypeError(f"job {job.id} is a {job.kind} job, not {cls.__name__}")
    return job.spec


def spec_to_json(spec: Spec) -> dict[str, Any]:
    d = asdict(spec)
    if isinstance(spec, (ImageSpec, VideoSpec)):  # absent unless expanded: plans without variables are unchanged
        d.pop("variant")
        if spec.variant:
            d["variant"] = spec.variant.to_json()
    if isinstance(spec, VideoSpec) and spec.logo is None:
        d.pop("logo")  # plans without a brand are unchanged
    if isinstance(spec, VideoSpec) and not spec.caption_translations:
        d.pop("caption_translations")  # nor are plans without translation
    if isinstance(spec, VoiceSpec) and spec.translation is None:
        d.pop("translation")
    if isinstance(spec, VideoSpec) and spec.fonts is None:
        d.pop("fonts")
    if isinstance(spec, ImageSpec):
        d["source"] = ref_to_json(spec.source)
        d["steps"] = [{**asdict(s), "refs": {f: ref_to_json(r) for f, r in s.refs.items()}} for s in spec.steps]
    elif isinstance(spec, ClipSpec):
        d["start"] = ref_to_json(spec.start) if spec.start else None
    return d


def spec_from_json(kind: str, d: dict[str, Any]) -> Spec:
    if kind == "enhance":
        return EnhanceSpec(**d)
    if kind == "voice":
        return VoiceSpec(**d)
    if kind == "translate":
        return TranslateSpec(**d)
    if kind == "image":
        steps = tuple(EditStep(**{**s, "refs": {f: ref_from_json(r) for f, r in s["refs"].items()}}) for s in d["steps"])
        return ImageSpec(image_id=d["image_id"], source=ref_from_json(d["source"]), steps=steps,
                         variant=Variant.from_json(d["variant"]) if d.get("variant") else None)
    if kind == "clip":
        return ClipSpec(**{**d, "start": ref_from_json(d["start"]) if d.get("start") else None,
                           "ray2": Ray2Settings(**d["ray2"]) if d.get("ray2") else None})
    if kind == "video":
        return VideoSpec(**{**d, "clips": tuple(d["clips"]),
                            "audio": AudioSpec(**d["audio"]) if d.get("audio") else None,
                            "title": Card(**d["title"]) if d.get("title") else None,
                            "end_card": Card(**d["end_card"]) if d.get("end_card") else None,
                            "variant": Variant.from_json(d["variant"]) if d.get("variant") else None,
                           "captions": tuple(d.get("captions", ())), "voices": tuple(d.get("voices", ())),
                           "outputs": tuple(VideoOutput(**o) for o in d.get("outputs", ())),
                           "logo": LogoSpec(**d["logo"]) if d.get("logo") else None,
                           "caption_translations": tuple(d.get("caption_translations", ())),
                           "fonts": BrandFonts(**d["fonts"]) if d.get("fonts") else None})
    raise ValueError(f"unknown job kind {kind!r}")
