"""Task `video`: a video's clips, cards, crossfades and audio assembled (pipeline/media/), and its formats and
caption files, each under its own key."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from pipeline.manifest.formats import cues, webvtt
from pipeline.media.assemble import AssemblyRequest, assemble_video
from pipeline.media.brand import Logo
from pipeline.media.deliver import make_outputs
from pipeline.media.mix import measure_loudness
from pipeline.media.probe import clip_info_from_provenance
from pipeline.plan.build import video_timeline
from pipeline.plan.jobs import Job, output_key, provenance_key
from pipeline.storage.integrity import CHECK_FIELD, check_entry
from pipeline.tasks.common import TaskContext, provenance, read_provenance, write_done
from pipeline.tasks.voice import shown_captions, sound_request, speech_cues


def run_video(job: Job, ctx: TaskContext) -> dict[str, Any]:
    v = job.video
    clips = tuple(ctx.store.materialize(ctx.plan.job(c).output_key, ctx.workdir) for c in v.clips)
    # what each clip's provenance says about it (size, rate, frames, encoding): joined without probing the files
    known = tuple(clip_info_from_provenance((read_provenance(ctx.store, "clip", ctx.plan.job(c).key) or {}).get("info", {}))
                  for c in v.clips)
    audio = v.audio
    mix = sound_request(job, ctx, video_timeline(ctx.plan, job))
    req = AssemblyRequest(
        mix=mix,
        clips=clips, crossfade=v.crossfade,
        audio=ctx.asset_path(audio.asset) if audio else None,
        audio_fade_in=audio.fade_in if audio else 0.0, audio_fade_out=audio.fade_out if audio else 0.0,
        audio_volume=audio.volume if audio else 1.0, title=v.title, end_card=v.end_card, clip_info=known,
        card_font=ctx.asset_path(v.fonts.cards) if v.fonts and v.fonts.cards else None,
        caption_font=ctx.asset_path(v.fonts.captions) if v.fonts and v.fonts.captions else None,
    )
    if v.outputs:
        return run_video_outputs(job, ctx, req)
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="video-") as tmp:
        out, poster = Path(tmp) / "video.mp4", Path(tmp) / "poster.png"
        result = assemble_video(req, out, poster)
        sound = {"sound": {**result.extra["mix"], "measured": measure_loudness(out).to_json()}} if mix else {}
        ctx.store.put_file(output_key("video", job.key, "png"), poster)
        info = {"video_id": v.video_id, "duration_s": result.duration_s, "width": result.width,
                "height": result.height, "fps": result.fps, "frames": result.frames, "method": result.method,
                "timings": result.timings, "poster": output_key("video", job.key, "png"),
                "frames_copied": result.frames_copied, "frames_encoded": result.frames_encoded,
                "notes": list(result.notes), **sound,
                "clips": [ctx.plan.job(c).key for c in v.clips]}
        write_done(ctx.store, "video", job.key, "mp4", provenance(ctx, job, info=info), src=out)
    return info


def run_video_outputs(job: Job, ctx: TaskContext, req: Any) -> dict[str, Any]:
    """A video with formats or captions: each output (and the WebVTT sidecar) under its own key, made only when
    not stored yet, so adding a format makes just that one. The job's own output is its first format's file."""
    v = job.video
    tl = video_timeline(ctx.plan, job)
    wanted = list(dict.fromkeys(v.outputs))
    todo = [o for o in wanted if not check_entry(ctx.store, provenance_key=provenance_key("video", o.key),
                                                 output_key=output_key("video", o.key, "mp4")).done]
    # captions translated where the video asks (their translate jobs ran before); those drawn from the voiceover
    # are timed from the speech, sentence by sentence (pipeline/tasks/voice.py)
    captions = shown_captions(job, ctx)
    spoken = speech_cues(job, ctx, tl, req.mix, captions) if req.mix is not None and v.caption_from == "voiceover" else None
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="video-") as tmp:
        logo = Logo(ctx.asset_path(v.logo.asset), v.logo.corner, v.logo.size) if v.logo else None
        for m in make_outputs(req, outputs=todo, tl=tl, captions=captions, fit=v.fit, workdir=Path(tmp),
                              cue_list=spoken, logo=logo):
            ctx.store.put_file(output_key("video", m.output.key, "png"), m.poster)
            info = m.info
            if req.mix is not None:  # each delivered file measured as delivered
                info = {**info, "sound": {**info.get("sound", {}), "measured": measure_loudness(m.path).to_json()}}
            write_done(ctx.store, "video", m.output.key, "mp4", {**provenance(ctx, job, info=info), "key": m.output.key},
                        src=m.path)
    for ckey in dict.fromkeys(o.captions_key for o in wanted if o.captions_key):
        if not check_entry(ctx.store, provenance_key=provenance_key("captions", ckey),
                           output_key=output_key("captions", ckey, "vtt")).done:
            text = webvtt(spoken if spoken is not None else cues(tl, captions), tl.fps)
            write_done(ctx.store, "captions", ckey, "vtt", {**provenance(ctx, job, info={"language": v.language}),
                                                             "key": ckey}, data=text.encode())
    outputs = []
    for o in v.outputs:
        oinfo = (read_provenance(ctx.store, "video", o.key) or {}).get("info", {})
        outputs.append({**oinfo, "format": o.format, "key": o.key, "video": output_key("video", o.key, "mp4"),
                        "poster": output_key("video", o.key, "png"), "cached": o not in todo,
                        "captions": output_key("captions", o.captions_key, "vtt") if o.captions_key else None})
    first = outputs[0]
    info = {"video_id": v.video_id, **{k: first.get(k) for k in ("duration_s", "width", "height", "fps", "frames",
                                                                 "method", "timings", "poster", "notes", "sound")},
            "language": v.language, "outputs": outputs, "clips": [ctx.plan.job(c).key for c in v.clips]}
    ctx.store.copy(first["video"], job.output_key)
    fingerprint = (read_provenance(ctx.store, "video", v.outputs[0].key) or {}).get(CHECK_FIELD)
    prov = {**provenance(ctx, job, info=info), **({CHECK_FIELD: fingerprint} if fingerprint else {})}
    ctx.store.write_bytes(job.provenance_key, json.dumps(prov, indent=1, sort_keys=True, default=str).encode())
    return info
