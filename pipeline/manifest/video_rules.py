"""Manifest rules for a video's `formats`, `fit`, `captions`, `language` and its shots' `caption` (kept apart so
pipeline/manifest/campaign.py stays small): blank captions, and captions to burn that no installed font can draw."""

from __future__ import annotations

from typing import Any

from pipeline.errors import Problem
from pipeline.manifest.fonts import caption_font_problem
from pipeline.manifest.formats import DEFAULT_CAPTIONS
from pipeline.manifest.inputs import is_blank
from pipeline.manifest.yamlsrc import Source


def caption_problems(src: Source, vpath: tuple[Any, ...], vid: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    shots: list[Any] = vid["shots"] if isinstance(vid.get("shots"), list) else []
    mode = vid.get("captions", DEFAULT_CAPTIONS)
    burn = mode in ("burn", "both")
    captioned = 0
    for j, shot in enumerate(shots):
        if not isinstance(shot, dict) or not isinstance(shot.get("caption"), str):
            continue
        where = vpath + ("shots", j, "caption")
        text = shot["caption"]
        if is_blank(text):
            problems.append(src.problem(where, "the caption is blank (only spaces or invisible characters); "
                                               "remove it for a shot without a caption"))
            continue
        captioned += 1
        if burn and (why := caption_font_problem(text)):
            problems.append(src.problem(where, f"cannot burn this caption: {why}"))
    if "captions" in vid and not captioned and not problems and vid.get("caption_from") != "voiceover":
        problems.append(src.problem(vpath + ("captions",), "no shot of this video has a `caption`"))
    return problems
