"""The SageMaker side of clip batches: how clips group into processing jobs and the one CreateProcessingJob request.

The state machine (`createProcessingJob.sync`) and the local `sagemaker` video backend both build their
request here, so the two cannot drift. The container they run is `container/` (entrypoint generate.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.plan import schedule
from pipeline.storage.store import parse_s3_uri

# Where the container reads and writes; container/generate.py's defaults name the same paths.
CONTAINER_ENTRYPOINT = ("python", "/opt/program/generate.py")
JOBS_LOCAL_PATH = "/opt/ml/processing/input/jobs"
MODELS_LOCAL_PATH = "/opt/ml/processing/input/models"
COMPILE_CACHE_LOCAL_PATH = "/opt/ml/processing/input/compile-cache"  # container/README.md "Compile cache between jobs"
OUTPUT_LOCAL_PATH = "/opt/ml/processing/output"

# The default instance type is a price decision: pipeline/plan/pricing.py says why.
# One model folder is ~21 GB (5B T2V: transformer + T5-XXL + VAE); room for it, its I2V twin and the clips.
DEFAULT_VOLUME_GB = 100
# A batch of 8 5B clips at the sample's ~3 min each plus load stays far below this; a hung job still ends.
DEFAULT_MAX_RUNTIME_S = 4 * 3600
DEFAULT_MAX_BATCH = 8
JOB_NAME_MAX = 63  # SageMaker: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
# The container's speed options a deployment (or `--sagemaker-option container_args=...`) may pass on
# (container/generate.py's flags; tests/test_container_args.py keeps this list in step with its parser).
CONTAINER_SPEED_FLAGS = ("--compile", "--recompile-limit", "--fp8", "--attention", "--cache", "--cache-threshold",
                         "--workers", "--dump-frames", "--memory-mode")


def container_args(text: str | Sequence[str]) -> tuple[str, ...]:
    """The container's speed options from a string (`--compile regional --cache pab`) or a list, each flag one
    of CONTAINER_SPEED_FLAGS: the jobs, weights and output paths are the request's own and cannot be passed."""
    tokens = tuple(shlex.split(text) if isinstance(text, str) else text)
    for token in tokens:
        flag = token.split("=", 1)[0]
        if flag.startswith("-") and flag not in CONTAINER_SPEED_FLAGS:
            raise ValueError(f"container argument {token!r} is not one of the container's speed options "
                             f"({', '.join(CONTAINER_SPEED_FLAGS)})")
    if tokens and not tokens[0].startswith("--"):
        raise ValueError(f"container arguments must start with a flag, got {tokens[0]!r}")
    return tokens


def pipeline_folder(request: ClipRequest) -> str:
    """The folder under the weights prefix that renders `request`: <model>, or <model>-i2v with a start image."""
    return schedule.pipeline_folder(request.model, i2v=request.image is not None)


def batch_clips(requests: Iterable[ClipRequest], max_batch: int) -> list[list[ClipRequest]]:
    """Clips in batches of one pipeline folder (one model load per processing job), at most `max_batch` each."""
    return schedule.batches(requests, max_batch, group=pipeline_folder)


def processing_job_name(prefix: str, keys: Iterable[str], *, suffix: str = "") -> str:
    """`<prefix>-<hash of the clip keys>[-<suffix>]`, at most 63 characters of [a-zA-Z0-9-].

    The hash makes the name a function of the batch; `suffix` (e.g. a timestamp) lets a re-submission
    of the same batch get a fresh name, since SageMaker never reuses one."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:12]
    tail = "-" + digest + (f"-{_name_part(suffix)}" if _name_part(suffix) else "")
    head = _name_part(prefix)[: JOB_NAME_MAX - len(tail)].rstrip("-") or "clips"
    name = head + tail
    if len(name) > JOB_NAME_MAX:
        raise ValueError(f"suffix {suffix!r} leaves no room in a {JOB_NAME_MAX}-character job name")
    return name


def _name_part(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-zA-Z0-9]+", "-", text)).strip("-")


def processing_job_request(
    *,
    job_name: str,
    image_uri: str,
    role_arn: str,
    instance_type: str,
    volume_gb: int,
    jobs_s3_uri: str,
    models_s3_uri: str,
    output_s3_uri: str,
    max_runtime_s: int,
    environment: Mapping[str, str],
    model_folders: Sequence[str] = (),
    speed_args: Sequence[str] = (),
    compile_cache_s3_uri: str | None = None,
) -> dict[str, Any]:
    """The CreateProcessingJob request for one clip batch (boto3 `create_processing_job(**request)`).

    `jobs_s3_uri` holds the jobs .jsonl and its start images; `models_s3_uri` is the weights prefix that
    `pull_model` filled. With `model_folders`, only those folders of it are mounted (one input each, at
    <models>/<folder>), so a job downloads the ~21 GB it needs, not every model; without, the whole prefix.
    """
    _check_name(job_name)
    for name, uri in (("jobs_s3_uri", jobs_s3_uri), ("models_s3_uri", models_s3_uri), ("output_s3_uri", output_s3_uri)):
        if not uri.startswith("s3://") or len(uri) <= len("s3://"):
            raise ValueError(f"{name} must be an s3:// URI, got {uri!r}")
    for name, value in (("volume_gb", volume_gb), ("max_runtime_s", max_runtime_s)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    bad_env = {k: v for k, v in environment.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad_env:
        raise ValueError(f"environment keys and values must be strings, got {bad_env!r}")

    inputs = [_s3_input("jobs", jobs_s3_uri, JOBS_LOCAL_PATH)]
    if model_folders:
        root = models_s3_uri.rstrip("/")
        for folder in model_folders:
            if not folder or "/" in folder or folder in (".", ".."):
                raise ValueError(f"model folder {folder!r} must be a single folder name")
            inputs.append(_s3_input(f"models-{_name_part(folder)}", f"{root}/{folder}/", f"{MODELS_LOCAL_PATH}/{folder}"))
    else:
        inputs.append(_s3_input("models", models_s3_uri, MODELS_LOCAL_PATH))
    cache_args: list[str] = []
    if compile_cache_s3_uri:  # a saved torch.compile cache: the job does not pay a cold compile
        if not compile_cache_s3_uri.startswith(models_s3_uri.rstrip("/") + "/"):
            raise ValueError(f"compile_cache_s3_uri {compile_cache_s3_uri!r} must lie under the weights prefix "
                             f"{models_s3_uri!r} (the processing role reads only that)")
        inputs.append(_s3_input("compile-cache", compile_cache_s3_uri, COMPILE_CACHE_LOCAL_PATH))
        cache_args = ["--compile-cache", COMPILE_CACHE_LOCAL_PATH]

    # S3UploadMode Continuous: "upload the results of the processing job continuously" (API_ProcessingS3Output),
    # so every clip the container finished is in S3 even when the job later fails, is stopped or runs out of
    # time; whether EndOfJob uploads anything for a failed or stopped job is not documented. Which file events
    # trigger an upload is not documented either (unverified): the container writes each clip under a temporary
    # name and renames it, and writes <key>.json last, so a clip counts only when its provenance says succeeded
    # and its mp4 can be fetched; anything less is rendered again.
    return {
        "ProcessingJobName": job_name,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [{
                "OutputName": "clips",
                "S3Output": {"S3Uri": output_s3_uri, "LocalPath": OUTPUT_LOCAL_PATH, "S3UploadMode": "Continuous"},
            }],
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type, "VolumeSizeInGB": volume_gb},
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "AppSpecification": {
            "ImageUri": image_uri,
            "ContainerEntrypoint": list(CONTAINER_ENTRYPOINT),
            "ContainerArguments": ["--jobs", JOBS_LOCAL_PATH, "--models", MODELS_LOCAL_PATH, "--out", OUTPUT_LOCAL_PATH,
                                   *cache_args, *container_args(speed_args)],
        },
        "Environment": dict(environment),
        # The weights arrive as an input and the clips leave as an output: the container needs no network.
        "NetworkConfig": {"EnableNetworkIsolation": True},
        "RoleArn": role_arn,
    }


def _s3_input(name: str, uri: str, local_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local_path,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _check_name(job_name: str) -> None:
    if len(job_name) > JOB_NAME_MAX or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", job_name):
        raise ValueError(f"job_name {job_name!r} must be 1..{JOB_NAME_MAX} characters of [a-zA-Z0-9-], "
                         "starting and ending with a letter or digit")


# --- a batch's files in S3: what the container reads and what it leaves ------------------------------------


def upload_batch_inputs(requests: Sequence[ClipRequest], jobs_s3_uri: str, *, s3: Any) -> str:
    """jobs.jsonl (one ClipRequest.to_job() per line) and the start images, which container/generate.py
    reads relative to the jobs file (images/<key>.<ext>). Returns `jobs_s3_uri`."""
    bucket, prefix = parse_s3_uri(jobs_s3_uri)
    lines = []
    for request in requests:
        line = request.to_job()
        if request.image is not None:
            image = Path(request.image)
            relative = f"images/{request.key}{image.suffix.lower() or '.png'}"
            s3.upload_file(str(image), bucket, prefix + relative)
            line["image"] = relative
        lines.append(json.dumps(line, sort_keys=True))
    s3.put_object(Bucket=bucket, Key=prefix + "jobs.jsonl", Body=("\n".join(lines) + "\n").encode())
    return jobs_s3_uri


@dataclass(frozen=True)
class FetchedClip:
    """One clip as a finished processing job left it: the downloaded mp4, or why there is none."""

    path: Path | None
    provenance: dict[str, Any] | None  # <key>.json as generate.py wrote it; None when there is none
    error: str | None = None
    error_type: str | None = None


def fetch_clip_output(request: ClipRequest, output_s3_uri: str, out_dir: Path, *, s3: Any) -> FetchedClip:
    """Read <key>.json from a job's output prefix and, when it says succeeded, download <key>.mp4 into
    out_dir (under a temporary name, then renamed)."""
    from botocore.exceptions import ClientError

    bucket, prefix = parse_s3_uri(output_s3_uri)
    try:
        provenance: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}{request.key}.json")["Body"].read())
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        return FetchedClip(None, None, f"no result for this clip in {output_s3_uri} ({code})", "JobFailed")
    if provenance.get("status") != "succeeded":
        return FetchedClip(None, provenance, str(provenance.get("error") or "failed"),
                           str(provenance.get("error_type") or "JobFailed"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target, partial = out_dir / f"{request.key}.mp4", out_dir / f".{request.key}.partial.mp4"
    try:
        s3.download_file(bucket, f"{prefix}{request.key}.mp4", str(partial))
    except Exception as exc:  # the provenance says succeeded but the clip is not there
        partial.unlink(missing_ok=True)
        return FetchedClip(None, provenance, f"{output_s3_uri}{request.key}.mp4 could not be fetched: {exc}", "JobFailed")
    os.replace(partial, target)
    return FetchedClip(target, provenance)


# What a clip's record keeps of the container's provenance (container/generate.py writes <key>.json).
PROVENANCE_KEPT = ("model", "settings", "notes", "image", "output", "prompt_tokens", "peak_memory")


def clip_outcome(request: ClipRequest, fetched: FetchedClip, *, backend: str, job_name: str,
                 job_failure: str | None = None) -> ClipOutcome:
    """One clip's outcome from what its processing job left; the local `sagemaker` backend and the cloud's
    collect step both record clips through here, so their provenance is the same. A clip the container
    wrote provenance for carries its settings, notes and timings (and, when it failed, its own error); one
    it wrote nothing for carries the job's failure (`job_failure`: how the job ended) or says it is missing."""
    prov = fetched.provenance or {}
    extra: dict[str, Any] = {"processing_job": job_name,
                             **{k: prov[k] for k in PROVENANCE_KEPT if prov.get(k)}}
    if fetched.path is None:
        if fetched.provenance is not None:
            error = str(fetched.error)
        elif job_failure:
            error = f"the clip batch failed: {job_failure}"
        else:
            error = f"{job_name} wrote no result for this clip ({fetched.error})"
        return ClipOutcome(request.key, None, backend, error=error, error_type=fetched.error_type or "JobFailed",
                           extra=extra)
    timings = {k: float(v) for k, v in (prov.get("timings") or {}).items()}
    return ClipOutcome(request.key, fetched.path, backend, placeholder=bool(prov.get("placeholder", False)),
                       timings=timings, extra=extra)
