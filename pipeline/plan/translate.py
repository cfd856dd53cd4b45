"""Translate jobs of the plan (`translate: true`): one per distinct text, source and target language and
translator, in stage 1 beside prompt enhancement; the voice jobs and video outputs made from a translation
take its key as an input, so a new translation re-speaks and re-captions."""

from __future__ import annotations

from pipeline.manifest.campaign import VideoSpec as VideoSpec_
from pipeline.plan.jobs import Job, TranslateSpec
from pipeline.plan.keys import content_key


def translate_key(spec: TranslateSpec, translator: str) -> str:
    return content_key("translate", params={"text": spec.text, "source": spec.source_language,
                                            "target": spec.target_language}, backend=translator)


def _job(text: str, video: VideoSpec_, translator: str, made: dict[str, Job]) -> Job:
    spec = TranslateSpec(text=text, source_language=None, target_language=video.language)
    key = translate_key(spec, translator)
    if key not in made:
        short = text if len(text) <= 50 else text[:49] + "…"
        made[key] = Job(id=f"translate:{key[:10]}", kind="translate", key=key, stage=1, deps=(), spec=spec,
                        label=f"into {video.language}: {short}")
    return made[key]


def translate_jobs(video: VideoSpec_, translator: str, made: dict[str, Job]) -> tuple[list[Job | None], list[Job | None]]:
    """(each shot's voiceover translation, each shot's caption translation), None where the shot has no such
    text or the video is not translated. Equal texts share one job across the campaign (`made`: key -> job), so
    captions drawn from the voiceover are the voiceover's own translation."""
    n = len(video.shots)
    if not video.translate:
        return [None] * n, [None] * n
    spoken = [_job(s.voiceover, video, translator, made) if s.voiceover else None for s in video.shots]
    shown = [s.voiceover if video.caption_from == "voiceover" else s.caption for s in video.shots]
    captions = [_job(text, video, translator, made) if text else None for text in shown]
    return spoken, captions
