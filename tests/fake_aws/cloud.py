"""The cloud runner on moto: buckets, the real ASL with its placeholders filled, Tasks routed to tasks/."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from fake_aws.container import preview_container
from fake_aws.stepfunctions import (
    MOTO_CONFIG,
    LambdaCalls,
    route_bedrock_runtime,
    route_lambdas,
    route_sagemaker,
    substitute,
    wait_for,
)
from fake_aws.validate import model_checked
from pipeline.cloud import DEFAULT_APPROVAL_TIMEOUT_S, DEFAULT_DISTRIBUTED_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "state_machines" / "campaign.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
INPUT_BUCKET = "campaign-input"
OUTPUT_BUCKET = "campaign-output"
MODELS_S3_URI = f"s3://{OUTPUT_BUCKET}/models/"
SAGEMAKER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/campaign-sagemaker"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/campaign-clips:test"

# Function name -> handler module; the ASL placeholder of each is <Name>FunctionArn.
FUNCTIONS = {"Plan": "plan", "Enhance": "enhance", "Image": "image", "Assemble": "assemble",
             "PrepareBatch": "prepare_batch", "CollectBatch": "collect_batch", "Report": "report",
             "Approval": "approval", "Voice": "voice"}


def substitutions(*, job_concurrency: int = 4, gpu_concurrency: int = 2,
                  distributed_over: int = DEFAULT_DISTRIBUTED_THRESHOLD, render_attempts: int = 3,
                  capacity_wait_s: int = 0, approval_timeout_s: int = DEFAULT_APPROVAL_TIMEOUT_S,
                  ray2_concurrency: int = 1, voice_concurrency: int = 2) -> dict[str, str]:
    """The stack's substitutions; the wait for GPU capacity is 0 s here (the stack's is infra/workflow.py's)."""
    subs = {f"{name}FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:campaign-{module.replace('_', '-')}"
            for name, module in FUNCTIONS.items()}
    subs.update(OutputBucket=OUTPUT_BUCKET, JobConcurrency=str(job_concurrency), GpuConcurrency=str(gpu_concurrency),
                DistributedMapThreshold=str(distributed_over), RenderAttempts=str(render_attempts),
                CapacityWaitSeconds=str(capacity_wait_s), ApprovalTimeoutSeconds=str(approval_timeout_s),
                Ray2Concurrency=str(ray2_concurrency), VoiceConcurrency=str(voice_concurrency))
    return subs


def lambda_env() -> dict[str, str]:
    """The environment the CDK stack gives the task functions, with the local backends (so keys and outputs
    can be compared with `campaign run`)."""
    return {
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "CAMPAIGN_OUTPUT_BUCKET": OUTPUT_BUCKET, "CAMPAIGN_ENHANCER": "passthrough", "CAMPAIGN_IMAGES": "local",
        "CAMPAIGN_VIDEO": "preview", "CAMPAIGN_VOICE": "local", "CAMPAIGN_SAGEMAKER_ROLE_ARN": SAGEMAKER_ROLE,
        "CAMPAIGN_SAGEMAKER_IMAGE_URI": IMAGE_URI, "CAMPAIGN_MODELS_S3_URI": MODELS_S3_URI,
        "CAMPAIGN_CLIPS_PER_BATCH": "8",
    }


def handlers(overrides: Mapping[str, Callable[..., Any]] | None = None) -> dict[str, Callable[..., Any]]:
    import importlib

    out = {}
    for module in FUNCTIONS.values():
        fn_name = f"campaign-{module.replace('_', '-')}"
        out[fn_name] = importlib.import_module(f"tasks.{module}").handler
    out.update(overrides or {})
    return out


@dataclass
class Execution:
    described: dict[str, Any]
    calls: LambdaCalls

    @property
    def status(self) -> str:
        return str(self.described["status"])

    @property
    def output(self) -> dict[str, Any]:
        return json.loads(self.described.get("output") or "{}")


@dataclass
class Cloud:
    s3: Any
    sfn: Any
    state_machine_arn: str
    bedrock: Any = None  # a fake_bedrock_async.AsyncVideoService answering the state machine's Bedrock Runtime tasks

    def upload_folder(self, folder: Path, *, prefix: str = "manifests/") -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                self.s3.upload_file(str(path), INPUT_BUCKET, prefix + path.relative_to(folder).as_posix())

    def run(self, key: str, *, name: str, overrides: Mapping[str, Callable[..., Any]] | None = None,
            container: Callable[[dict[str, Any]], tuple[str, str | None]] | None = None,
            timeout_s: float = 90.0) -> Execution:
        head = self.s3.head_object(Bucket=INPUT_BUCKET, Key=key)
        run_input = {"bucket": INPUT_BUCKET, "key": key, "version_id": head.get("VersionId"), "trigger": "test"}
        return self.start(run_input, name=name, overrides=overrides, container=container, timeout_s=timeout_s)

    def start(self, run_input: dict[str, Any], *, name: str, overrides: Mapping[str, Callable[..., Any]] | None = None,
              container: Callable[[dict[str, Any]], tuple[str, str | None]] | None = None,
              timeout_s: float = 90.0) -> Execution:
        with ExitStack() as routes:
            calls = routes.enter_context(route_lambdas(handlers(overrides)))
            routes.enter_context(route_sagemaker(container or preview_container(self.s3)))
            if self.bedrock is not None:
                routes.enter_context(route_bedrock_runtime(self.bedrock))
            started = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                               input=json.dumps(run_input))
            described = wait_for(self.sfn, started["executionArn"], timeout_s=timeout_s)
        return Execution(described, calls)

    def keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=OUTPUT_BUCKET, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def json(self, key: str, bucket: str = OUTPUT_BUCKET) -> Any:
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def bytes(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=OUTPUT_BUCKET, Key=key)["Body"].read()
        return body


@contextmanager
def moto_cloud(*, job_concurrency: int = 4, gpu_concurrency: int = 2,
               distributed_over: int = DEFAULT_DISTRIBUTED_THRESHOLD, render_attempts: int = 3,
               approval_timeout_s: int = DEFAULT_APPROVAL_TIMEOUT_S) -> Iterator[Cloud]:
    """Buckets and the state machine on moto; the caller sets lambda_env() and resets tasks._runtime.
    `distributed_over` is the stack's `distributed_map_threshold`: 0 runs every stage that has items as a
    Distributed Map reading its items from S3 (moto runs those as shipped, see test_cloud_moto_canary.py)."""
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    with ExitStack() as stack:
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        # every request (the tasks', and those moto's Step Functions makes for the ASL's SDK integrations,
        # e.g. the `Record ... failure` states' s3:putObject) checked against its service model
        stack.enter_context(model_checked())
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=INPUT_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = substitute(ASL_PATH.read_text(), substitutions(job_concurrency=job_concurrency,
                                                                    gpu_concurrency=gpu_concurrency,
                                                                    distributed_over=distributed_over,
                                                                    render_attempts=render_attempts,
                                                                    approval_timeout_s=approval_timeout_s))
        arn = sfn.create_state_machine(name="campaign", definition=definition,
                                       roleArn=f"arn:aws:iam::{ACCOUNT}:role/campaign-states")["stateMachineArn"]
        yield Cloud(s3, sfn, arn)


def cloud_for_tasks(monkeypatch: Any, **options: int) -> Iterator[Cloud]:
    """A moto_cloud with the task functions' environment (lambda_env) set and their cached settings and
    clients reset around it: the body of each test module's `cloud` fixture (`yield from` it)."""
    from tasks import _runtime

    for name, value in lambda_env().items():
        monkeypatch.setenv(name, value)
    _runtime.reset()
    with moto_cloud(**options) as c:
        yield c
    _runtime.reset()
