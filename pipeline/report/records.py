"""The report's records, typed: what report.json holds for each image, video, clip, format and error.

TypedDicts, because the report is JSON by contract (DESIGN "report.json contract"): the type checker holds
pipeline/report/write.py to these shapes, and json.dumps writes them as they are. Keys a record has only sometimes
(a cached flag, the enhancer of an enhanced shot, a variant's template) sit in the `total=False` parts.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorRecord(TypedDict):
    job: str
    error: str
    message: str


class _VariantRecord(TypedDict):
    template: str | None
    combination: dict[str, str] | None
    errors: list[ErrorRecord]


class StepRecord(TypedDict):
    tool: str
    params: dict[str, Any]
    refs: dict[str, dict[str, str]]
    path: str | None
    backend: str | None
    placeholder: bool | None
    note: str | None
    seconds: float | None


class _ImageRecordBase(_VariantRecord):
    id: str
    job: str
    key: str
    source: dict[str, str]
    edits: list[str]
    status: str
    path: str | None
    source_path: str | None
    steps: list[StepRecord]
    backend: str | None
    placeholder: bool


class ImageRecord(_ImageRecordBase, total=False):
    cached: bool


class FormatRecord(TypedDict):
    format: str | None
    width: int | None
    height: int | None
    frames: int | None
    duration_s: float | None
    fit: str | None
    burned: bool | None
    method: str | None
    cached: bool | None
    path: str
    poster: str
    captions: str | None
    sound: dict[str, Any] | None  # the mix and the file's measured loudness (pipeline/media/mix.py), if it has one


class _ClipRecordBase(TypedDict):
    job: str
    key: str
    shot: int
    status: str
    prompt: str
    enhanced_prompt: str | None
    model_prompt: str | None
    enhance: bool
    seed: int
    model: str
    i2v: bool
    start: dict[str, str] | None
    frames: int
    fps: int
    width: int
    height: int
    backend: str | None
    placeholder: bool | None
    cached: bool
    prompt_trimmed: bool | None
    path: str | None
    seconds: float | None


class ClipRecord(_ClipRecordBase, total=False):
    enhancer: str | None
    enhance_trimmed: bool | None


class _VideoRecordBase(_VariantRecord):
    id: str
    job: str
    key: str
    status: str
    path: str | None
    poster: str | None
    duration_s: float | None
    expected_duration_s: float
    width: int | None
    height: int | None
    fps: float | None
    frames: int | None
    method: str | None
    cached: bool
    crossfade: float
    continuity: str | None
    audio: dict[str, Any] | None
    formats: list[FormatRecord]
    clips: list[ClipRecord]


class VideoRecord(_VideoRecordBase, total=False):
    captions: str | None
    language: str | None
    voiceover: list[dict[str, Any]]  # pipeline/report/sound.py
    sound: dict[str, Any] | None


class EnhancementRecord(TypedDict):
    job: str
    prompt: str
    enhanced_prompt: str | None
    backend: str | None
    tokens: int | None
    max_tokens: int | None
    trimmed: bool | None
    changed: bool | None
    status: str


class JobCounts(TypedDict):
    total: int
    executed: int
    cached: int
    failed: int
    skipped: int


class JobResultRecord(TypedDict):
    job: str
    kind: str
    status: str
    seconds: float
    key: str
