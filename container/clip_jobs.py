"""The jobs file's contract (generate.py step 1): one JSON object per line, checked like a pipeline's
check_inputs, and the settings record each model family declares (clip_families.py).

Part of the container image beside generate.py (it cannot import `pipeline`); generate.py re-exports
these names, so `generate.Job` and `generate.parse_job` are the same objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

I2V_SUFFIX = "-i2v"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
REQUIRED_FIELDS = {"key": str, "model": str, "prompt": str, "frames": int, "fps": int, "width": int,
                   "height": int, "steps": int, "guidance": float, "seed": int}
OPTIONAL_FIELDS = {"image": str, "negative_prompt": str}
SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed's range


@dataclass(frozen=True)
class ModelSettings:
    """One model's precision, sampler and folder layout, declared by its family module (family_<family>.py)."""

    dtype: str
    scheduler: str  # "dpm" | "ddim": CogVideoX's sampler (timestep_spacing="trailing"); "folder": the folder's own
    dynamic_cfg: bool  # THUDM: use_dynamic_cfg=True with DPM only; DDIM needs False
    family: str = "cogvideox"
    separate_i2v: bool = True  # image-to-video weights in <model>-i2v (CogVideoX); False: one folder does both


def model_settings() -> dict[str, ModelSettings]:
    """Every model the family modules declare (imported here lazily: the families import this module)."""
    from clip_families import MODEL_SETTINGS

    return MODEL_SETTINGS


class JobError(ValueError):
    """A job line that cannot run as written; the message quotes the offending value."""


@dataclass(frozen=True)
class Job:
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
    image: Path | None = None
    negative_prompt: str | None = None
    source: str = ""  # "<jobs file>:<line>", for error messages

    @property
    def folder(self) -> str:
        """The pipeline folder under the models directory that renders this job."""
        separate = model_settings()[self.model].separate_i2v
        return self.model + (I2V_SUFFIX if self.image is not None and separate else "")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        if self.image is not None:
            out["image"] = str(self.image)
        if self.negative_prompt is not None:
            out["negative_prompt"] = self.negative_prompt
        return out


@dataclass(frozen=True)
class JobResult:
    key: str | None  # None when the line was too broken to have a key
    ok: bool
    mp4: Path | None
    provenance: dict[str, Any]
    error: str | None = None
    error_type: str | None = None


def parse_job(raw: Any, *, source: str, base_dir: Path) -> Job:
    """Check one jobs line like a pipeline's check_inputs: every problem names the value and the line."""
    if not isinstance(raw, dict):
        raise JobError(f"{source}: a job is a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise JobError(f"{source}: unknown field(s) {unknown}; known: {sorted({**REQUIRED_FIELDS, **OPTIONAL_FIELDS})}")
    missing = sorted(set(REQUIRED_FIELDS) - set(raw))
    if missing:
        raise JobError(f"{source}: missing field(s) {missing}")
    for name, kind in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
        if name not in raw or (name in OPTIONAL_FIELDS and raw[name] is None):
            continue
        value = raw[name]
        ok = (isinstance(value, (int, float)) if kind is float else isinstance(value, kind)) and not isinstance(value, bool)
        if not ok:
            raise JobError(f"{source}: {name} must be {kind.__name__}, got {value!r}")
    key, model = raw["key"], raw["model"]
    if not KEY_PATTERN.match(key):
        raise JobError(f"{source}: key {key!r} must match {KEY_PATTERN.pattern} (it names the output files)")
    if model not in model_settings():
        raise JobError(f"{source}: model {model!r} is not one of {sorted(model_settings())}")
    if not raw["prompt"].strip():
        raise JobError(f"{source}: prompt is empty")
    for name in ("frames", "fps", "width", "height", "steps"):
        if raw[name] < 1:
            raise JobError(f"{source}: {name} must be at least 1, got {raw[name]!r}")
    if raw["guidance"] < 0:
        raise JobError(f"{source}: guidance must be >= 0, got {raw['guidance']!r}")
    if not 0 <= raw["seed"] <= SEED_MAX:
        raise JobError(f"{source}: seed must be in 0..{SEED_MAX}, got {raw['seed']!r}")
    image = None
    if raw.get("image") is not None:
        image = Path(raw["image"])
        image = image if image.is_absolute() else base_dir / image
        if not image.is_file():
            raise JobError(f"{source}: image {raw['image']!r} not found (looked at {image})")
    return Job(key=key, model=model, prompt=raw["prompt"], frames=raw["frames"], fps=raw["fps"],
               width=raw["width"], height=raw["height"], steps=raw["steps"], guidance=float(raw["guidance"]),
               seed=raw["seed"], image=image, negative_prompt=raw.get("negative_prompt"), source=source)
