"""Task `voice`: one utterance (its translation, for a translated video) spoken by the voice backend and cached
under its key; and what the video task needs of its video's utterances: each placed in its shot's window, and
captions timed from the speech, one cue per sentence."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline.manifest.formats import Cue, sentences, shot_spans
from pipeline.manifest.timeline import Timeline
from pipeline.media.mix import MixRequest, place, sentence_onsets, speech_bounds
from pipeline.plan.jobs import Job
from pipeline.tasks.common import TaskContext, provenance, read_provenance, write_done
from pipeline.tasks.translate import translated_text

PLACEHOLDER_LABEL = "placeholder voice (espeak-ng): not for publication"


def run_voice(job: Job, ctx: TaskContext) -> dict[str, Any]:
    spec = job.voice
    text = translated_text(ctx, spec.translation) if spec.translation else spec.text
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="voice-") as tmp:
        out = Path(tmp) / "voice.wav"
        speech = ctx.backends.voice.synthesize(text=text, voice_id=spec.voice_id, engine=spec.engine,
                                               language=spec.language, out=out)
        onset, offset, length = speech_bounds(out)
        info = {"text": text, **({"source_text": spec.text} if spec.translation else {}), "voice": spec.voice_id, "engine": spec.engine, "language": spec.language,
                "backend": speech.backend, "placeholder": speech.placeholder,
                "label": PLACEHOLDER_LABEL if speech.placeholder else None, "timing": speech.timing,
                "marks": [{"time_s": m.time_s, "text": m.text} for m in speech.marks],
                "speech_s": [round(onset, 3), round(offset, 3)], "duration_s": round(length, 3),
                "characters": len(text), "requests": speech.requests, **speech.extra}
        write_done(ctx.store, "voice", job.key, "wav", provenance(ctx, job, info=info), src=out)
    return info


def sound_request(job: Job, ctx: TaskContext, tl: Timeline) -> MixRequest | None:
    """The video's mix: each shot's utterance placed in the shot's window (None: no voice and no target)."""
    v = job.video
    if not any(v.voices) and v.loudness is None:
        return None
    spans = shot_spans(tl)
    placed = []
    for shot, voice_job in enumerate(v.voices):
        if voice_job is None:
            continue
        path = ctx.store.materialize(ctx.plan.job(voice_job).output_key, ctx.workdir)
        a, b = spans[shot]
        placed.append(place(path, shot=shot, window=(float(a / tl.fps), float(b / tl.fps))))
    return MixRequest(voices=tuple(placed), loudness=v.loudness)


def shown_captions(job: Job, ctx: TaskContext) -> tuple[str | None, ...]:
    """Each shot's caption as shown: its translation's output for a translated video, else as written."""
    v = job.video
    if not v.caption_translations:
        return v.captions
    return tuple(translated_text(ctx, t) if t else c for c, t in zip(v.captions, v.caption_translations, strict=True))


def speech_cues(job: Job, ctx: TaskContext, tl: Timeline, mix: MixRequest,
                captions: tuple[str | None, ...]) -> list[Cue]:
    """The cues of a video whose captions are its voiceover, on the speech, sentence by sentence: each sentence
    from its speech mark when the voice gave marks (Polly), else from the pauses in the audio (or, without
    pauses enough, a split in proportion to the sentences' lengths); the last ends at the audio's last sound.
    A sentence's cue lasts until the next one starts (frame boundaries, as every cue)."""
    v = job.video
    out: list[Cue] = []
    for placed in mix.voices:
        voice_job = v.voices[placed.shot]
        assert voice_job is not None
        text = captions[placed.shot] if placed.shot < len(captions) else None
        if not text:
            continue
        info = (read_provenance(ctx.store, "voice", ctx.plan.job(voice_job).key) or {}).get("info", {})
        _, offset, _ = speech_bounds(placed.path)
        marks = [(float(m["time_s"]), str(m["text"])) for m in info.get("marks") or []]
        parts = sentences(text)
        if marks and len(marks) == len(parts):
            starts = [t for t, _ in marks]
        elif marks and len(parts) == 1:
            starts = [marks[0][0]]
        else:
            starts, _how = sentence_onsets(placed.path, parts)
        frames = [round((placed.start_s + t) * tl.fps) for t in starts] + [round((placed.start_s + offset) * tl.fps)]
        several = len(parts) > 1
        for i, sentence in enumerate(parts):
            start = int(max(frames[i], out[-1].stop if out else 0))
            stop = max(int(frames[i + 1]), start + 1)
            out.append(Cue(start, stop, sentence, placed.shot, i if several else None))
    return out
