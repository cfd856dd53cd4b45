"""container/generate.py with tiny random-weight CogVideoX pipelines on CPU, the diffusers and SageMaker
backends through it, the CreateProcessingJob request, batching, and storing pulled weights."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import boto3
import botocore.session
import diffusers
import imageio_ffmpeg
import numpy as np
import pytest
import tiny_cogvideo as tiny
from botocore.validate import validate_parameters
from fake_aws.validate import model_checked
from moto import mock_aws

from pipeline.backends.base import ClipRequest, set_step_reporter
from pipeline.backends.sagemaker_jobs import (
    batch_clips,
    processing_job_name,
    processing_job_request,
)
from pipeline.backends.video_diffusers import DiffusersVideoBackend
from pipeline.backends.video_sagemaker import SageMakerVideoBackend
from pipeline.backends.weights import model_repos, pull_model, store_model_folders
from pipeline.catalog import VIDEO_MODELS
from pipeline.errors import BackendUnavailable
from pipeline.plan.pricing import DEFAULT_INSTANCE_TYPE

gen = tiny.load_generate()


def read_video(path: Path) -> tuple[dict, np.ndarray]:
    """Decode an mp4 back: (ffmpeg's metadata, frames as uint8 [n, h, w, 3])."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = np.stack([np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader])
    return meta, frames


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tiny.save_tiny_models(tmp_path_factory.mktemp("models"))
    shutil.copytree(root / "cogvideox-5b", root / "cogvideox-2b")  # same tiny weights, 2B's settings
    return root


class Spy:
    """Counts calls of a pipeline class's from_pretrained without changing what it does."""

    def __init__(self) -> None:
        self.loads: list[str] = []

    def wrap(self, cls):
        original = cls.from_pretrained.__func__

        def from_pretrained(klass, path, *args, **kwargs):
            self.loads.append(f"{klass.__name__}:{Path(path).name}")
            return original(klass, path, *args, **kwargs)

        return classmethod(from_pretrained)


@pytest.fixture(scope="module")
def batch(models, tmp_path_factory):
    """One batch through run_batch, shared by the tests below (the tiny models load once per folder)."""
    work = tmp_path_factory.mktemp("batch")
    tiny.start_image(work / "start.png", size=(200, 100))
    long_prompt = " ".join(["bee"] * 40)
    jobs = [
        tiny.job("t2v-a"),
        tiny.job("i2v", image="start.png", prompt="the camera slowly orbits it"),
        tiny.job("missing-image", image="nowhere.png"),
        tiny.job("t2v-same", negative_prompt="red cat"),
        tiny.job("t2v-same-again", negative_prompt="red cat"),
        tiny.job("t2v-other-seed", negative_prompt="red cat", seed=8),
        tiny.job("long-prompt", prompt=long_prompt),
        tiny.job("bad-frames", frames=10),
        tiny.job("i2v-wrong-size", image="start.png", width=128),
        tiny.job("two-b", model="cogvideox-2b"),
        {**tiny.job("unknown-field"), "negativ_prompt": "typo"},
    ]
    jobs_path = write_jobs(work / "jobs.jsonl", jobs)
    spy, lines = Spy(), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(diffusers.CogVideoXPipeline, "from_pretrained", spy.wrap(diffusers.CogVideoXPipeline))
        mp.setattr(diffusers.CogVideoXImageToVideoPipeline, "from_pretrained", spy.wrap(diffusers.CogVideoXImageToVideoPipeline))
        result = gen.run_batch(jobs_path, models, work / "out", log=lines.append)
    return SimpleNamespace(result=result, out=work / "out", loads=spy.loads, lines=lines, long_prompt=long_prompt)


def provenance(batch, key: str) -> dict:
    return json.loads((batch.out / f"{key}.json").read_text())


# --- generate.py ----------------------------------------------------------------------------------


def test_clips_have_exactly_the_requested_size_frames_and_fps(batch):
    for key in ("t2v-a", "i2v", "two-b"):
        meta, frames = read_video(batch.out / f"{key}.mp4")
        assert frames.shape == (tiny.FRAMES, tiny.HEIGHT, tiny.WIDTH, 3), key
        assert tuple(meta["size"]) == (tiny.WIDTH, tiny.HEIGHT)
        assert meta["fps"] == tiny.FPS
        assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
        assert imageio_ffmpeg.count_frames_and_secs(str(batch.out / f"{key}.mp4"))[0] == tiny.FRAMES
        assert frames.std() > 0  # random weights still give a picture, not a constant


def test_one_failing_job_does_not_stop_the_batch(batch):
    ok = {r.key for r in batch.result.results if r.ok}
    failed = {r.key: r for r in batch.result.results if not r.ok}
    assert ok == {"t2v-a", "i2v", "t2v-same", "t2v-same-again", "t2v-other-seed", "long-prompt", "two-b"}
    assert set(failed) == {"missing-image", "bad-frames", "i2v-wrong-size", "unknown-field"}
    assert batch.result.exit_code == 0
    for key in failed:
        assert not (batch.out / f"{key}.mp4").exists()
        record = provenance(batch, key)
        assert record["status"] == "failed" and record["key"] == key and record["job"]["key"] == key
    assert "nowhere.png" in provenance(batch, "missing-image")["error"]
    assert provenance(batch, "missing-image")["stage"] == "check"
    assert "must be 4N+1" in provenance(batch, "bad-frames")["error"]  # the tiny VAE's temporal factor, from config
    assert "only at 48x32" in provenance(batch, "i2v-wrong-size")["error"]
    assert "negativ_prompt" in provenance(batch, "unknown-field")["error"]
    summary = json.loads((batch.out / "_batch.json").read_text())
    assert (summary["jobs"], summary["succeeded"], summary["failed"]) == (11, 7, 4)
    assert not [p for p in batch.out.iterdir() if "partial" in p.name]


def test_each_pipeline_folder_is_loaded_once_for_all_its_jobs(batch):
    # 5 T2V jobs of cogvideox-5b, 1 I2V that renders, 1 of cogvideox-2b; the rejected ones load nothing.
    assert sorted(batch.loads) == ["CogVideoXImageToVideoPipeline:cogvideox-5b-i2v",
                                   "CogVideoXPipeline:cogvideox-2b", "CogVideoXPipeline:cogvideox-5b"]
    loads = {entry["folder"]: entry for entry in json.loads((batch.out / "_batch.json").read_text())["loads"]}
    assert loads["cogvideox-5b"]["jobs"] == 6


def test_same_job_and_seed_give_identical_frames(batch):
    same, again, other = (provenance(batch, k)["output"]["frames_sha256"] for k in ("t2v-same", "t2v-same-again", "t2v-other-seed"))
    assert same == again
    assert same != other
    np.testing.assert_array_equal(read_video(batch.out / "t2v-same.mp4")[1], read_video(batch.out / "t2v-same-again.mp4")[1])


def test_provenance_records_job_model_libraries_timings_and_memory(batch, models):
    record = provenance(batch, "t2v-a")
    assert record["status"] == "succeeded"
    assert record["job"] == tiny.job("t2v-a")
    assert record["model"]["folder"] == "cogvideox-5b"
    assert record["model"]["sha256"] == gen.folder_identity(models / "cogvideox-5b")["sha256"]
    assert "model_index.json" in record["model"]["files"] and "transformer/config.json" in record["model"]["files"]
    assert record["environment"]["libraries"]["diffusers"] and record["environment"]["libraries"]["torch"]
    assert set(record["timings"]) >= {"load_s", "denoise_decode_s", "encode_s", "clip_s"}
    assert record["peak_memory"]["process_rss_peak_gib"] > 0
    settings = record["settings"]
    assert (settings["memory_mode"], settings["dtype"], settings["device"]) == ("cpu", "float32", "cpu")
    # THUDM: DPM + trailing spacing + dynamic CFG for 5B, DDIM without dynamic CFG for 2B
    assert (settings["scheduler"], settings["use_dynamic_cfg"]) == ("CogVideoXDPMScheduler", True)
    two_b = provenance(batch, "two-b")["settings"]
    assert (two_b["scheduler"], two_b["use_dynamic_cfg"]) == ("CogVideoXDDIMScheduler", False)
    i2v = provenance(batch, "i2v")["image"]
    assert i2v["source_size"] == [200, 100] and i2v["size"] == [tiny.WIDTH, tiny.HEIGHT]


def test_prompt_limit_comes_from_the_model_config_and_truncation_is_noted(batch):
    record = provenance(batch, "long-prompt")
    assert record["settings"]["max_text_tokens"] == tiny.MAX_TEXT_TOKENS  # the tiny transformer's, not 226
    tokens = record["prompt_tokens"]
    assert tokens["truncated"] and tokens["tokens"] == 41 and tokens["max_tokens"] == tiny.MAX_TEXT_TOKENS
    assert tokens["kept"] == " ".join(["bee"] * (tiny.MAX_TEXT_TOKENS - 1))
    assert record["notes"] == [f"prompt truncated to {tiny.MAX_TEXT_TOKENS} tokens (had 41)"]
    assert provenance(batch, "t2v-a")["prompt_tokens"]["truncated"] is False


def test_progress_lines_every_few_steps(batch):
    assert any(re.fullmatch(r"t2v-a: step 2/2 \(\d+\.\ds\)", line) for line in batch.lines)


def test_every_job_failing_exits_non_zero(models, tmp_path):
    tiny.start_image(tmp_path / "start.png")
    jobs = write_jobs(tmp_path / "jobs.jsonl", [tiny.job("a", image="missing.png"), tiny.job("b", model="cogvideox-9b")])
    assert gen.main(["--jobs", str(jobs), "--models", str(models), "--out", str(tmp_path / "out")]) == 1
    assert json.loads((tmp_path / "out" / "b.json").read_text())["error_type"] == "JobError"
    empty = write_jobs(tmp_path / "empty.jsonl", [])
    assert gen.main(["--jobs", str(empty), "--models", str(models), "--out", str(tmp_path / "out2")]) == 2


def test_a_folder_that_does_not_load_fails_its_jobs_only(models, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [tiny.job("ok"), tiny.job("no-weights", model="cogvideox1.5-5b")])
    result = gen.run_batch(jobs, models, tmp_path / "out", log=lambda _: None)
    assert {r.key: r.ok for r in result.results} == {"ok": True, "no-weights": False}
    assert "no model_index.json" in json.loads((tmp_path / "out" / "no-weights.json").read_text())["error"]


def test_entrypoint_runs_as_a_script_offline_with_sagemaker_style_folders(models, tmp_path):
    jobs_dir = tmp_path / "input" / "jobs"
    (jobs_dir / "images").mkdir(parents=True)
    tiny.start_image(jobs_dir / "images" / "k2.png")
    write_jobs(jobs_dir / "batch.jsonl", [tiny.job("k1"), tiny.job("k2", image="images/k2.png"), tiny.job("k3", frames=0)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    done = subprocess.run([sys.executable, str(tiny.GENERATE_PY), "--jobs", str(jobs_dir), "--models", str(models),
                           "--out", str(tmp_path / "output")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == [
        "_batch.json", "k1.json", "k1.mp4", "k2.json", "k2.mp4", "k3.json"]
    assert "k1: step 2/2" in done.stdout and "k3: FAILED at check" in done.stdout
    assert "Loading" not in done.stderr  # no tqdm bars in CloudWatch


def test_generate_is_self_contained():
    source = tiny.GENERATE_PY.read_text()
    assert not re.search(r"^\s*(from|import) pipeline\b", source, flags=re.M)
    assert source.index('os.environ["HF_HUB_OFFLINE"] = "1"') < source.index("from diffusers")


def test_model_settings_mirror_the_catalog():
    """The container's family modules and the pipeline's registry name the same models, dtypes, families and
    folder layouts (the container cannot import the registry)."""
    assert set(gen.MODEL_SETTINGS) == set(VIDEO_MODELS)
    assert set(gen.FAMILIES) == {m.family for m in VIDEO_MODELS.values()}
    for name, model in VIDEO_MODELS.items():
        settings = gen.MODEL_SETTINGS[name]
        assert settings.dtype == model.dtype, name
        assert settings.family == model.family, name
        assert settings.separate_i2v == (not model.i2v_in_repo), name
        if model.family == "cogvideox":
            assert (settings.scheduler, settings.dynamic_cfg) == (("ddim", False) if name == "cogvideox-2b" else ("dpm", True))


def test_parse_job_quotes_the_bad_value(tmp_path):
    with pytest.raises(gen.JobError, match=r"jobs.jsonl:3: frames must be int, got True"):
        gen.parse_job(tiny.job("a", frames=True), source="jobs.jsonl:3", base_dir=tmp_path)
    with pytest.raises(gen.JobError, match=r"key '\.\./x' must match"):
        gen.parse_job(tiny.job("../x"), source="j:1", base_dir=tmp_path)
    with pytest.raises(gen.JobError, match=r"missing field\(s\) \['seed'\]"):
        gen.parse_job({k: v for k, v in tiny.job("a").items() if k != "seed"}, source="j:1", base_dir=tmp_path)


def test_compile_flag_compiles_each_transformer_block(models, monkeypatch):
    """--compile (the backend's compile_transformer=True) is regional: every CogVideoXBlock, fullgraph."""
    compiled = []
    monkeypatch.setattr(gen.torch.nn.Module, "compile", lambda self, *a, **k: compiled.append((type(self).__name__, k)))
    loaded = gen.load_pipeline(models / "cogvideox-5b", settings=gen.MODEL_SETTINGS["cogvideox-5b"], i2v=False,
                               jobs=[gen.parse_job(tiny.job("a"), source="j:1", base_dir=models)], memory_mode=None,
                               speed=gen.SpeedOptions(compile="regional"), log=lambda _: None)
    assert compiled == [("CogVideoXBlock", {"fullgraph": True, "backend": "inductor"})] and loaded.compiled


def test_out_of_gpu_memory_steps_the_memory_mode_down_and_retries(models, tmp_path, monkeypatch):
    """A clip that runs out of GPU memory is tried again with VAE tiling, and the next clip keeps it."""
    real_load = gen.load_pipeline

    def load_as_if_on_a_gpu(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.memory_mode = "none"  # what choose_memory_mode picks when the estimate says it fits
        return loaded

    calls = []
    real_call = diffusers.CogVideoXPipeline.__call__

    def oom_once(self, *args, **kwargs):
        calls.append(self.vae.use_tiling)
        if len(calls) == 1:
            raise gen.torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(gen, "load_pipeline", load_as_if_on_a_gpu)
    monkeypatch.setattr(diffusers.CogVideoXPipeline, "__call__", oom_once)
    jobs = write_jobs(tmp_path / "jobs.jsonl", [tiny.job("first"), tiny.job("second", seed=9)])
    lines: list[str] = []
    result = gen.run_batch(jobs, models, tmp_path / "out", log=lines.append)
    assert result.succeeded == 2 and calls == [False, True, True]
    settings = json.loads((tmp_path / "out" / "first.json").read_text())["settings"]
    assert settings["memory_mode"] == "vae-tiling"
    assert settings["memory_mode_changes"] == ["none -> vae-tiling after out of memory"]
    assert any("out of GPU memory in memory mode none; retrying in vae-tiling" in line for line in lines)


def _fake_5b_pipe():
    """Components with CogVideoX-5b's parameter counts in bf16, on the meta device (no memory)."""
    import torch

    def module(numel: int) -> torch.nn.Module:
        m = torch.nn.Module()
        m.weight = torch.nn.Parameter(torch.empty(numel, dtype=torch.bfloat16, device="meta"))
        return m

    return SimpleNamespace(components={"transformer": module(5_570_000_000), "text_encoder": module(4_760_000_000),
                                       "vae": module(220_000_000), "tokenizer": object(), "scheduler": object()})


@pytest.mark.parametrize(("free_gib", "expected"), [
    (79.0, "none"),  # H100 80 GB
    (44.4, "none"),  # L40S 48 GB (ml.g6e): 19.5 GiB of weights + untiled decode
    (30.0, "vae-tiling"),
    (22.0, "model-offload"),  # A10G 24 GB (ml.g5), the sample's instance
    (8.0, "sequential-offload"),
])
def test_memory_mode_is_the_fastest_that_fits(monkeypatch, free_gib, expected):
    monkeypatch.setattr(gen.torch.cuda, "mem_get_info", lambda: (int(free_gib * 2**30), int(80 * 2**30)))
    job = gen.parse_job(tiny.job("a", width=720, height=480, frames=49), source="j:1", base_dir=Path("."))
    mode, info = gen.choose_memory_mode(_fake_5b_pipe(), device="cuda", jobs=[job], requested=None)
    assert mode == expected, info
    assert gen.choose_memory_mode(_fake_5b_pipe(), device="cuda", jobs=[job], requested="model-offload")[0] == "model-offload"


# --- the diffusers backend ------------------------------------------------------------------------


def test_diffusers_backend_runs_generate_in_process_and_loads_once(models, tmp_path, monkeypatch):
    image = tiny.start_image(tmp_path / "start.png")
    requests = [ClipRequest(key=f"clip-{i}", model="cogvideox-5b", prompt="a bee on a flower", frames=tiny.FRAMES,
                            fps=tiny.FPS, width=tiny.WIDTH, height=tiny.HEIGHT, steps=2, guidance=6.0, seed=i)
                for i in range(3)]
    requests.append(ClipRequest(key="clip-i2v", model="cogvideox-5b", prompt="the camera slowly orbits it",
                                frames=tiny.FRAMES, fps=tiny.FPS, width=tiny.WIDTH, height=tiny.HEIGHT, steps=2,
                                guidance=6.0, seed=1, image=image))
    requests.append(ClipRequest(key="clip-bad", model="cogvideox-5b", prompt="x", frames=tiny.FRAMES, fps=tiny.FPS,
                                width=tiny.WIDTH, height=tiny.HEIGHT, steps=2, guidance=6.0, seed=1,
                                image=tmp_path / "gone.png"))
    loads = []
    original = gen.load_pipeline
    monkeypatch.setattr(gen, "load_pipeline", lambda folder, **kw: loads.append(folder.name) or original(folder, **kw))
    backend = DiffusersVideoBackend(models)
    steps: list[tuple[str, int, int, str]] = []
    set_step_reporter(lambda *report: steps.append(report))  # what the studio shows while a clip renders
    try:
        outcomes = backend.render(requests, tmp_path / "clips")
    finally:
        set_step_reporter(None)
    assert steps == [(r.key, n, 2, "step") for r in requests[:4] for n in (1, 2)]  # the bad clip never denoised
    assert [o.key for o in outcomes] == [r.key for r in requests]
    assert loads == ["cogvideox-5b", "cogvideox-5b-i2v"]  # three T2V clips, one load
    for outcome in outcomes[:4]:
        assert outcome.error is None and outcome.backend == "diffusers"
        assert outcome.path == tmp_path / "clips" / f"{outcome.key}.mp4" and outcome.path.is_file()
        assert outcome.timings["denoise_decode_s"] > 0
    assert outcomes[4].path is None and "gone.png" in outcomes[4].error and outcomes[4].error_type == "JobError"
    identity = backend.identity("cogvideox-5b")
    assert re.fullmatch(r"diffusers/cogvideox-5b@[0-9a-f]{16}\+i2v@[0-9a-f]{16}/cpu-fp32", identity)


# --- SageMaker: the request, batching, names --------------------------------------------------------

REQUEST_ARGS = dict(
    job_name="clips-spring-0123456789ab", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-clips:1",
    role_arn="arn:aws:iam::123456789012:role/clips", instance_type="ml.g6e.2xlarge", volume_gb=100,
    jobs_s3_uri="s3://work/clips-spring/input/jobs/", models_s3_uri="s3://weights/models",
    output_s3_uri="s3://work/clips-spring/output/", max_runtime_s=14400, environment={"LOG_LEVEL": "info"},
)


def test_processing_job_request_field_by_field():
    request = processing_job_request(**REQUEST_ARGS, model_folders=["cogvideox-5b-i2v"])
    assert set(request) == {"ProcessingJobName", "ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources",
                            "StoppingCondition", "AppSpecification", "Environment", "NetworkConfig", "RoleArn"}
    assert request["ProcessingJobName"] == "clips-spring-0123456789ab"
    assert request["RoleArn"] == "arn:aws:iam::123456789012:role/clips"
    jobs, weights = request["ProcessingInputs"]
    assert jobs == {"InputName": "jobs", "S3Input": {
        "S3Uri": "s3://work/clips-spring/input/jobs/", "LocalPath": "/opt/ml/processing/input/jobs",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
    assert weights == {"InputName": "models-cogvideox-5b-i2v", "S3Input": {
        "S3Uri": "s3://weights/models/cogvideox-5b-i2v/", "LocalPath": "/opt/ml/processing/input/models/cogvideox-5b-i2v",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
    assert request["ProcessingOutputConfig"] == {"Outputs": [{"OutputName": "clips", "S3Output": {
        "S3Uri": "s3://work/clips-spring/output/", "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "Continuous"}}]}
    assert request["ProcessingResources"] == {"ClusterConfig": {
        "InstanceCount": 1, "InstanceType": "ml.g6e.2xlarge", "VolumeSizeInGB": 100}}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400}
    assert request["AppSpecification"] == {
        "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-clips:1",
        "ContainerEntrypoint": ["python", "/opt/program/generate.py"],
        "ContainerArguments": ["--jobs", "/opt/ml/processing/input/jobs", "--models", "/opt/ml/processing/input/models",
                               "--out", "/opt/ml/processing/output"]}
    assert request["Environment"] == {"LOG_LEVEL": "info"}
    assert request["NetworkConfig"] == {"EnableNetworkIsolation": True}
    # the container's defaults are the paths the request mounts
    assert str(gen.SAGEMAKER_JOBS) == jobs["S3Input"]["LocalPath"]
    assert str(gen.SAGEMAKER_OUT) == request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["LocalPath"]
    # and botocore's own model of CreateProcessingJob accepts it (names, types, required fields)
    client = botocore.session.get_session().create_client("sagemaker", region_name="us-east-1",
                                                         aws_access_key_id="x", aws_secret_access_key="x")
    validate_parameters(request, client.meta.service_model.operation_model("CreateProcessingJob").input_shape)
    whole = processing_job_request(**REQUEST_ARGS)
    assert whole["ProcessingInputs"][1]["S3Input"]["S3Uri"] == "s3://weights/models"
    assert whole["ProcessingInputs"][1]["S3Input"]["LocalPath"] == "/opt/ml/processing/input/models"
    assert DEFAULT_INSTANCE_TYPE == "ml.g6e.2xlarge"


@pytest.mark.parametrize(("change", "message"), [
    ({"job_name": "bad_name"}, "job_name 'bad_name'"),
    ({"models_s3_uri": "/local/models"}, "models_s3_uri must be an s3:// URI, got '/local/models'"),
    ({"volume_gb": 0}, "volume_gb must be a positive integer, got 0"),
    ({"environment": {"N": 1}}, "environment keys and values must be strings"),
])
def test_processing_job_request_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        processing_job_request(**{**REQUEST_ARGS, **change})


def _request(key: str, model: str = "cogvideox-5b", image: Path | None = None) -> ClipRequest:
    return ClipRequest(key=key, model=model, prompt="p", frames=49, fps=8, width=720, height=480, steps=50,
                       guidance=6.0, seed=1, image=image)


def test_batch_clips_groups_by_pipeline_folder():
    img = Path("start.png")
    requests = [_request("a"), _request("b", image=img), _request("c"), _request("d", "cogvideox-2b"),
                _request("e"), _request("f", image=img), _request("g")]
    batches = batch_clips(requests, 2)
    assert [[r.key for r in b] for b in batches] == [["a", "c"], ["e", "g"], ["b", "f"], ["d"]]
    assert [[r.key for r in b] for b in batch_clips(requests, 8)] == [["a", "c", "e", "g"], ["b", "f"], ["d"]]
    assert batch_clips([], 3) == []
    with pytest.raises(ValueError, match="max_batch must be a positive integer, got 0"):
        batch_clips(requests, 0)


def test_processing_job_name_is_short_safe_and_a_function_of_the_batch():
    name = processing_job_name("Spring sofa launch!!" * 5, ["k2", "k1"], suffix="20260101T120000")
    assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name)
    assert name.endswith("-20260101T120000")
    assert name == processing_job_name("Spring sofa launch!!" * 5, ["k1", "k2"], suffix="20260101T120000")
    assert processing_job_name("x", ["k1"]) != processing_job_name("x", ["k2"])
    assert processing_job_name("__", ["k"]).startswith("clips-")


# --- the SageMaker backend against moto -------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SAGEMAKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), model_checked():  # every S3 and SageMaker request checked against its service model
        s3 = boto3.client("s3")
        for bucket in ("work", "weights"):
            s3.create_bucket(Bucket=bucket)
        yield s3


def simulate_processing_job(request: dict, s3, root: Path) -> None:
    """What SageMaker does around the container, done by the test (moto records the job but runs nothing):
    copy each S3Prefix input to its LocalPath, run generate.py's main, upload the output folder (EndOfJob)."""
    local = root / request["ProcessingJobName"]
    mount = lambda path: local / Path(path).relative_to("/opt/ml/processing")  # noqa: E731
    for item in request["ProcessingInputs"]:
        bucket, _, prefix = item["S3Input"]["S3Uri"].removeprefix("s3://").partition("/")
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            target = mount(item["S3Input"]["LocalPath"]) / obj["Key"][len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
    args = request["AppSpecification"]["ContainerArguments"]
    args = [str(mount(a)) if a.startswith("/opt/ml/") else a for a in args]
    gen.main(args)
    output = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    bucket, _, prefix = output["S3Uri"].removeprefix("s3://").partition("/")
    for path in mount(output["LocalPath"]).iterdir():
        s3.upload_file(str(path), bucket, prefix + path.name)


def test_sagemaker_backend_uploads_starts_waits_and_downloads(aws, models, tmp_path):
    store_model_folders({f: models / f for f in ("cogvideox-5b", "cogvideox-5b-i2v")}, "s3://weights/models",
                        s3_client=aws, log=lambda _: None)
    image = tiny.start_image(tmp_path / "sofa.png")
    requests = [
        ClipRequest(key="t1", model="cogvideox-5b", prompt="a bee on a flower", frames=tiny.FRAMES, fps=tiny.FPS,
                    width=tiny.WIDTH, height=tiny.HEIGHT, steps=2, guidance=6.0, seed=3),
        ClipRequest(key="i1", model="cogvideox-5b", prompt="the camera slowly orbits it", frames=tiny.FRAMES,
                    fps=tiny.FPS, width=tiny.WIDTH, height=tiny.HEIGHT, steps=2, guidance=6.0, seed=3, image=image),
        ClipRequest(key="t2", model="cogvideox-5b", prompt="a sofa", frames=10, fps=tiny.FPS,
                    width=tiny.WIDTH, height=tiny.HEIGHT, steps=2, guidance=6.0, seed=3),
    ]
    messages: list[str] = []
    backend = SageMakerVideoBackend(
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-clips:1",
        role_arn="arn:aws:iam::123456789012:role/clips", models_s3_uri="s3://weights/models",
        work_s3_uri="s3://work/runs/spring", environment={"LOG_LEVEL": "info"}, job_prefix="spring", poll_s=0,
        log=messages.append,
    )
    assert backend._clients == {}  # nothing created before it is needed
    sent: list[dict] = []
    backend.sagemaker.meta.events.register("provide-client-params.sagemaker.CreateProcessingJob",
                                           lambda params, **_: sent.append(json.loads(json.dumps(params))))
    backend.sagemaker.meta.events.register("after-call.sagemaker.CreateProcessingJob",
                                           lambda **_: simulate_processing_job(sent[-1], aws, tmp_path / "sm"))
    outcomes = backend.render(requests, tmp_path / "clips")

    # two batches: the T2V folder (t1, t2) and the I2V folder (i1), each its own processing job
    assert [sorted(json.loads(line)["key"] for line in _jobs_file(aws, r).splitlines()) for r in sent] == [["t1", "t2"], ["i1"]]
    for request, folder in zip(sent, ("cogvideox-5b", "cogvideox-5b-i2v"), strict=True):
        name = request["ProcessingJobName"]
        assert re.fullmatch(r"spring-[0-9a-f]{12}-\d{14}", name)
        assert request == processing_job_request(
            job_name=name, image_uri=backend.image_uri, role_arn=backend.role_arn, instance_type="ml.g6e.2xlarge",
            volume_gb=100, jobs_s3_uri=f"s3://work/runs/spring/{name}/input/jobs/", models_s3_uri="s3://weights/models",
            output_s3_uri=f"s3://work/runs/spring/{name}/output/", max_runtime_s=4 * 3600,
            environment={"LOG_LEVEL": "info"}, model_folders=[folder])
        described = backend.sagemaker.describe_processing_job(ProcessingJobName=name)
        assert described["ProcessingJobStatus"] == "Completed"
        assert described["NetworkConfig"] == {"EnableNetworkIsolation": True}
        assert described["AppSpecification"]["ImageUri"] == backend.image_uri
    i2v_line = json.loads(_jobs_file(aws, sent[1]))
    assert i2v_line["image"] == "images/i1.png"  # uploaded beside the jobs file, resolved relative to it

    by_key = {o.key: o for o in outcomes}
    assert [o.key for o in outcomes] == ["t1", "i1", "t2"]
    for key in ("t1", "i1"):
        assert by_key[key].error is None and by_key[key].backend == "sagemaker"
        meta, frames = read_video(by_key[key].path)
        assert frames.shape == (tiny.FRAMES, tiny.HEIGHT, tiny.WIDTH, 3) and meta["fps"] == tiny.FPS
        # the same record of the container's provenance as the cloud's collect step keeps (clip_outcome)
        assert by_key[key].extra["output"]["frames"] == tiny.FRAMES and by_key[key].extra["processing_job"]
        assert by_key[key].extra["settings"]["device"] == "cpu"
    assert by_key["t2"].path is None and "4N+1" in by_key["t2"].error
    assert any("Completed" in m for m in messages) and any("started spring-" in m for m in messages)


def _jobs_file(s3, request: dict) -> str:
    bucket, _, prefix = request["ProcessingInputs"][0]["S3Input"]["S3Uri"].removeprefix("s3://").partition("/")
    return s3.get_object(Bucket=bucket, Key=prefix + "jobs.jsonl")["Body"].read().decode()


def test_sagemaker_backend_reports_a_job_that_wrote_nothing(aws, tmp_path):
    backend = SageMakerVideoBackend(image_uri="img", role_arn="arn:aws:iam::123456789012:role/clips",
                                    models_s3_uri="s3://weights/models", work_s3_uri="s3://work/runs", poll_s=0,
                                    log=lambda _: None)
    [outcome] = backend.render([_request("lost")], tmp_path)
    assert outcome.path is None and outcome.error_type == "JobFailed"
    assert "wrote no result for this clip" in outcome.error


def test_sagemaker_backend_from_cli_options():
    backend = SageMakerVideoBackend.from_options({
        "image_uri": "img", "role_arn": "arn:aws:iam::123456789012:role/clips", "models_s3_uri": "s3://weights/models",
        "bucket": "work", "max_batch": "4", "instance_type": "ml.p5.48xlarge"})
    assert (backend.work_s3_uri, backend.max_batch, backend.instance_type) == ("s3://work/sagemaker", 4, "ml.p5.48xlarge")
    assert backend._clients == {}
    with pytest.raises(BackendUnavailable, match=r"needs --sagemaker-option for \['role_arn'\]"):
        SageMakerVideoBackend.from_options({"image_uri": "i", "models_s3_uri": "s3://w/m", "bucket": "b"})
    with pytest.raises(BackendUnavailable, match=r"unknown --sagemaker-option \['instance'\]"):
        SageMakerVideoBackend.from_options({"instance": "ml.g5.xlarge"})
    with pytest.raises(BackendUnavailable, match="invalid literal"):
        SageMakerVideoBackend.from_options({"image_uri": "i", "role_arn": "r", "models_s3_uri": "s3://w/m",
                                            "bucket": "b", "volume_gb": "lots"})


# --- weights ----------------------------------------------------------------------------------------


def _fake_pipeline_folder(root: Path) -> Path:
    (root / "transformer").mkdir(parents=True)
    (root / "model_index.json").write_text('{"_class_name": "CogVideoXPipeline"}')
    (root / "transformer" / "config.json").write_text("{}")
    (root / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 1024)
    (root / ".cache").mkdir()
    (root / ".cache" / "lock").write_text("hub bookkeeping")
    return root


def test_store_model_folders_uploads_to_s3_with_the_marker_last(aws, tmp_path):
    source = _fake_pipeline_folder(tmp_path / "snapshot")
    order: list[str] = []
    aws.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: order.append(params["Key"]))
    stored = store_model_folders({"cogvideox-5b": source}, "s3://weights/models/", s3_client=aws, log=lambda _: None)
    assert stored == {"cogvideox-5b": "s3://weights/models/cogvideox-5b/"}
    keys = sorted(o["Key"] for o in aws.list_objects_v2(Bucket="weights", Prefix="models/")["Contents"])
    assert keys == ["models/cogvideox-5b/model_index.json", "models/cogvideox-5b/transformer/config.json",
                    "models/cogvideox-5b/transformer/diffusion_pytorch_model.safetensors"]
    assert order[-1] == "models/cogvideox-5b/model_index.json"
    body = aws.get_object(Bucket="weights", Key="models/cogvideox-5b/transformer/diffusion_pytorch_model.safetensors")
    assert body["Body"].read() == b"\0" * 1024


def test_pull_model_downloads_t2v_and_i2v_once_and_copies_locally(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def snapshot_download(*, repo_id, revision, cache_dir):
        calls.append((repo_id, revision))
        return str(_fake_pipeline_folder(tmp_path / "hub" / repo_id.replace("/", "--")))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    stored = pull_model("cogvideox-5b", tmp_path / "models", revision="abc123", log=lambda _: None)
    assert calls == [("THUDM/CogVideoX-5b", "abc123"), ("THUDM/CogVideoX-5b-I2V", "abc123")]
    assert set(stored) == {"cogvideox-5b", "cogvideox-5b-i2v"}
    assert (tmp_path / "models" / "cogvideox-5b-i2v" / "transformer" / "config.json").is_file()
    assert not (tmp_path / "models" / "cogvideox-5b" / ".cache").exists()
    assert model_repos("cogvideox-2b") == {"cogvideox-2b": "THUDM/CogVideoX-2b"}
    with pytest.raises(ValueError, match="unknown video model 'cogvideox-9b'"):
        model_repos("cogvideox-9b")
