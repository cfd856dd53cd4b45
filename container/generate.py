"""Video clips (CogVideoX, Wan2.2) for a batch of jobs: the SageMaker processing image's entrypoint (also run in-process).

    python generate.py --jobs JOBS.jsonl --models DIR --out DIR [--compile regional] [--fp8 auto]
                       [--attention auto] [--cache none] [--workers auto] [--dump-frames] [--memory-mode MODE]

Each line of JOBS is one clip: {"key", "model", "prompt", "frames", "fps", "width", "height", "steps",
"guidance", "seed"} and optionally "image" (a start image for image-to-video, a path relative to the
jobs file) and "negative_prompt". `DIR/<model>` is a diffusers pipeline folder, `DIR/<model>-i2v` CogVideoX's
image-to-video one (Wan2.2 TI2V makes both from one folder). Every folder is loaded once and renders all of its jobs. For each job the script
writes OUT/<key>.mp4 (exactly the requested size, frame count and fps) and OUT/<key>.json (provenance,
or the error of a failed job), plus OUT/_batch.json. One failed job never stops the batch; the exit
status is non-zero only when every job failed.

Self-contained on purpose: the image ships this folder's .py files, without the `pipeline` package, and the
diffusers backend (pipeline/backends/video_diffusers.py) imports it by path, so both run the same code. The
speed options live in clip_speed.py, the background writer in clip_writer.py, the per-GPU split in clip_workers.py.
What differs between models lives behind one interface (clip_families.py), one module per family
(family_cogvideox.py, family_wan.py): a third family is one new module.
`run_batch` reads top to bottom as numbered steps, like a diffusers pipeline's `__call__`.
"""

from __future__ import annotations

import os

# The hub stays offline: weights come from the mounted models folder, never from a download at job time.
# Set before diffusers/transformers/huggingface_hub are imported (they read it at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# diffusers reads this at import (utils/constants.py) and then loads safetensors shards in parallel.
os.environ.setdefault("HF_ENABLE_PARALLEL_LOADING", "yes")

import argparse  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import Future  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

# The sibling modules ship beside this file in the image; imported by path so this works wherever it is run from.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import clip_speed  # noqa: E402
import clip_workers  # noqa: E402
from clip_families import FAMILIES, MODEL_SETTINGS, ModelFamily, family_of  # noqa: E402,F401 - re-exported
from clip_jobs import (  # noqa: E402,F401 - re-exported: generate.Job etc. are the names callers know
    I2V_SUFFIX,
    KEY_PATTERN,
    Job,
    JobError,
    JobResult,
    ModelSettings,
    parse_job,
)
from clip_records import peak_memory, record_failure, runtime_environment, write_json  # noqa: E402
from clip_speed import SpeedOptions  # noqa: E402
from clip_writer import ClipWriter, dump_frames, frames_to_uint8  # noqa: E402

# SageMaker Processing mounts its inputs and uploads its output at these paths (ProcessingInputs /
# ProcessingOutputConfig in pipeline/backends/sagemaker_jobs.py name the same ones).
SAGEMAKER_JOBS = Path("/opt/ml/processing/input/jobs")
SAGEMAKER_MODELS = Path("/opt/ml/processing/input/models")
SAGEMAKER_OUT = Path("/opt/ml/processing/output")

MEMORY_MODES = ("none", "vae-tiling", "model-offload", "sequential-offload", "cpu")
PROGRESS_LINES_PER_CLIP = 10  # CloudWatch gets a line about every tenth of the denoising steps


# Memory-mode thresholds: GPU memory a 720x480x49 CogVideoX clip needs beyond the weights, scaled by the clip's
# size against it (the family's activation_scale: pixels x frames for CogVideoX, transformer tokens for Wan). Estimates, not measurements: the diffusers docs give CogVideoX-2b 33 GB with no
# offload (13 GB of weights, so ~20 GB for activations and an untiled VAE decode) and 11 GB with model
# offload + VAE tiling. Provenance records the estimate and the free memory; --memory-mode overrides.
HEADROOM_UNTILED_GIB = 20.0
HEADROOM_TILED_GIB = 4.0


@dataclass
class LoadedPipeline:
    """One pipeline folder, loaded and placed once, with what provenance says about it."""

    folder: str
    pipe: Any
    i2v: bool
    settings: ModelSettings
    device: str
    dtype: str
    memory_mode: str
    compiled: bool
    identity: dict[str, Any]
    load_s: float
    setup: dict[str, Any] = field(default_factory=dict)
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    attention_kernels: dict[tuple[int, int, int], str] = field(default_factory=dict)  # probed once per clip size
    family: ModelFamily = field(default_factory=lambda: FAMILIES["cogvideox"])
    derived: dict[str, Any] = field(default_factory=dict)  # pipelines the family made from `pipe` (Wan's I2V)


@dataclass(frozen=True)
class BatchResult:
    results: list[JobResult]
    loads: list[dict[str, Any]]

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        if not self.results:
            return 2
        return 0 if self.succeeded else 1


Log = Callable[[str], None]
StepHook = Callable[[str, int, int], None]  # (job key, steps done, steps): a caller's live progress (the studio)


def log_line(message: str) -> None:
    """One flushed line: SageMaker streams stdout to CloudWatch, buffered lines would arrive at the end."""
    print(f"[generate {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the batch, as numbered steps -----------------------------------------------------------------


def run_batch(
    jobs_path: Path,
    models_dir: Path,
    out_dir: Path,
    *,
    compile_transformer: bool = False,
    memory_mode: str | None = None,
    speed: SpeedOptions | None = None,
    dump_raw_frames: bool = False,
    background_write: bool = True,
    compile_cache_out: Path | None = None,
    summary_path: Path | None = None,
    log: Log = log_line,
    on_step: StepHook | None = None,
) -> BatchResult:
    """Render every job in `jobs_path` (a .jsonl file or a folder of them) into `out_dir`.

    `compile_transformer=True` is the older spelling of `speed=SpeedOptions(compile="regional")`.
    """
    if memory_mode is not None and memory_mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode {memory_mode!r} is not one of {MEMORY_MODES}")
    speed = speed or SpeedOptions(compile="regional" if compile_transformer else "off")
    out_dir.mkdir(parents=True, exist_ok=True)
    environment = runtime_environment()

    # 1. Read the jobs; a line that does not parse or check is a failed job, recorded now.
    jobs, results = read_jobs(jobs_path, out_dir, environment, log)
    log(f"{len(jobs) + len(results)} job(s) from {jobs_path}, {len(results)} rejected")

    # 2. Group by pipeline folder, in order of first appearance: each folder is loaded once. Within a folder,
    #    clips of one size run together, so a compiled transformer meets each shape in one run of clips.
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.folder, []).append(job)
    for folder in groups:
        order = {size: i for i, size in enumerate(dict.fromkeys(clip_size(j) for j in groups[folder]))}
        groups[folder].sort(key=lambda j: order[clip_size(j)])

    # Clips are encoded and written by one background thread while the next one renders (clip_writer.py).
    writer = ClipWriter(background=background_write)
    # (job, its write, the placement a failed write records): never the pipeline, which step 5 releases
    pending: list[tuple[Job, Future[JobResult], SimpleNamespace]] = []
    loads: list[dict[str, Any]] = []
    compiled_any = False
    for folder, group in groups.items():
        # 3. Load the pipeline and place it on the device (memory mode, scheduler, speed options).
        try:
            loaded = load_pipeline(models_dir / folder, settings=MODEL_SETTINGS[group[0].model],
                                   i2v=folder.endswith(I2V_SUFFIX), jobs=group,
                                   memory_mode=memory_mode, speed=speed, log=log)
        except Exception as exc:  # noqa: BLE001 - a folder that will not load fails its jobs, not the batch
            log(f"loading {folder} failed: {type(exc).__name__}: {exc}")
            release_memory()
            loads.append({"folder": folder, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            for job in group:
                results.append(record_failure(job, exc, out_dir, environment, stage="load", log=log))
            continue
        compiled_any = compiled_any or loaded.compiled
        loads.append({"folder": folder, "ok": True, "load_s": loaded.load_s, "memory_mode": loaded.memory_mode,
                      "jobs": len(group), "identity": loaded.identity, "speed": public_setup(loaded.setup)})

        # 4. Render its jobs one by one; each writes <key>.mp4 + <key>.json or its failure. The memory mode
        #    was chosen from estimates: a clip that runs out of GPU memory steps the mode down once (tiling,
        #    then model offload) and is tried again, and the clips after it keep the safer mode. Every attempt
        #    starts from an empty feature cache (render_clip resets it).
        for job in group:
            while True:
                try:
                    placement = SimpleNamespace(identity=loaded.identity, dtype=loaded.dtype, device=loaded.device,
                                                memory_mode=loaded.memory_mode)
                    pending.append((job, render_clip(loaded, job, out_dir, environment, log=log, writer=writer,
                                                     dump_raw_frames=dump_raw_frames, on_step=on_step), placement))
                except torch.cuda.OutOfMemoryError as exc:
                    release_memory()
                    before = loaded.memory_mode
                    if step_down_memory_mode(loaded):
                        log(f"{job.key}: out of GPU memory in memory mode {before}; retrying in {loaded.memory_mode}")
                        continue
                    results.append(record_failure(job, exc, out_dir, environment, stage="render", log=log,
                                                  loaded=loaded))
                except Exception as exc:  # noqa: BLE001 - one failed clip never stops the batch
                    results.append(record_failure(job, exc, out_dir, environment, stage="render", log=log,
                                                  loaded=loaded))
                    release_memory()  # the next clip starts from a clean cache
                break

        # 5. Release the pipeline before the next folder loads (the writer holds only uint8 frames).
        del loaded
        release_memory()

    # 6. Wait for the writer; a clip whose encode failed is a failed job. Then the compile cache, the summary.
    writer.close()
    for job, future, placement in pending:
        error = future.exception()
        results.append(future.result() if error is None else
                       record_failure(job, error, out_dir, environment, stage="encode", log=log, loaded=placement))
    if compile_cache_out is not None and compiled_any:
        clip_speed.save_compile_cache(compile_cache_out, clip_speed.compile_key(device_kind()), log)
    batch = BatchResult(results=results, loads=loads)
    write_json(summary_path or out_dir / "_batch.json", {
        "jobs": len(results), "succeeded": batch.succeeded, "failed": len(results) - batch.succeeded,
        "loads": loads, "environment": environment, "speed": speed.as_dict(),
        "results": [{"key": r.key, "ok": r.ok, "error": r.error, "error_type": r.error_type} for r in results],
    })
    log(f"done: {batch.succeeded}/{len(results)} clip(s) written to {out_dir}")
    return batch


def clip_size(job: Job) -> tuple[int, int, int]:
    return (job.width, job.height, job.frames)


def device_kind() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# --- 1. jobs --------------------------------------------------------------------------------------


def read_jobs(jobs_path: Path, out_dir: Path, environment: dict[str, Any], log: Log) -> tuple[list[Job], list[JobResult]]:
    files = sorted(jobs_path.glob("*.jsonl")) if jobs_path.is_dir() else [jobs_path]
    if not files:
        raise FileNotFoundError(f"no *.jsonl jobs file in {jobs_path}")
    jobs: list[Job] = []
    rejected: list[JobResult] = []
    seen: set[str] = set()
    for path in files:
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            source = f"{path}:{number}"
            raw: Any = None
            try:
                raw = json.loads(text)
                job = parse_job(raw, source=source, base_dir=path.parent)
                if job.key in seen:
                    raise JobError(f"{source}: key {job.key!r} appears twice in the batch")
                seen.add(job.key)
                jobs.append(job)
            except (JobError, json.JSONDecodeError) as exc:
                key = raw.get("key") if isinstance(raw, dict) else None
                if not (isinstance(key, str) and KEY_PATTERN.match(key)) or key in seen:
                    key = None  # no safe, unique file name: the failure lives in _batch.json and the log
                rejected.append(record_failure(raw if isinstance(raw, dict) else {"line": text}, exc, out_dir,
                                               environment, stage="check", log=log, key=key, source=source))
    return jobs, rejected


# --- 3. load and place ------------------------------------------------------------------------------


def load_pipeline(
    folder: Path,
    *,
    settings: ModelSettings,
    i2v: bool,
    jobs: Sequence[Job],
    memory_mode: str | None,
    speed: SpeedOptions,
    log: Log,
) -> LoadedPipeline:
    """Load a diffusers pipeline folder from disk (never the hub) and set it up for `jobs`."""
    # 3a. The folder must be the pipeline kind the jobs need.
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    family = family_of(jobs[0].model) if jobs else FAMILIES[settings.family]
    problem = family.speed_problem(speed)
    if problem:
        raise ValueError(f"{folder.name} ({family.name} family): {problem}")
    pipeline_class = family.folder_class(i2v)
    class_name = json.loads(index_path.read_text(encoding="utf-8")).get("_class_name")
    if class_name != pipeline_class.__name__:
        raise ValueError(f"{index_path} declares {class_name!r}; jobs {'with' if i2v else 'without'} an image "
                         f"need a {pipeline_class.__name__} folder")
    identity = folder_identity(folder)

    # 3b. Precision: THUDM's dtype on a GPU; float32 on CPU (half-precision CPU kernels are slow or missing).
    device = device_kind()
    dtype = settings.dtype if device == "cuda" else "float32"
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        dtype = "float16"  # e.g. V100 has no bf16 (zai-org/CogVideo#204)

    # 3c. Straight to the GPU when the weight files fit in its free memory (device_map="cuda": no CPU copy
    #     first; diffusers' SUPPORTED_DEVICE_MAP takes a device name); an offload mode moves them back later.
    weights_bytes = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    device_map = "cuda" if device == "cuda" and weights_bytes < torch.cuda.mem_get_info()[0] else None
    log(f"loading {folder.name} ({pipeline_class.__name__}, {dtype}, {device}, device_map={device_map})")
    started = time.perf_counter()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    pipe = family.load(folder, i2v=i2v, dtype=dtype, device_map=device_map)
    loaded = setup_pipeline(pipe, folder=folder.name, settings=settings, i2v=i2v, device=device, dtype=dtype,
                            jobs=jobs, memory_mode=memory_mode, speed=speed, identity=identity, log=log)
    loaded.setup["device_map"] = device_map
    loaded.load_s = time.perf_counter() - started
    log(f"loaded {folder.name} in {loaded.load_s:.1f}s, memory mode {loaded.memory_mode}")
    return loaded


def setup_pipeline(
    pipe: Any,
    *,
    folder: str,
    settings: ModelSettings,
    i2v: bool,
    device: str,
    dtype: str,
    jobs: Sequence[Job],
    memory_mode: str | None,
    speed: SpeedOptions,
    identity: dict[str, Any],
    log: Log = log_line,
) -> LoadedPipeline:
    """Sampler, memory mode and speed options for a loaded pipeline (the GPU benchmark calls this too)."""
    family = FAMILIES[settings.family]
    sampler = family.configure(pipe, settings)  # the family's sampler settings (THUDM's for CogVideoX)
    pipe.set_progress_bar_config(disable=True)  # \r progress bars garble CloudWatch; progress_callback logs instead
    for component in pipe.components.values():  # inference everywhere: no dropout, whoever built the modules
        if isinstance(component, torch.nn.Module):
            component.eval()

    mode, memory = choose_memory_mode(pipe, device=device, jobs=jobs, requested=memory_mode, cache=speed.cache,
                                      family=family)
    if mode in ("none", "vae-tiling"):
        pipe.to(device)
    elif mode == "model-offload":
        pipe.enable_model_cpu_offload()
    elif mode == "sequential-offload":
        pipe.enable_sequential_cpu_offload()
    if mode in ("vae-tiling", "model-offload", "sequential-offload"):
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()

    # Speed options (clip_speed.py), in the order they compose: FP8 weights, then the cache hooks, then the
    # compile that traces through both. Each records what really happened, not what was asked.
    capability = torch.cuda.get_device_capability(0) if device == "cuda" else None
    fp8_mode, fp8_reason = clip_speed.fp8_decision(speed.fp8, device=device, capability=capability,
                                                   torchao_version=clip_speed.torchao_version())
    if speed.fp8 != "off":
        log(f"fp8: {fp8_mode} ({fp8_reason})")
    fp8_layers = clip_speed.apply_fp8(pipe.transformer, fp8_mode)
    cache = clip_speed.apply_cache(pipe, speed.cache, threshold=speed.cache_threshold, config=family.cache_config)
    compile_cache: dict[str, Any] = {"loaded": False, "reason": "compile off"}
    if speed.compile != "off":
        compile_cache = clip_speed.load_compile_cache(speed.compile_cache, clip_speed.compile_key(device), log)
    compiled = clip_speed.compile_regional(pipe.transformer, speed, log)
    return LoadedPipeline(folder=folder, pipe=pipe, i2v=i2v, settings=settings, device=device, dtype=dtype,
                          memory_mode=mode, compiled=speed.compile != "off", identity=identity, load_s=0.0, speed=speed,
                          family=family,
                          setup={"memory": memory, "family": family.name, **sampler, "speed": speed.as_dict(),
                                 "fp8": {"mode": fp8_mode, "reason": fp8_reason, "linear_layers": fp8_layers},
                                 "feature_cache": cache, "compile": compiled, "compile_cache": compile_cache})


def public_setup(setup: dict[str, Any]) -> dict[str, Any]:
    """The setup as provenance records it (the recompile log handler is an object, its messages are data)."""
    out = {name: value for name, value in setup.items() if name != "compile"}
    compiled = dict(setup.get("compile", {}))
    handler = compiled.pop("recompile_handler", None)
    if handler is not None:
        compiled["recompiles"] = list(handler.messages)
    out["compile"] = compiled
    return out


# After a CUDA out-of-memory error: the next safer placement (sequential offload is left to --memory-mode:
# switching an offloaded pipeline's hooks mid-batch is not something diffusers promises to support).
SAFER_MODE = {"none": "vae-tiling", "vae-tiling": "model-offload"}


def step_down_memory_mode(loaded: LoadedPipeline) -> bool:
    """Move `loaded` to the next safer memory mode; False when there is none to move to."""
    safer = SAFER_MODE.get(loaded.memory_mode)
    if safer is None:
        return False
    pipe = loaded.pipe
    if safer == "vae-tiling":
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
    else:
        pipe.enable_model_cpu_offload()
    loaded.setup.setdefault("memory_mode_changes", []).append(f"{loaded.memory_mode} -> {safer} after out of memory")
    loaded.memory_mode = safer
    return True


def choose_memory_mode(pipe: Any, *, device: str, jobs: Sequence[Job], requested: str | None,
                       cache: str = "none", family: ModelFamily | None = None) -> tuple[str, dict[str, Any]]:
    """The fastest placement that fits the free GPU memory: offload only when the weights cannot stay.
    A feature cache's stored activations count on top of every mode's headroom."""
    sizes = {name: module_bytes(module) for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}
    info: dict[str, Any] = {"component_bytes": sizes, "cache": cache}
    if device != "cuda":
        if requested not in (None, "cpu"):
            raise ValueError(f"memory_mode {requested!r} needs a CUDA GPU; this machine has none")
        return "cpu", info
    if requested == "cpu":
        raise ValueError("memory_mode 'cpu' was asked for on a machine with a CUDA GPU")
    free, total = torch.cuda.mem_get_info()
    scale = (family or family_of(jobs[0].model)).activation_scale(pipe, jobs)
    cached = clip_speed.CACHE_HEADROOM_GIB[cache]
    need_untiled = sum(sizes.values()) + (HEADROOM_UNTILED_GIB + cached) * scale * 2**30
    need_tiled = sum(sizes.values()) + (HEADROOM_TILED_GIB + cached) * scale * 2**30
    need_offload = max(sizes.values()) + (HEADROOM_TILED_GIB + cached) * scale * 2**30
    info.update(free_gib=round(free / 2**30, 3), total_gib=round(total / 2**30, 3),
                estimate_gib={"none": round(need_untiled / 2**30, 3), "vae-tiling": round(need_tiled / 2**30, 3),
                              "model-offload": round(need_offload / 2**30, 3)})
    if requested is not None:
        info["requested"] = requested
        return requested, info
    if need_untiled <= free:
        return "none", info
    if need_tiled <= free:
        return "vae-tiling", info
    if need_offload <= free:
        return "model-offload", info
    return "sequential-offload", info


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def folder_identity(folder: Path) -> dict[str, Any]:
    """What identifies a model folder without hashing gigabytes: model_index.json and every config file."""
    names = sorted(p for p in folder.rglob("*.json")
                   if p.name == "model_index.json" or p.name.endswith("config.json"))
    digest = hashlib.sha256()
    for path in names:
        rel = path.relative_to(folder).as_posix()
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return {"folder": folder.name, "sha256": digest.hexdigest(), "class": index.get("_class_name"),
            "diffusers_version": index.get("_diffusers_version"),
            "files": [p.relative_to(folder).as_posix() for p in names]}


# --- 4. one clip ----------------------------------------------------------------------------------


def render_clip(loaded: LoadedPipeline, job: Job, out_dir: Path, environment: dict[str, Any], *, log: Log,
                writer: ClipWriter, dump_raw_frames: bool = False, on_step: StepHook | None = None) -> Future[JobResult]:
    """Prepare the inputs, denoise and decode on the device; hand encoding and provenance to `writer`."""
    family = loaded.family
    started = time.perf_counter()

    # 4a. Check the job against the loaded model's own limits (not constants); the family picks the pipeline
    #     object (Wan derives its image-to-video pipeline from the loaded one, sharing every module).
    family.check(loaded.pipe, job)
    pipe = family.pipe_for(loaded.pipe, job, loaded.derived)
    max_tokens = family.max_text_tokens(pipe)
    notes: list[str] = []
    prompt_tokens = fit_prompt(pipe.tokenizer, job.prompt, max_tokens)
    if prompt_tokens["truncated"]:
        notes.append(f"prompt truncated to {max_tokens} tokens (had {prompt_tokens['tokens']})")
    negative_tokens = fit_prompt(pipe.tokenizer, job.negative_prompt, max_tokens) if job.negative_prompt else None
    if negative_tokens and negative_tokens["truncated"]:
        notes.append(f"negative prompt truncated to {max_tokens} tokens (had {negative_tokens['tokens']})")
    call: dict[str, Any] = {}
    image_info: dict[str, Any] | None = None
    if job.image is not None:
        call["image"], image_info = fit_image(job.image, job.width, job.height)
    kernel = attention_kernel_for(loaded, job)

    # 4b. Denoise and decode; the generator is seeded per job, on the CPU so seeds mean the same everywhere.
    #     The feature cache starts empty (a retry after out-of-memory must not reuse the failed call's state),
    #     the attention kernel is chosen for the whole call, and frames stay on the device until uint8.
    if loaded.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clip_speed.reset_cache(pipe)
    prepared = time.perf_counter()
    with clip_speed.attention_kernel(loaded.speed.attention):
        output = pipe(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            height=job.height,
            width=job.width,
            num_frames=job.frames,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance,
            generator=torch.Generator(device="cpu").manual_seed(job.seed),
            output_type="pt",
            max_sequence_length=max_tokens,
            callback_on_step_end=progress_callback(job, log, on_step),
            **family.call_kwargs(loaded.settings, job),
            **call,
        )
    video = output.frames[0]  # [F, C, H, W] in [0, 1], still on the device
    if not bool(torch.isfinite(video).all()):  # e.g. fp16 overflow: a black clip must not pass as a success
        raise RuntimeError(f"the decoded frames contain NaN or inf ({loaded.dtype} on {loaded.device})")
    frames = frames_to_uint8(video)
    del output, video
    denoised = time.perf_counter()
    if frames.shape != (job.frames, job.height, job.width, 3):
        raise RuntimeError(f"the pipeline returned frames of shape {frames.shape}, "
                           f"expected {(job.frames, job.height, job.width, 3)}")

    # 4c. Provenance (everything known now) and the write step, run by the writer while the next clip renders.
    mp4 = out_dir / f"{job.key}.mp4"
    provenance = {
        "status": "succeeded",
        "key": job.key,
        "job": job.as_dict(),
        "output": {"path": mp4.name, "width": job.width, "height": job.height, "frames": job.frames, "fps": job.fps,
                   "encoding": H264_PROFILE_ID,
                   "frames_sha256": hashlib.sha256(frames.tobytes()).hexdigest(),
                   "raw_frames": f"{job.key}.frames.npy" if dump_raw_frames else None},
        "model": {**loaded.identity, "model": job.model, "family": family.name, "i2v": job.image is not None},
        "settings": {"dtype": loaded.dtype, "device": loaded.device, "memory_mode": loaded.memory_mode,
                     "compiled": loaded.compiled, "max_text_tokens": max_tokens, "attention_kernel_ran": kernel,
                     "background_write": writer.background, **public_setup(loaded.setup)},
        "prompt_tokens": prompt_tokens,
        "negative_prompt_tokens": negative_tokens,
        "image": image_info,
        "notes": notes,
        "timings": {"load_s": round(loaded.load_s, 3), "prepare_s": round(prepared - started, 3),
                    "denoise_decode_s": round(denoised - prepared, 3), "render_s": round(denoised - started, 3)},
        "peak_memory": peak_memory(loaded.device),
        "environment": environment,
    }

    def write() -> JobResult:
        # 4d. Encode exactly these frames at the job's fps (no resize: macro_block_size=1), then provenance.
        began = time.perf_counter()
        if dump_raw_frames:
            dump_frames(frames, out_dir / f"{job.key}.frames.npy")
        write_mp4(frames, mp4, fps=job.fps)
        provenance["timings"]["encode_s"] = round(time.perf_counter() - began, 3)
        provenance["timings"]["clip_s"] = round(denoised - started + time.perf_counter() - began, 3)
        write_json(out_dir / f"{job.key}.json", provenance)
        log(f"{job.key}: written in {provenance['timings']['clip_s']:.1f}s" + (f" ({'; '.join(notes)})" if notes else ""))
        return JobResult(key=job.key, ok=True, mp4=mp4, provenance=provenance)

    return writer.submit(write)


def attention_kernel_for(loaded: LoadedPipeline, job: Job) -> str:
    """The SDPA kernel this clip's attention shape runs under the chosen priority (probed once per size)."""
    size = clip_size(job)
    if size not in loaded.attention_kernels:
        shape = loaded.family.attention_shape(loaded.pipe, job)
        # the probe runs where the transformer's attention runs (an offloaded pipeline computes on the GPU too)
        loaded.attention_kernels[size] = clip_speed.probe_attention_kernel(
            loaded.speed.attention, device=loaded.device, dtype=getattr(torch, loaded.dtype), **shape)
    return loaded.attention_kernels[size]


def fit_prompt(tokenizer: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    """Count the prompt's tokens the way the pipeline encodes it; say what survives truncation."""
    ids = tokenizer(prompt, add_special_tokens=True).input_ids
    info: dict[str, Any] = {"tokens": len(ids), "max_tokens": max_tokens, "truncated": len(ids) > max_tokens}
    if info["truncated"]:
        # the pipeline tokenizes with truncation=True: max_tokens - 1 pieces + </s>
        info["kept"] = tokenizer.decode(ids[: max_tokens - 1], skip_special_tokens=True)
    return info


def fit_image(path: Path, width: int, height: int) -> tuple[Image.Image, dict[str, Any]]:
    """Scale the start image to cover width x height, then centre-crop (never stretch)."""
    with Image.open(path) as opened:
        source = ImageOps.exif_transpose(opened).convert("RGB")
    fitted = ImageOps.fit(source, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return fitted, {"path": str(path), "source_size": list(source.size), "size": [width, height],
                    "fit": "cover+center-crop", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def progress_callback(job: Job, log: Log, on_step: StepHook | None = None) -> Callable[..., dict[str, Any]]:
    """diffusers' callback_on_step_end: a log line every few steps, and every step to `on_step` when given."""
    every = max(1, job.steps // PROGRESS_LINES_PER_CLIP)
    started = time.perf_counter()

    def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        done = step + 1
        if done % every == 0 or done == job.steps:
            log(f"{job.key}: step {done}/{job.steps} ({time.perf_counter() - started:.1f}s)")
        if on_step is not None:
            on_step(job.key, done, job.steps)
        return callback_kwargs

    return on_step_end


# The product's one H.264 profile, a copy of pipeline/media/encode.py's H264_PROFILE (this file cannot import
# `pipeline`; tests/test_media_encode.py keeps the two identical): CRF 17, a keyframe every 4 frames, no B-frames,
# stitchable headers, tagged, so assembly joins these clips by stream copy outside its crossfade windows.
H264_PROFILE_ID = "campaign-h264/1"  # what a clip's provenance says it is encoded with (the comment tag below)
H264_PROFILE: tuple[str, ...] = (
    "-preset", "veryfast", "-crf", "17", "-g", "4", "-keyint_min", "4", "-sc_threshold", "0", "-bf", "0",
    "-x264-params", "stitchable=1", "-metadata", "comment=campaign-h264/1",
)


def write_mp4(frames: np.ndarray, path: Path, *, fps: int) -> None:
    """H.264/yuv420p in H264_PROFILE at exactly the frames' size; a temp name until complete, then os.replace."""
    count, height, width, _ = frames.shape
    partial = path.with_name(f".{path.stem}.partial.mp4")  # ffmpeg picks the container from the extension
    writer = imageio_ffmpeg.write_frames(
        str(partial), (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
        macro_block_size=1, quality=None, ffmpeg_log_level="error",
        output_params=[*H264_PROFILE, "-movflags", "+faststart"],
    )
    try:
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


# --- failures, provenance, environment ------------------------------------------------------------


def quiet_libraries() -> None:
    """Our flushed lines carry the progress: no tqdm bars (\r garbles CloudWatch), no library chatter."""
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=Path, default=SAGEMAKER_JOBS, help="a .jsonl jobs file or a folder of them")
    parser.add_argument("--models", type=Path, default=SAGEMAKER_MODELS, help="folder of diffusers pipeline folders")
    parser.add_argument("--out", type=Path, default=SAGEMAKER_OUT, help="where <key>.mp4 and <key>.json go")
    parser.add_argument("--compile", nargs="?", const="regional", default="off", choices=clip_speed.COMPILE_MODES,
                        help="regional: torch.compile each transformer block, fullgraph (pays off over a batch)")
    parser.add_argument("--compile-cache", type=Path, default=None,
                        help="folder with a saved compile cache (compile-cache.bin/.json), used when torch/Triton/GPU match")
    parser.add_argument("--compile-cache-out", type=Path, default=None, help="save this job's compile cache here")
    parser.add_argument("--recompile-limit", type=int, default=SpeedOptions.recompile_limit,
                        help="a clip that needs more recompiles than this fails instead of running eager")
    parser.add_argument("--fp8", choices=clip_speed.FP8_MODES, default=SpeedOptions.fp8,
                        help="auto: torchao FP8 (dynamic, per-row) linear layers on compute capability >= 8.9 (lossy)")
    parser.add_argument("--attention", choices=clip_speed.ATTENTION_KERNELS, default=SpeedOptions.attention,
                        help="SDPA kernel priority for the transformer's attention")
    parser.add_argument("--cache", choices=clip_speed.FEATURE_CACHES, default=SpeedOptions.cache,
                        help="feature cache that skips attention/block work between steps (lossy)")
    parser.add_argument("--cache-threshold", type=float, default=SpeedOptions.cache_threshold,
                        help="firstblock: residual change under which the other blocks are skipped")
    parser.add_argument("--workers", default="auto",
                        help="processes, one per GPU: auto = every visible GPU; 1 = this process only")
    parser.add_argument("--dump-frames", action="store_true", help="also write <key>.frames.npy (raw uint8 frames)")
    parser.add_argument("--sync-write", action="store_true", help="encode in the render thread (for comparison)")
    parser.add_argument("--summary", type=Path, default=None, help=argparse.SUPPRESS)  # a worker's _batch.json
    parser.add_argument("--memory-mode", choices=MEMORY_MODES, default=None,
                        help="override the placement chosen from free GPU memory")
    args = parser.parse_args(argv)
    try:
        speed = SpeedOptions(compile=args.compile, compile_cache=args.compile_cache,
                             recompile_limit=args.recompile_limit, fp8=args.fp8, attention=args.attention,
                             cache=args.cache, cache_threshold=args.cache_threshold)
        workers = clip_workers.worker_count(args.workers, gpu_count=torch.cuda.device_count())
    except ValueError as exc:
        parser.error(str(exc))
    quiet_libraries()
    try:
        if workers > 1:
            return run_on_workers(args, workers=workers, argv=list(argv if argv is not None else sys.argv[1:]))
        batch = run_batch(args.jobs, args.models, args.out, memory_mode=args.memory_mode, speed=speed,
                          dump_raw_frames=args.dump_frames, background_write=not args.sync_write,
                          compile_cache_out=args.compile_cache_out, summary_path=args.summary)
    except FileNotFoundError as exc:
        log_line(f"error: {exc}")
        return 2
    return batch.exit_code


def run_on_workers(args: argparse.Namespace, *, workers: int, argv: list[str]) -> int:
    """Step 0 on a multi-GPU instance: split the checked jobs over one child per GPU, merge their summaries."""
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    environment = runtime_environment()
    jobs, rejected = read_jobs(args.jobs, out_dir, environment, log_line)
    shares = clip_workers.split_jobs(jobs, workers)
    lines = {job.key: {**job.as_dict(), **({"image": str(job.image.resolve())} if job.image else {})} for job in jobs}
    gpus = [str(i) for i in range(workers)] if torch.cuda.device_count() >= workers else None
    log_line(f"{len(jobs)} job(s) over {len(shares)} worker(s): " +
             ", ".join(f"worker {s.worker}: {len(s.keys)}" for s in shares))
    forwarded = clip_workers.strip_options(argv, {"--jobs", "--models", "--out", "--workers", "--summary", "--compile-cache-out"})
    summaries = clip_workers.run_workers(generate_py=Path(__file__).resolve(), shares=shares, lines_by_key=lines,
                                         models_dir=args.models, out_dir=out_dir, forwarded_args=forwarded, gpus=gpus)
    results = [{"key": r.key, "ok": r.ok, "error": r.error, "error_type": r.error_type} for r in rejected]
    for summary in summaries:
        results += summary["results"]
        done = {r["key"] for r in summary["results"]}
        results += [{"key": k, "ok": False, "error": f"worker {summary['worker']} exited {summary['exit_code']}",
                     "error_type": "WorkerFailed"} for k in summary["keys"] if k not in done]
    succeeded = sum(bool(r["ok"]) for r in results)
    write_json(out_dir / "_batch.json", {
        "jobs": len(results), "succeeded": succeeded, "failed": len(results) - succeeded, "environment": environment,
        "loads": [dict(load, worker=s["worker"]) for s in summaries for load in s["loads"]],
        "workers": [{k: s[k] for k in ("worker", "gpu", "exit_code", "keys")} for s in summaries], "results": results,
    })
    log_line(f"done: {succeeded}/{len(results)} clip(s) written to {out_dir} by {len(shares)} worker(s)")
    return 2 if not results else (0 if succeeded else 1)


if __name__ == "__main__":
    sys.exit(main())
