"""The model-family interface of generate.py: what differs between CogVideoX, Wan2.2 and any later family.

Part of the container image beside generate.py (it cannot import `pipeline`). Each family is one module named
`family_<name>.py` in this folder that defines `FAMILY`, a `ModelFamily`; they are found by name, so a third
family is one new module (plus its models' entries in pipeline/catalog.py, which tests keep in step with
`MODEL_SETTINGS`). generate.py runs the batch (jobs, grouping, memory mode, writer, provenance) and asks the
family only what is model-specific: which pipeline class a folder holds, how it is loaded and configured,
which pipeline renders a job, its limits, its call arguments, and which speed options apply.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clip_jobs import Job, JobError, ModelSettings

HERE = Path(__file__).resolve().parent


class ModelFamily(ABC):
    """Defaults that hold for any diffusers video pipeline; a family overrides what its models do differently and
    must say the three things no default can (abstract: a family module that leaves one out fails when loaded)."""

    name = ""
    models: dict[str, ModelSettings] = {}
    # Memory-mode headroom is scaled by a clip's size against this reference (generate.choose_memory_mode).
    reference_voxels = 720 * 480 * 49

    @abstractmethod
    def folder_class(self, i2v: bool) -> type:
        """The pipeline class a folder's model_index.json must declare for jobs with (i2v) or without an image."""

    def load(self, folder: Path, *, i2v: bool, dtype: str, device_map: str | None) -> Any:
        import torch

        return self.folder_class(i2v).from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True,
                                                      **({"device_map": device_map} if device_map else {}))

    def configure(self, pipe: Any, settings: ModelSettings) -> dict[str, Any]:
        """Sampler settings after loading; returns what provenance records under `setup`."""
        return {}

    def pipe_for(self, pipe: Any, job: Job, cache: dict[str, Any]) -> Any:
        """The pipeline object that renders `job` (a family may derive one from the loaded pipe, kept in `cache`)."""
        return pipe

    def spatial_multiple(self, pipe: Any) -> int:
        patch = pipe.transformer.config.patch_size
        return int(pipe.vae_scale_factor_spatial) * int(patch[-1] if isinstance(patch, (list, tuple)) else patch)

    def check(self, pipe: Any, job: Job) -> None:
        """The job against the loaded model's own limits (read from its config, not constants)."""
        temporal = pipe.vae_scale_factor_temporal
        spatial = self.spatial_multiple(pipe)
        if (job.frames - 1) % temporal:
            raise JobError(f"{job.source}: frames {job.frames} must be {temporal}N+1 for this model")
        if job.width % spatial or job.height % spatial:
            raise JobError(f"{job.source}: width x height {job.width}x{job.height} must be multiples of {spatial}")

    @abstractmethod
    def max_text_tokens(self, pipe: Any) -> int:
        """The longest prompt, in the model's own tokens, its text encoder reads."""

    def call_kwargs(self, settings: ModelSettings, job: Job) -> dict[str, Any]:
        """Arguments of the pipeline call beyond the ones every family takes."""
        return {}

    @abstractmethod
    def attention_shape(self, pipe: Any, job: Job) -> dict[str, int]:
        """The self-attention call one clip makes: batch (CFG doubles it), heads, tokens, head size."""

    def activation_scale(self, pipe: Any, jobs: Sequence[Job]) -> float:
        """The largest clip's activations relative to the reference clip the memory headroom was estimated for."""
        return max(j.width * j.height * j.frames for j in jobs) / self.reference_voxels

    def speed_problem(self, speed: Any) -> str | None:
        """Why a speed option cannot apply to this family (the folder's jobs then fail with it), or None."""
        return None

    def cache_config(self, name: str, *, current_timestep: Callable[[], Any], threshold: float) -> Any:
        from diffusers import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

        if name == "firstblock":
            return FirstBlockCacheConfig(threshold=threshold)
        if name == "pab":
            # diffusers' CacheMixin.enable_cache example, written for CogVideoX-5b; its defaults find the
            # self-attention of both families (Wan's blocks.N.attn1), where the schedule is unmeasured (lossy, opt-in)
            return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                                   spatial_attention_timestep_skip_range=(100, 800),
                                                   current_timestep_callback=current_timestep)
        raise ValueError(f"cache {name!r} has no settings for the {self.name} family")


def _discover() -> dict[str, ModelFamily]:
    """Every family_<name>.py beside this file, imported once (the folder is on sys.path, as generate.py sets)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    found: dict[str, ModelFamily] = {}
    for path in sorted(HERE.glob("family_*.py")):
        family = importlib.import_module(path.stem).FAMILY
        found[family.name] = family
    return found


FAMILIES: dict[str, ModelFamily] = _discover()
MODEL_SETTINGS: dict[str, ModelSettings] = {name: s for f in FAMILIES.values() for name, s in f.models.items()}


def family_of(model: str) -> ModelFamily:
    return FAMILIES[MODEL_SETTINGS[model].family]
