"""A shot made on the Shot page -> a valid campaign manifest (one video per shot, or one video of several)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import catalog

UPLOADS_DIR = "uploads"


@dataclass(frozen=True)
class ShotSpec:
    """What the Shot page sends to the renderer. `prompt` is the text the person approved (typed, or enhanced
    and then edited): it goes to the model as written (`enhance: false`), so the clip never depends on a
    second enhancer call that could answer differently. `typed_prompt` and `enhancer` record its origin."""

    prompt: str
    model: str = catalog.DEFAULT_VIDEO_MODEL
    frames: int | None = None
    seed: int = catalog.DEFAULT_SEED
    image: str | None = None  # absolute path of the start image (image-to-video)
    typed_prompt: str | None = None
    enhancer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShotSpec:
        known: dict[str, Any] = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def duration_s(self) -> float:
        m = catalog.VIDEO_MODELS[self.model]
        return (self.frames or m.default_frames) / m.fps


def frame_options(model: str) -> list[tuple[int, str]]:
    """(frames, label with the clip length) for every frame count the model allows."""
    m = catalog.VIDEO_MODELS[model]
    return [(f, f"{f} frames ({f / m.fps:g} s)") for f in m.frame_choices]


def models_for(*, image: bool) -> list[str]:
    """Models that can render the shot: a start image needs a model that does image-to-video (the registry says)."""
    return [name for name, m in catalog.VIDEO_MODELS.items() if not image or m.image_to_video]


def store_upload(data: bytes, *, name: str, studio_dir: Path) -> Path:
    """Keep an uploaded start image under studio/uploads/<sha256>.<ext>: the same bytes are stored once."""
    ext = Path(name).suffix.lower() or ".png"
    dest = studio_dir / UPLOADS_DIR / f"{hashlib.sha256(data).hexdigest()[:16]}{ext}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return dest


def store_existing(path: Path, *, studio_dir: Path) -> Path:
    """A past run's image as a start image: copied into uploads/ so the manifest never points into runs/
    (whose files are read-only links that a later run may replace)."""
    return store_upload(path.read_bytes(), name=path.name, studio_dir=studio_dir) if path.is_file() else path


def manifest_text(shots: list[ShotSpec], *, campaign: str, manifest_dir: Path, video_ids: list[str] | None = None,
                  one_video: bool = False, description: str | None = None) -> str:
    """YAML for `shots`: each its own video (ids `shot-1`, ...), or one video `shots` joined by hard cuts.
    Start images become assets with paths relative to `manifest_dir`."""
    if not shots:
        raise ValueError("no shots to write")
    assets: dict[str, str] = {}

    def shot_entry(s: ShotSpec) -> dict[str, Any]:
        entry: dict[str, Any] = {"prompt": s.prompt, "enhance": False, "model": s.model, "seed": int(s.seed)}
        if s.frames:
            entry["frames"] = int(s.frames)
        if s.image:
            digest = hashlib.sha256(str(s.image).encode()).hexdigest()[:8]
            aid = f"start-{digest}"
            assets[aid] = Path(os.path.relpath(s.image, manifest_dir)).as_posix()
            entry["image"] = aid
        return entry

    if one_video:
        videos = [{"id": (video_ids or ["shots"])[0], "shots": [shot_entry(s) for s in shots]}]
    else:
        ids = video_ids or [f"shot-{i + 1}" for i in range(len(shots))]
        videos = [{"id": vid, "shots": [shot_entry(s)]} for vid, s in zip(ids, shots, strict=True)]
    origins = [f"{s.enhancer} enhanced {s.typed_prompt!r}, then edited" if s.enhancer and s.typed_prompt
               and s.typed_prompt != s.prompt else "typed" for s in shots]
    data: dict[str, Any] = {
        "campaign": campaign,
        "description": description or "Made in campaign studio; prompts: " + "; ".join(origins),
    }
    if assets:
        data["assets"] = assets
    data["videos"] = videos
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)

