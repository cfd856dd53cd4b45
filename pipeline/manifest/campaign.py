"""The campaign manifest: YAML -> every problem found at once, or a typed, fully resolved Campaign.

It is past 600 lines because the typed model and the one pass that checks and resolves it sit together; the
per-topic rules live beside it (model_rules, video_rules, variables, credentials)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema

from pipeline import catalog
from pipeline.errors import ManifestInvalid, Problem, shown
from pipeline.manifest.brand import BrandSpec, apply_brand, load_brand
from pipeline.manifest.credentials import CredentialsSpec, credentials_spec
from pipeline.manifest.data_files import Reader, local_reader
from pipeline.manifest.formats import DEFAULT_CAPTIONS, DEFAULT_FIT, DEFAULT_LANGUAGE
from pipeline.manifest.inputs import FONT_EXTENSIONS, file_problem, is_blank, outside_problem, undrawable
from pipeline.manifest.model_rules import licence_problems, model_shot_problems, ray2_problems, ray2_settings
from pipeline.manifest.notify import notify_problems, webhook_of
from pipeline.manifest.schedule_expr import schedule_problem
from pipeline.manifest.schema import load_schema
from pipeline.manifest.timeline import crossfade_problem
from pipeline.manifest.variables import ExpandedSource, Variant, collapse, expand, template_data, variant_of
from pipeline.manifest.video_rules import caption_problems
from pipeline.manifest.voice_rules import Voice, loudness_of, translates, video_voice, voice_problems, voiceover
from pipeline.manifest.yamlsrc import Source, load_file, load_text

DEFAULT_ENHANCE = True
DEFAULT_CARD_SECONDS = 2.0
DEFAULT_CARD_COLOR = "#111111"
DEFAULT_CARD_TEXT_COLOR = "#ffffff"
DEFAULT_AUDIO_FADE_IN = 0.0
DEFAULT_AUDIO_FADE_OUT = 0.0
DEFAULT_AUDIO_VOLUME = 1.0

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac")


# --- the typed result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    id: str
    location: str  # as written in the manifest
    path: Path | None  # resolved local file, or None for s3://
    uri: str | None  # s3://bucket/key, or None for a local file

    @property
    def is_audio(self) -> bool:
        return self.location.lower().endswith(AUDIO_EXTENSIONS)


@dataclass(frozen=True)
class Edit:
    tool: str
    params: dict[str, Any]

    @property
    def spec(self) -> catalog.EditTool:
        return catalog.EDIT_TOOLS[self.tool]

    def image_refs(self) -> dict[str, str]:
        """The parameters that name another image (mask, style_image), field -> id."""
        return {name: self.params[name] for name in self.spec.image_fields if name in self.params}


@dataclass(frozen=True)
class ImageSpec:
    id: str
    source: str  # asset or image id (`from` in YAML)
    edits: tuple[Edit, ...]
    variant: Variant | None = None  # the template and combination it was expanded from (`variables:`)


@dataclass(frozen=True)
class Shot:
    index: int
    prompt: str
    image: str | None
    enhance: bool
    model: str
    frames: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str | None
    ray2: catalog.Ray2Settings | None = None  # set exactly when model is luma-ray2 (steps..seed then unused)
    caption: str | None = None  # shown for the shot's span (pipeline/manifest/formats.py)
    voiceover: str | None = None  # spoken over the shot (pipeline/manifest/voice_rules.py)

    @property
    def video_model(self) -> catalog.VideoModel:
        return catalog.VIDEO_MODELS[self.model]

    @property
    def duration_s(self) -> float:
        return self.ray2.duration_s if self.ray2 else self.frames / self.video_model.fps


@dataclass(frozen=True)
class Card:
    text: str
    duration: float
    color: str
    text_color: str


@dataclass(frozen=True)
class Audio:
    asset: str
    fade_in: float
    fade_out: float
    volume: float


@dataclass(frozen=True)
class VideoSpec:
    id: str
    shots: tuple[Shot, ...]
    crossfade: float  # 0 for hard cuts
    continuity: str | None
    color_match: bool
    audio: Audio | None
    title: Card | None
    end_card: Card | None
    variant: Variant | None = None  # the template and combination it was expanded from (`variables:`)
    formats: tuple[str, ...] = ()  # delivered aspect ratios; empty: the clips' own shape
    fit: str = DEFAULT_FIT
    captions: str = DEFAULT_CAPTIONS
    language: str = DEFAULT_LANGUAGE
    # sound (pipeline/manifest/voice_rules.py): the voice of its shots' voiceover, translation, captions drawn
    # from the speech, and the loudness target (None: the default when the video has speech)
    voice: Voice | None = None
    translate: bool = False
    caption_from: str | None = None
    loudness: float | None = None
    branded: bool = False  # the campaign's brand kit applies (pipeline/manifest/brand.py)


@dataclass(frozen=True)
class BudgetSpec:
    """`budget: {max_usd: N}` and where it is written, so a refusal points at it."""

    max_usd: float
    file: str
    line: int
    col: int


@dataclass(frozen=True)
class Campaign:
    name: str
    description: str
    schedule: str | None
    enhancer_model: str | None
    assets: dict[str, Asset]
    images: tuple[ImageSpec, ...]
    videos: tuple[VideoSpec, ...]
    source_file: str
    base_dir: Path
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    budget: BudgetSpec | None = None
    approval: str | None = None  # "before-render": stop before any clip until approved
    credentials: CredentialsSpec = CredentialsSpec()  # C2PA on delivered files (pipeline/credentials/)
    brand: BrandSpec | None = None  # the brand kit (`brand:`), applied to the videos marked `branded`
    notify_webhook: str | None = None  # `notify: {webhook: URL}` (pipeline/report/webhook.py)

    def image(self, image_id: str) -> ImageSpec:
        return next(i for i in self.images if i.id == image_id)


# --- loading ---------------------------------------------------------------------------------------


def load_manifest(path: str | Path, *, allow_outside: Sequence[Path] = ()) -> Campaign:
    """Load, validate and resolve a manifest file; raise ManifestInvalid listing every problem.
    Local assets must resolve inside the manifest's folder or one of `allow_outside`."""
    src = load_file(str(path))
    return _from_source(src, Path(path).resolve().parent, allow_outside=allow_outside)


def load_manifest_text(text: str, *, file: str, base_dir: Path, check_files: bool = True,
                       allow_outside: Sequence[Path] = (), data_reader: Reader | None = None) -> Campaign:
    """The same as load_manifest for text already in memory (S3, standard input, tests). Data files are read
    by `data_reader` (the cloud reads them from S3), by default from `base_dir`."""
    src = load_text(text, file)
    return _from_source(src, base_dir, check_files=check_files, allow_outside=allow_outside, data_reader=data_reader)


def _from_source(src: Source, base_dir: Path, *, check_files: bool = True,
                 allow_outside: Sequence[Path] = (), data_reader: Reader | None = None) -> Campaign:
    # variables: every templated image and video, once per combination (data files' rows included)
    src, problems = expand(src, data_reader=data_reader or local_reader(base_dir, allow_outside=allow_outside))
    semantic = semantic_problems(src, base_dir, check_files=check_files, allow_outside=allow_outside)
    said = {(p.line, p.col, p.path) for p in semantic}
    # A value both checks refuse (a blank caption, a schedule in words) is reported once, in the semantic check's
    # more specific words.
    problems += [p for p in schema_problems(src) if (p.line, p.col, p.path) not in said]
    if isinstance(src, ExpandedSource) and src.template is not None and src.left_out:
        problems += _template_problems(src.template, src.left_out)
    brand, brand_problems = load_brand(src, base_dir, allow_outside=allow_outside)
    brand_problems += notify_problems(src)
    problems = collapse(src, problems + brand_problems + semantic)
    if problems:
        problems.sort(key=lambda p: (p.line, p.col, p.message))
        raise ManifestInvalid(_dedupe(problems))
    return replace(apply_brand(_build(src, base_dir), src, brand), notify_webhook=webhook_of(src.data))


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, int, str, str]] = set()
    out = []
    for p in problems:
        k = (p.line, p.col, p.path, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


# --- schema problems, in words a campaign author understands -----------------------------------------

_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing"}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 60 else "a string"
    return f"{type(value).__name__} {value!r}"


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def schema_problems(src: Source) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(load_schema())
    problems: list[Problem] = []
    for err in validator.iter_errors(src.data):
        problems.extend(_explain(src, err))
    return problems


def _template_problems(template: Source, left_out: frozenset[tuple[str, int]]) -> list[Problem]:
    """The schema's problems in the templates variables could not expand, as written: in one pass with the
    variable problems, leaving out values that hold a placeholder (what they become is not known yet)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    problems: list[Problem] = []
    for err in validator.iter_errors(template.data):
        path = tuple(err.absolute_path)
        if tuple(path[:2]) in left_out and not (isinstance(err.instance, str) and "{" in err.instance):
            problems.extend(_explain(template, err))
    return problems


def _explain(src: Source, err: jsonschema.ValidationError) -> list[Problem]:
    path = tuple(err.absolute_path)
    v, sch, inst = err.validator, err.schema, err.instance
    if "propertyNames" in err.relative_schema_path and isinstance(inst, str):
        # a mapping key failed: jsonschema reports the key as the instance, located at its mapping
        return [src.problem(path + (inst,), _name_message(inst, path), key=True)]
    if v == "additionalProperties" and isinstance(inst, dict):
        known = list(sch.get("properties", {}))
        extra = [k for k in inst if k not in known]
        if isinstance(sch.get("additionalProperties"), dict):
            return []  # a typed map (assets): its own errors are reported per value
        return [src.problem(path + (k,), f"unknown key {k!r}{_suggest(k, known)}"
                            + (f" (allowed: {', '.join(known)})" if known else ""), key=True) for k in extra]
    if v == "required":
        missing = [r for r in sch.get("required", []) if isinstance(inst, dict) and r not in inst]
        return [src.problem(path, f"missing required key {m!r}") for m in missing]
    if v == "enum":
        choices = [str(c) for c in sch["enum"]]
        shown = ", ".join(choices) if len(choices) <= 20 else ", ".join(choices[:20]) + ", ..."
        hint = _suggest(str(inst), choices) if isinstance(inst, str) else ""
        return [src.problem(path, f"{_describe(inst)} is not allowed here: expected one of {shown}{hint}")]
    if v == "type":
        want = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in want)
        return [src.problem(path, f"expected {words}, got {_describe(inst)}")]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        lo = sch.get("minimum", sch.get("exclusiveMinimum"))
        hi = sch.get("maximum", sch.get("exclusiveMaximum"))
        rng = f"from {lo}" + (" (exclusive)" if "exclusiveMinimum" in sch else "") + f" to {hi}" if hi is not None else f"at least {lo}"
        return [src.problem(path, f"{inst!r} is out of range: must be {rng}")]
    if v == "pattern":
        return [src.problem(path, _pattern_message(path, inst))]
    if v in ("minLength", "maxLength"):
        if v == "minLength":
            return [src.problem(path, "must not be empty")]
        return [src.problem(path, f"is too long ({len(inst)} characters; at most {sch['maxLength']})")]
    if v == "minItems":
        return [src.problem(path, f"needs at least {sch['minItems']} item(s)")]
    if v in ("minProperties", "maxProperties"):
        if path[-2:-1] == ("edits",) or (len(path) >= 2 and path[-2] == "edits"):
            return [src.problem(path, "an edit is exactly one tool name with its parameters, e.g. `upscale-fast: {}`")]
        return [src.problem(path, err.message)]
    if v == "anyOf" and isinstance(inst, dict):
        options = [r for sub in sch["anyOf"] for r in sub.get("required", [])]
        if options:
            return [src.problem(path, f"needs at least one of {', '.join(options)}")]
    return [src.problem(path, err.message)]


def _name_message(name: str, path: tuple[Any, ...]) -> str:
    if path == ("assets",):
        return f"asset id {name!r} is not allowed: use a-z, 0-9, '-' and '_', 1 to 63 characters, starting with a letter or digit"
    tools = list(catalog.EDIT_TOOLS)
    return f"unknown edit tool {name!r}{_suggest(name, tools)} (tools: {', '.join(tools)})"


def _pattern_message(path: tuple[Any, ...], value: Any) -> str:
    last = path[-1] if path else ""
    if last == "campaign":
        return f"campaign name {value!r} is not allowed: use a-z, 0-9 and '-', 3 to 48 characters, not starting or ending with '-'"
    if last == "schedule":
        return f"schedule {value!r} must be cron(...), rate(...) or at(...)"
    if last in ("color", "text_color"):
        return f"colour {value!r} must be written #rrggbb"
    if last == "language":
        return f"language {value!r} is not a BCP 47 tag such as en, de or pt-BR (en_US is read as en-US)"
    return f"{value!r} is not a valid id: use a-z, 0-9, '-' and '_', 1 to 63 characters, starting with a letter or digit"


# --- semantic problems ---------------------------------------------------------------------------


def semantic_problems(src: Source, base_dir: Path, *, check_files: bool = True,
                      allow_outside: Sequence[Path] = ()) -> list[Problem]:
    data = src.data if isinstance(src.data, dict) else {}
    problems: list[Problem] = []
    assets: dict[str, Any] = data["assets"] if isinstance(data.get("assets"), dict) else {}
    raw_images: list[Any] = data["images"] if isinstance(data.get("images"), list) else []
    raw_videos: list[Any] = data["videos"] if isinstance(data.get("videos"), list) else []

    # schedule expression
    schedule = data.get("schedule")
    if isinstance(schedule, str):
        msg = schedule_problem(schedule)
        if msg:
            problems.append(src.problem(("schedule",), msg))

    # assets: files exist, kinds by extension
    for aid, loc in assets.items():
        if not isinstance(loc, str) or not loc:
            continue
        if loc.startswith("s3://"):
            if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+", loc):
                problems.append(src.problem(("assets", aid), f"{loc!r} is not a valid s3://bucket/key address"))
            continue
        if "://" in loc:
            problems.append(src.problem(("assets", aid), f"{loc!r}: only local paths and s3:// addresses are supported"))
            continue
        if not loc.lower().endswith(IMAGE_EXTENSIONS + AUDIO_EXTENSIONS + FONT_EXTENSIONS + (".svg",)):
            problems.append(src.problem(("assets", aid), f"{loc!r} is neither an image ({', '.join(IMAGE_EXTENSIONS)}), "
                                        f"an audio file ({', '.join(AUDIO_EXTENSIONS)}), a font "
                                        f"({', '.join(FONT_EXTENSIONS)}) nor an SVG logo (.svg)"))
        if check_files:
            p = (base_dir / loc)
            try:
                is_file = p.is_file()
            except OSError as exc:  # a name the file system refuses (too long, ...): a problem, not a crash
                problems.append(src.problem(("assets", aid), f"asset file {shown(loc)} cannot be looked up "
                                            f"({exc.strerror or exc})"))
                continue
            if not is_file:
                problems.append(src.problem(("assets", aid), f"asset file {loc!r} not found (looked in {p})"))
            else:  # inside the folder (links followed), and really the image or audio its name says
                msg = outside_problem(base_dir, loc, allow_outside=allow_outside) or file_problem(p, loc)
                if msg:
                    problems.append(src.problem(("assets", aid), msg))

    # ids: unique within images and videos; images and assets share one namespace of references
    image_index: dict[str, int] = {}
    for i, img in enumerate(raw_images):
        if not isinstance(img, dict) or not isinstance(img.get("id"), str):
            continue
        iid = img["id"]
        if iid in image_index:
            problems.append(src.problem(("images", i, "id"), f"duplicate image id {iid!r} (first used at images[{image_index[iid]}])"))
        elif iid in assets:
            problems.append(src.problem(("images", i, "id"), f"image id {iid!r} is also an asset id; references would be ambiguous"))
        else:
            image_index[iid] = i
    seen_videos: dict[str, int] = {}
    for i, vid in enumerate(raw_videos):
        if isinstance(vid, dict) and isinstance(vid.get("id"), str):
            if vid["id"] in seen_videos:
                problems.append(src.problem(("videos", i, "id"), f"duplicate video id {vid['id']!r} (first used at videos[{seen_videos[vid['id']]}])"))
            else:
                seen_videos[vid["id"]] = i

    def is_image_asset(ref: str) -> bool:
        loc = assets.get(ref)
        return isinstance(loc, str) and loc.lower().endswith(IMAGE_EXTENSIONS)

    def check_image_ref(path: tuple[Any, ...], ref: Any) -> None:
        if not isinstance(ref, str):
            return
        if ref in image_index or is_image_asset(ref):
            return
        if ref in assets:
            kind = "an audio" if str(assets[ref]).lower().endswith(AUDIO_EXTENSIONS) else "a font or logo"
            problems.append(src.problem(path, f"{ref!r} is {kind} asset; an image is needed here"))
            return
        known = list(assets) + list(image_index)
        problems.append(src.problem(path, f"{ref!r} names no asset or image{_suggest(ref, known)}"))

    # images: references and cycles
    deps: dict[str, list[str]] = {}
    for i, img in enumerate(raw_images):
        if not isinstance(img, dict):
            continue
        iid = img.get("id")
        refs: list[str] = []
        check_image_ref(("images", i, "from"), img.get("from"))
        if isinstance(img.get("from"), str):
            refs.append(img["from"])
        edits: list[Any] = img["edits"] if isinstance(img.get("edits"), list) else []
        for j, edit in enumerate(edits):
            if not isinstance(edit, dict) or len(edit) != 1:
                continue
            (tool, params), = edit.items()
            spec = catalog.EDIT_TOOLS.get(tool)
            if spec is None or not isinstance(params, dict):
                continue
            for fname in spec.image_fields:
                if fname in params:
                    check_image_ref(("images", i, "edits", j, tool, fname), params[fname])
                    if isinstance(params[fname], str):
                        refs.append(params[fname])
        if isinstance(iid, str) and iid in image_index and image_index[iid] == i:
            deps[iid] = [r for r in refs if r in image_index]
    for cycle in _cycles(deps):
        first = cycle[0]
        problems.append(src.problem(("images", image_index[first], "id"),
                                    "reference cycle: " + " -> ".join(cycle + [first])))

    # videos: models, frames, start images, continuity, crossfade, audio
    defaults: dict[str, Any] = data["defaults"] if isinstance(data.get("defaults"), dict) else {}
    dv: dict[str, Any] = defaults["video"] if isinstance(defaults.get("video"), dict) else {}
    for i, vid in enumerate(raw_videos):
        if not isinstance(vid, dict):
            continue
        vpath: tuple[Any, ...] = ("videos", i)
        shots: list[Any] = vid["shots"] if isinstance(vid.get("shots"), list) else []
        continuity = vid.get("continuity") == "last-frame"
        clip_frames: list[tuple[int, int]] = []  # (frames, fps) per shot, when both are known
        for card_key in ("title", "end_card"):
            card = vid.get(card_key)
            text = card.get("text") if isinstance(card, dict) else None
            if isinstance(text, str) and is_blank(text):
                problems.append(src.problem(vpath + (card_key, "text"), "the card text is blank (only spaces or invisible characters)"))
            elif isinstance(text, str) and (bad := undrawable(text)):
                problems.append(src.problem(vpath + (card_key, "text"), f"the card font cannot draw {bad}; emoji are not supported on cards"))
        for j, shot in enumerate(shots):
            if not isinstance(shot, dict):
                continue
            spath = vpath + ("shots", j)
            model_name = shot.get("model", dv.get("model", catalog.DEFAULT_VIDEO_MODEL))
            if str(model_name) in catalog.MANAGED_VIDEO_MODELS:  # Luma Ray2: its own rules (model_rules.py)
                clip_frames += ray2_problems(src, spath, shot, dv, continuity=continuity and j > 0,
                                             check_ref=check_image_ref, problems=problems)
                continue
            model = catalog.VIDEO_MODELS.get(model_name) if isinstance(model_name, str) else None
            if model is not None:  # CogVideoX, Wan2.2: the registry's rules for this model (model_rules.py)
                clip_frames += model_shot_problems(src, spath, shot, dv, model, continuity=continuity and j > 0,
                                                   check_ref=check_image_ref, problems=problems)
        problems += caption_problems(src, vpath, vid)
        if vid.get("color_match") is True and not continuity:
            problems.append(src.problem(vpath + ("color_match",), "color_match only applies with continuity: last-frame"))
        trans = vid.get("transition")
        if isinstance(trans, dict) and isinstance(trans.get("crossfade"), (int, float)) and len(clip_frames) > 1:
            msg = crossfade_problem(float(trans["crossfade"]), clip_frames)
            if msg:
                problems.append(src.problem(vpath + ("transition", "crossfade"), msg))
        audio = vid.get("audio")
        if isinstance(audio, dict) and isinstance(audio.get("asset"), str):
            ref = audio["asset"]
            if ref not in assets:
                problems.append(src.problem(vpath + ("audio", "asset"), f"{ref!r} names no asset{_suggest(ref, list(assets))}"))
            elif isinstance(assets[ref], str) and not assets[ref].lower().endswith(AUDIO_EXTENSIONS):
                problems.append(src.problem(vpath + ("audio", "asset"), f"{ref!r} is not an audio file ({', '.join(AUDIO_EXTENSIONS)})"))
    if data.get("commercial") is True:
        problems += licence_problems(src, raw_videos, dv)
    return problems + voice_problems(src, data)


def _cycles(deps: dict[str, list[str]]) -> list[list[str]]:
    """Each elementary cycle once, found by depth-first search (graphs here are tiny)."""
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in deps.get(node, []):
            if state.get(nxt) == 1:
                cyc = stack[stack.index(nxt):]
                key = frozenset(cyc)
                if key not in seen_sets:
                    seen_sets.add(key)
                    found.append(list(cyc))
            elif state.get(nxt) is None:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for n in deps:
        if state.get(n) is None:
            visit(n, [])
    return found


def _card(raw: dict[str, Any] | None) -> Card | None:
    if raw is None:
        return None
    return Card(text=raw["text"], duration=float(raw.get("duration", DEFAULT_CARD_SECONDS)),
                color=raw.get("color", DEFAULT_CARD_COLOR), text_color=raw.get("text_color", DEFAULT_CARD_TEXT_COLOR))


def _caption(shot: dict[str, Any]) -> str | None:
    text = shot.get("caption")
    return " ".join(text.split()) if isinstance(text, str) else None


def _build(src: Source, base_dir: Path) -> Campaign:
    data: dict[str, Any] = src.data
    defaults = data.get("defaults", {})
    dv = defaults.get("video", {})
    enhance_default = defaults.get("enhance", DEFAULT_ENHANCE)
    assets = {}
    for aid, loc in data.get("assets", {}).items():
        if loc.startswith("s3://"):
            assets[aid] = Asset(aid, loc, None, loc)
        else:
            assets[aid] = Asset(aid, loc, (base_dir / loc).resolve(), None)
    images = tuple(
        ImageSpec(
            id=img["id"], source=img["from"],
            edits=tuple(Edit(tool, dict(params or {})) for e in img["edits"] for tool, params in e.items()),
            variant=variant_of(src, "images", i),
        )
        for i, img in enumerate(data.get("images", []))
    )
    videos = []
    for i, vid in enumerate(data.get("videos", [])):
        shots = []
        for j, s in enumerate(vid["shots"]):
            model_name = s.get("model", dv.get("model", catalog.DEFAULT_VIDEO_MODEL))
            if model_name in catalog.MANAGED_VIDEO_MODELS:
                ray2 = ray2_settings(s, dv)
                shots.append(Shot(index=j, prompt=s["prompt"].strip(), image=None,
                                  enhance=bool(s.get("enhance", enhance_default)), model=model_name,
                                  frames=ray2.frames, steps=catalog.DEFAULT_STEPS, guidance=catalog.DEFAULT_GUIDANCE,
                                  seed=catalog.DEFAULT_SEED, negative_prompt=None, ray2=ray2,
                                  caption=_caption(s), voiceover=voiceover(s)))
                continue
            model = catalog.VIDEO_MODELS[model_name]
            shots.append(Shot(
                index=j,
                prompt=s["prompt"].strip(),
                image=s.get("image"),
                enhance=bool(s.get("enhance", enhance_default)),
                model=model.name,
                frames=int(s.get("frames", dv.get("frames", model.default_frames))),
                steps=int(s.get("steps", dv.get("steps", catalog.DEFAULT_STEPS))),
                guidance=float(s.get("guidance", dv.get("guidance", model.default_guidance))),
                seed=int(s.get("seed", dv.get("seed", catalog.DEFAULT_SEED))),
                negative_prompt=s.get("negative_prompt"),
                caption=_caption(s), voiceover=voiceover(s),
            ))
        audio = vid.get("audio")
        videos.append(VideoSpec(
            id=vid["id"], shots=tuple(shots),
            crossfade=float(vid.get("transition", {}).get("crossfade", 0.0)),
            continuity=vid.get("continuity"),
            color_match=bool(vid.get("color_match", False)),
            audio=Audio(audio["asset"], float(audio.get("fade_in", DEFAULT_AUDIO_FADE_IN)),
                        float(audio.get("fade_out", DEFAULT_AUDIO_FADE_OUT)),
                        float(audio.get("volume", DEFAULT_AUDIO_VOLUME))) if audio else None,
            title=_card(vid.get("title")), end_card=_card(vid.get("end_card")), variant=variant_of(src, "videos", i),
            formats=tuple(vid.get("formats", ())), fit=vid.get("fit", DEFAULT_FIT),
            captions=vid.get("captions", DEFAULT_CAPTIONS), language=str(vid.get("language", DEFAULT_LANGUAGE)).replace("_", "-"),
            voice=video_voice(vid, defaults), translate=translates(vid, defaults),
            caption_from=vid.get("caption_from"), loudness=loudness_of(vid, defaults),
        ))
    budget = None
    if "budget" in data:
        line, col = src.where(("budget", "max_usd"), key=True)
        budget = BudgetSpec(float(data["budget"]["max_usd"]), src.file, line, col)
    return Campaign(
        name=data["campaign"], description=data.get("description", ""), schedule=data.get("schedule"),
        enhancer_model=defaults.get("enhancer_model"), assets=assets, images=images, videos=tuple(videos),
        source_file=src.file, base_dir=base_dir, raw=template_data(src), budget=budget, approval=data.get("approval"),
        credentials=credentials_spec(data.get("credentials")),
    )
