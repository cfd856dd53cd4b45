"""Wan2.2 TI2V-5B for generate.py: one folder for text- and image-to-video, the folder's own flow sampler.

Facts from diffusers 0.42.1 (../shared/reference/toolchain.md, "Wan2.2 TI2V-5B"): the folder is a `WanPipeline`
saved with `expand_timesteps=True`; image-to-video is `WanImageToVideoPipeline.from_pipe(pipe)` on the same
weights (the start image's VAE latent replaces latent frame 0; no CLIP image encoder) and calls `ftfy`
unconditionally; sizes are multiples of 32, frames 4k+1; UMT5 prompts up to 512 tokens; the VAE runs in float32.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from clip_families import ModelFamily
from clip_jobs import Job, JobError, ModelSettings

MAX_SEQUENCE_LENGTH = 512  # WanPipeline.__call__'s default and what the model was trained with
# Memory headroom is scaled by transformer tokens against CogVideoX-5b's reference clip (720x480x49: 13 latent
# frames of 30x45 patches), since Wan's VAE compresses 16x, not 8x, in space [estimate, unmeasured on a GPU].
COGVIDEOX_REFERENCE_TOKENS = 13 * 30 * 45


class WanFamily(ModelFamily):
    name = "wan"
    # Mirrors pipeline/catalog.py VIDEO_MODELS; "folder": the UniPC flow sampler saved with the weights
    # (flow_shift 5.0 for TI2V-5B) is what the model was tuned with, so it is kept as is.
    models = {
        "wan2.2-ti2v-5b": ModelSettings("bfloat16", "folder", dynamic_cfg=False, family="wan", separate_i2v=False),
    }

    def folder_class(self, i2v: bool) -> type:
        from diffusers import WanPipeline

        return WanPipeline  # one folder; image-to-video is derived from it (pipe_for)

    def load(self, folder: Any, *, i2v: bool, dtype: str, device_map: str | None) -> Any:
        import torch
        from diffusers import WanPipeline

        # bf16 for the transformer and text encoder, float32 for the VAE (Wan's own dtype mix); float32 on a CPU.
        mix: Any = getattr(torch, dtype) if dtype == "float32" else {"default": getattr(torch, dtype), "vae": torch.float32}
        return WanPipeline.from_pretrained(folder, dtype=mix, local_files_only=True,
                                           **({"device_map": device_map} if device_map else {}))

    def configure(self, pipe: Any, settings: ModelSettings) -> dict[str, Any]:
        scheduler = pipe.scheduler.config
        return {"scheduler": type(pipe.scheduler).__name__, "flow_shift": scheduler.get("flow_shift"),
                "expand_timesteps": bool(pipe.config.get("expand_timesteps", False))}

    def pipe_for(self, pipe: Any, job: Job, cache: dict[str, Any]) -> Any:
        if job.image is None:
            return pipe
        if "i2v" not in cache:
            if not pipe.config.get("expand_timesteps", False):
                raise JobError(f"{job.source}: this Wan folder was not saved with expand_timesteps=True (Wan2.2 "
                               "TI2V), so it cannot start from an image without a CLIP image encoder")
            if importlib.util.find_spec("ftfy") is None:
                raise JobError(f"{job.source}: Wan image-to-video needs the ftfy package (diffusers' "
                               "WanImageToVideoPipeline cleans prompts with it); pip install ftfy")
            from diffusers import WanImageToVideoPipeline

            i2v = WanImageToVideoPipeline.from_pipe(pipe)  # the same modules: nothing is loaded twice
            i2v.set_progress_bar_config(disable=True)
            cache["i2v"] = i2v
        return cache["i2v"]

    def max_text_tokens(self, pipe: Any) -> int:
        return MAX_SEQUENCE_LENGTH

    def attention_shape(self, pipe: Any, job: Job) -> dict[str, int]:
        """Wan's self-attention sees only the video tokens (text enters by cross-attention)."""
        config = pipe.transformer.config
        pt, ph, pw = config.patch_size
        latent_frames = (job.frames - 1) // pipe.vae_scale_factor_temporal + 1
        spatial = pipe.vae_scale_factor_spatial
        tokens = (latent_frames // pt) * (job.height // spatial // ph) * (job.width // spatial // pw)
        return {"batch": 2, "heads": config.num_attention_heads, "tokens": tokens, "head_dim": config.attention_head_dim}

    def activation_scale(self, pipe: Any, jobs: Sequence[Job]) -> float:
        return max(self.attention_shape(pipe, j)["tokens"] for j in jobs) / COGVIDEOX_REFERENCE_TOKENS

    def speed_problem(self, speed: Any) -> str | None:
        if speed.cache == "fastercache":
            return ("--cache fastercache has no settings for Wan here (the ones in family_cogvideox.py are "
                    "CogVideoX's, from diffusers PR #10163, and unmeasured on Wan); use --cache firstblock, pab or none")
        if speed.cache == "pab" and speed.compile != "off":
            # PAB's hook tests the timestep range inside the compiled block: a data-dependent branch that a fullgraph
            # compile of WanTransformerBlock cannot trace (torch GuardOnDataDependentSymNode, seen on CPU).
            return "--cache pab cannot run inside --compile regional on Wan (a data-dependent branch); use one of them"
        return None


FAMILY = WanFamily()
