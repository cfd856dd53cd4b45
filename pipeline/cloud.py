"""The cloud runner's side of the pipeline: what each Step Functions task does, what the S3 trigger decides,
and `campaign submit` / `campaign status`.

`state_machines/campaign.asl.json` walks the plan's stages; each of its Lambda tasks (`tasks/`) calls one
function here, which calls the same task functions as the local runner (`pipeline.tasks`) with an
`S3Store` on the output bucket. The state carries ids only: the plan and every job's result live in S3
under `runs/<campaign>/<run-id>/` (run id = execution name). A stage with more Map items than the
threshold (CDK context `distributed_map_threshold`), or one that would push the state past its budget,
carries no ids at all: the plan step writes its items to `runs/<campaign>/<run-id>/stages/` and the state
machine runs it as a Distributed Map reading them there, so a campaign of any size stays far below the
256 KB payload and the 25,000-event history limits. No AWS client is created at import; callers pass them in.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pipeline import errors
from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.errors import BackendUnavailable, JobFailed, ManifestInvalid, Problem
from pipeline.plan import Job, KeySource, Plan, build_plan
from pipeline.report import run_prefix
from pipeline.store import Store

RUN_DOCUMENT_VERSION = 1
EXECUTION_NAME_MAX = 80  # Step Functions
SCHEDULE_NAME_MAX = 64  # EventBridge Scheduler
NAME_HASH_CHARS = 16
MANIFEST_PREFIX = "manifests/"
MANIFEST_SUFFIXES = (".yaml", ".yml")
SUBMITTED_ASSETS_PREFIX = "assets/"
ERROR_MESSAGE_MAX = 2000
# Inline or Distributed Map, per stage. An inline Map item adds about 8 events to the execution's history
# (25,000 at most) and its id to the state (256 KB at most); a Distributed Map's items are child executions
# with their own histories, read from S3. A stage runs distributed when it has more jobs than the threshold
# (the state machine passes the stack's `distributed_map_threshold`), and the largest stages also go
# distributed while the inline ones together pass either budget below.
DEFAULT_DISTRIBUTED_THRESHOLD = 500
INLINE_JOBS_BUDGET = 2000
INLINE_SUMMARY_BYTES = 64 * 1024
# With every stage distributed the state holds one small entry per dependency wave; past this it is refused.
MAX_SUMMARY_BYTES = 128 * 1024
# The stages as the state machine names them (its `... inline or distributed?` Choices read
# `$.run.stages.<name>.mode`); images and waiting_clips run in waves, one Distributed Map per wave.
STAGES = ("enhance", "images", "clips", "waiting_clips", "videos")
WAVE_STAGES = ("images", "waiting_clips")

# The fields of the CreateProcessingJob request that the state's `Render ... clip batch on GPU` Task passes
# on (its Parameters name exactly these); prepare_clip_batch refuses a request with any other field.
RENDER_REQUEST_FIELDS = ("ProcessingJobName", "RoleArn", "AppSpecification", "ProcessingResources",
                         "ProcessingInputs", "ProcessingOutputConfig", "StoppingCondition", "Environment",
                         "NetworkConfig")
# What the `Plan campaign` Task keeps of the plan step's answer (its ResultSelector names exactly these).
PLAN_SUMMARY_FIELDS = ("valid", "ref", "report", "problems", "enhance", "image_waves", "clip_batches",
                       "clip_waves", "videos", "stages")

PARALLEL_S3_READS = 16  # the report step reads one result per job: in parallel, a few thousand fit its timeout

# --- names and keys --------------------------------------------------------------------------------


def slug(text: str, max_len: int) -> str:
    """[a-z0-9-] only, no leading/trailing or doubled dashes, at most max_len characters."""
    s = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")
    return s[:max_len].rstrip("-") or "campaign"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:NAME_HASH_CHARS]


def execution_name(campaign: str, *, bucket: str, key: str, version: str) -> str:
    """`<campaign>-<hash of bucket, key and version id (or ETag)>`: the same object version always gets the
    same name, so a re-delivered event meets ExecutionAlreadyExists instead of starting a second run."""
    if not version:
        raise ValueError(f"s3://{bucket}/{key}: a version id or ETag is needed to name its execution")
    return f"{slug(campaign, EXECUTION_NAME_MAX - NAME_HASH_CHARS - 1)}-{_digest(bucket, key, version)}"


def schedule_name(*, bucket: str, key: str) -> str:
    """One schedule per manifest object (its key is all a deletion event carries)."""
    stem = posixpath.splitext(posixpath.basename(key))[0]
    return f"{slug(stem, SCHEDULE_NAME_MAX - NAME_HASH_CHARS - 1)}-{_digest(bucket, key)}"


def is_manifest_key(key: str) -> bool:
    return key.startswith(MANIFEST_PREFIX) and key.lower().endswith(MANIFEST_SUFFIXES)


def object_version(obj: Mapping[str, Any]) -> str:
    """The version id of an S3 object (event detail or PutObject answer), else its ETag without quotes."""
    version = obj.get("version-id") or obj.get("VersionId")
    if version and version != "null":
        return str(version)
    return str(obj.get("etag") or obj.get("ETag") or "").strip('"')


@dataclass(frozen=True)
class RunRef:
    """Which run a task works for; everything else is read from the run document in S3."""

    campaign: str
    run_id: str

    @property
    def prefix(self) -> str:
        return run_prefix(self.campaign, self.run_id)

    def to_dict(self) -> dict[str, str]:
        return {"campaign": self.campaign, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRef:
        missing = [k for k in ("campaign", "run_id") if not isinstance(d.get(k), str) or not d.get(k)]
        if missing:
            raise ValueError(f"run reference {dict(d)!r} lacks {', '.join(missing)}")
        return cls(str(d["campaign"]), str(d["run_id"]))


def run_document_key(ref: RunRef) -> str:
    return f"{ref.prefix}/plan.json"


def result_key(ref: RunRef, job_id: str) -> str:
    """Where a job's result lands; the ASL's `Record ... failure` states write the same key."""
    return f"{ref.prefix}/results/{job_id}.json"


def stage_key(ref: RunRef, stage: str, wave: int | None = None) -> str:
    """Where a distributed stage's items are (a JSON list the Distributed Map's ItemReader reads)."""
    name = stage.replace("_", "-") + (f"-w{wave}" if wave is not None else "")
    return f"{ref.prefix}/stages/{name}.json"


def batch_failure_key(ref: RunRef, batch_id: str) -> str:
    return f"{ref.prefix}/results/batches/{batch_id}.json"


def batch_s3_uri(bucket: str, ref: RunRef, batch_id: str, attempt: str) -> str:
    return f"s3://{bucket}/{ref.prefix}/batches/{batch_id}/{attempt}"


def region_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[3]


def execution_arn(state_machine_arn: str, name: str) -> str:
    head, _, machine = state_machine_arn.rpartition(":stateMachine:")
    if not head:
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return f"{head}:execution:{machine}:{name}"


def execution_console_url(arn: str) -> str:
    region = region_of(arn)
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"


def state_machine_console_url(arn: str) -> str:
    region = region_of(arn)
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/statemachines/view/{arn}"


# --- settings (the Lambda environment that the CDK stack writes) -----------------------------------------

ENV_NAMES = {
    "output_bucket": "CAMPAIGN_OUTPUT_BUCKET",
    "state_machine_arn": "CAMPAIGN_STATE_MACHINE_ARN",
    "enhancer": "CAMPAIGN_ENHANCER",
    "images": "CAMPAIGN_IMAGES",
    "video": "CAMPAIGN_VIDEO",
    "enhancer_model": "CAMPAIGN_ENHANCER_MODEL",
    "allowed_enhancer_models": "CAMPAIGN_ALLOWED_ENHANCER_MODELS",  # comma-separated, beside enhancer_model
    "clips_per_batch": "CAMPAIGN_CLIPS_PER_BATCH",
    "sagemaker_role_arn": "CAMPAIGN_SAGEMAKER_ROLE_ARN",
    "sagemaker_image_uri": "CAMPAIGN_SAGEMAKER_IMAGE_URI",
    "instance_type": "CAMPAIGN_SAGEMAKER_INSTANCE_TYPE",
    "volume_gb": "CAMPAIGN_SAGEMAKER_VOLUME_GB",
    "max_runtime_s": "CAMPAIGN_SAGEMAKER_MAX_RUNTIME_S",
    "models_s3_uri": "CAMPAIGN_MODELS_S3_URI",
    "scheduler_role_arn": "CAMPAIGN_SCHEDULER_ROLE_ARN",
    "schedule_group": "CAMPAIGN_SCHEDULE_GROUP",
}
_INT_SETTINGS = ("clips_per_batch", "volume_gb", "max_runtime_s")


@dataclass(frozen=True)
class CloudSettings:
    """What a task needs to know about its deployment. Unset values are None; `need` says which variable
    is missing. Values left unset fall back to the defaults in pipeline/sagemaker.py."""

    output_bucket: str | None = None
    state_machine_arn: str | None = None
    enhancer: str | None = None
    images: str | None = None
    video: str | None = None
    enhancer_model: str | None = None
    allowed_enhancer_models: str | None = None
    clips_per_batch: int | None = None
    sagemaker_role_arn: str | None = None
    sagemaker_image_uri: str | None = None
    instance_type: str | None = None
    volume_gb: int | None = None
    max_runtime_s: int | None = None
    models_s3_uri: str | None = None
    scheduler_role_arn: str | None = None
    schedule_group: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloudSettings:
        values: dict[str, Any] = {}
        for name, var in ENV_NAMES.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            if name in _INT_SETTINGS:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(f"{var} must be an integer, got {raw!r}") from None
                if values[name] < 1:
                    raise ValueError(f"{var} must be at least 1, got {raw!r}")
            else:
                values[name] = raw
        return cls(**values)

    def need(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise BackendUnavailable(f"{ENV_NAMES[name]} is not set in this function's environment "
                                     "(the CDK stack sets it; is the function wired to this task?)")
        return value

    def backend_names(self) -> dict[str, str]:
        return {"enhancer": self.need("enhancer"), "images": self.need("images"), "video": self.need("video")}


# --- backends, built on first use (a task Lambda loads only the one it uses) ---------------------------------


class CloudBackends:
    """The plan's backends by name, each constructed when first used, so a light task never imports the
    heavy modules of a capability it does not touch (the Lambda layer carries only what the light tasks use)."""

    def __init__(self, names: Mapping[str, str], *, enhancer_model: str | None, settings: CloudSettings) -> None:
        self._names = dict(names)
        self._enhancer_model = enhancer_model
        self._settings = settings

    def names(self) -> dict[str, str]:
        return dict(self._names)

    @functools.cached_property
    def enhancer(self) -> Any:
        from pipeline.backends import make_enhancer

        name = self._names["enhancer"]
        if name not in ("bedrock", "passthrough"):
            raise BackendUnavailable(f"enhancer {name!r} cannot run in the cloud runner (use bedrock or passthrough)")
        return make_enhancer(name, model=self._enhancer_model)

    @functools.cached_property
    def images(self) -> Any:
        from pipeline.backends import make_image_editor

        return make_image_editor(self._names["images"])

    @functools.cached_property
    def video(self) -> Any:
        from pipeline.backends import make_video_backend

        name = self._names["video"]
        if name not in ("sagemaker", "preview"):  # preview: the offline tests' stand-in container
            raise BackendUnavailable(f"video backend {name!r} cannot run in the cloud runner (use sagemaker)")
        s = self._settings
        options = {k: str(getattr(s, k)) for k in ("instance_type", "volume_gb", "max_runtime_s") if getattr(s, k)}
        if name == "sagemaker":
            options.update(image_uri=s.need("sagemaker_image_uri"), role_arn=s.need("sagemaker_role_arn"),
                           models_s3_uri=s.need("models_s3_uri"), work_s3_uri=f"s3://{s.need('output_bucket')}/runs")
        return make_video_backend(name, options=options)

    def key_source(self) -> KeySource:
        return KeySource(enhancer=self.enhancer.identity(), images=self.images.identity, video=self.video.identity)


# --- the run document ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipBatch:
    """Clips that one processing job renders: one pipeline folder (model, T2V or I2V), at most N clips."""

    id: str
    jobs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.id, "jobs": list(self.jobs)}


@dataclass(frozen=True)
class CloudRun:
    """`runs/<campaign>/<run-id>/plan.json`: the plan and what the tasks need besides it."""

    ref: RunRef
    plan: Plan
    source: dict[str, Any]
    started: float
    enhancer_model: str | None
    image_waves: tuple[tuple[str, ...], ...]
    clip_batches: tuple[ClipBatch, ...]  # wave 0: clips that wait for no image and no clip
    clip_waves: tuple[tuple[ClipBatch, ...], ...]  # waves 1..n

    def to_json(self) -> str:
        return json.dumps({
            "version": RUN_DOCUMENT_VERSION, "ref": self.ref.to_dict(), "source": self.source,
            "started": self.started, "enhancer_model": self.enhancer_model, "plan": self.plan.to_dict(),
            "image_waves": [list(w) for w in self.image_waves],
            "clip_batches": [b.to_dict() for b in self.clip_batches],
            "clip_waves": [[b.to_dict() for b in w] for w in self.clip_waves],
        }, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: bytes | str) -> CloudRun:
        d = json.loads(text)
        if d.get("version") != RUN_DOCUMENT_VERSION:
            raise ValueError(f"run document version {d.get('version')!r}, expected {RUN_DOCUMENT_VERSION}")

        def batch(b: Mapping[str, Any]) -> ClipBatch:
            return ClipBatch(b["batch"], tuple(b["jobs"]))

        return cls(
            ref=RunRef.from_dict(d["ref"]), plan=Plan.from_dict(d["plan"]), source=d["source"], started=d["started"],
            enhancer_model=d.get("enhancer_model"), image_waves=tuple(tuple(w) for w in d["image_waves"]),
            clip_batches=tuple(batch(b) for b in d["clip_batches"]),
            clip_waves=tuple(tuple(batch(b) for b in w) for w in d["clip_waves"]),
        )

    def backends(self, settings: CloudSettings) -> CloudBackends:
        return CloudBackends(self.plan.backends, enhancer_model=self.enhancer_model, settings=settings)

    def stage_items(self) -> dict[str, list[list[dict[str, Any]]]]:
        """Each stage's Map items in waves (a stage without waves is one wave): {"job_id"} per job, or a
        clip batch's {"batch", "jobs"}. What a Distributed Map reads from S3, one file per wave."""
        return {
            "enhance": [[{"job_id": j.id} for j in self.plan.by_kind("enhance")]],
            "images": [[{"job_id": j} for j in w] for w in self.image_waves],
            "clips": [[b.to_dict() for b in self.clip_batches]],
            "waiting_clips": [[b.to_dict() for b in w] for w in self.clip_waves],
            "videos": [[{"job_id": j.id} for j in self.plan.by_kind("video")]],
        }

    def summary(self, *, report_uri: str, distributed: Iterable[str] = ()) -> dict[str, Any]:
        """The few KB the state carries: job ids per inline stage (Map items), and for each stage its mode
        and job count, plus, for a distributed stage, where its items are in S3 instead of the ids."""
        far = set(distributed)
        unknown = far - set(STAGES)
        if unknown:
            raise ValueError(f"no stage {sorted(unknown)}; stages are {STAGES}")
        items = self.stage_items()
        stages: dict[str, Any] = {}
        for name in STAGES:
            count = sum(_jobs_in(w) for w in items[name])
            entry: dict[str, Any] = {"mode": "distributed" if name in far else "inline", "count": count}
            if name in far and name in WAVE_STAGES:
                entry["waves"] = [{"wave": i + 1, "count": _jobs_in(w), "key": stage_key(self.ref, name, i + 1)}
                                  for i, w in enumerate(items[name])]
            elif name in far:
                entry["key"] = stage_key(self.ref, name)
            stages[name] = entry
        return {
            "valid": True, "ref": self.ref.to_dict(), "report": report_uri, "problems": 0,
            "enhance": [] if "enhance" in far else [j.id for j in self.plan.by_kind("enhance")],
            "image_waves": [] if "images" in far else
            [{"wave": i + 1, "jobs": list(w)} for i, w in enumerate(self.image_waves)],
            "clip_batches": [] if "clips" in far else [b.to_dict() for b in self.clip_batches],
            "clip_waves": [] if "waiting_clips" in far else
            [{"wave": i + 1, "batches": [b.to_dict() for b in w]} for i, w in enumerate(self.clip_waves)],
            "videos": [] if "videos" in far else [j.id for j in self.plan.by_kind("video")],
            "stages": stages,
        }

    def stage_files(self, distributed: Iterable[str]) -> dict[str, bytes]:
        """The S3 objects a distributed stage's Maps read: key -> JSON list of items."""
        items = self.stage_items()
        files: dict[str, bytes] = {}
        for name in distributed:
            if name in WAVE_STAGES:
                for i, wave in enumerate(items[name]):
                    files[stage_key(self.ref, name, i + 1)] = json.dumps(wave).encode()
            else:
                files[stage_key(self.ref, name)] = json.dumps(items[name][0]).encode()
        return files


def _jobs_in(items: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(item["jobs"]) if "jobs" in item else 1 for item in items)


def choose_distributed(run: CloudRun, *, threshold: int, report_uri: str) -> set[str]:
    """The stages that run as Distributed Maps: those with more jobs than `threshold`, then the largest of
    the rest while the inline ones together pass INLINE_JOBS_BUDGET jobs or INLINE_SUMMARY_BYTES of state."""
    items = run.stage_items()
    counts = {name: sum(_jobs_in(w) for w in items[name]) for name in STAGES}
    sizes = {name: len(json.dumps(items[name])) for name in STAGES}
    distributed = {name for name in STAGES if counts[name] > threshold}
    while True:
        inline = [name for name in STAGES if name not in distributed and counts[name]]
        within = (sum(counts[n] for n in inline) <= INLINE_JOBS_BUDGET
                  and len(json.dumps(run.summary(report_uri=report_uri, distributed=distributed))) <= INLINE_SUMMARY_BYTES)
        if within or not inline:
            return distributed
        distributed.add(max(inline, key=lambda n: (counts[n], sizes[n])))


def empty_stages() -> dict[str, Any]:
    return {name: {"mode": "inline", "count": 0} for name in STAGES}


def load_run(store: Store, ref: RunRef) -> CloudRun:
    run = CloudRun.from_json(store.read_bytes(run_document_key(ref)))
    if run.ref != ref:
        raise ValueError(f"{run_document_key(ref)} belongs to {run.ref}, not {ref}")
    return run


def image_waves(plan: Plan) -> tuple[tuple[str, ...], ...]:
    """Images in waves: an image made from (or masked/styled by) another image runs a wave after it."""
    wave: dict[str, int] = {}
    for job in plan.by_kind("image"):  # plan order puts an image after the images it uses
        wave[job.id] = 1 + max((wave[d] for d in job.deps if d in wave), default=0)
    by_wave = _by_wave(wave)
    return tuple(tuple(by_wave[w]) for w in sorted(by_wave))


def clip_waves(plan: Plan, *, max_batch: int) -> tuple[tuple[ClipBatch, ...], tuple[tuple[ClipBatch, ...], ...]]:
    """Clip batches of wave 0 (wait for nothing but prompts) and of the waves after it: a clip that starts
    from an edited image waits for the images (wave >= 1); one that continues an earlier clip runs a wave
    after that clip. Within a wave, clips of one pipeline folder share batches of at most max_batch."""
    from pipeline.sagemaker import I2V_SUFFIX

    wave: dict[str, int] = {}
    for job in plan.by_kind("clip"):  # plan order puts a continued clip after the clip it continues
        after = [wave[d] for d in job.deps if d in wave]
        wave[job.id] = (1 + max(after, default=0)) if job.stage >= 3 else 0
    batches: dict[int, list[ClipBatch]] = {}
    for w, ids in sorted(_by_wave(wave).items()):
        by_folder: dict[str, list[str]] = {}
        for job_id in ids:
            p = plan.job(job_id).params
            by_folder.setdefault(p["model"] + (I2V_SUFFIX if p["i2v"] else ""), []).append(job_id)
        for folder, members in by_folder.items():
            for n, i in enumerate(range(0, len(members), max_batch)):
                batches.setdefault(w, []).append(ClipBatch(f"w{w}-{folder}-{n + 1:02d}", tuple(members[i:i + max_batch])))
    first = tuple(batches.get(0, ()))
    later = tuple(tuple(batches[w]) for w in sorted(batches) if w > 0)
    return first, later


def _by_wave(wave: Mapping[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for job_id, w in wave.items():
        out.setdefault(w, []).append(job_id)
    return out


# --- stage 0: plan -----------------------------------------------------------------------------------------


def plan_run(source: Mapping[str, Any], *, run_id: str, started: float | str, store: Store, s3: Any,
             settings: CloudSettings, workdir: Path, distributed_over: int | None = None) -> dict[str, Any]:
    """Read the manifest (and its relative assets) from the input bucket, validate, plan, write the run
    document and the item lists of the stages that run distributed (more Map items than `distributed_over`,
    or over the state's budgets); answer the summary the state carries. An invalid manifest writes its
    report and answers valid=false, so the execution ends before any job starts."""
    from pipeline.manifest import load_manifest_text
    from pipeline.report import write_invalid
    from pipeline.yamlsrc import load_text

    # 1. Where the manifest is, and its text (this exact version when the event named one).
    bucket, key = _need_str(source, "bucket"), _need_str(source, "key")
    version = source.get("version_id")
    uri = f"s3://{bucket}/{key}"
    get_args = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
    text = s3.get_object(**get_args)["Body"].read().decode("utf-8")
    started_s = _epoch(started)

    # 2. Assets: relative paths resolve against the manifest's folder in the bucket and are fetched, so
    #    their keys are content hashes exactly as in a local run; s3:// assets are keyed by their ETag.
    root = Path(workdir) / "input"  # a mirror of the input bucket's part that the manifest uses
    local_dir = root / posixpath.dirname(key)
    local_dir.mkdir(parents=True, exist_ok=True)
    problems: list[Problem] = []
    etags: dict[str, str] = {}
    relative: dict[str, str] = {}
    try:
        src = load_text(text, uri)
    except ManifestInvalid as exc:
        src, problems = None, list(exc.problems)
    if src is not None:
        assets = src.data.get("assets") if isinstance(src.data, dict) else None
        for aid, loc in (assets.items() if isinstance(assets, dict) else ()):
            if not isinstance(loc, str) or not loc:
                continue
            if loc.startswith("s3://"):
                problem = _head_asset(s3, loc, etags, aid)
            elif "://" in loc:
                continue  # validation reports it
            else:
                problem = _fetch_relative_asset(s3, bucket, key, loc, root, relative, aid)
            if problem:
                problems.append(src.problem(("assets", aid), problem))

    # 3. Validate (every problem at once, with lines and columns of the manifest in S3).
    campaign = None
    try:
        campaign = load_manifest_text(text, file=uri, base_dir=local_dir, check_files=False)
    except ManifestInvalid as exc:
        problems = exc.problems + problems
    if campaign is not None and src is not None and campaign.enhancer_model:
        problem = _enhancer_model_problem(campaign.enhancer_model, settings)
        if problem:
            problems.append(src.problem(("defaults", "enhancer_model"), problem))
    ref = RunRef(campaign.name if campaign else campaign_name_of(text, key), run_id)
    report_uri = store.location(f"{ref.prefix}/report.json")
    if problems or campaign is None:
        problems = sorted(_dedupe(problems), key=lambda p: (p.line, p.col, p.message))
        write_invalid(campaign=ref.campaign, manifest=uri, problems=problems, store=store, run_id=run_id,
                      started=started_s)
        return {"valid": False, "ref": ref.to_dict(), "report": report_uri, "problems": len(problems),
                "enhance": [], "image_waves": [], "clip_batches": [], "clip_waves": [], "videos": [],
                "stages": empty_stages()}

    # 4. Plan with the deployment's backends; the manifest's enhancer model wins over the stack's default.
    enhancer_model = campaign.enhancer_model or settings.enhancer_model
    backends = CloudBackends(settings.backend_names(), enhancer_model=enhancer_model, settings=settings)
    plan = build_plan(campaign, backends.key_source(), backends=backends.names(), s3_etags=etags)
    # Other tasks run elsewhere: they read relative assets from the input bucket (same bytes, same digest).
    plan = replace(plan, assets={
        aid: replace(a, path=None, uri=f"s3://{bucket}/{relative[aid]}") if aid in relative else a
        for aid, a in plan.assets.items()
    })
    from pipeline.sagemaker import DEFAULT_MAX_BATCH

    first, later = clip_waves(plan, max_batch=settings.clips_per_batch or DEFAULT_MAX_BATCH)
    run = CloudRun(ref=ref, plan=plan, source={"bucket": bucket, "key": key, "version_id": version},
                   started=started_s, enhancer_model=enhancer_model, image_waves=image_waves(plan),
                   clip_batches=first, clip_waves=later)
    threshold = DEFAULT_DISTRIBUTED_THRESHOLD if distributed_over is None else int(distributed_over)
    distributed = choose_distributed(run, threshold=threshold, report_uri=report_uri)
    summary = run.summary(report_uri=report_uri, distributed=distributed)
    size = len(json.dumps(summary))
    if size > MAX_SUMMARY_BYTES:  # every stage with items is distributed by now: only waves are left
        waves = len(run.image_waves) + len(run.clip_waves)
        raise JobFailed(f"the plan's {waves} dependency waves take {size} bytes of state, more than the "
                        f"{MAX_SUMMARY_BYTES} kept for them in the execution's 256 KB; split the campaign into "
                        "several manifests or shorten its chains of images made from images / shots continuing shots")
    for stage_file, body in run.stage_files(distributed).items():
        store.write_bytes(stage_file, body)
    store.write_bytes(run_document_key(ref), run.to_json().encode())
    return summary


def campaign_name_of(text: str, key: str) -> str:
    """The campaign's name for a manifest that may not validate: its `campaign:` if usable, else the file name."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    name = data.get("campaign") if isinstance(data, dict) else None
    if isinstance(name, str) and re.fullmatch(r"[a-z0-9-]{3,48}", name):
        return name
    return slug(posixpath.splitext(posixpath.basename(key))[0], 48)


def _fetch_relative_asset(s3: Any, bucket: str, manifest_key: str, loc: str, root: Path,
                          found: dict[str, str], aid: str) -> str | None:
    """Download a manifest-relative asset to the same relative place under `root` (a mirror of the bucket)."""
    asset_key = posixpath.normpath(posixpath.join(posixpath.dirname(manifest_key), loc))
    if loc.startswith("/") or asset_key == ".." or asset_key.startswith("../"):
        return f"asset path {loc!r} leaves the bucket (relative to s3://{bucket}/{manifest_key})"
    dest = root / asset_key
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, asset_key, str(dest))
    except Exception as exc:  # noqa: BLE001 - reported as a located manifest problem
        return f"asset file {loc!r} not found (looked for s3://{bucket}/{asset_key}: {_client_error_code(exc)})"
    found[aid] = asset_key
    return None


def _enhancer_model_problem(model: str, settings: CloudSettings) -> str | None:
    """The stack grants InvokeModel on its enhancer model and the allowed alternatives only: a manifest that
    names another would fail every enhance job with AccessDenied, so it is refused at planning."""
    if settings.enhancer != "bedrock":
        return None
    from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL

    allowed = [settings.enhancer_model or DEFAULT_ENHANCER_MODEL]
    allowed += [m.strip() for m in (settings.allowed_enhancer_models or "").split(",") if m.strip()]
    if model in allowed:
        return None
    return (f"enhancer model {model!r} is not enabled in this deployment (allowed: {', '.join(allowed)}); "
            "add it to the stack's allowed_enhancer_models context and deploy again")


def _head_asset(s3: Any, uri: str, etags: dict[str, str], aid: str) -> str | None:
    from pipeline.store import s3_etag

    try:
        etags[aid] = s3_etag(s3, uri)
    except Exception as exc:  # noqa: BLE001 - reported as a located manifest problem
        return f"asset {uri} cannot be read by the pipeline ({_client_error_code(exc)})"
    return None


def _client_error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return f"{type(exc).__name__}: {exc}"


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# --- stages 1, 2 and 4: one job -----------------------------------------------------------------------------


def run_job_step(job_id: str, ref: RunRef, *, kind: str, store: Store, s3: Any, settings: CloudSettings,
                 workdir: Path) -> dict[str, Any]:
    """Run one enhance, image or video job with the local runner's task function and record its result.
    A retryable failure (TransientError and its kinds) is raised under its own name, so the state's
    Retry backs off and tries again; any other failure is a result like a success."""
    from pipeline.tasks import TaskContext, run_job

    run = load_run(store, ref)
    job = run.plan.job(job_id)
    if job.kind != kind:
        raise ValueError(f"job {job_id!r} is a {job.kind} job; this task runs {kind} jobs")
    ctx = TaskContext(plan=run.plan, store=store, backends=cast(Any, run.backends(settings)), workdir=workdir,
                      s3_client=s3)
    result = run_job(job, ctx)
    raise_if_retryable(result.status, result.error_type, result.message)
    save_result(store, ref, result)
    return {"job_id": job.id, "status": result.status}


def raise_if_retryable(status: str, error_type: str | None, message: str | None) -> None:
    cls = getattr(errors, error_type or "", None)
    if status == "failed" and isinstance(cls, type) and issubclass(cls, errors.TransientError):
        raise cls(message or error_type)


def save_result(store: Store, ref: RunRef, result: Any) -> None:
    store.write_bytes(result_key(ref, result.job_id), json.dumps(result.to_dict(), default=str).encode())


# --- stages 2 and 3: clip batches -----------------------------------------------------------------------------


def prepare_clip_batch(batch_id: str, job_ids: Sequence[str], ref: RunRef, *, store: Store, s3: Any,
                       settings: CloudSettings, workdir: Path, attempt: int = 1) -> dict[str, Any]:
    """Write the batch's jobs file and start images to S3 and render its CreateProcessingJob request
    (pipeline/sagemaker.py builds it; the state passes it on whole). Clips already cached, waiting on a
    failed job or whose request cannot be built are left out: the collect step records them.

    Safe to run again for the same batch: the state machine does so after a job SageMaker could not start
    (no capacity), with `attempt` counting up. Each attempt gets a job name (and inputs/outputs folder) of
    its own, since SageMaker never reuses a name; clips cached meanwhile are left out."""
    from pipeline.sagemaker import (
        DEFAULT_INSTANCE_TYPE,
        DEFAULT_MAX_RUNTIME_S,
        DEFAULT_VOLUME_GB,
        pipeline_folder,
        processing_job_name,
        processing_job_request,
        upload_batch_inputs,
    )
    from pipeline.tasks import TaskContext, clip_request, is_done

    run = load_run(store, ref)
    plan = run.plan
    ctx = TaskContext(plan=plan, store=store, backends=cast(Any, run.backends(settings)), workdir=workdir,
                      s3_client=s3)
    todo: list[ClipRequest] = []
    for job in (plan.job(j) for j in job_ids):
        if is_done(store, job) or not all(is_done(store, plan.job(d)) for d in job.deps):
            continue
        try:
            clip, _ = clip_request(job, ctx)
        except Exception:  # noqa: BLE001,S112 - collect builds the same request and records this failure
            continue
        todo.append(clip)
    if not todo:
        return {"render": False, "request": None, "clips": 0}

    bucket = settings.need("output_bucket")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    if attempt > 1:  # a retry within the same second still gets a new name
        stamp += f"-a{attempt}"
    job_name = processing_job_name(f"{ref.campaign}-{batch_id}", [r.key for r in todo], suffix=stamp)
    base = batch_s3_uri(bucket, ref, batch_id, job_name)
    jobs_uri = upload_batch_inputs(todo, f"{base}/input/", s3=s3)
    request: dict[str, Any] = processing_job_request(
        job_name=job_name, image_uri=settings.need("sagemaker_image_uri"), role_arn=settings.need("sagemaker_role_arn"),
        instance_type=settings.instance_type or DEFAULT_INSTANCE_TYPE, volume_gb=settings.volume_gb or DEFAULT_VOLUME_GB,
        jobs_s3_uri=jobs_uri, models_s3_uri=settings.need("models_s3_uri"), output_s3_uri=f"{base}/output/",
        max_runtime_s=settings.max_runtime_s or DEFAULT_MAX_RUNTIME_S,
        environment={"CAMPAIGN": ref.campaign, "CAMPAIGN_RUN_ID": ref.run_id, "CAMPAIGN_BATCH": batch_id},
        model_folders=[pipeline_folder(todo[0])],
    )
    if set(request) != set(RENDER_REQUEST_FIELDS):  # the render state passes exactly these fields on
        raise ValueError(f"the CreateProcessingJob request has fields {sorted(request)}, the state machine passes "
                         f"{sorted(RENDER_REQUEST_FIELDS)}: change RENDER_REQUEST_FIELDS and the ASL's render states together")
    return {"render": True, "request": request, "clips": len(todo)}


@dataclass
class BatchOutputs:
    """A VideoBackend whose `render` fetches what a finished processing job wrote (<key>.mp4 and <key>.json)
    instead of rendering; with `failure` set (the render state's error) every clip fails with it.
    `name`/`identity` are the plan's video backend's, so provenance reads as in a local run."""

    name: str
    identity_of: Any
    s3: Any
    output_s3_uri: str | None
    job_name: str | None
    failure: tuple[str, str] | None = None
    fetched: list[str] = field(default_factory=list)

    def identity(self, model: str) -> str:
        return str(self.identity_of(model))

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        if self.output_s3_uri is None:
            if self.failure is not None:
                error_type, message = self.failure
                raise JobFailed(f"the clip batch failed before its outputs were written: {error_type}: {message}")
            raise JobFailed("the clip was not part of the rendered batch (it became ready after the batch was prepared)")
        outcomes = [self._fetch(r, Path(out_dir)) for r in requests]
        if self.failure is None:
            return outcomes
        # the job failed or was stopped: keep every clip it finished, and give the job's error to the rest
        error_type, message = self.failure
        return [o if o.path is not None or o.extra.get("has_provenance") else
                replace(o, error=f"the clip batch failed: {error_type}: {message}", error_type="JobFailed")
                for o in outcomes]

    def _fetch(self, request: ClipRequest, out_dir: Path) -> ClipOutcome:
        from pipeline.sagemaker import fetch_clip_output

        extra: dict[str, Any] = {"processing_job": self.job_name, "has_provenance": False}
        assert self.output_s3_uri is not None
        fetched = fetch_clip_output(request, self.output_s3_uri, Path(out_dir), s3=self.s3)
        provenance = fetched.provenance or {}
        extra["has_provenance"] = fetched.provenance is not None  # the container's own word on this clip
        for k in ("model", "settings", "notes", "image"):
            if provenance.get(k):
                extra[k] = provenance[k]
        if fetched.path is None:
            error = fetched.error if fetched.provenance else f"{self.job_name} wrote no result for this clip ({fetched.error})"
            return ClipOutcome(request.key, None, self.name, error=error, error_type=fetched.error_type, extra=extra)
        self.fetched.append(request.key)
        timings = {k: float(v) for k, v in (provenance.get("timings") or {}).items()}
        return ClipOutcome(request.key, fetched.path, self.name, placeholder=bool(provenance.get("placeholder", False)),
                           timings=timings, extra=extra)


def collect_clip_batch(state: Mapping[str, Any], *, store: Store, s3: Any, settings: CloudSettings,
                       workdir: Path) -> dict[str, Any]:
    """Run `run_clip_batch` (the local runner's clip task) over the batch with the processing job's outputs
    as its backend: cached and skipped clips are recorded as such, rendered ones are copied into
    cache/clip/<key>.mp4 with provenance, and a failed render fails each clip it was to make."""
    from pipeline.tasks import TaskContext, run_clip_batch

    ref = RunRef.from_dict(_need(state, "run"))
    batch_id, job_ids = _need_str(state, "batch"), list(_need(state, "jobs"))
    run = load_run(store, ref)
    backends = run.backends(settings)
    request = (state.get("prepared") or {}).get("request") or None
    error = state.get("error")
    outputs = BatchOutputs(
        name=run.plan.backends["video"], identity_of=lambda model: backends.video.identity(model), s3=s3,
        output_s3_uri=request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] if request else None,
        job_name=request["ProcessingJobName"] if request else None,
        failure=describe_failure(error) if isinstance(error, Mapping) else None,
    )
    collected = _WithVideo(backends, outputs)
    ctx = TaskContext(plan=run.plan, store=store, backends=cast(Any, collected), workdir=workdir, s3_client=s3)
    results = run_clip_batch([run.plan.job(j) for j in job_ids], ctx)
    for result in results:
        save_result(store, ref, result)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return {"batch": batch_id, "status": counts}


class _WithVideo:
    """The run's backends with the video capability swapped for a batch's outputs."""

    def __init__(self, backends: CloudBackends, video: BatchOutputs) -> None:
        self._backends = backends
        self.video = video

    @property
    def enhancer(self) -> Any:
        return self._backends.enhancer

    @property
    def images(self) -> Any:
        return self._backends.images

    def names(self) -> dict[str, str]:
        return self._backends.names()


def describe_failure(error: Mapping[str, Any]) -> tuple[str, str]:
    """(error name, readable message) from a Catch's {"Error", "Cause"}: a Lambda error's errorMessage,
    a processing job's FailureReason, else the cause text."""
    name = str(error.get("Error") or "JobFailed")
    cause = error.get("Cause")
    message = str(cause or "")
    try:
        doc = json.loads(message) if message else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        if "errorMessage" in doc:
            name = str(doc.get("errorType") or name)
            message = str(doc["errorMessage"])
        elif "ProcessingJobStatus" in doc:
            message = (f"processing job {doc.get('ProcessingJobName')} {doc.get('ProcessingJobStatus')}: "
                       f"{doc.get('FailureReason') or 'no reason given'}")
    return name, message[:ERROR_MESSAGE_MAX]


# --- stage 5: report --------------------------------------------------------------------------------------------


def finish_run(state: Mapping[str, Any], *, store: Store, settings: CloudSettings) -> dict[str, Any]:
    """Collect every job's result from S3 (or the error that stood in for it) and write the report with the
    local runner's writer. Runs on every path: a whole stage that failed leaves its jobs `skipped`."""
    from pipeline.report import write_failed, write_run

    run_id = _need_str(state, "run_id")
    started = _epoch(state.get("started") or time.time())
    stage_error = describe_failure(state["error"]) if isinstance(state.get("error"), Mapping) else None
    summary = state.get("run") if isinstance(state.get("run"), Mapping) else None
    if summary is None or not summary.get("valid"):
        # The plan step itself failed (an invalid manifest never gets here: it ends the execution).
        source = state.get("source") or {}
        key = str(source.get("key") or "manifest")
        uri = f"s3://{source.get('bucket')}/{key}"
        name, message = stage_error or ("JobFailed", "the run was not planned")
        report = write_failed(campaign=slug(posixpath.splitext(posixpath.basename(key))[0], 48), manifest=uri,
                              error=name, message=f"the run could not be planned: {message}", store=store,
                              run_id=run_id, started=started)
    else:
        ref = RunRef.from_dict(summary["ref"])
        run = load_run(store, ref)
        results = collect_results(store, ref, run.plan, stage_error=stage_error)
        report = write_run(run.plan, results, store, run_id=ref.run_id, started=run.started, finished=time.time(),
                           cost=_cost(run.plan, settings))
    return {"status": report["status"], "report": store.location(f"{report['prefix']}/report.json"),
            "jobs": report["jobs"], "errors": len(report["errors"])}


def collect_results(store: Store, ref: RunRef, plan: Plan, *, stage_error: tuple[str, str] | None) -> list[Any]:
    """One JobResult per job of the plan, in plan order, from what the tasks (or the ASL's failure
    records) left under results/."""
    from pipeline.tasks import JobResult

    prefix = f"{ref.prefix}/results/"
    by_job: dict[str, Any] = {}
    batch_failures: dict[str, tuple[str, str]] = {}
    keys = [k for k in _list_keys(store, prefix) if k.endswith(".json")]
    with ThreadPoolExecutor(max_workers=PARALLEL_S3_READS) as pool:  # thousands of small reads for a big run
        docs = list(pool.map(lambda k: json.loads(store.read_bytes(k)), keys))
    for key, doc in zip(keys, docs, strict=True):
        failure = doc.get("error") if isinstance(doc.get("error"), Mapping) else None
        if key.startswith(prefix + "batches/"):
            for job_id in doc.get("jobs", []):
                batch_failures[job_id] = describe_failure(failure or {})
        elif failure is not None:  # written by a `Record ... failure` state: the task itself failed
            job = _job_or_none(plan, str(doc.get("job_id")))
            if job is not None:
                name, message = describe_failure(failure)
                by_job[job.id] = JobResult(job.id, job.kind, job.key, "failed", None, 0.0, name, message)
        else:
            result = JobResult.from_dict(doc)
            by_job[result.job_id] = result
    results = []
    for job in plan.jobs:
        if job.id in by_job:
            results.append(by_job[job.id])
        elif job.id in batch_failures:
            name, message = batch_failures[job.id]
            results.append(JobResult(job.id, job.kind, job.key, "failed", None, 0.0, name, message))
        else:
            why = f"{stage_error[0]}: {stage_error[1]}" if stage_error else "its step recorded no result"
            results.append(JobResult(job.id, job.kind, job.key, "skipped", None, 0.0, "NotRun",
                                     f"the execution ended before this job ran ({why})"))
    return results


def _job_or_none(plan: Plan, job_id: str) -> Job | None:
    try:
        return plan.job(job_id)
    except KeyError:
        return None


def _list_keys(store: Store, prefix: str) -> list[str]:
    """Keys under prefix, for an S3Store (paginated) or a LocalStore."""
    root = getattr(store, "root", None)
    if root is not None:
        base = Path(root)
        return sorted(str(p.relative_to(base)).replace("\\", "/") for p in (base / prefix).rglob("*") if p.is_file())
    client, bucket, store_prefix = store.client, store.bucket, getattr(store, "prefix", "")  # type: ignore[attr-defined]
    full = f"{store_prefix}/{prefix}" if store_prefix else prefix
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=full):
        keys += [o["Key"][len(store_prefix) + 1:] if store_prefix else o["Key"] for o in page.get("Contents", [])]
    return keys


def _cost(plan: Plan, settings: CloudSettings) -> dict[str, Any]:
    from pipeline.cost import estimate_cost

    try:
        return estimate_cost(plan, instance_type=settings.instance_type)
    except ValueError as exc:  # an instance type without a price: the report says so instead of a number
        return {"note": f"no cost estimate: {exc}"}


# --- the S3 trigger: start one execution per manifest version; keep its schedule in step ---------------------


def handle_manifest_event(event: Mapping[str, Any], *, s3: Any, sfn: Any, scheduler: Any,
                          settings: CloudSettings) -> dict[str, Any]:
    """EventBridge `Object Created` / `Object Deleted` for manifests/*.yaml|yml in the input bucket."""
    from pipeline.manifest import load_manifest_text

    detail_type = str(event.get("detail-type"))
    detail = _need(event, "detail")
    bucket, obj = str(detail["bucket"]["name"]), detail["object"]
    key = str(obj["key"])
    if not is_manifest_key(key):
        return {"action": "ignored", "key": key, "why": f"not a manifest ({MANIFEST_PREFIX}*{'|'.join(MANIFEST_SUFFIXES)})"}
    if detail_type == "Object Deleted":
        schedule = _delete_schedule(scheduler, schedule_name(bucket=bucket, key=key), settings)
        return {"action": "deleted", "key": key, "schedule": schedule}
    if detail_type != "Object Created":
        return {"action": "ignored", "key": key, "why": f"event type {detail_type!r}"}

    version = object_version(obj)
    key, text = _read_event_object(s3, bucket, key, obj.get("version-id"))
    schedule = schedule_name(bucket=bucket, key=key)
    try:
        campaign = load_manifest_text(text, file=f"s3://{bucket}/{key}", base_dir=Path("."), check_files=False)
        name, cron = campaign.name, campaign.schedule
        valid = True
    except ManifestInvalid:  # the run still starts: it writes the validation problems as its report
        name, cron, valid = campaign_name_of(text, key), None, False

    execution = execution_name(name, bucket=bucket, key=key, version=version)
    run_input = {"bucket": bucket, "key": key, "version_id": obj.get("version-id"), "campaign": name, "trigger": "s3"}
    started = _start_once(sfn, settings.need("state_machine_arn"), execution, run_input)
    if not valid:
        schedule_action = "unchanged (manifest invalid)"
    elif cron:
        schedule_action = _upsert_schedule(scheduler, schedule, settings, expression=cron, bucket=bucket, key=key,
                                           campaign=name)
    else:
        schedule_action = _delete_schedule(scheduler, schedule, settings)
    return {"action": "started" if started else "duplicate", "key": key, "execution": execution,
            "schedule": schedule_action}


def _read_event_object(s3: Any, bucket: str, key: str, version_id: str | None) -> tuple[str, str]:
    """The object an event names, and its key as stored. S3's classic notifications URL-encode keys
    ("red flower.yaml" -> "red+flower.yaml"); should an EventBridge event do so too, the decoded key is tried."""
    from urllib.parse import unquote_plus

    extra = {"VersionId": version_id} if version_id else {}
    try:
        return key, s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read().decode("utf-8")
    except Exception as exc:
        decoded = unquote_plus(key)
        if decoded == key or _client_error_code(exc) not in ("NoSuchKey", "NoSuchVersion", "404"):
            raise
        return decoded, s3.get_object(Bucket=bucket, Key=decoded, **extra)["Body"].read().decode("utf-8")


def _start_once(sfn: Any, state_machine_arn: str, name: str, run_input: Mapping[str, Any]) -> bool:
    """Start the execution unless one of that name exists (a re-delivered event). Step Functions itself
    refuses a second execution of one name (ExecutionAlreadyExists, or the open one for identical input);
    looking first only lets the answer say which case this was."""
    try:
        sfn.describe_execution(executionArn=execution_arn(state_machine_arn, name))
        return False
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
    try:
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(run_input, sort_keys=True))
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


def _upsert_schedule(scheduler: Any, name: str, settings: CloudSettings, *, expression: str, bucket: str,
                     key: str, campaign: str) -> str:
    args = {
        "Name": name, "GroupName": settings.need("schedule_group"), "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": "UTC", "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "ENABLED",
        "Description": f"campaign {campaign}: s3://{bucket}/{key}"[:512],
        "Target": {
            "Arn": settings.need("state_machine_arn"), "RoleArn": settings.need("scheduler_role_arn"),
            # no version: a scheduled run reads the manifest's latest version
            "Input": json.dumps({"bucket": bucket, "key": key, "campaign": campaign, "trigger": "schedule"},
                                sort_keys=True),
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
        },
    }
    try:
        scheduler.create_schedule(**args)
        return f"created {name} ({expression})"
    except scheduler.exceptions.ConflictException:
        scheduler.update_schedule(**args)
        return f"updated {name} ({expression})"


def _delete_schedule(scheduler: Any, name: str, settings: CloudSettings) -> str:
    try:
        scheduler.delete_schedule(Name=name, GroupName=settings.need("schedule_group"))
    except scheduler.exceptions.ResourceNotFoundException:
        return "none"
    return f"deleted {name}"


# --- the CLI: campaign submit / campaign status ---------------------------------------------------------------------


def submit(manifest_path: str | Path, *, bucket: str, state_machine_arn: str | None = None,
           s3: Any = None, allow_outside: Sequence[Path] = ()) -> dict[str, str]:
    """Validate the manifest here, upload its local assets (content-addressed: unchanged files are not sent
    again) and the manifest with those assets rewritten to their s3:// addresses; the upload's event
    starts the run. Returns the manifest's address, the execution's name and, given the state machine,
    its console URL."""
    import yaml

    from pipeline.inputs import submit_name
    from pipeline.keys import file_digest
    from pipeline.manifest import load_manifest

    path = Path(manifest_path)
    # ManifestInvalid lists every problem, as `campaign validate` does, assets outside the folder included
    campaign = load_manifest(path, allow_outside=allow_outside)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    addresses: dict[str, str] = {}
    uploaded = 0
    for asset in campaign.assets.values():
        if asset.path is None:
            continue  # s3:// assets stay as written
        key = f"{SUBMITTED_ASSETS_PREFIX}{campaign.name}/{file_digest(asset.path)}/{submit_name(asset.location)}"
        if not _object_exists(s3, bucket, key):
            s3.upload_file(str(asset.path), bucket, key)
            uploaded += 1
        addresses[asset.id] = f"s3://{bucket}/{key}"
    data = dict(campaign.raw)
    data["assets"] = {aid: addresses.get(aid, loc) for aid, loc in (campaign.raw.get("assets") or {}).items()}
    text = (f"# uploaded by `campaign submit` from {path.name}; local asset paths rewritten to s3:// addresses\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    manifest_key = f"{MANIFEST_PREFIX}{campaign.name}.yaml"
    put = s3.put_object(Bucket=bucket, Key=manifest_key, Body=text.encode(), ContentType="application/yaml")
    name = execution_name(campaign.name, bucket=bucket, key=manifest_key, version=object_version(put))
    out = {"manifest": f"s3://{bucket}/{manifest_key}", "assets_uploaded": f"{uploaded} of {len(addresses)}",
           "execution_name": name}
    if state_machine_arn:
        arn = execution_arn(state_machine_arn, name)
        out["execution_arn"] = arn
        out["console_url"] = execution_console_url(arn)
    return out


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        if _client_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def status(campaign: str | None = None, *, state_machine_arn: str, limit: int = 20, sfn: Any = None) -> list[dict[str, Any]]:
    """Recent executions, newest first: status (with the report's succeeded/partial/failed), failed and
    skipped items, the report's address and the console link."""
    if sfn is None:
        import boto3

        sfn = boto3.client("stepfunctions", region_name=region_of(state_machine_arn))
    rows: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for ex in page.get("executions", []):
            described = sfn.describe_execution(executionArn=ex["executionArn"])
            run_input = _json_or_empty(described.get("input"))
            outcome = _json_or_empty(described.get("output")) or _json_or_empty(described.get("cause"))
            found = re.search(r"/runs/([^/]+)/", str(outcome.get("report") or ""))
            name = str(run_input.get("campaign") or (found.group(1) if found else ""))
            if campaign and name != campaign:
                continue
            jobs = outcome.get("jobs") if isinstance(outcome.get("jobs"), dict) else None
            report_status = outcome.get("status") if isinstance(outcome.get("status"), str) else None
            started = ex.get("startDate")
            rows.append({
                "name": ex["name"], "campaign": name, "trigger": run_input.get("trigger"),
                "status": ex["status"] + (f" ({report_status})" if report_status else ""),
                "started": started.strftime("%Y-%m-%d %H:%M:%S") if isinstance(started, datetime) else str(started),
                "failed_items": (jobs.get("failed", 0) + jobs.get("skipped", 0)) if jobs else
                ("-" if ex["status"] == "RUNNING" else described.get("error") or "-"),
                "report": outcome.get("report") or "",
                "console_url": execution_console_url(ex["executionArn"]),
            })
            if len(rows) >= limit:
                return rows
    return rows


def _json_or_empty(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# --- small helpers ---------------------------------------------------------------------------------------------


def _need(d: Mapping[str, Any], name: str) -> Any:
    if name not in d or d[name] is None:
        raise ValueError(f"event has no {name!r} (has {sorted(d)})")
    return d[name]


def _need_str(d: Mapping[str, Any], name: str) -> str:
    value = _need(d, name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"event field {name!r} must be a non-empty string, got {value!r}")
    return value


def _epoch(value: float | str) -> float:
    """Seconds since the epoch from a number or an ISO 8601 time ($$.Execution.StartTime)."""
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
