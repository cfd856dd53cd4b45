"""The task functions: one Lambda per ASL Task (plus the S3 trigger's starter), all running pipeline/ + tasks/.

Light tasks are zip functions with a small layer built offline (infra/build_layer.py). The tasks that decode
or encode video (prepare and collect clip batches, assemble) need numpy, OpenCV and the ffmpeg binary, over a
layer's 250 MB, so they run the same code from a container image (infra/lambda_image/Dockerfile; Docker is
needed at `cdk deploy`, not at synth).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Size
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = lambda_.Runtime.PYTHON_3_12  # the layer is built for cp312 (infra/build_layer.py)
# Only pipeline/ and tasks/ go into the zip (and, with the Dockerfile and the pins, into the image context).
CODE_ASSET_EXCLUDE = ["*", "!pipeline/", "!pipeline/**", "!tasks/", "!tasks/**", "**/__pycache__", "**/*.pyc"]
IMAGE_ASSET_EXCLUDE = [*CODE_ASSET_EXCLUDE, "!pyproject.toml", "!infra/", "infra/*", "!infra/lambda_image/",
                       "!infra/lambda_image/**"]


@dataclass(frozen=True)
class TaskSpec:
    key: str  # also the handler module: tasks/<key>.py
    description: str
    memory_mb: int
    timeout_s: int
    media: bool = False  # runs from the container image
    ephemeral_mb: int = 512


TASKS = (
    # plan hashes every relative asset: room for a large asset folder and a slow read
    TaskSpec("plan", "Plan campaign: manifest from S3, validate, plan, write the plan", 1024, 600, ephemeral_mb=4096),
    TaskSpec("enhance", "Enhance prompt: one prompt through Claude on Bedrock", 512, 300),
    TaskSpec("image", "Edit image: one image's Stability edit chain on Bedrock", 2048, 900),
    TaskSpec("prepare_batch", "Prepare clip batch: jobs file, start images, processing job request", 2048, 300,
             media=True, ephemeral_mb=2048),
    TaskSpec("collect_batch", "Collect clip batch: clips into the cache with provenance", 2048, 600,
             media=True, ephemeral_mb=4096),
    # one Polly utterance; an image function: run_voice measures the speech with pipeline/media (moviepy)
    TaskSpec("voice", "Speak utterance: one voiceover utterance by Amazon Polly (SynthesizeSpeech)", 1024, 120,
             media=True, ephemeral_mb=1024),
    TaskSpec("assemble", "Assemble video: clips, transitions and audio into one video", 3008, 900,
             media=True, ephemeral_mb=4096),
    # a few thousand results read and outputs copied (in parallel) for a large campaign
    TaskSpec("report", "Write report: every job's result into report.json and report.html", 1024, 900),
    # holds the run for review: writes the held report and the task token, notifies
    TaskSpec("approval", "Await approval: the held report, the task token under the run, the notification", 1024, 300),
    TaskSpec("starter", "Start one execution per manifest version; keep its schedule in step", 256, 60),
)


class TaskFunctions(Construct):
    """Exposes `functions[key]` for each TaskSpec and the `layer` of the zip functions."""

    def __init__(self, scope: Construct, construct_id: str, *, layer_dir: Path, environment: Mapping[str, str],
                 log_retention: logs.RetentionDays, all_media: bool) -> None:
        super().__init__(scope, construct_id)
        if not (layer_dir / "python").is_dir():
            raise FileNotFoundError(f"Lambda layer folder {layer_dir}/python is missing: run "
                                    f"`python infra/build_layer.py --out {layer_dir}` first (make synth does)")
        self.layer = lambda_.LayerVersion(
            self, "Layer", code=lambda_.Code.from_asset(str(layer_dir)), compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description="pyyaml, jsonschema, pillow, numpy, c2pa-python (pins from pyproject.toml) for the light task functions")
        code = lambda_.Code.from_asset(str(ROOT), exclude=CODE_ASSET_EXCLUDE, ignore_mode=IgnoreMode.DOCKER)
        self.functions: dict[str, lambda_.Function] = {}
        for spec in TASKS:
            log_group = logs.LogGroup(self, f"{_camel(spec.key)}Logs", retention=log_retention,
                                      removal_policy=RemovalPolicy.DESTROY)
            common: dict[str, Any] = {  # the same for zip and image functions
                "description": spec.description, "memory_size": spec.memory_mb,
                "timeout": Duration.seconds(spec.timeout_s), "environment": dict(environment),
                "tracing": lambda_.Tracing.ACTIVE, "log_group": log_group,
                "architecture": lambda_.Architecture.X86_64,
                "ephemeral_storage_size": Size.mebibytes(spec.ephemeral_mb),
            }
            fn: lambda_.Function
            if spec.media or (all_media and spec.key != "starter"):
                fn = lambda_.DockerImageFunction(
                    self, _camel(spec.key), **common,
                    code=lambda_.DockerImageCode.from_image_asset(
                        str(ROOT), file="infra/lambda_image/Dockerfile", exclude=IMAGE_ASSET_EXCLUDE,
                        ignore_mode=IgnoreMode.DOCKER, cmd=[f"tasks.{spec.key}.handler"]))
            else:
                fn = lambda_.Function(self, _camel(spec.key), **common, runtime=RUNTIME, code=code,
                                      handler=f"tasks.{spec.key}.handler", layers=[self.layer])
            self.functions[spec.key] = fn


def _camel(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))
