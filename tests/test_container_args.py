"""The container's speed options reach it from a deployment (context `container_args`) or the laptop
(`--sagemaker-option container_args=...`): only the options its parser has, after the request's own paths."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.backends.sagemaker_jobs import CONTAINER_SPEED_FLAGS, container_args, processing_job_request
from pipeline.backends.video_sagemaker import SageMakerVideoBackend

GENERATE_PY = Path(__file__).resolve().parents[1] / "container" / "generate.py"
REQUEST = dict(job_name="clips-spring-0123456789ab", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/c:1",
               role_arn="arn:aws:iam::123456789012:role/clips", instance_type="ml.g6e.2xlarge", volume_gb=100,
               jobs_s3_uri="s3://work/in/", models_s3_uri="s3://weights/models/", output_s3_uri="s3://work/out/",
               max_runtime_s=3600, environment={})


def container_flags() -> set[str]:
    """Every flag container/generate.py's parser declares (read from its source: importing it loads torch)."""
    flags = set()
    for node in ast.walk(ast.parse(GENERATE_PY.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                and node.args and isinstance(node.args[0], ast.Constant)):
            flags.add(str(node.args[0].value))
    return flags


def test_every_allowed_option_is_one_the_container_parses_and_paths_are_not_allowed() -> None:
    declared = container_flags()
    assert set(CONTAINER_SPEED_FLAGS) <= declared
    assert {"--jobs", "--models", "--out"} <= declared - set(CONTAINER_SPEED_FLAGS)


def test_the_options_follow_the_requests_own_paths() -> None:
    request = processing_job_request(**REQUEST, speed_args=container_args("--compile regional --cache pab --fp8=auto"))
    assert request["AppSpecification"]["ContainerArguments"] == [
        "--jobs", "/opt/ml/processing/input/jobs", "--models", "/opt/ml/processing/input/models",
        "--out", "/opt/ml/processing/output", "--compile", "regional", "--cache", "pab", "--fp8=auto"]


@pytest.mark.parametrize("bad", ["--out /tmp/elsewhere", "--jobs=x", "regional --compile", "--summary s.json"])
def test_other_arguments_are_refused_naming_the_argument(bad: str) -> None:
    with pytest.raises(ValueError, match="container argument|must start with a flag"):
        container_args(bad)


def test_the_laptop_backend_takes_them_as_a_sagemaker_option() -> None:
    backend = SageMakerVideoBackend.from_options({
        "image_uri": "img", "role_arn": "arn:aws:iam::123456789012:role/clips", "models_s3_uri": "s3://w/m",
        "bucket": "work", "container_args": "--attention flash --workers auto"})
    assert backend.container_args == ("--attention", "flash", "--workers", "auto")


def test_a_deployment_passes_them_through_its_settings() -> None:
    from pipeline.cloud.settings import CloudBackends, CloudSettings

    settings = CloudSettings.from_env({
        "CAMPAIGN_OUTPUT_BUCKET": "out", "CAMPAIGN_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/r",
        "CAMPAIGN_SAGEMAKER_IMAGE_URI": "img", "CAMPAIGN_MODELS_S3_URI": "s3://out/models/",
        "CAMPAIGN_SAGEMAKER_CONTAINER_ARGS": "--compile --cache fastercache"})
    video = CloudBackends({"enhancer": "passthrough", "images": "local", "video": "sagemaker"}, enhancer_model=None,
                          settings=settings).video
    assert isinstance(video, SageMakerVideoBackend) and video.container_args == ("--compile", "--cache", "fastercache")


def test_a_saved_compile_cache_is_mounted_from_under_the_weights_and_passed_to_the_container() -> None:
    request = processing_job_request(**REQUEST, compile_cache_s3_uri="s3://weights/models/compile-cache/l40s/",
                                     speed_args=("--compile",))
    [cache] = [i for i in request["ProcessingInputs"] if i["InputName"] == "compile-cache"]
    assert cache["S3Input"]["S3Uri"] == "s3://weights/models/compile-cache/l40s/"
    assert cache["S3Input"]["LocalPath"] == "/opt/ml/processing/input/compile-cache"
    assert request["AppSpecification"]["ContainerArguments"][-3:] == [
        "--compile-cache", "/opt/ml/processing/input/compile-cache", "--compile"]
    assert "--compile-cache" in container_flags()  # the container's own flag
    with pytest.raises(ValueError, match="must lie under the weights prefix"):
        processing_job_request(**REQUEST, compile_cache_s3_uri="s3://elsewhere/cache/")
