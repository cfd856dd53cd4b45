"""The manifest's rules for Luma Ray2 shots (model: luma-ray2): what such a shot may say, and its settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline import catalog
from pipeline.errors import Problem
from pipeline.manifest.schema import MAX_SHOT_PROMPT_CHARS
from pipeline.manifest.yamlsrc import Source


def ray2_problems(src: Source, spath: tuple[Any, ...], shot: dict[str, Any], dv: dict[str, Any], *, continuity: bool,
                   check_ref: Callable[[tuple[Any, ...], Any], None], problems: list[Problem]) -> list[tuple[int, int]]:
    """A Luma Ray2 shot: no CogVideoX-only keys on the shot, no start image (Bedrock documents no image field
    for Ray2, see catalog.py), a prompt the service takes. Returns [(frames, fps)] for the crossfade check."""
    name = catalog.RAY2.name
    for key in catalog.COGVIDEOX_ONLY_SHOT_KEYS:
        if key in shot:
            problems.append(src.problem(spath + (key,), f"{key!r} is a CogVideoX setting; {name} does not take it "
                                        f"({name} reads {', '.join(catalog.RAY2_SHOT_KEYS)})", key=True))
    if "image" in shot:
        check_ref(spath + ("image",), shot["image"])
        problems.append(src.problem(spath + ("image",), f"{name} cannot start from an image here: the Bedrock "
                                    "model parameters for Luma Ray2 document no start-image field; use a CogVideoX "
                                    "image-to-video model for this shot"))
    elif continuity:
        problems.append(src.problem(spath, f"this shot continues from the previous clip (continuity: last-frame), "
                                    f"but {name} cannot start from an image (no documented Bedrock field); use "
                                    "a CogVideoX image-to-video model for it"))
    prompt = shot.get("prompt")
    if isinstance(prompt, str) and not prompt.strip():
        problems.append(src.problem(spath + ("prompt",), "the prompt is blank; describe what the clip shows"))
    duration = shot.get("duration", dv.get("duration", catalog.RAY2.defaults.duration_s))
    return [(duration * catalog.RAY2_FPS, catalog.RAY2_FPS)] if duration in catalog.RAY2_DURATIONS_S else []


def ray2_settings(s: dict[str, Any], dv: dict[str, Any]) -> catalog.Ray2Settings:
    d = catalog.RAY2.defaults
    return catalog.Ray2Settings(
        duration_s=int(s.get("duration", dv.get("duration", d.duration_s))),
        resolution=str(s.get("resolution", dv.get("resolution", d.resolution))),
        aspect_ratio=str(s.get("aspect_ratio", dv.get("aspect_ratio", d.aspect_ratio))),
        loop=bool(s.get("loop", dv.get("loop", d.loop))),
    )


def cogvideox_shot_problems(src: Source, spath: tuple[Any, ...], shot: dict[str, Any], model: str) -> list[Problem]:
    """A CogVideoX shot: no Ray2-only keys, and its prompt within the CogVideoX limit (the schema allows Ray2's)."""
    problems = [src.problem(spath + (key,), f"{key!r} is a {catalog.RAY2.name} setting; {model} does not read it "
                            f"(remove it, or set model: {catalog.RAY2.name})", key=True)
                for key in catalog.RAY2_SHOT_KEYS if key in shot]
    prompt = shot.get("prompt")
    if isinstance(prompt, str) and len(prompt) > MAX_SHOT_PROMPT_CHARS:
        problems.append(src.problem(spath + ("prompt",), f"is too long ({len(prompt)} characters; at most "
                                    f"{MAX_SHOT_PROMPT_CHARS} for {model})"))
    return problems
