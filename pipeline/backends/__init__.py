"""Backend selection: names on the command line (or in a Lambda's environment) -> backend objects.

Video backends make different models: `preview` makes every model (an animatic), `diffusers` and `sagemaker`
make the self-hosted models (CogVideoX, Wan2.2), `bedrock` makes Luma Ray2 (the registry, pipeline/catalog.py,
says which backends make each model). A campaign that mixes models names one backend per family joined
by `+` (`--video sagemaker+bedrock`, what `--backend aws` picks): each clip goes to the first named backend
that makes its model, and a model none of them makes is refused before any job runs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.backends.base import (
    ClipOutcome,
    ClipRequest,
    Enhancer,
    ImageEditor,
    Translation,
    Translator,
    VideoBackend,
    VoiceBackend,
)
from pipeline.catalog import MANAGED_VIDEO_MODELS, VIDEO_MODELS
from pipeline.errors import BackendUnavailable

ENHANCERS = ("passthrough", "smollm", "bedrock")
IMAGE_BACKENDS = ("local", "bedrock")
VIDEO_BACKENDS = ("preview", "diffusers", "sagemaker", "bedrock")
# Which models each video backend makes (None: every model), from the registry's `backends` of each model.
_MODEL_BACKENDS: dict[str, tuple[str, ...]] = {
    **{name: m.backends for name, m in VIDEO_MODELS.items()}, **{name: m.backends for name, m in MANAGED_VIDEO_MODELS.items()}}
VIDEO_BACKEND_MODELS: dict[str, tuple[str, ...] | None] = {
    "preview": None,
    **{backend: tuple(name for name, backends in _MODEL_BACKENDS.items() if backend in backends)
       for backend in ("diffusers", "sagemaker", "bedrock")},
}
AWS_VIDEO = "sagemaker+bedrock"  # `--backend aws`: CogVideoX on SageMaker, Ray2 on Bedrock
VOICE_BACKENDS = ("local", "polly")  # espeak-ng placeholder voice (local default), Amazon Polly (the cloud's)
TRANSLATORS = ("passthrough", "bedrock")  # the source text kept and marked untranslated (local default), Claude


def make_voice_backend(name: str) -> VoiceBackend:
    if name == "local":
        from pipeline.backends.voice_local import EspeakVoiceBackend

        return EspeakVoiceBackend()
    if name == "polly":
        from pipeline.backends.voice_polly import PollyVoiceBackend

        return PollyVoiceBackend.from_environment(os.environ)
    raise BackendUnavailable(f"unknown voice backend {name!r} (choose from {', '.join(VOICE_BACKENDS)})")


@dataclass
class Backends:
    enhancer: Enhancer
    images: ImageEditor
    video: VideoBackend
    voice: VoiceBackend = field(default_factory=lambda: make_voice_backend("local"))
    translator: Translator = field(default_factory=lambda: make_translator("passthrough"))

    def names(self) -> dict[str, str]:
        return {"enhancer": self.enhancer.name, "images": self.images.name, "video": self.video.name,
                "voice": self.voice.name, "translator": self.translator.name}


class PassThroughEnhancer:
    """No enhancement: the shot's own prompt goes to the video model (reported as such)."""

    name = "passthrough"

    def identity(self) -> str:
        return "passthrough:v1"

    def enhance(self, prompt: str) -> str:
        return prompt


def make_enhancer(name: str, *, model: str | None = None) -> Enhancer:
    """The prompt enhancer called `name`; heavy modules are imported only when chosen."""
    if name == "passthrough":
        return PassThroughEnhancer()
    if name == "smollm":
        try:
            from pipeline.backends.enhance_smollm import SmolLMEnhancer
        except ImportError as exc:
            raise BackendUnavailable(f"--enhancer smollm needs the 'llm' extra (pip install '.[llm]'): {exc}") from exc
        return SmolLMEnhancer()
    if name == "bedrock":
        from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL, BedrockEnhancer

        return BedrockEnhancer(model_id=model or DEFAULT_ENHANCER_MODEL)
    raise BackendUnavailable(f"unknown enhancer {name!r} (choose from {', '.join(ENHANCERS)})")


class PassThroughTranslator:
    """No translation: the source text is shown and spoken as written, marked `untranslated` in the report."""

    name = "passthrough"

    def identity(self) -> str:
        return "passthrough:v1"

    def translate(self, text: str, *, source_language: str | None, target_language: str) -> Translation:
        return Translation(text=text, untranslated=True)


def make_translator(name: str, *, model: str | None = None) -> Translator:
    """The translator called `name`; `model` is the Bedrock model (the enhancer's, so one grant covers both)."""
    if name == "passthrough":
        return PassThroughTranslator()
    if name == "bedrock":
        from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL
        from pipeline.backends.translate_bedrock import BedrockTranslator

        return BedrockTranslator(model_id=model or DEFAULT_ENHANCER_MODEL)
    raise BackendUnavailable(f"unknown translator {name!r} (choose from {', '.join(TRANSLATORS)})")


def make_image_editor(name: str) -> ImageEditor:
    if name == "local":
        from pipeline.backends.images_local import LocalImageEditor

        return LocalImageEditor()
    if name == "bedrock":
        from pipeline.backends.bedrock import BedrockImageEditor

        return BedrockImageEditor()
    raise BackendUnavailable(f"unknown image backend {name!r} (choose from {', '.join(IMAGE_BACKENDS)})")


def video_backend_names(name: str) -> list[str]:
    """`sagemaker+bedrock` -> ["sagemaker", "bedrock"], each checked."""
    names = [n.strip() for n in name.split("+")]
    for n in names:
        if n not in VIDEO_BACKENDS:
            raise BackendUnavailable(f"unknown video backend {n!r} (choose from {', '.join(VIDEO_BACKENDS)}, "
                                     "or several joined by '+', e.g. sagemaker+bedrock)")
    if len(set(names)) != len(names):
        raise BackendUnavailable(f"video backend {name!r} names one backend twice")
    return names


def makes(backend_name: str, model: str) -> bool:
    models = VIDEO_BACKEND_MODELS[backend_name]
    return models is None or model in models


class RoutingVideoBackend:
    """Several video backends as one: each clip goes to the first that makes its model. Its identity for a
    model is that backend's, so a clip's key is the same as with that backend alone."""

    def __init__(self, backends: Sequence[VideoBackend]) -> None:
        self.backends = list(backends)

    @property
    def name(self) -> str:
        return "+".join(b.name for b in self.backends)

    @property
    def max_batch(self) -> int:
        return max(b.max_batch for b in self.backends)

    def backend_for(self, model: str) -> VideoBackend:
        for backend in self.backends:
            if makes(backend.name, model):
                return backend
        raise BackendUnavailable(f"no video backend of {self.name} makes {model} clips")

    def identity(self, model: str) -> str:
        return self.backend_for(model).identity(model)

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        outcomes: dict[str, ClipOutcome] = {}
        for backend in self.backends:
            mine = [r for r in requests if r.key not in outcomes and self.backend_for(r.model) is backend]
            if mine:
                outcomes |= {o.key: o for o in backend.render(mine, out_dir)}
        return [outcomes[r.key] for r in requests]


def check_video_models(video: VideoBackend, models: Iterable[str]) -> None:
    """Refuse a plan whose clips use a model the chosen video backend(s) cannot make, before any job runs."""
    missing = sorted({m for m in models if not any(makes(n, m) for n in video_backend_names(video.name))})
    if missing:
        for_ray2 = any(m in MANAGED_VIDEO_MODELS for m in missing)
        hint = f"{video.name}+bedrock" if for_ray2 else f"sagemaker+{video.name}"
        raise BackendUnavailable(f"--video {video.name} cannot make {', '.join(missing)} clips; name a backend for "
                                 f"them too, e.g. --video {hint} (or --video preview for animatics of every model)")


def make_video_backend(name: str, *, models_dir: Path | None = None,
                       options: Mapping[str, str] | None = None) -> VideoBackend:
    """`options` are the sagemaker and bedrock backends' settings (--sagemaker-option KEY=VALUE,
    --bedrock-output); `name` may join several backends with '+'."""
    names = video_backend_names(name)
    if len(names) > 1:
        return RoutingVideoBackend([make_video_backend(n, models_dir=models_dir, options=options) for n in names])
    if name == "bedrock":
        from pipeline.backends.video_bedrock import BedrockVideoBackend

        return BedrockVideoBackend.from_options(options or {}, os.environ)
    if name == "preview":
        from pipeline.backends.video_preview import PreviewVideoBackend

        return PreviewVideoBackend()
    if name == "diffusers":
        if models_dir is None:
            raise BackendUnavailable("--video diffusers needs --models DIR (a folder of diffusers pipeline folders)")
        try:
            from pipeline.backends.video_diffusers import DiffusersVideoBackend
        except ImportError as exc:
            raise BackendUnavailable(f"--video diffusers needs the 'gpu' extra (pip install '.[gpu]'): {exc}") from exc
        return DiffusersVideoBackend(Path(models_dir))
    if name == "sagemaker":
        from pipeline.backends.video_sagemaker import SageMakerVideoBackend

        return SageMakerVideoBackend.from_options({k: v for k, v in (options or {}).items()
                                                   if not k.startswith("bedrock_")})
    raise BackendUnavailable(f"unknown video backend {name!r} (choose from {', '.join(VIDEO_BACKENDS)})")


def select_backends(*, enhancer: str = "passthrough", images: str = "local", video: str = "preview",
                    enhancer_model: str | None = None, models_dir: Path | None = None,
                    options: Mapping[str, str] | None = None, voice: str = "local",
                    translator: str = "passthrough") -> Backends:
    """Build the chosen backends for a local run."""
    return Backends(make_enhancer(enhancer, model=enhancer_model), make_image_editor(images),
                    make_video_backend(video, models_dir=models_dir, options=options), make_voice_backend(voice),
                    make_translator(translator, model=enhancer_model))
