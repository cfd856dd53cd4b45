"""The report's sound: each spoken shot's utterance (text, voice, backend, placeholder label, timing source) and
each delivered file's measured loudness and true peak; and their lines in report.html."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from pipeline.plan.build import Plan
from pipeline.plan.jobs import Job
from pipeline.tasks.common import JobResult


def voice_records(plan: Plan, vjob: Job, by_id: Mapping[str, JobResult]) -> list[dict[str, Any]]:
    out = []
    for shot, job_id in enumerate(vjob.video.voices):
        if job_id is None:
            continue
        job = plan.job(job_id)
        res = by_id.get(job_id)
        info = (res.info if res else {}) or {}
        out.append({"shot": shot + 1, "job": job_id, "key": job.key, "status": res.status if res else "not-run",
                    "text": job.voice.text, "voice": job.voice.voice_id, "engine": job.voice.engine,
                    "language": job.voice.language, "backend": info.get("backend") or plan.backends.get("voice"),
                    "placeholder": bool(info.get("placeholder")), "label": info.get("label"),
                    "timing": info.get("timing"), "speech_s": info.get("speech_s"),
                    "cached": res.status == "cached" if res else False})
    return out


def sound_html(video: Mapping[str, Any]) -> str:
    """A video's voiceover rows and each file's measured loudness, for its card in report.html."""
    parts = []
    for v in video.get("voiceover") or []:
        flag = f" <span class='pill placeholder'>{html.escape(str(v['label']))}</span>" if v.get("placeholder") else ""
        parts.append(f"<li>shot {v['shot']}: “{html.escape(v['text'])}” · {html.escape(str(v['voice']))} "
                     f"({html.escape(str(v['engine']))}, {html.escape(str(v['language']))}) · "
                     f"{html.escape(str(v.get('backend')))} · timing from {html.escape(str(v.get('timing')))}{flag}</li>")
    files = [f for f in video.get("formats") or [] if f.get("sound")] or ([video] if video.get("sound") else [])
    for f in files:
        m = (f.get("sound") or {}).get("measured") or {}
        if m:
            parts.append(f"<li>{html.escape(str(f.get('format') or 'video'))}: {m.get('integrated_lufs')} LUFS, "
                         f"true peak {m.get('true_peak_dbtp')} dBTP"
                         + (f", music ducked {f['sound']['music_ducked_db']} dB under speech"
                            if f["sound"].get("music_ducked_db") is not None else "") + "</li>")
    return f"<ul class=mute>{''.join(parts)}</ul>" if parts else ""
