"""Review overrides applied when planning: a new seed, prompt or edit parameter for one item, never an edit of the
manifest. The decisions that make them live beside the runs (pipeline/review/); this module only applies them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pipeline import catalog
from pipeline.errors import ReviewRefused
from pipeline.manifest.campaign import Campaign, Edit, ImageSpec, Shot, VideoSpec

PROMPT_MAX = catalog.PROMPT_MAX_CHARS


@dataclass(frozen=True)
class Override:
    """What a regenerate asks of one item (`image:<id>`, `clip:<video>/<NN>`, `video:<id>`): every field optional.
    `params` are an image's edit parameters, "<step>.<name>" (1-based step) -> value."""

    item: str
    seed: int | None = None
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def merged(self, later: Override) -> Override:
        """This override with a later one on top (a second regenerate keeps what the first changed)."""
        return Override(self.item, later.seed if later.seed is not None else self.seed,
                        later.prompt if later.prompt is not None else self.prompt, {**self.params, **later.params})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.params:
            out["params"] = dict(self.params)
        return out

    def describe(self) -> str:
        parts = [f"seed {self.seed}"] if self.seed is not None else []
        if self.prompt is not None:
            parts.append(f"prompt {self.prompt[:60]!r}")
        parts += [f"{k}={v!r}" for k, v in sorted(self.params.items())]
        return ", ".join(parts) or "no change"


def check_override(campaign: Campaign, ov: Override) -> None:
    """ReviewRefused, one line, when `ov` names no item of the campaign or asks what the item cannot take."""
    apply_overrides(campaign, {ov.item: ov}, strict=True)


def apply_overrides(campaign: Campaign, overrides: dict[str, Override], *, strict: bool = False
                    ) -> tuple[Campaign, dict[str, Override]]:
    """The campaign with each override applied, and the overrides that applied. An override whose item the
    manifest no longer has (or that no longer fits it) is left out, unless `strict`: then ReviewRefused."""
    videos = {v.id: v for v in campaign.videos}
    images = {i.id: i for i in campaign.images}
    applied: dict[str, Override] = {}
    for item, ov in overrides.items():
        try:
            kind, _, name = item.partition(":")
            _check_values(ov)
            if kind == "clip":
                vid, _, nn = name.rpartition("/")
                video = videos.get(vid)
                index = int(nn) - 1 if nn.isdigit() else -1
                if video is None or not 0 <= index < len(video.shots):
                    raise ReviewRefused(f"{item}: no such clip in campaign {campaign.name}")
                videos[vid] = _with_shot(video, index, lambda s, ov=ov, item=item: _shot(item, s, ov.seed, ov.prompt))
            elif kind == "video":
                video = videos.get(name)
                if video is None:
                    raise ReviewRefused(f"{item}: no such video in campaign {campaign.name}")
                if ov.prompt is not None or ov.params:
                    raise ReviewRefused(f"{item}: a video is made from its clips; give a clip its new prompt "
                                        f"(clip:{name}/01 ...) or give the video a new --seed for every shot")
                for i in range(len(video.shots)):
                    videos[name] = video = _with_shot(video, i, lambda s, ov=ov, item=item: _shot(item, s, ov.seed, None))
            elif kind == "image":
                spec = images.get(name)
                if spec is None:
                    raise ReviewRefused(f"{item}: no such image in campaign {campaign.name}")
                images[name] = _image(item, spec, ov)
            else:
                raise ReviewRefused(f"{item[:80]!r}: an item is image:<id>, clip:<video>/<NN> or video:<id>")
        except ReviewRefused:
            if strict:
                raise
            continue
        applied[item] = ov
    out = replace(campaign, videos=tuple(videos[v.id] for v in campaign.videos),
                  images=tuple(images[i.id] for i in campaign.images))
    return out, applied


def _check_values(ov: Override) -> None:
    if ov.seed is not None and not (isinstance(ov.seed, int) and 0 <= ov.seed <= catalog.VIDEO_SEED_MAX):
        raise ReviewRefused(f"{ov.item}: --seed must be a whole number from 0 to {catalog.VIDEO_SEED_MAX}")
    if ov.prompt is not None and (not isinstance(ov.prompt, str) or not ov.prompt.strip()
                                  or len(ov.prompt) > PROMPT_MAX or "\x00" in ov.prompt):
        raise ReviewRefused(f"{ov.item}: --prompt must be 1 to {PROMPT_MAX} characters of text")


def _with_shot(video: VideoSpec, index: int, change: Any) -> VideoSpec:
    shots = list(video.shots)
    shots[index] = change(shots[index])
    return replace(video, shots=tuple(shots))


def _shot(item: str, shot: Shot, seed: int | None, prompt: str | None) -> Shot:
    if shot.ray2 is not None and seed is not None:
        raise ReviewRefused(f"{item}: a Luma Ray2 shot has no seed; give it a new --prompt instead")
    if shot.ray2 is not None and prompt is not None and len(prompt) > catalog.RAY2_PROMPT_MAX_CHARS:
        raise ReviewRefused(f"{item}: a Luma Ray2 prompt is at most {catalog.RAY2_PROMPT_MAX_CHARS} characters")
    return replace(shot, seed=shot.seed if seed is None else seed, prompt=shot.prompt if prompt is None else prompt)


def _image(item: str, spec: ImageSpec, ov: Override) -> ImageSpec:
    edits = list(spec.edits)
    for name, value, what in (("seed", ov.seed, "--seed"), ("prompt", ov.prompt, "--prompt")):
        if value is None:
            continue
        takers = [i for i, e in enumerate(edits) if name in e.spec.fields]
        if not takers:
            raise ReviewRefused(f"{item}: none of its edits ({', '.join(e.tool for e in edits)}) takes {what}")
        for i in takers:
            edits[i] = Edit(edits[i].tool, {**edits[i].params, name: value})
    for dotted, value in ov.params.items():
        step, _, pname = str(dotted).partition(".")
        index = int(step) - 1 if step.isdigit() else -1
        if not 0 <= index < len(edits):
            raise ReviewRefused(f"{item}: --param {dotted}: no step {step} (its edits are 1 to {len(edits)})")
        edit = edits[index]
        fspec = edit.spec.fields.get(pname)
        if fspec is None or fspec.kind == "image":
            raise ReviewRefused(f"{item}: --param {dotted}: {edit.tool} has no parameter {pname!r} to change")
        edits[index] = Edit(edit.tool, {**edit.params, pname: _field_value(item, dotted, fspec, value)})
    return replace(spec, edits=tuple(edits))


def _field_value(item: str, dotted: str, fspec: catalog.FieldSpec, value: Any) -> Any:
    """The value as the tool's field takes it (text from the command line is parsed), or ReviewRefused."""
    try:
        if fspec.kind == "int":
            parsed: Any = int(value)
        elif fspec.kind == "number":
            parsed = float(value)
        else:
            parsed = str(value)
    except (TypeError, ValueError):
        raise ReviewRefused(f"{item}: --param {dotted}: {value!r} is not a {fspec.kind}") from None
    if fspec.kind in ("int", "number") and ((fspec.minimum is not None and parsed < fspec.minimum)
                                            or (fspec.maximum is not None and parsed > fspec.maximum)):
        raise ReviewRefused(f"{item}: --param {dotted}: {parsed} is outside {fspec.minimum} to {fspec.maximum}")
    if fspec.kind == "enum" and parsed not in fspec.choices:
        raise ReviewRefused(f"{item}: --param {dotted}: {parsed!r} is not one of {', '.join(fspec.choices)}")
    if fspec.kind == "text" and (not parsed.strip() or len(parsed) > PROMPT_MAX or "\x00" in parsed):
        raise ReviewRefused(f"{item}: --param {dotted}: text of 1 to {PROMPT_MAX} characters")
    return parsed
