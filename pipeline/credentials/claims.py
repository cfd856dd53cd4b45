"""What each delivered file's Content Credentials say: actions, IPTC digital source type, models, prompts and
ingredients, worked out from the plan, the jobs' results and the report's file paths."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pipeline import __version__
from pipeline.plan.build import Plan
from pipeline.plan.jobs import AssetImage, ClipLastFrame, EditedImage, ImageRef, Job, output_key

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC Digital Source Type vocabulary (cv.iptc.org/newscodes/digitalsourcetype): what made the pixels
TRAINED = IPTC + "trainedAlgorithmicMedia"  # a generative model made it
COMPOSITE_TRAINED = IPTC + "compositeWithTrainedAlgorithmicMedia"  # generated material combined with other material
ALGORITHMIC = IPTC + "algorithmicMedia"  # made by an algorithm with no training data (a preview animatic, a card)
COMPOSITE_SYNTHETIC = IPTC + "compositeSynthetic"  # a composite of synthetic (here: algorithmic) elements
ASSERTION = "org.campaign-pipeline.generation"  # the project's own assertion: models, prompts, ingredient hashes
MIME = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
GENERATOR = {"name": "campaign", "version": __version__}
# The local backends that stand in for a model: they must never be said to have run one.
STAND_INS = ("preview", "local")
LINK = "_ingredients"  # an action's ingredients, by index into the claim's list (definition() resolves them)


@dataclass(frozen=True)
class Ingredient:
    title: str
    relationship: str  # parentOf (the file it was made from), componentOf (placed in it), inputTo (guided a model)
    mime: str | None
    sha256: str | None  # of the ingredient's bytes as the pipeline used them (unsigned, as cached)
    role: str  # source, mask, style_image, start-image, clip, audio, video


@dataclass(frozen=True)
class FileClaim:
    """The credentials of one delivered file (`path` relative to the run folder)."""

    path: str
    job: str  # the item whose error a signing failure becomes
    mime: str
    actions: tuple[dict[str, Any], ...]
    source_type: str | None
    models: tuple[dict[str, Any], ...] = ()
    prompts: tuple[dict[str, Any], ...] = ()
    ingredients: tuple[Ingredient, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def definition(self, *, campaign: str, run_id: str, include_prompts: bool, signed_at: str) -> dict[str, Any]:
        """The c2pa Builder's manifest definition (claim v2: `claim_generator_info`, `c2pa.actions`). An opened or
        placed action names its ingredients (c2pa refuses it otherwise): by instance id, here the ingredient's
        sha256, made unique within the file when the same bytes are used twice."""
        ids: list[str] = []
        for i in self.ingredients:
            base = f"sha256:{i.sha256}" if i.sha256 else f"campaign:{i.role}:{i.title}"
            ids.append(base if base not in ids else f"{base}#{sum(x.startswith(base) for x in ids) + 1}")
        actions = []
        for a in self.actions:
            a = dict(a)
            linked = a.pop(LINK, None)
            if linked:
                a["parameters"] = {**a.get("parameters", {}), "ingredientIds": [ids[n] for n in linked]}
            actions.append(a)
        ours: dict[str, Any] = {
            "campaign": campaign, "run_id": run_id, "file": self.path, "item": self.job, "signed_at": signed_at,
            "digital_source_type": self.source_type, "models": list(self.models),
            "ingredients": [{"title": i.title, "role": i.role, "relationship": i.relationship,
                             "sha256": i.sha256} for i in self.ingredients],
            **self.extra,
        }
        if include_prompts:
            ours["prompts"] = list(self.prompts)
        ingredients = [{"title": i.title, "relationship": i.relationship, "instance_id": iid,
                        **({"format": i.mime} if i.mime else {})} for i, iid in zip(self.ingredients, ids, strict=True)]
        return {
            "claim_generator_info": [GENERATOR],
            "title": PurePosixPath(self.path).name,
            "format": self.mime,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                           {"label": ASSERTION, "data": json.loads(json.dumps(ours, default=str))}],
            "ingredients": ingredients,
        }


def mime_of(path: str) -> str | None:
    return MIME.get(PurePosixPath(path).suffix.lower())


def _action(name: str, *, source_type: str | None = None, agent: dict[str, Any] | None = None,
            description: str | None = None, ingredients: tuple[int, ...] = (), **parameters: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"action": name}
    if ingredients:
        a[LINK] = ingredients
    if source_type:
        a["digitalSourceType"] = source_type
    a["softwareAgent"] = agent or GENERATOR
    if description:
        a["description"] = description
    if parameters:
        a["parameters"] = {k: v for k, v in parameters.items() if v is not None}
    return a


def file_claims(plan: Plan, report: Mapping[str, Any], info: Mapping[str, Mapping[str, Any]],
                digest: Callable[[str], str | None]) -> dict[str, FileClaim]:
    """One claim per delivered image, image step, clip, video format and poster, by run-relative path.
    `info` is each job's result info; `digest(cache key)` is the sha256 of a cached output."""
    claims: dict[str, FileClaim] = {}
    refs = _Refs(plan, digest)
    for im in report.get("images", []):
        if not im.get("path"):
            continue
        job = plan.job(im["job"])
        steps_info = {s.get("key"): s for s in (info.get(job.id) or {}).get("steps", [])}
        steps = im.get("steps") or []
        for n, step in enumerate(steps, start=1):  # each step's file: the image after its first n edits
            if step.get("path"):
                claims[step["path"]] = _image_claim(job, n, step["path"], steps_info, refs)
        claims[im["path"]] = _image_claim(job, len(job.image.steps), im["path"], steps_info, refs)
    for v in report.get("videos", []):
        vjob = plan.job(v["job"])
        clip_claims = []
        for c in v.get("clips", []):
            cjob = plan.job(c["job"])
            claim = _clip_claim(cjob, c, info.get(cjob.id) or {}, refs, path=c.get("path"))
            clip_claims.append(claim)
            if c.get("path"):
                claims[c["path"]] = claim
        outputs = {o.format: o for o in vjob.video.outputs}
        files = v.get("formats") or ([{"path": v["path"], "poster": v.get("poster"), "fit": None, "burned": False,
                                       "format": None}] if v.get("path") else [])
        for f in files:
            out = outputs.get(f.get("format"))
            video_key = output_key("video", out.key, "mp4") if out else vjob.output_key
            claim = _video_claim(vjob, f, clip_claims, refs)
            claims[f["path"]] = claim
            if f.get("poster"):
                claims[f["poster"]] = _poster_claim(vjob, f["poster"], claim, Ingredient(
                    PurePosixPath(f["path"]).name, "parentOf", "video/mp4", digest(video_key), "video"))
    return claims


class _Refs:
    """Ingredients for image references, with their hashes (memoised: many files share a source)."""

    def __init__(self, plan: Plan, digest: Callable[[str], str | None]) -> None:
        self.plan, self._digest = plan, digest
        self._memo: dict[str, str | None] = {}

    def digest(self, key: str) -> str | None:
        if key not in self._memo:
            self._memo[key] = self._digest(key)
        return self._memo[key]

    def image(self, ref: ImageRef, *, relationship: str, role: str) -> Ingredient:
        if isinstance(ref, AssetImage):
            asset = self.plan.assets.get(ref.asset)
            sha = asset.digest if asset and asset.path else None  # a local asset's digest is its file's sha256
            title = PurePosixPath(asset.location).name if asset else ref.asset
            return Ingredient(title, relationship, mime_of(title), sha, role)
        if isinstance(ref, EditedImage):
            job = self.plan.job(f"image:{ref.image}")
            return Ingredient(f"{ref.image}.{job.ext}", relationship, mime_of(f"x.{job.ext}"),
                              self.digest(job.output_key), role)
        job = self.plan.job(ref.clip)  # ClipLastFrame: the previous clip's last frame starts this one
        return Ingredient(f"{job.id} (last frame)", relationship, "video/mp4", self.digest(job.output_key), role)

    def audio(self, asset_id: str) -> Ingredient:
        asset = self.plan.assets.get(asset_id)
        title = PurePosixPath(asset.location).name if asset else asset_id
        return Ingredient(title, "componentOf", None, asset.digest if asset and asset.path else None, "audio")


def _made_by_model(backend: str | None, placeholder: Any) -> bool:
    return bool(backend) and not placeholder and str(backend).split(":")[0] not in STAND_INS


def _image_claim(job: Job, n: int, path: str, steps_info: Mapping[str, Any], refs: _Refs) -> FileClaim:
    """An image after its first `n` edits: opened from its source, then one edit per step."""
    spec = job.image
    ingredients = [refs.image(spec.source, relationship="parentOf", role="source")]
    actions = [_action("c2pa.opened", description=f"opened {ingredients[0].title}", ingredients=(0,))]
    models: list[dict[str, Any]] = []
    generated = False
    for step in spec.steps[:n]:
        s = steps_info.get(step.key, {})
        by_model = _made_by_model(s.get("backend"), s.get("placeholder"))
        generated |= by_model
        for fname, ref in sorted(step.refs.items()):
            ingredients.append(refs.image(ref, relationship="componentOf", role=fname))
        models.append({"id": step.tool, "version": s.get("identity"), "backend": s.get("backend"),
                       "generative_model_ran": by_model, "placeholder": bool(s.get("placeholder"))})
        actions.append(_action("c2pa.edited", source_type=COMPOSITE_TRAINED if by_model else None,
                               description=f"{step.tool}" + (f" ({s['note']})" if s.get("note") else ""),
                               tool=step.tool, backend=s.get("backend")))
    prompts = tuple({"step": step.tool, **{k: v for k, v in step.params.items() if "prompt" in k}}
                    for step in spec.steps[:n] if any("prompt" in k for k in step.params))
    return FileClaim(path=path, job=job.id, mime=mime_of(path) or "image/png", actions=tuple(actions),
                     source_type=COMPOSITE_TRAINED if generated else None, models=tuple(models), prompts=prompts,
                     ingredients=tuple(ingredients))


def _clip_claim(job: Job, record: Mapping[str, Any], info: Mapping[str, Any], refs: _Refs, *,
                path: str | None) -> FileClaim:
    c = job.clip
    backend, placeholder = record.get("backend") or info.get("backend"), record.get("placeholder")
    by_model = _made_by_model(backend, placeholder)
    source_type = TRAINED if by_model else ALGORITHMIC
    ingredients = []
    if c.start is not None:
        role = "continuity-frame" if isinstance(c.start, ClipLastFrame) else "start-image"
        ingredients.append(refs.image(c.start, relationship="inputTo", role=role))
    model = {"id": c.model, "version": info.get("identity"), "backend": backend, "generative_model_ran": by_model,
             "placeholder": bool(placeholder)}
    what = f"{c.model} on {backend}" if by_model else f"a {backend} stand-in for {c.model} (no generative model ran)"
    actions = [_action("c2pa.created", source_type=source_type, description=what,
                       agent={"name": c.model, "version": str(info.get("identity") or backend)} if by_model else None,
                       seed=c.seed, frames=c.frames, fps=c.fps, width=c.width, height=c.height)]
    prompts = ({"shot": c.shot + 1, "prompt": c.prompt, "model_prompt": record.get("model_prompt")
                or info.get("model_prompt"), "negative_prompt": c.negative_prompt},)
    return FileClaim(path=path or "", job=job.id, mime="video/mp4", actions=tuple(actions), source_type=source_type,
                     models=(model,), prompts=prompts, ingredients=tuple(ingredients))


def _video_claim(job: Job, fmt: Mapping[str, Any], clips: list[FileClaim], refs: _Refs) -> FileClaim:
    """Clips placed on a timeline (cards, crossfades, audio), encoded; a format is fitted (cropped or padded)."""
    v = job.video
    generated = any(c.source_type == TRAINED for c in clips)
    source_type = COMPOSITE_TRAINED if generated else COMPOSITE_SYNTHETIC
    ingredients = [Ingredient(f"{cl.job}.mp4", "componentOf", "video/mp4", refs.digest(job_out), "clip")
                   for cl, job_out in zip(clips, (refs.plan.job(c).output_key for c in v.clips), strict=True)]
    if v.audio:
        ingredients.append(refs.audio(v.audio.asset))
    actions = [_action("c2pa.created", source_type=source_type, description=f"video {v.video_id} assembled"),
               *(_action("c2pa.placed", description=f"{i.role} {i.title}", ingredients=(n,))
                 for n, i in enumerate(ingredients))]
    if v.crossfade or v.title or v.end_card or v.audio:
        actions.append(_action("c2pa.edited", description="transitions, cards and audio",
                               crossfade_s=v.crossfade or None, audio=bool(v.audio) or None))
    actions.append(_action("c2pa.transcoded", description="encoded as H.264 MP4"))
    if fmt.get("fit") == "crop":
        actions.append(_action("c2pa.cropped", description=f"cropped to {fmt.get('format')}"))
    elif fmt.get("fit"):
        actions.append(_action("c2pa.resized", description=f"fitted to {fmt.get('format')} ({fmt.get('fit')})"))
    if fmt.get("burned"):
        actions.append(_action("c2pa.edited", description="captions burned in"))
    return FileClaim(path=fmt["path"], job=job.id, mime="video/mp4", actions=tuple(actions), source_type=source_type,
                     models=tuple(m for c in clips for m in c.models), prompts=tuple(p for c in clips for p in c.prompts),
                     ingredients=tuple(ingredients), extra={"format": fmt.get("format")})


def _poster_claim(job: Job, path: str, video: FileClaim, parent: Ingredient) -> FileClaim:
    actions = [_action("c2pa.opened", description=f"opened {parent.title}", ingredients=(0,)),
               _action("c2pa.transcoded", description="a frame of the video as a still image")]
    return FileClaim(path=path, job=job.id, mime=mime_of(path) or "image/png", actions=tuple(actions),
                     source_type=video.source_type, models=video.models, prompts=video.prompts,
                     ingredients=(parent,), extra={"poster_of": parent.title})
