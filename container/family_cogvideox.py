"""CogVideoX (2b, 5b, 1.5-5b) for generate.py: separate T2V and I2V folders, THUDM's sampler, learned-size checks.

Settings follow THUDM's CogVideo README and inference/cli_demo.py (../shared/reference/models-and-services.md §2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clip_families import ModelFamily
from clip_jobs import Job, JobError, ModelSettings


class CogVideoXFamily(ModelFamily):
    name = "cogvideox"
    # Mirrors the dtype column of pipeline/catalog.py VIDEO_MODELS; tests/test_container.py checks the two agree.
    models = {
        "cogvideox-2b": ModelSettings("float16", "ddim", dynamic_cfg=False),
        "cogvideox-5b": ModelSettings("bfloat16", "dpm", dynamic_cfg=True),
        "cogvideox1.5-5b": ModelSettings("bfloat16", "dpm", dynamic_cfg=True),
    }

    def folder_class(self, i2v: bool) -> type:
        from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

        return CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline

    def configure(self, pipe: Any, settings: ModelSettings) -> dict[str, Any]:
        # THUDM's sampler: DPM with trailing spacing (+ dynamic CFG) for 5B, DDIM for 2B.
        from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

        scheduler_class = CogVideoXDPMScheduler if settings.scheduler == "dpm" else CogVideoXDDIMScheduler
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        return {"scheduler": scheduler_class.__name__, "use_dynamic_cfg": settings.dynamic_cfg}

    def check(self, pipe: Any, job: Job) -> None:
        super().check(pipe, job)
        config = pipe.transformer.config
        if config.use_learned_positional_embeddings:
            native = (config.sample_width * pipe.vae_scale_factor_spatial, config.sample_height * pipe.vae_scale_factor_spatial)
            if (job.width, job.height) != native:
                raise JobError(f"{job.source}: this model's learned positional embedding runs only at "
                               f"{native[0]}x{native[1]}, the job asks {job.width}x{job.height}")

    def max_text_tokens(self, pipe: Any) -> int:
        return int(pipe.transformer.config.max_text_seq_length)

    def call_kwargs(self, settings: ModelSettings, job: Job) -> dict[str, Any]:
        return {"use_dynamic_cfg": settings.dynamic_cfg}

    def attention_shape(self, pipe: Any, job: Job) -> dict[str, int]:
        """CogVideoX attends over text and video tokens jointly (CFG doubles the batch)."""
        config = pipe.transformer.config
        latent_frames = (job.frames - 1) // pipe.vae_scale_factor_temporal + 1
        side = pipe.vae_scale_factor_spatial * config.patch_size
        tokens = latent_frames * (job.height // side) * (job.width // side) + config.max_text_seq_length
        return {"batch": 2, "heads": config.num_attention_heads, "tokens": tokens, "head_dim": config.attention_head_dim}

    def cache_config(self, name: str, *, current_timestep: Callable[[], Any], threshold: float) -> Any:
        """Settings that hook CogVideoX's blocks."""
        from diffusers import FasterCacheConfig

        if name == "fastercache":
            # diffusers' CogVideoX example (docs/source/en/api/cache.md, PR #10163): spatial attention every other
            # step below t=681, the unconditional branch from the conditional one 4 of 5 steps below t=781.
            return FasterCacheConfig(
                spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 681),
                current_timestep_callback=current_timestep, attention_weight_callback=lambda _: 0.3,
                unconditional_batch_skip_range=5, unconditional_batch_timestep_skip_range=(-1, 781),
                tensor_format="BFCHW",
            )
        return super().cache_config(name, current_timestep=current_timestep, threshold=threshold)


FAMILY = CogVideoXFamily()
