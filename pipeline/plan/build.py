"""Campaign -> Plan: typed jobs with content keys, dependencies and stages (DESIGN "Data flow")."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import catalog
from pipeline.manifest.campaign import Campaign, Shot
from pipeline.manifest.campaign import VideoSpec as VideoSpec_
from pipeline.manifest.credentials import CredentialsSpec
from pipeline.manifest.formats import format_size
from pipeline.manifest.timeline import Timeline, timeline
from pipeline.plan.jobs import (
    AssetImage,
    AudioSpec,
    BrandFonts,
    ClipLastFrame,
    ClipSpec,
    EditedImage,
    EditStep,
    EnhanceSpec,
    ImageRef,
    ImageSpec,
    Job,
    LogoSpec,
    VideoOutput,
    VideoSpec,
)
from pipeline.plan.keys import content_key, file_digest
from pipeline.plan.overrides import Override, apply_overrides
from pipeline.plan.translate import translate_jobs
from pipeline.plan.voice import loudness_target, sound_key_params, voice_jobs

ASSEMBLER_VERSION = "assemble:v1"
FORMATS_VERSION = "formats:v1"  # pipeline/media/formats.py: fitting, burned captions, WebVTT

STAGE_NAMES = {
    1: "enhance prompts, translate captions and voiceover",
    2: "image edits and clips",
    3: "clips that wait for images or earlier clips",
    4: "assemble videos",
}


@dataclass(frozen=True)
class AssetRef:
    id: str
    location: str  # as written
    path: str | None  # absolute local path
    uri: str | None  # s3://
    digest: str
    is_audio: bool
    etag: str | None = None  # s3:// assets: the version the plan's keys were made from


@dataclass(frozen=True)
class Plan:
    campaign: str
    manifest_file: str
    backends: dict[str, str]
    assets: dict[str, AssetRef]
    jobs: tuple[Job, ...]
    schedule: str | None = None
    description: str = ""
    credentials: CredentialsSpec = CredentialsSpec()  # C2PA at publication (pipeline/credentials/): not in any key
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # review overrides applied (item -> change)
    _index: dict[str, Job] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({j.id: j for j in self.jobs})

    def job(self, job_id: str) -> Job:
        return self._index[job_id]

    def by_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]

    def stages(self) -> dict[int, list[Job]]:
        out: dict[int, list[Job]] = {}
        for j in self.jobs:
            out.setdefault(j.stage, []).append(j)
        return dict(sorted(out.items()))

    def dependents(self, job_id: str) -> list[Job]:
        return [j for j in self.jobs if job_id in j.deps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign, "manifest_file": self.manifest_file, "backends": self.backends,
            "schedule": self.schedule, "description": self.description, "credentials": self.credentials.to_json(),
            "assets": {k: asdict(v) for k, v in self.assets.items()},
            "jobs": [j.to_json() for j in self.jobs],
            **({"overrides": self.overrides} if self.overrides else {}),  # absent without review: plans unchanged
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            campaign=d["campaign"], manifest_file=d["manifest_file"], backends=dict(d["backends"]),
            schedule=d.get("schedule"), description=d.get("description", ""),
            credentials=CredentialsSpec.from_json(d.get("credentials")),
            assets={k: AssetRef(**v) for k, v in d["assets"].items()},
            jobs=tuple(Job.from_json(j) for j in d["jobs"]), overrides=dict(d.get("overrides") or {}),
        )


class KeySource:
    """The backend identities that go into keys; built from the selected backends (or given as strings)."""

    def __init__(self, *, enhancer: str, images: Callable[[str], str] | str, video: Callable[[str], str] | str,
                 voice: str = "espeak-ng:v1", translator: str = "passthrough:v1") -> None:
        self.enhancer = enhancer
        self.voice = voice  # the voice backend's identity (pipeline/backends/voice_*.py)
        self.translator = translator  # the translator's identity (pipeline/backends/__init__.py, translate_bedrock.py)
        self._images = images
        self._video = video

    def image(self, tool: str) -> str:
        return str(self._images(tool)) if callable(self._images) else f"{self._images}:{tool}"

    def clip(self, model: str) -> str:
        return str(self._video(model)) if callable(self._video) else f"{self._video}:{model}"


def asset_digest(asset_path: Path | None, uri: str | None, *, s3_etag: str | None = None) -> str:
    if asset_path is not None:
        return file_digest(asset_path)
    return content_key("s3-asset", params={"uri": uri, "etag": s3_etag}, backend="s3")


def build_plan(campaign: Campaign, keys: KeySource, *, backends: dict[str, str],
               s3_etags: dict[str, str] | None = None, overrides: dict[str, Override] | None = None) -> Plan:
    """Every job of the campaign with its content key. Pure: the same inputs give the same plan. `overrides`
    (pipeline/review/: a regenerate's new seed, prompt or edit parameter) change their items before keying, so
    only those items and what is made from them get new keys."""
    campaign, applied = apply_overrides(campaign, overrides or {})
    assets = {
        a.id: AssetRef(a.id, a.location, str(a.path) if a.path else None, a.uri,
                       asset_digest(a.path, a.uri, s3_etag=(s3_etags or {}).get(a.id)), a.is_audio,
                       (s3_etags or {}).get(a.id))
        for a in campaign.assets.values()
    }
    jobs: list[Job] = []
    image_jobs: dict[str, Job] = {}
    first_by_key: dict[str, str] = {}  # content key -> the first job that makes it

    def ref(ref_id: str) -> tuple[ImageRef, str, str | None]:
        """(the reference, its input key, the job id it waits for)."""
        if ref_id in assets:
            return AssetImage(ref_id), f"asset:{assets[ref_id].digest}", None
        job = image_jobs[ref_id]
        return EditedImage(ref_id), job.key, job.id

    # images, in dependency order (an image may start from, or use as mask/style, another image)
    pending = list(campaign.images)
    while pending:
        progressed = False
        for spec in list(pending):
            needed = [spec.source] + [r for e in spec.edits for r in e.image_refs().values()]
            if any(n not in assets and n not in image_jobs for n in needed):
                continue
            source_ref, prev_key, source_dep = ref(spec.source)
            deps = [source_dep] if source_dep else []
            steps: list[EditStep] = []
            for edit in spec.edits:
                refs: dict[str, ImageRef] = {}
                inputs = [prev_key]
                for fname, rid in sorted(edit.image_refs().items()):
                    r, rkey, rdep = ref(rid)
                    refs[fname] = r
                    inputs.append(rkey)
                    if rdep:
                        deps.append(rdep)
                plain = {k: v for k, v in edit.params.items() if k not in refs}
                ext = {"jpeg": "jpg"}.get(str(plain.get("output_format", "png")), str(plain.get("output_format", "png")))
                if edit.tool == "remove-background" and ext == "jpg":
                    ext = "png"  # keep the alpha the tool exists to make
                step_key = content_key("image", params={"tool": edit.tool, "params": plain}, inputs=inputs,
                                       backend=keys.image(edit.tool))
                steps.append(EditStep(tool=edit.tool, params=plain, refs=refs, key=step_key, ext=ext))
                prev_key = step_key
            if prev_key in first_by_key:  # the same chain on the same input: wait for it, then reuse its output
                deps.append(first_by_key[prev_key])
            job = Job(
                id=f"image:{spec.id}", kind="image", key=prev_key, stage=2, deps=tuple(dict.fromkeys(deps)),
                spec=ImageSpec(image_id=spec.id, source=source_ref, steps=tuple(steps), variant=spec.variant),
                label=f"{spec.id} ({' > '.join(e.tool for e in spec.edits)})",
            )
            image_jobs[spec.id] = job
            first_by_key.setdefault(job.key, job.id)
            jobs.append(job)
            pending.remove(spec)
            progressed = True
        if not progressed:  # validation rejects cycles; this guards against a bug, not user input
            raise RuntimeError(f"image references do not resolve: {[s.id for s in pending]}")

    # prompt enhancement: one job per distinct (prompt, token limit)
    enhance_jobs: dict[tuple[str, int], Job] = {}

    def enhance_job(shot: Shot) -> Job:
        limit = catalog.RAY2.max_prompt_tokens if shot.ray2 else shot.video_model.max_prompt_tokens
        found = enhance_jobs.get((shot.prompt, limit))
        if found:
            return found
        key = content_key("enhance", params={"prompt": shot.prompt, "max_tokens": limit}, backend=keys.enhancer)
        job = Job(id=f"enhance:{key[:10]}", kind="enhance", key=key, stage=1, deps=(),
                  spec=EnhanceSpec(prompt=shot.prompt, max_tokens=limit), label=_short(shot.prompt))
        enhance_jobs[(shot.prompt, limit)] = job
        jobs.append(job)
        return job

    # clips, then the videos that join them (and speak over them)
    voice_made: dict[str, Job] = {}
    translate_made: dict[str, Job] = {}
    for video in campaign.videos:
        spoken, shown = translate_jobs(video, keys.translator, translate_made)
        voices = voice_jobs(video, keys.voice, voice_made, spoken)
        loudness = loudness_target(video)
        clip_jobs: list[Job] = []
        for shot in video.shots:
            if shot.ray2:
                job = _ray2_clip_job(video.id, shot, enhance_job(shot) if shot.enhance else None, keys)
                if job.key in first_by_key:  # the same shot elsewhere in the campaign: make it once
                    job = replace(job, deps=(*job.deps, first_by_key[job.key]))
                first_by_key.setdefault(job.key, job.id)
                clip_jobs.append(job)
                jobs.append(job)
                continue
            model = shot.video_model
            deps = []
            inputs = []
            ej = enhance_job(shot) if shot.enhance else None
            if ej:
                deps.append(ej.id)
                inputs.append(ej.key)
            start: ImageRef | None = None
            if video.continuity == "last-frame" and shot.index > 0:
                prev = clip_jobs[-1]
                start = ClipLastFrame(prev.id, clip_jobs[0].id if video.color_match else None)
                deps.append(prev.id)
                inputs.append(prev.key)
            elif shot.image:
                start, skey, sdep = ref(shot.image)
                inputs.append(skey)
                if sdep:
                    deps.append(sdep)
            settings = {  # what decides the clip's pixels: its content key's parameters
                "model": model.name, "i2v": start is not None, "frames": shot.frames, "fps": model.fps,
                "width": model.width, "height": model.height, "steps": shot.steps, "guidance": shot.guidance,
                "seed": shot.seed, "negative_prompt": shot.negative_prompt,
                "max_tokens": model.max_prompt_tokens,
            }
            key_params = {**settings, "prompt": None if ej else shot.prompt,
                          **({"color_match": True} if isinstance(start, ClipLastFrame) and start.color_match_to else {})}
            key = content_key("clip", params=key_params, inputs=inputs, backend=keys.clip(model.name))
            if key in first_by_key:  # the same shot elsewhere in the campaign: render once, reuse the clip
                deps.append(first_by_key[key])
            waits = any(d.startswith(("image:", "clip:")) for d in deps)
            job = Job(
                id=f"clip:{video.id}/{shot.index + 1:02d}", kind="clip", key=key, stage=3 if waits else 2,
                deps=tuple(deps),
                spec=ClipSpec(video_id=video.id, shot=shot.index, prompt=shot.prompt, enhance_job=ej.id if ej else None,
                              model=model.name, i2v=start is not None, frames=shot.frames, fps=model.fps,
                              width=model.width, height=model.height, steps=shot.steps, guidance=shot.guidance,
                              seed=shot.seed, negative_prompt=shot.negative_prompt,
                              max_tokens=model.max_prompt_tokens, start=start),
                label=_short(shot.prompt),
            )
            first_by_key.setdefault(key, job.id)
            clip_jobs.append(job)
            jobs.append(job)
        audio = None
        video_inputs = [c.key for c in clip_jobs]
        if video.audio:
            audio = AudioSpec(asset=video.audio.asset, fade_in=video.audio.fade_in, fade_out=video.audio.fade_out,
                              volume=video.audio.volume)
            video_inputs.append(f"asset:{assets[video.audio.asset].digest}")
        video_inputs += [j.key for j in voices if j]
        video_inputs += list(dict.fromkeys(j.key for j in shown if j))  # translated captions
        captions = tuple(s.voiceover if video.caption_from == "voiceover" else s.caption for s in video.shots)
        brand = campaign.brand if video.branded else None
        # the brand's fonts, each only where the video draws with it: its digest keys only what it touches
        card_font = brand.card_font if brand and (video.title or video.end_card) else None
        caption_font = (brand.caption_font if brand and video.captions in ("burn", "both") and any(captions)
                        else None)
        fonts = BrandFonts(card_font, caption_font) if card_font or caption_font else None
        key_params = {"crossfade": video.crossfade, "audio": asdict(audio) if audio else None,
                      **sound_key_params(voices, loudness, video.caption_from),
                      **{name: (asdict(card) if card else None) for name, card in (("title", video.title),
                                                                                   ("end_card", video.end_card))},
                      **({"card_font": assets[card_font].digest} if card_font else {})}
        vkey = content_key("video", params=key_params, inputs=video_inputs, backend=ASSEMBLER_VERSION)
        logo = LogoSpec(brand.logo, brand.corner, brand.size) if brand and brand.logo else None
        logo_key = {**asdict(logo), "digest": assets[logo.asset].digest} if logo else None  # a new logo re-makes videos
        outputs = (_video_outputs(video, vkey, captions, clip_jobs[0].clip, logo_key,
                                  assets[caption_font].digest if caption_font else None)
                   if any(captions) or video.formats or logo else ())
        if outputs:  # the job's key covers every output's, so an unchanged video is one cache hit
            vkey = content_key("video", params={"outputs": [asdict(o) for o in outputs]}, inputs=[vkey],
                               backend=ASSEMBLER_VERSION)
        vspec = VideoSpec(video_id=video.id, clips=tuple(c.id for c in clip_jobs), continuity=video.continuity,
                          crossfade=video.crossfade, audio=audio, title=video.title, end_card=video.end_card,
                          variant=video.variant, fit=video.fit, captions=captions if outputs else (),
                          language=video.language, outputs=outputs, voices=tuple(j.id if j else None for j in voices),
                          loudness=loudness, caption_from=video.caption_from, logo=logo, fonts=fonts,
                          caption_translations=tuple(j.id if j else None for j in shown) if outputs and any(shown) else ())
        voice_deps = tuple(dict.fromkeys(j.id for j in voices if j))
        caption_deps = tuple(dict.fromkeys(j.id for j in shown if j)) if vspec.caption_translations else ()
        new_translations = {j.id for j in spoken + shown if j}
        jobs.extend(j for j in translate_made.values() if j.id in new_translations and j not in jobs)
        jobs.extend(j for j in voice_made.values() if j.id in voice_deps and j not in jobs)
        jobs.append(Job(id=f"video:{video.id}", kind="video", key=vkey, stage=4,
                        deps=tuple(c.id for c in clip_jobs) + voice_deps + caption_deps,
                        spec=vspec, label=f"{video.id} ({len(clip_jobs)} shots)"))

    jobs.sort(key=lambda j: (j.stage, _KIND_ORDER[j.kind]))
    return Plan(campaign=campaign.name, manifest_file=campaign.source_file, backends=dict(backends),
                assets=assets, jobs=tuple(jobs), schedule=campaign.schedule, description=campaign.description,
                credentials=campaign.credentials, overrides={k: v.to_json() for k, v in applied.items()})


_KIND_ORDER = {"enhance": 0, "translate": 0, "image": 1, "clip": 2, "voice": 2, "video": 3}


def _video_outputs(video: VideoSpec_, base_key: str, captions: tuple[str | None, ...], first: ClipSpec,
                   logo: dict[str, Any] | None = None, caption_font: str | None = None) -> tuple[VideoOutput, ...]:
    """Each delivered file of a video, keyed on its own: the assembled video's key (`base_key`), its format,
    fit and burned captions. The clips' own shape without burned text is the assembled video itself."""
    burn = video.captions in ("burn", "both") and any(captions)
    sidecar = video.captions in ("sidecar", "both") and any(captions)
    captions_key = content_key("captions", params={"captions": list(captions)}, inputs=[base_key],
                               backend=FORMATS_VERSION) if sidecar else None
    outs = []
    for fmt in video.formats or (None,):
        width, height = format_size(fmt, first.width, first.height)
        native = (width, height) == (first.width, first.height)
        if native and not burn and logo is None:
            key = base_key
        else:
            key = content_key("video", params={"format": fmt, "size": [width, height],
                                               "fit": None if native else video.fit,
                                               "burn": list(captions) if burn else None,
                                               **({"logo": logo} if logo else {}),
                                               **({"caption_font": caption_font} if burn and caption_font else {})},
                              inputs=[base_key], backend=FORMATS_VERSION)
        outs.append(VideoOutput(format=fmt, width=width, height=height, key=key, burn=burn, captions_key=captions_key))
    return tuple(outs)


def _ray2_clip_job(video_id: str, shot: Shot, ej: Job | None, keys: KeySource) -> Job:
    """A Luma Ray2 clip: keyed on its Bedrock request settings and output geometry only (it has no steps,
    guidance or seed), so CogVideoX clips keep exactly the keys they had before Ray2 existed."""
    ray2 = shot.ray2
    assert ray2 is not None
    model = catalog.RAY2
    settings = {"model": model.name, "i2v": False, "frames": ray2.frames, "fps": ray2.fps, "width": ray2.width,
                "height": ray2.height, "max_tokens": model.max_prompt_tokens, "ray2": asdict(ray2)}
    key = content_key("clip", params={**settings, "prompt": None if ej else shot.prompt},
                      inputs=[ej.key] if ej else [], backend=keys.clip(model.name))
    return Job(
        id=f"clip:{video_id}/{shot.index + 1:02d}", kind="clip", key=key, stage=2, deps=(ej.id,) if ej else (),
        spec=ClipSpec(video_id=video_id, shot=shot.index, prompt=shot.prompt, enhance_job=ej.id if ej else None,
                      model=model.name, i2v=False, frames=ray2.frames, fps=ray2.fps, width=ray2.width,
                      height=ray2.height, steps=shot.steps, guidance=shot.guidance, seed=shot.seed,
                      negative_prompt=None, max_tokens=model.max_prompt_tokens, start=None, ray2=ray2),
        label=_short(shot.prompt),
    )


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def video_timeline(plan: Plan, video_job: Job) -> Timeline:
    """The video's frames as assembly makes them: clips and cards in whole frames, minus the crossfade overlaps."""
    spec = video_job.video
    clips = [plan.job(c).clip for c in spec.clips]
    return timeline([(c.frames, c.fps) for c in clips], crossfade_s=spec.crossfade,
                    title_s=spec.title.duration if spec.title else None,
                    end_card_s=spec.end_card.duration if spec.end_card else None)


def expected_duration(plan: Plan, video_job: Job) -> float:
    """The video's length as assembly makes it (video_timeline)."""
    return video_timeline(plan, video_job).duration_s
