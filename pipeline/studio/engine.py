"""The studio's calls into the pipeline: backends from `campaign run`'s flags, enhance, check and plan a manifest."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import catalog
from pipeline.errors import ManifestInvalid, PipelineError, Problem
from pipeline.manifest.campaign import Campaign, load_manifest_text
from pipeline.plan.keys import file_digest
from pipeline.studio.config import StudioConfig
from pipeline.tasks.prompts import estimate_tokens, fit_prompt


def make_backends(config: StudioConfig, *, enhancer_model: str | None = None) -> Any:
    """The backends `campaign run` would use with the studio's backend flags."""
    from pipeline.backends.options import backends_from_args, parse_backend_flags

    return backends_from_args(parse_backend_flags(config.backend_argv), enhancer_model=enhancer_model)


@dataclass(frozen=True)
class Enhanced:
    text: str
    tokens: int
    limit: int
    trimmed: bool
    original_tokens: int
    enhancer: str


def token_count(text: str, *, model: str) -> tuple[int, int]:
    """(estimated tokens of `text`, the model's limit): the same pessimistic estimate the pipeline trims by."""
    return estimate_tokens(" ".join(text.split())), catalog.VIDEO_MODELS[model].max_prompt_tokens


def enhance_prompt(prompt: str, *, model: str, enhancer: Any) -> Enhanced:
    """One prompt through the run's enhancer, held to the video model's token limit (as the enhance job does)."""
    limit = catalog.VIDEO_MODELS[model].max_prompt_tokens
    fitted = fit_prompt(enhancer.enhance(prompt), limit)
    return Enhanced(fitted.text, fitted.tokens, limit, fitted.trimmed, fitted.original_tokens, enhancer.name)


@dataclass(frozen=True)
class ManifestCheck:
    """A manifest as typed in the editor: its problems (line and column), or its plan and cost estimate."""

    problems: tuple[Problem, ...]
    campaign: Campaign | None = None
    jobs: tuple[dict[str, Any], ...] = ()
    cost: dict[str, Any] | None = None
    error: str | None = None  # planning failed for a reason that is not the manifest's (a backend, say)

    @property
    def ok(self) -> bool:
        return not self.problems and self.campaign is not None and self.error is None


def check_manifest(text: str, *, file: str, base_dir: Path, config: StudioConfig) -> ManifestCheck:
    """Validate the editor's text as `campaign validate` would, then plan it as `campaign plan` would."""
    try:
        campaign = load_manifest_text(text, file=file, base_dir=base_dir)
    except ManifestInvalid as exc:
        return ManifestCheck(problems=tuple(exc.problems))
    try:
        _, plan = plan_campaign(campaign, config)
    except PipelineError as exc:
        return ManifestCheck(problems=(), campaign=campaign, error=f"{type(exc).__name__}: {exc}")
    from pipeline.plan.cost import estimate_cost

    jobs = tuple({"stage": j.stage, "job": j.id, "kind": j.kind, "key": j.key[:12], "what": j.label,
                  "after": ", ".join(j.deps)} for j in plan.jobs)
    return ManifestCheck(problems=(), campaign=campaign, jobs=jobs, cost=estimate_cost(plan))


def plan_campaign(campaign: Campaign, config: StudioConfig) -> tuple[Any, Any]:
    """(backends, plan): `campaign plan`'s plan of a loaded campaign, keyed by the configured backends."""
    from pipeline.plan.build import KeySource, build_plan
    from pipeline.storage.store import current_etags

    backends = make_backends(config, enhancer_model=campaign.enhancer_model)
    keys = KeySource(enhancer=backends.enhancer.identity(), images=backends.images.identity,
                     video=backends.video.identity, voice=backends.voice.identity(),
                     translator=backends.translator.identity())
    from pipeline.review.decisions import overrides_from, read_decisions
    from pipeline.storage.store import LocalStore

    overrides = overrides_from(read_decisions(LocalStore(config.out_dir), campaign.name),  # review's regenerates
                               str(Path(campaign.source_file).resolve()))
    return backends, build_plan(campaign, keys, backends=backends.names(), s3_etags=current_etags({a.id: a.uri for a in campaign.assets.values() if a.uri}),
                                overrides=overrides)


STARTER_MANIFEST = """\
# A campaign: one video of two shots. Edit it; problems appear below with their line and column.
campaign: my-campaign
videos:
  - id: teaser
    transition: {crossfade: 0.5}
    shots:
      - prompt: A bee on a flower, early morning light
        frames: 17
      - prompt: The bee flies off into a sunlit meadow
        frames: 17
"""


@dataclass(frozen=True)
class Saved:
    path: Path
    problems: tuple[Problem, ...]


def _beside(shot: Any, folder: Path) -> Any:
    """A shot whose start image lies outside the manifest's folder (an upload, a past run's image) gets a copy
    under <folder>/assets/, named by its content: the saved manifest is self-contained, and its assets stay
    inside its folder as validation requires. Only new files are written there."""
    if not shot.image or Path(shot.image).resolve().is_relative_to(folder):
        return shot
    src = Path(shot.image)
    dest = folder / "assets" / f"{file_digest(src)[:12]}-{src.name}"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    return replace(shot, image=str(dest))


def save_manifest(shots: list[Any], *, campaign: str, path: Path, one_video: bool = False) -> Saved:
    """Write shots as a manifest at `path`, only if it validates there (asset paths are relative to it)."""
    from pipeline.studio.shots import manifest_text, write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)  # relative asset paths are checked through it
    shots = [_beside(s, path.parent.resolve()) for s in shots]
    text = manifest_text(shots, campaign=campaign, manifest_dir=path.parent.resolve(), one_video=one_video)
    try:
        load_manifest_text(text, file=path.name, base_dir=path.parent.resolve())
    except ManifestInvalid as exc:
        return Saved(path, tuple(exc.problems))
    write_text_atomic(path, text)
    return Saved(path, ())


def submit(path: Path, *, config: StudioConfig) -> dict[str, str]:
    """`campaign submit`: upload the manifest and its assets to the input bucket, which starts the cloud run."""
    from pipeline.cloud import commands

    if not config.input_bucket:
        raise PipelineError("no input bucket configured (campaign studio --bucket, or CAMPAIGN_INPUT_BUCKET)")
    return commands.submit(path, bucket=config.input_bucket, state_machine_arn=config.state_machine_arn)
