"""The report's sound: each spoken shot's utterance (text, voice, backend, placeholder label, timing source), each
delivered file's measured loudness and true peak, and each translation beside its source (`translate: true`);
and their lines in report.html (every text escaped: it is the manifest author's or a model's)."""

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
                    "text": info.get("text") or job.voice.text, "source_text": job.voice.text if job.voice.translation else None,
                    "translation_job": job.voice.translation, "voice": job.voice.voice_id, "engine": job.voice.engine,
                    "language": job.voice.language, "backend": info.get("backend") or plan.backends.get("voice"),
                    "placeholder": bool(info.get("placeholder")), "label": info.get("label"),
                    "timing": info.get("timing"), "speech_s": info.get("speech_s"),
                    "cached": res.status == "cached" if res else False})
    return out


def translation_records(plan: Plan, by_id: Mapping[str, JobResult]) -> list[dict[str, Any]]:
    """Each translation, source and result side by side, with the videos it is shown or spoken in."""
    used: dict[str, list[str]] = {}
    for vjob in plan.by_kind("video"):
        voices = [plan.job(v).voice.translation for v in vjob.video.voices if v]
        for t in dict.fromkeys([*voices, *vjob.video.caption_translations]):
            if t:
                used.setdefault(t, []).append(vjob.video.video_id)
    out = []
    for job in plan.by_kind("translate"):
        res = by_id.get(job.id)
        info = (res.info if res else {}) or {}
        out.append({"job": job.id, "key": job.key, "status": res.status if res else "not-run",
                    "source": job.translate.text, "source_language": job.translate.source_language,
                    "target_language": job.translate.target_language, "translation": info.get("translation"),
                    "untranslated": info.get("untranslated"), "backend": info.get("backend") or plan.backends.get("translator"),
                    "identity": info.get("identity"), "videos": used.get(job.id, []),
                    "cached": res.status == "cached" if res else False})
    return out


def translations_html(records: list[dict[str, Any]]) -> str:
    """The report's translations: source and translation side by side, as text."""
    if not records:
        return ""
    rows = []
    for t in records:
        if t.get("translation") is None:
            result = f"<span class=mute>{html.escape(str(t.get('status')))}</span>"
        elif t.get("untranslated"):
            result = (f"{html.escape(t['translation'])} <span class='pill placeholder'>untranslated: kept as "
                      "written (passthrough)</span>")
        else:
            result = html.escape(t["translation"])
        rows.append(f"<tr><td>{html.escape(str(t.get('target_language')))}</td><td class=prompt>"
                    f"{html.escape(t['source'])}</td><td class=prompt>{result}</td>"
                    f"<td>{html.escape(str(t.get('backend')))}</td><td>{html.escape(', '.join(t.get('videos') or []))}</td></tr>")
    return ("<section id=translations><h2>Translations</h2><div class=card><table><tr><th>into</th><th>source</th>"
            f"<th>translation</th><th>translator</th><th>videos</th></tr>{''.join(rows)}</table></div></section>")


def sound_html(video: Mapping[str, Any]) -> str:
    """A video's voiceover rows and each file's measured loudness, for its card in report.html."""
    parts = []
    for v in video.get("voiceover") or []:
        flag = f" <span class='pill placeholder'>{html.escape(str(v['label']))}</span>" if v.get("placeholder") else ""
        source = f" (from “{html.escape(v['source_text'])}”)" if v.get("source_text") else ""
        parts.append(f"<li>shot {v['shot']}: “{html.escape(v['text'])}”{source} · {html.escape(str(v['voice']))} "
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
