"""Voice jobs of the plan: one per distinct utterance (text, voice, engine, language), keyed like the others,
and the sound settings a video's key adds when it speaks or has a loudness target."""

from __future__ import annotations

from typing import Any

from pipeline.manifest.campaign import VideoSpec as VideoSpec_
from pipeline.manifest.voices import DEFAULT_LOUDNESS_LUFS
from pipeline.plan.jobs import Job, VoiceSpec
from pipeline.plan.keys import content_key

MIX_VERSION = "mix:v1"  # pipeline/media/mix.py: placement, ducking, loudness normalisation


def voice_key(spec: VoiceSpec, backend: str, translation_key: str | None = None) -> str:
    """The utterance's key; a translated one's also holds its translate job's key (the translated text is that
    job's output, a pure function of its key), so a new translation is spoken anew."""
    return content_key("voice", params={"text": spec.text, "voice": spec.voice_id, "engine": spec.engine,
                                        "language": spec.language},
                       inputs=[translation_key] if translation_key else [], backend=backend)


def voice_jobs(video: VideoSpec_, backend: str, made: dict[str, Job],
               translations: list[Job | None] | None = None) -> list[Job | None]:
    """Each shot's voice job (None for a silent shot); `made` (key -> job) shares one job between equal
    utterances across the campaign, and gains the new ones. `translations` (per shot, pipeline/plan/translate.py):
    the voice speaks that job's output and waits for it."""
    out: list[Job | None] = []
    for i, shot in enumerate(video.shots):
        if not shot.voiceover or video.voice is None:
            out.append(None)
            continue
        v = video.voice
        tj = translations[i] if translations else None
        spec = VoiceSpec(text=shot.voiceover, voice_id=v.id, engine=v.engine, language=v.language,
                         translation=tj.id if tj else None)
        key = voice_key(spec, backend, tj.key if tj else None)
        if key not in made:
            short = spec.text if len(spec.text) <= 50 else spec.text[:49] + "…"
            made[key] = Job(id=f"voice:{key[:10]}", kind="voice", key=key, stage=2, deps=(tj.id,) if tj else (),
                            spec=spec, label=f"{v.id} ({v.language}): {short}" + (" (translated)" if tj else ""))
        out.append(made[key])
    return out


def loudness_target(video: VideoSpec_) -> float | None:
    """The video's loudness target: its own (or the defaults'), else the default when it speaks, else None
    (a video with music alone and no target keeps its audio as it was before sound existed)."""
    if video.loudness is not None:
        return video.loudness
    return DEFAULT_LOUDNESS_LUFS if any(s.voiceover for s in video.shots) else None


def sound_key_params(voices: list[Job | None], loudness: float | None, caption_from: str | None) -> dict[str, Any]:
    """What a video's key adds for sound; empty for a video without it, so its key is what it was."""
    if loudness is None and not any(voices):
        return {}
    return {"sound": {"voices": [j.key if j else None for j in voices], "loudness": loudness,
                      "caption_from": caption_from, "mix": MIX_VERSION}}
