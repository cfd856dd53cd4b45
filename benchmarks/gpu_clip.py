"""GPU benchmark: seconds per CogVideoX-5b clip through container/generate.py for each speed configuration,
against eager measured in the same run (and THUDM's published H100 time); with --models, Wan2.2 TI2V-5B beside it
on the same card.

    python benchmarks/gpu_clip.py [--configs eager,compile,compile+fp8,compile+fp8+fastercache] [--clips 8] [--steps 50]
    python benchmarks/gpu_clip.py --models cogvideox-5b,wan2.2-ti2v-5b --configs compile   # side by side
    python benchmarks/gpu_clip.py --tiny --clips 2 --steps 2 --compile-backend aot_eager   # CPU smoke test

With one model the figures print as `<config>.<name>: value`; with several, as `<model>.<config>.<name>: value`.
Wan2.2 TI2V-5B is built the same way at its published size (transformer 30 layers x 3072, UMT5-XXL encoder, the
48-channel residual VAE in float32) and runs 121 frames at 1280x704, 50 steps, its own 24 fps clip.

A configuration is options joined by "+": compile (regional, fullgraph), fp8 (torchao dynamic per-row where the
GPU has FP8, else off with the reason printed), fp8wo (FP8 weight-only), fastercache / pab / firstblock (feature
caches), cudnn / flash / efficient / math (SDPA kernel; default priority cuDNN > Flash > efficient > math).
"eager" is none of them and is always run first: every ratio is against it.

The full-size CogVideoX-5b architecture (transformer 5.57 B params, T5-XXL encoder 4.76 B, VAE 0.22 B) is
built with random bf16 weights directly on the GPU: speed does not depend on weight values, so no download
is needed. The clips then run through the container's own `setup_pipeline` + `render_clip` (scheduler,
memory mode, speed options, denoise, decode, background mp4 encode), 49 frames at 720x480, 50 steps by
default. Printed, one `<config>.<name>: value` per line: seconds_per_clip, load_setup_s, first_clip_s,
peak_gpu_gib, ratio_vs_eager, ratio_vs_thudm_h100, setup_share_of_batch (load + setup + the first clip's
extra over the median, over the batch's wall time) and what ran (fp8 mode, attention kernel, cache).

Random weights time the non-adaptive options truthfully (compile, FP8, the kernel, PAB and FasterCache's
fixed schedules skip the same work whatever the weights); FirstBlockCache decides from the residuals, so
its random-weight time means nothing (printed as weights_matter: yes).

Not measured here: reading ~21 GB of real weights from disk (random weights are built in place), which a
processing job pays once per batch on top of load_setup_s.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

GENERATE_PY = Path(__file__).resolve().parents[1] / "container" / "generate.py"

# THUDM CogVideo README: CogVideoX-5B, 50 steps, 49 frames at 720x480, "H100 ~90 s" (reference §2).
THUDM_H100_SECONDS_PER_CLIP = 90.0
TARGET_RATIO = 0.5  # issue 16: at most half the published time per clip (45 s on one H100)
TARGET_SETUP_SHARE = 0.10  # issue 16: load + setup at most 10% of a batch of 8
DEFAULT_CONFIGS = "eager,compile,compile+fp8,compile+fp8+fastercache,compile+fp8+pab"
KERNELS = ("cudnn", "flash", "efficient", "math")
CACHES = ("fastercache", "pab", "firstblock")

# CogVideoX-5b's published configs (transformer/config.json, vae/config.json, text_encoder = T5 v1.1 XXL).
FULL_TRANSFORMER: dict[str, Any] = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
    text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
    temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False, attention_bias=True, flip_sin_to_cos=True, freq_shift=0,
)
FULL_VAE: dict[str, Any] = dict(
    block_out_channels=(128, 256, 256, 512), latent_channels=16, layers_per_block=3, norm_num_groups=32,
    temporal_compression_ratio=4, scaling_factor=0.7, sample_height=480, sample_width=720,
)
FULL_T5: dict[str, Any] = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
)
SCHEDULER: dict[str, Any] = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, prediction_type="v_prediction",
    rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0, timestep_spacing="trailing",
)
FULL_CLIP: dict[str, Any] = dict(width=720, height=480, frames=49, fps=8)

# A tiny configuration of the same architecture that runs on a CPU in seconds.
TINY_TRANSFORMER: dict[str, Any] = dict(
    num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=2, text_embed_dim=32,
    num_layers=1, sample_width=6, sample_height=4, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
    max_text_seq_length=16, use_rotary_positional_embeddings=True,
)
TINY_VAE: dict[str, Any] = dict(
    down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
    block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
)
TINY_T5: dict[str, Any] = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1)
TINY_CLIP: dict[str, Any] = dict(width=48, height=32, frames=9, fps=8)

# Wan2.2 TI2V-5B's published configs (Wan-AI/Wan2.2-TI2V-5B-Diffusers transformer/, vae/, text_encoder/ config.json;
# the official wan/configs/wan_ti2v_5B.py: dim 3072, ffn 14336, 24 heads, 30 layers, VAE stride 4x16x16).
WAN_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
    text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6, rope_max_seq_len=1024,
)
WAN_VAE: dict[str, Any] = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
    temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
    scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
)
UMT5_XXL: dict[str, Any] = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
)
WAN_CLIP: dict[str, Any] = dict(width=1280, height=704, frames=121, fps=24)
TINY_WAN_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48, text_dim=32,
    freq_dim=32, ffn_dim=32, num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
)
TINY_WAN_VAE: dict[str, Any] = dict(WAN_VAE, base_dim=4, decoder_base_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
TINY_WAN_CLIP: dict[str, Any] = dict(width=64, height=32, frames=5, fps=24)
WAN = "wan2.2-ti2v-5b"
CLIPS = {"cogvideox-5b": (FULL_CLIP, TINY_CLIP), WAN: (WAN_CLIP, TINY_WAN_CLIP)}
GUIDANCE = {"cogvideox-5b": 6.0, WAN: 5.0}


def load_generate() -> ModuleType:
    name = "campaign_container_generate"  # the name pipeline/backends/video_diffusers.py uses too
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATE_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tokenizer() -> Any:
    """A T5 tokenizer from an in-code vocabulary (the text is padded to max_text_seq_length either way)."""
    from transformers import T5Tokenizer

    words = "a bee on flower sofa in sunlit loft the camera slowly orbits it navy blue velvet".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(f"▁{w}", -3.0) for w in words]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_components(*, tiny: bool, device: str, dtype: Any, model: str = "cogvideox-5b") -> dict[str, Any]:
    """Random-weight components created directly on `device` in `dtype` (no CPU copy, no download)."""
    import torch

    if model == WAN:
        return build_wan_components(tiny=tiny, device=device, dtype=dtype)
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    previous_dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device):
            transformer = CogVideoXTransformer3DModel(**(TINY_TRANSFORMER if tiny else FULL_TRANSFORMER))
            vae = AutoencoderKLCogVideoX(**(TINY_VAE if tiny else FULL_VAE))
            text_encoder = T5EncoderModel(T5Config(**(TINY_T5 if tiny else FULL_T5)))
    finally:
        torch.set_default_dtype(previous_dtype)
    components: dict[str, Any] = {"tokenizer": tokenizer(), "text_encoder": text_encoder, "vae": vae,
                                  "transformer": transformer, "scheduler": CogVideoXDDIMScheduler(**SCHEDULER)}
    for name in ("text_encoder", "vae", "transformer"):  # buffers made outside the default dtype; no dropout
        components[name] = components[name].to(dtype).eval()
    return components


def build_wan_components(*, tiny: bool, device: str, dtype: Any) -> dict[str, Any]:
    """Wan2.2 TI2V-5B's components with random weights on `device`: bf16, the VAE in float32 (its own mix)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    previous_dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device):
            transformer = WanTransformer3DModel(**(TINY_WAN_TRANSFORMER if tiny else WAN_TRANSFORMER))
            text_encoder = UMT5EncoderModel(UMT5Config(**(dict(TINY_T5, num_layers=1) if tiny else UMT5_XXL)))
        torch.set_default_dtype(torch.float32)
        with torch.device(device):
            vae = AutoencoderKLWan(**(TINY_WAN_VAE if tiny else WAN_VAE))
    finally:
        torch.set_default_dtype(previous_dtype)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    return {"tokenizer": tokenizer(), "text_encoder": text_encoder.to(dtype).eval(), "vae": vae.eval(),
            "transformer": transformer.to(dtype).eval(), "scheduler": scheduler}


def parameter_counts(components: dict[str, Any]) -> dict[str, int]:
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in components.items() if hasattr(module, "parameters")}


def speed_options(generate: ModuleType, config: str, *, compile_backend: str, tiny: bool) -> Any:
    """SpeedOptions for a configuration name like "compile+fp8+fastercache"."""
    options: dict[str, Any] = {"compile_backend": compile_backend}
    for part in config.split("+"):
        if part == "eager":
            continue
        if part == "compile":
            options["compile"] = "regional"
        elif part == "fp8":
            options["fp8"] = "auto"
        elif part == "fp8wo":
            options["fp8"] = "weight-only"
        elif part in CACHES:
            options["cache"] = part
            if part == "firstblock" and tiny:
                options["cache_threshold"] = 1.0  # random tiny weights: make the skip happen so the path runs
        elif part in KERNELS:
            options["attention"] = part
        else:
            raise ValueError(f"unknown option {part!r} in configuration {config!r}")
    return generate.SpeedOptions(**options)


def run_config(generate: ModuleType, config: str, *, args: argparse.Namespace, device: str, dtype_name: str,
               jobs: list[Any], log: Any, model: str = "cogvideox-5b") -> dict[str, Any]:
    """One configuration: build + set up (the batch's fixed cost), then the batch through render_clip."""
    import torch
    from diffusers import CogVideoXPipeline, WanPipeline

    settings = generate.MODEL_SETTINGS[model]
    speed = speed_options(generate, config, compile_backend=args.compile_backend, tiny=args.tiny)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    components = build_components(tiny=args.tiny, device=device, dtype=getattr(torch, dtype_name), model=model)
    counts = parameter_counts(components)
    pipe = WanPipeline(**components, expand_timesteps=True) if model == WAN else CogVideoXPipeline(**components)
    loaded = generate.setup_pipeline(
        pipe, folder=f"random-{model}" + ("-tiny" if args.tiny else ""), settings=settings, i2v=False,
        device=device, dtype=dtype_name, jobs=jobs, memory_mode=args.memory_mode, speed=speed,
        identity={"folder": "random weights", "sha256": None}, log=log,
    )
    if device == "cuda":
        torch.cuda.synchronize()
    load_setup_s = time.perf_counter() - started
    loaded.load_s = load_setup_s

    # The batch: every clip through the container's render_clip; encodes overlap the next clip (background writer).
    environment = generate.runtime_environment()
    clip_s: list[float] = []
    writer = generate.ClipWriter(background=True)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as out:
        batch_started = time.perf_counter()
        futures = []
        for job in jobs:
            t0 = time.perf_counter()
            futures.append(generate.render_clip(loaded, job, Path(out), environment, log=log, writer=writer))
            if device == "cuda":
                torch.cuda.synchronize()
            clip_s.append(time.perf_counter() - t0)
            print(f"{config}: clip {job.key}: {clip_s[-1]:.2f}s", flush=True)
        writer.close()
        batch_clips_s = time.perf_counter() - batch_started
        first = futures[0].result().provenance["settings"]
    steady = statistics.median(clip_s[1:]) if len(clip_s) > 1 else clip_s[0]
    warmup_extra = max(0.0, clip_s[0] - steady)  # compile / autotune on the first clip: fixed cost too
    batch_wall_s = load_setup_s + batch_clips_s
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    del loaded, pipe, components
    generate.release_memory()
    return {
        "load_setup_s": load_setup_s, "first_clip_s": clip_s[0], "seconds_per_clip": steady,
        "batch_wall_s": batch_wall_s, "setup_share": (load_setup_s + warmup_extra) / batch_wall_s,
        "warmup_extra_s": warmup_extra, "peak_gib": peak, "counts": counts, "memory_mode": first["memory_mode"],
        "fp8": f"{first['fp8']['mode']} ({first['fp8']['reason']})", "attention_kernel": first["attention_kernel_ran"],
        "cache": first["feature_cache"]["cache"], "compile": first["compile"].get("compile", "off"),
        "recompiles": len(first["compile"].get("recompiles", [])),
        "weights_matter": "yes" if speed.cache == "firstblock" else "no",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config (CPU, seconds): a smoke test, not a benchmark")
    parser.add_argument("--configs", default=None, help=f"comma-separated configurations (default {DEFAULT_CONFIGS})")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager: no codegen)")
    parser.add_argument("--models", default="cogvideox-5b", help=f"comma-separated: cogvideox-5b, {WAN} (side by side)")
    parser.add_argument("--clips", type=int, default=8, help="clips in each configuration's batch")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per clip")
    parser.add_argument("--memory-mode", default=None, help="override generate.py's choice (see its MEMORY_MODES)")
    parser.add_argument("--verbose", action="store_true", help="show generate.py's progress lines")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.steps < 1:
        parser.error(f"--clips and --steps must be >= 1, got {args.clips} and {args.steps}")

    generate = load_generate()  # sets HF_HUB_OFFLINE before diffusers is imported
    generate.quiet_libraries()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        print("error: the full-size benchmark needs a CUDA GPU; use --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    configs = [c for c in (args.configs or DEFAULT_CONFIGS).split(",") if c and c != "eager"]
    try:
        for config in configs:
            speed_options(generate, config, compile_backend=args.compile_backend, tiny=args.tiny)
    except ValueError as exc:
        parser.error(str(exc))
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in CLIPS]
    if unknown or not models:
        parser.error(f"--models: {unknown or 'none'}; choose from {', '.join(CLIPS)}")
    for model in models:
        prefix = f"{model}." if len(models) > 1 else ""
        bench_model(generate, model, prefix=prefix, configs=configs, args=args, device=device)
    return 0


def bench_model(generate: ModuleType, model: str, *, prefix: str, configs: list[str], args: argparse.Namespace,
                device: str) -> None:
    """Every configuration of one model, eager first, printed as `<prefix><config>.<name>: value`."""
    import torch

    dtype_name = generate.MODEL_SETTINGS[model].dtype if device == "cuda" else "float32"
    clip = CLIPS[model][1 if args.tiny else 0]
    jobs = [generate.Job(key=f"bench-{i}", model=model, prompt="A bee on a flower, the camera slowly orbits it",
                         steps=args.steps, guidance=GUIDANCE[model], seed=i, source=f"benchmark clip {i}", **clip)
            for i in range(args.clips)]
    log = generate.log_line if args.verbose else (lambda message: None)

    print(f"{prefix}config: {'tiny (smoke test; the times mean nothing)' if args.tiny else f'{model} full size, random weights'}")
    print(f"{prefix}device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}")
    print(f"{prefix}dtype: {dtype_name}")
    print(f"{prefix}clip: {clip['width']}x{clip['height']}x{clip['frames']} frames, {args.steps} steps")
    print(f"{prefix}batch_clips: {args.clips}", flush=True)
    figures: dict[str, dict[str, Any]] = {}
    family = generate.family_of(model)
    for config in ["eager", *configs]:  # eager first: the baseline of every ratio, in this run
        refused = family.speed_problem(speed_options(generate, config, compile_backend=args.compile_backend, tiny=args.tiny))
        if refused:
            print(f"{prefix}{config}.skipped: {refused}", flush=True)
            continue
        figures[config] = run_config(generate, config, args=args, device=device, dtype_name=dtype_name, jobs=jobs,
                                     log=log, model=model)
    counts = figures["eager"]["counts"]
    print(f"{prefix}params_transformer: {counts['transformer']}")
    print(f"{prefix}params_text_encoder: {counts['text_encoder']}")
    print(f"{prefix}params_vae: {counts['vae']}")
    eager = figures["eager"]["seconds_per_clip"]
    for config, f in figures.items():
        published = (f"{f['seconds_per_clip'] / THUDM_H100_SECONDS_PER_CLIP:.3f} (published {THUDM_H100_SECONDS_PER_CLIP:.0f} s; "
                     f"target <= {TARGET_RATIO})") if model == "cogvideox-5b" else "n/a (no published H100 time)"
        lines = {
            "seconds_per_clip": f"{f['seconds_per_clip']:.3f}",
            "ratio_vs_eager": f"{f['seconds_per_clip'] / eager:.3f}",
            "ratio_vs_thudm_h100": published,
            "load_setup_s": f"{f['load_setup_s']:.2f}",
            "first_clip_s": f"{f['first_clip_s']:.2f}",
            "batch_wall_s": f"{f['batch_wall_s']:.2f}",
            "setup_share_of_batch": f"{f['setup_share']:.3f} (load+setup {f['load_setup_s']:.2f}s + first-clip warm-up "
                                    f"{f['warmup_extra_s']:.2f}s; target <= {TARGET_SETUP_SHARE})",
            "peak_gpu_gib": f"{f['peak_gib']:.2f}" if f["peak_gib"] is not None else "n/a (cpu)",
            "memory_mode": f["memory_mode"], "compile": f["compile"], "recompiles": f["recompiles"], "fp8": f["fp8"],
            "attention_kernel": f["attention_kernel"], "cache": f["cache"], "weights_matter": f["weights_matter"],
        }
        for name, value in lines.items():
            print(f"{prefix}{config}.{name}: {value}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
