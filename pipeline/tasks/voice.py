"""Task `voice`: one utterance spoken by the voice backend and cached under its key; and what the video task
needs of its video's utterances: each placed in its shot's window, and captions timed from the speech."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline.manifest.formats import Cue, shot_spans
from pipeline.manifest.timeline import Timeline
from pipeline.media.mix import MixRequest, place, speech_bounds
from pipeline.plan.jobs import Job
from pipeline.tasks.common import TaskContext, provenance, read_provenance, write_done

PLACEHOLDER_LABEL = "placeholder voice (espeak-ng): not for publication"


def run_voice(job: Job, ctx: TaskContext) -> dict[str, Any]:
    spec = job.voice
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="voice-") as tmp:
        out = Path(tmp) / "voice.wav"
        speech = ctx.backends.voice.synthesize(text=spec.text, voice_id=spec.voice_id, engine=spec.engine,
                                               language=spec.language, out=out)
        onset, offset, length = speech_bounds(out)
        info = {"text": spec.text, "voice": spec.voice_id, "engine": spec.engine, "language": spec.language,
                "backend": speech.backend, "placeholder": speech.placeholder,
                "label": PLACEHOLDER_LABEL if speech.placeholder else None, "timing": speech.timing,
                "marks": [{"time_s": m.time_s, "text": m.text} for m in speech.marks],
                "speech_s": [round(onset, 3), round(offset, 3)], "duration_s": round(length, 3),
                "characters": len(spec.text), "requests": speech.requests, **speech.extra}
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


def speech_cues(job: Job, ctx: TaskContext, tl: Timeline, mix: MixRequest) -> list[Cue]:
    """One cue per spoken shot, on the speech: from the first sentence mark when the voice gave marks, else from
    the audio's first sound, to the audio's last sound (frame boundaries, as every cue)."""
    v = job.video
    cues = []
    for placed in mix.voices:
        voice_job = v.voices[placed.shot]
        assert voice_job is not None
        info = (read_provenance(ctx.store, "voice", ctx.plan.job(voice_job).key) or {}).get("info", {})
        onset, offset, _ = speech_bounds(placed.path)
        marks = info.get("marks") or []
        start_s = placed.start_s + (float(marks[0]["time_s"]) if marks else onset)
        stop_s = placed.start_s + offset
        start, stop = round(start_s * tl.fps), round(stop_s * tl.fps)
        text = v.captions[placed.shot] if placed.shot < len(v.captions) else None
        if text:
            cues.append(Cue(int(start), max(int(stop), int(start) + 1), text, placed.shot))
    return cues
