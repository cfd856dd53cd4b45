"""The small protocols every backend implements: one per capability (enhance, translate, image edit, video clip,
voice)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from pipeline.catalog import Ray2Settings

# --- prompt enhancement -------------------------------------------------------------------------


class Enhancer(Protocol):
    """Turns a short shot prompt into a richer one. The caller holds the result to the token limit."""

    name: str  # "passthrough" | "smollm" | "bedrock"

    def identity(self) -> str:
        """Backend + model version; part of every cache key of its outputs."""
        ...

    def enhance(self, prompt: str) -> str:
        ...


# --- translation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Translation:
    """One text in the target language, or the source kept as written (`untranslated`: the passthrough, shown as
    such in the report, as the passthrough enhancer's prompts are)."""

    text: str
    untranslated: bool
    usage: dict[str, int] = field(default_factory=dict)  # the model's token counts, for the cost report


class Translator(Protocol):
    """Translates caption and voiceover text into a video's language before it is spoken or shown."""

    name: str  # "passthrough" | "bedrock"

    def identity(self) -> str:
        """Backend + model + prompt version; part of every translation's cache key."""
        ...

    def translate(self, text: str, *, source_language: str | None, target_language: str) -> Translation:
        ...


# --- image edits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditOutcome:
    """One edit's result. `placeholder` is True when no real implementation of the tool ran."""

    image: Image.Image
    backend: str
    placeholder: bool = False
    note: str = ""
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ImageEditor(Protocol):
    name: str  # "local" | "bedrock"

    def identity(self, tool: str) -> str:
        """Backend + implementation/model version for `tool`; part of the cache key."""
        ...

    def edit(
        self,
        tool: str,
        image: Image.Image,
        params: Mapping[str, Any],
        refs: Mapping[str, Image.Image],
    ) -> EditOutcome:
        """Apply `tool` to `image`. `params` are the manifest's fields with image-valued ones removed;
        `refs` maps those image-valued field names (mask, style_image) to loaded images."""
        ...


# --- video clips ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipRequest:
    """One clip to render; the same fields as one line of container/generate.py's jobs file."""

    key: str
    model: str
    prompt: str
    frames: int
    fps: int
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str | None = None
    image: Path | None = None  # start image for image-to-video
    ray2: Ray2Settings | None = None  # a Luma Ray2 clip's Bedrock settings (video_bedrock.py); never sent to the container

    def to_job(self) -> dict[str, Any]:
        job: dict[str, Any] = {
            "key": self.key, "model": self.model, "prompt": self.prompt, "frames": self.frames, "fps": self.fps,
            "width": self.width, "height": self.height, "steps": self.steps, "guidance": self.guidance,
            "seed": self.seed,
        }
        if self.negative_prompt:
            job["negative_prompt"] = self.negative_prompt
        if self.image is not None:
            job["image"] = str(self.image)
        return job


@dataclass(frozen=True)
class ClipOutcome:
    key: str
    path: Path | None  # out_dir/<key>.mp4 when it succeeded
    backend: str
    error: str | None = None
    error_type: str | None = None
    placeholder: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class VideoBackend(Protocol):
    @property
    def name(self) -> str:
        """ "preview" | "diffusers" | "sagemaker" """
        ...

    @property
    def max_batch(self) -> int:
        """Clips per render call; the runner fills batches up to it, so a GPU backend loads its model once."""
        ...

    def identity(self, model: str) -> str:
        ...

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        """Render a batch; write out_dir/<key>.mp4 for each success. One failure never stops the batch."""
        ...


# --- voice ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechMark:
    """Where a sentence starts in an utterance's audio (seconds), and its text."""

    time_s: float
    text: str


@dataclass(frozen=True)
class Speech:
    """One utterance's audio (a WAV file) and its timing: sentence marks from the service, or none (then the
    caption timing comes from the audio itself); `timing` says which."""

    path: Path
    backend: str
    placeholder: bool  # a stand-in voice (espeak-ng), labelled as such in the report
    marks: tuple[SpeechMark, ...] = ()
    timing: str = "audio"  # "audio" | "speech-marks:sentence"
    requests: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class VoiceBackend(Protocol):
    name: str  # "local" | "polly"

    def identity(self) -> str:
        """Backend + voice engine version; part of every utterance's key."""
        ...

    def synthesize(self, *, text: str, voice_id: str, engine: str, language: str, out: Path) -> Speech:
        """Speak `text`; write a WAV file at `out`."""
        ...


class BackendSet(Protocol):
    """One backend per capability, as the task functions use them (the local runner's `Backends`, or the
    cloud's, built on first use)."""

    @property
    def enhancer(self) -> Enhancer: ...

    @property
    def images(self) -> ImageEditor: ...

    @property
    def video(self) -> VideoBackend: ...
    @property
    def voice(self) -> VoiceBackend: ...

    @property
    def translator(self) -> Translator: ...

    def names(self) -> dict[str, str]: ...


# --- live progress within a clip -------------------------------------------------------------------

# (clip key, units done, units in all, unit): a backend that renders in steps says so as it goes; whoever shows
# progress (the studio's worker, one generation per process) installs the reporter. Without one, nothing happens.
StepReporter = Callable[[str, int, int, str], None]
_reporter: list[StepReporter] = []


def set_step_reporter(reporter: StepReporter | None) -> None:
    _reporter[:] = [reporter] if reporter is not None else []


def report_step(key: str, done: int, total: int, unit: str = "step") -> None:
    for reporter in _reporter:
        try:
            reporter(key, done, total, unit)
        except Exception as exc:  # noqa: BLE001 - progress display must never fail a render
            print(f"progress not shown: {type(exc).__name__}: {exc}", file=sys.stderr)


def reporting_frames(frames: Iterable[Any], *, key: str, total: int) -> Iterator[Any]:
    """`frames`, reporting each one drawn (for backends whose unit of work is a frame)."""
    for i, frame in enumerate(frames, 1):
        yield frame
        report_step(key, i, total, "frame")

