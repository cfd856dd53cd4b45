"""The manifest's per-model rules from the registry: Luma Ray2 shots, the self-hosted models' shots (CogVideoX,
Wan2.2: frame rule, image-to-video, prompt), and `commercial: true` against each model's licence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline import catalog
from pipeline.errors import Problem
from pipeline.manifest.inputs import is_blank
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
                                    "model parameters for Luma Ray2 document no start-image field; use an "
                                    f"image-to-video model for this shot ({', '.join(image_to_video_models())})"))
    elif continuity:
        problems.append(src.problem(spath, f"this shot continues from the previous clip (continuity: last-frame), "
                                    f"but {name} cannot start from an image (no documented Bedrock field); use "
                                    f"an image-to-video model for it ({', '.join(image_to_video_models())})"))
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


def model_shot_problems(src: Source, spath: tuple[Any, ...], shot: dict[str, Any], dv: dict[str, Any],
                        model: catalog.VideoModel, *, continuity: bool, check_ref: Callable[[tuple[Any, ...], Any], None],
                        problems: list[Problem]) -> list[tuple[int, int]]:
    """A self-hosted model's shot (CogVideoX, Wan2.2), by the registry's rules for that model: no Ray2 keys, a
    prompt within the limit, the frame rule, a start image only where the model does image-to-video.
    `continuity` is true for a shot after the first of a last-frame video. Returns [(frames, fps)]."""
    problems += cogvideox_shot_problems(src, spath, shot, model.name)
    clip_frames: list[tuple[int, int]] = []
    frames = shot.get("frames", dv.get("frames", model.default_frames))
    if isinstance(frames, int) and frames not in model.frame_choices:
        where = spath + ("frames",) if "frames" in shot else ("defaults", "video", "frames")
        problems.append(src.problem(where, f"{model.name} cannot make {frames} frames: the rule is {model.frames_rule()}"
                                    f" ({model.width}x{model.height} at {model.fps} fps)"))
    elif isinstance(frames, int):
        clip_frames.append((frames, model.fps))
    if isinstance(shot.get("prompt"), str) and is_blank(shot["prompt"]):
        problems.append(src.problem(spath + ("prompt",), "the prompt is blank; describe what the clip shows"))
    if "image" in shot:
        check_ref(spath + ("image",), shot["image"])
    if ("image" in shot or continuity) and not model.image_to_video:
        why = "starts from an image" if "image" in shot else "continues from the previous clip (continuity: last-frame)"
        where = spath + ("model",) if "model" in shot else spath
        problems.append(src.problem(where, f"this shot {why}, but {model.name} has no image-to-video variant "
                                    f"(use one of {', '.join(image_to_video_models())})"))
    if continuity and "image" in shot:
        problems.append(src.problem(spath + ("image",), "with continuity: last-frame every shot after the first "
                                    "starts from the previous clip's last frame; remove `image` here"))
    return clip_frames


def image_to_video_models() -> list[str]:
    return [m.name for m in catalog.VIDEO_MODELS.values() if m.image_to_video]


def licence_problems(src: Source, raw_videos: list[Any], dv: dict[str, Any]) -> list[Problem]:
    """`commercial: true`: every model the manifest uses must have a licence that allows commercial use. One
    problem per place a refused model is named (a shot's `model`, `defaults.video.model`, or, for the built-in
    default, `commercial` itself), naming the licence and what it would take."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()

    def refuse(where: tuple[Any, ...], name: str, key: bool = False) -> None:
        licence = catalog.video_licence(name)
        if licence is None or licence.commercial or where in seen:
            return
        seen.add(where)
        line = src.where(("commercial",), key=True)[0]
        why = f"; {licence.condition}" if licence.condition else ""
        problems.append(src.problem(where, f"{name} is licensed under {licence.id}, which does not allow commercial "
                                    f"use{why}; this manifest declares commercial: true (line {line}): use one of "
                                    f"{', '.join(catalog.commercial_models())}", key=key))

    default = dv.get("model", catalog.DEFAULT_VIDEO_MODEL)
    for i, vid in enumerate(raw_videos):
        shots = vid.get("shots") if isinstance(vid, dict) else None
        for j, shot in enumerate(shots if isinstance(shots, list) else []):
            if not isinstance(shot, dict):
                continue
            if isinstance(shot.get("model"), str):
                refuse(("videos", i, "shots", j, "model"), shot["model"])
            elif isinstance(default, str):
                refuse(("defaults", "video", "model") if "model" in dv else ("commercial",), default, key="model" not in dv)
    return problems
