"""Backend selection: names on the command line (or in a Lambda's environment) -> backend objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.backends.base import Enhancer, ImageEditor, VideoBackend
from pipeline.errors import BackendUnavailable

ENHANCERS = ("passthrough", "smollm", "bedrock")
IMAGE_BACKENDS = ("local", "bedrock")
VIDEO_BACKENDS = ("preview", "diffusers", "sagemaker")


@dataclass
class Backends:
    enhancer: Enhancer
    images: ImageEditor
    video: VideoBackend

    def names(self) -> dict[str, str]:
        return {"enhancer": self.enhancer.name, "images": self.images.name, "video": self.video.name}


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


def make_image_editor(name: str) -> ImageEditor:
    if name == "local":
        from pipeline.backends.images_local import LocalImageEditor

        return LocalImageEditor()
    if name == "bedrock":
        from pipeline.backends.bedrock import BedrockImageEditor

        return BedrockImageEditor()
    raise BackendUnavailable(f"unknown image backend {name!r} (choose from {', '.join(IMAGE_BACKENDS)})")


def make_video_backend(name: str, *, models_dir: Path | None = None,
                       options: Mapping[str, str] | None = None) -> VideoBackend:
    """`options` are the sagemaker backend's settings (the CLI's --sagemaker-option KEY=VALUE)."""
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

        return SageMakerVideoBackend.from_options(options or {})
    raise BackendUnavailable(f"unknown video backend {name!r} (choose from {', '.join(VIDEO_BACKENDS)})")


def select_backends(*, enhancer: str = "passthrough", images: str = "local", video: str = "preview",
                    enhancer_model: str | None = None, models_dir: Path | None = None,
                    options: Mapping[str, str] | None = None) -> Backends:
    """Build the chosen backends for a local run."""
    return Backends(make_enhancer(enhancer, model=enhancer_model), make_image_editor(images),
                    make_video_backend(video, models_dir=models_dir, options=options))
