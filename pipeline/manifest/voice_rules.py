"""Manifest rules for sound: a shot's `voiceover`, the `voice` of a video (and `defaults:`), `translate`,
`caption_from: voiceover` and `loudness` — their schema, their located problems and their typed form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import catalog
from pipeline.errors import Problem
from pipeline.manifest.inputs import is_blank
from pipeline.manifest.voices import (
    DEFAULT_ENGINE,
    DEFAULT_VOICE_LANGUAGE,
    ENGINES,
    FAST_CHARS_PER_S,
    LOUDNESS_RANGE,
    SYNTHESIZE_MAX_CHARS,
    TASK_MAX_CHARS,
    VOICE_LEAD_S,
    VOICE_TAIL_S,
    VOICES_BY_ID,
    polly_language,
    voices_for,
)
from pipeline.manifest.yamlsrc import Source

CAPTION_SOURCES = ("voiceover",)


@dataclass(frozen=True)
class Voice:
    engine: str  # Polly's engine; the local placeholder voice reads only the language
    id: str
    language: str  # Polly's spelling, e.g. de-DE


# --- schema -----------------------------------------------------------------------------------------------


def voice_schema() -> dict[str, Any]:
    return {
        "type": "object", "additionalProperties": False,
        "description": "who speaks the voiceover: a Polly engine, voice id and language (the local run speaks "
                       "the language with a placeholder voice)",
        "properties": {
            "engine": {"enum": list(ENGINES), "description": "Polly engine"},
            "id": {"type": "string", "minLength": 1, "maxLength": 40, "description": "Polly voice id, e.g. Joanna"},
            "language": {"type": "string", "pattern": r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})?$",
                         "description": "BCP 47 language, e.g. en-US; default: the video's `language`"},
        },
    }


def loudness_schema() -> dict[str, Any]:
    lo, hi = LOUDNESS_RANGE
    return {"type": "number", "minimum": lo, "maximum": hi,
            "description": "integrated loudness of each delivered file in LUFS (true peak at most -1 dBTP); "
                           "-23 is EBU R128"}


def translate_schema() -> dict[str, Any]:
    return {"type": "boolean", "description": "translate captions and voiceover text into the video's `language` "
                                              "before they are spoken or shown"}


def video_properties() -> dict[str, Any]:
    return {
        "voice": {"$ref": "#/$defs/voice"},
        "translate": translate_schema(),
        "caption_from": {"enum": list(CAPTION_SOURCES),
                         "description": "voiceover: captions are the voiceover text, timed from the speech"},
        "loudness": loudness_schema(),
    }


def shot_properties() -> dict[str, Any]:
    return {"voiceover": {"type": "string", "minLength": 1,
                          "description": "what is spoken over this shot (placeholders allowed)"}}


# --- problems ---------------------------------------------------------------------------------------------


def _shot_seconds(shot: dict[str, Any], dv: dict[str, Any]) -> float | None:
    model_name = shot.get("model", dv.get("model", catalog.DEFAULT_VIDEO_MODEL))
    if model_name in catalog.MANAGED_VIDEO_MODELS:
        duration = shot.get("duration", dv.get("duration", catalog.RAY2.defaults.duration_s))
        return float(duration) if isinstance(duration, (int, float)) else None
    model = catalog.VIDEO_MODELS.get(model_name) if isinstance(model_name, str) else None
    frames = shot.get("frames", dv.get("frames", model.default_frames if model else None))
    return frames / model.fps if model and isinstance(frames, int) else None


def resolve_voice(vid: dict[str, Any], defaults: dict[str, Any]) -> tuple[Voice, str | None]:
    """The voice a video speaks with, and which of its fields was written on the video (for locating an error):
    the video's own voice fields over `defaults: voice`; the language from the voice, else the video's
    `language`, else the default voice's; the id from the video, else the default id when it speaks that language
    with that engine, else the language's first voice."""
    own: dict[str, Any] = vid["voice"] if isinstance(vid.get("voice"), dict) else {}
    dflt: dict[str, Any] = defaults["voice"] if isinstance(defaults.get("voice"), dict) else {}
    engine = str(own.get("engine", dflt.get("engine", DEFAULT_ENGINE)))
    video_lang = vid.get("language") if isinstance(vid.get("language"), str) and vid.get("language") != "und" else None
    language = polly_language(str(own.get("language") or video_lang or dflt.get("language") or DEFAULT_VOICE_LANGUAGE))
    if "id" in own:
        return Voice(engine, str(own["id"]), language), "video"
    did = dflt.get("id")
    fits = isinstance(did, str) and did in VOICES_BY_ID and VOICES_BY_ID[did].language == language
    if fits and engine in VOICES_BY_ID[str(did)].engines:
        return Voice(engine, str(did), language), "defaults"
    if isinstance(did, str) and did not in VOICES_BY_ID:
        return Voice(engine, did, language), "defaults"
    first = voices_for(language, engine)
    return Voice(engine, first[0].id if first else "", language), None


def _voice_problem(voice: Voice) -> str | None:
    choices = ", ".join(v.id for v in voices_for(voice.language, voice.engine)) or "none"
    if not voice.id:
        return f"Polly has no {voice.engine} voice for {voice.language} (voices known here: see pipeline/manifest/voices.py)"
    known = VOICES_BY_ID.get(voice.id)
    if known is None:
        return f"unknown Polly voice {voice.id!r}; {voice.engine} voices for {voice.language}: {choices}"
    if known.language != voice.language:
        return f"voice {voice.id!r} speaks {known.language}, not {voice.language}; {voice.engine} voices for " \
               f"{voice.language}: {choices}"
    if voice.engine not in known.engines:
        return f"voice {voice.id!r} has no {voice.engine} engine (it has {', '.join(known.engines)}); " \
               f"{voice.engine} voices for {voice.language}: {choices}"
    return None


def translates(vid: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """`translate` of the video, else of `defaults:`."""
    return bool(vid.get("translate", defaults.get("translate", False)))


def _translate_problems(src: Source, vpath: tuple[Any, ...], vid: dict[str, Any], defaults: dict[str, Any],
                        shots: list[dict[str, Any]]) -> list[Problem]:
    """`translate: true` needs text to translate (when the video asks itself; `defaults:` asks only where there
    is text), a language to translate into, and a voice that speaks that language."""
    if not translates(vid, defaults):
        return []
    own = "translate" in vid
    where = vpath + ("translate",) if own else vpath
    said = "" if own else " (translate: true from defaults)"
    if not any(isinstance(s.get(k), str) for s in shots for k in ("voiceover", "caption")):
        return [src.problem(where, "nothing to translate: no shot of this video has a `voiceover` or a `caption`")] \
            if own else []
    language = vid.get("language")
    if not isinstance(language, str) or language in ("", "und"):
        return [src.problem(where, f"translate: true needs the video's `language`{said}, the language to "
                                   "translate into (a BCP 47 tag such as de or pt-BR)")]
    voice: dict[str, Any] = vid["voice"] if isinstance(vid.get("voice"), dict) else {}
    spoken = voice.get("language")
    if isinstance(spoken, str) and "{" not in language and \
            polly_language(spoken).split("-")[0] != polly_language(language).split("-")[0]:
        return [src.problem(vpath + ("voice", "language"), f"the voice speaks {spoken} but translate: true "
                            f"translates into the video's language {language}{said}; remove the voice's "
                            "language or make the two agree")]
    return []


def voice_problems(src: Source, data: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    defaults: dict[str, Any] = data["defaults"] if isinstance(data.get("defaults"), dict) else {}
    dv: dict[str, Any] = defaults["video"] if isinstance(defaults.get("video"), dict) else {}
    videos: list[Any] = data["videos"] if isinstance(data.get("videos"), list) else []
    for i, vid in enumerate(videos):
        if not isinstance(vid, dict):
            continue
        vpath: tuple[Any, ...] = ("videos", i)
        shots = [s for s in vid["shots"] if isinstance(s, dict)] if isinstance(vid.get("shots"), list) else []
        spoken = [j for j, s in enumerate(shots) if isinstance(s.get("voiceover"), str)]
        problems += _translate_problems(src, vpath, vid, defaults, shots)
        if vid.get("caption_from") == "voiceover":
            if not spoken:
                problems.append(src.problem(vpath + ("caption_from",), "no shot of this video has a `voiceover`"))
            for j, s in enumerate(shots):
                if "caption" in s:
                    problems.append(src.problem(vpath + ("shots", j, "caption"), "with caption_from: voiceover the "
                                                "captions are the voiceover; remove `caption` here"))
        if not spoken:
            continue
        voice, where = resolve_voice(vid, defaults)
        msg = _voice_problem(voice)
        if msg:
            at = vpath + ("voice", "id") if where == "video" else ("defaults", "voice", "id") if where == "defaults" \
                else vpath + ("voice",) if "voice" in vid else vpath + ("language",) if "language" in vid else vpath
            problems.append(src.problem(at, msg))
        crossfade = vid["transition"].get("crossfade", 0) if isinstance(vid.get("transition"), dict) else 0
        for j in spoken:
            text = shots[j]["voiceover"]
            spath = vpath + ("shots", j, "voiceover")
            if is_blank(text):
                problems.append(src.problem(spath, "the voiceover is blank; remove it for a shot without speech"))
                continue
            if len(text) > TASK_MAX_CHARS:
                problems.append(src.problem(spath, f"the voiceover is {len(text)} characters; Polly takes at most "
                                            f"{SYNTHESIZE_MAX_CHARS} per request and {TASK_MAX_CHARS} per synthesis task"))
                continue
            seconds = _shot_seconds(shots[j], dv)
            if seconds is None:
                continue
            inner = (j > 0) + (j < len(shots) - 1)
            window = seconds - inner * float(crossfade) / 2 - VOICE_LEAD_S - VOICE_TAIL_S
            need = len(" ".join(text.split())) / FAST_CHARS_PER_S
            if need > window:
                problems.append(src.problem(spath, f"the voiceover cannot fit its shot: {len(text)} characters take at "
                                            f"least {need:.1f} s even at a fast {FAST_CHARS_PER_S:g} characters/s, and "
                                            f"the shot leaves {max(window, 0):.1f} s for speech ({seconds:.2f} s shot); "
                                            "shorten the text or lengthen the shot"))
    return problems


# --- typed form ---------------------------------------------------------------------------------------------


def video_voice(vid: dict[str, Any], defaults: dict[str, Any]) -> Voice | None:
    """The resolved voice of a (valid) video with speech, else None."""
    if not any(isinstance(s, dict) and s.get("voiceover") for s in vid.get("shots", [])):
        return None
    return resolve_voice(vid, defaults)[0]


def voiceover(shot: dict[str, Any]) -> str | None:
    text = shot.get("voiceover")
    return " ".join(text.split()) if isinstance(text, str) else None


def loudness_of(vid: dict[str, Any], defaults: dict[str, Any]) -> float | None:
    value = vid.get("loudness", defaults.get("loudness"))
    return float(value) if value is not None else None
