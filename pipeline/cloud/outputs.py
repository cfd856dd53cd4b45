"""What the collect steps render with: a VideoBackend that reads what a finished job left (a processing job's
files, a Bedrock job's MP4) instead of rendering, named as the plan's video backend so provenance reads as in
a local run."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.backends.base import VideoBackend


@dataclass
class JobOutputs:
    backend: VideoBackend  # the plan's video backend: its name and identity go into each clip's record

    max_batch = 1 << 16  # a collect step takes the whole batch at once (not a dataclass field)

    @property
    def name(self) -> str:
        return self.backend.name

    def identity(self, model: str) -> str:
        return self.backend.identity(model)
