"""A tiny random-weight Wan2.2 TI2V pipeline built in code and saved as a diffusers folder.

A helper module, not a conftest: tests import it. The same classes as Wan-AI/Wan2.2-TI2V-5B-Diffusers
(../shared/reference/toolchain.md): `WanTransformer3DModel` (48 latent channels, patch (1, 2, 2)), a residual
`AutoencoderKLWan` (z_dim 48, patch 2, 16x spatial and 4x temporal compression), `UMT5EncoderModel`, a T5
tokenizer from an in-code vocabulary, the UniPC flow sampler, saved as a `WanPipeline` with
`expand_timesteps=True` in `<models>/wan2.2-ti2v-5b` (one folder for text- and image-to-video), shrunk in
width and depth so a 2-step clip takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers/transformers are imported anywhere in the test process

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from tiny_cogvideo import tiny_tokenizer  # noqa: E402

MODEL = "wan2.2-ti2v-5b"
# Multiples of 32 (VAE 16 x patch 2) and 4k+1 frames, as the real model needs; 24 fps as it makes.
WIDTH, HEIGHT, FRAMES, FPS = 64, 32, 5, 24
Z_DIM = 48


def tiny_components(*, num_layers: int = 1) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=4, decoder_base_dim=4, z_dim=Z_DIM, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
        scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * Z_DIM, latents_std=[1.0] * Z_DIM,
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=Z_DIM, out_channels=Z_DIM,
        text_dim=32, freq_dim=32, ffn_dim=32, num_layers=num_layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4, relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
    ))
    # Wan2.2 TI2V-5B's sampler (scheduler/scheduler_config.json): UniPC on flow sigmas, shift 5.0
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    return {"tokenizer": tiny_tokenizer(), "text_encoder": text_encoder, "vae": vae, "transformer": transformer,
            "scheduler": scheduler, "expand_timesteps": True}


def save_tiny_wan(models_dir: Path, model: str = MODEL, *, num_layers: int = 1) -> Path:
    """Write `<models_dir>/<model>` (one folder: text- and image-to-video); returns models_dir."""
    from diffusers import WanPipeline

    pipe: Any = WanPipeline(**tiny_components(num_layers=num_layers))
    pipe.save_pretrained(models_dir / model)
    return models_dir


def job(key: str, **overrides: Any) -> dict[str, Any]:
    """One jobs-file line for the tiny Wan model."""
    line = {"key": key, "model": MODEL, "prompt": "a bee on a flower", "frames": FRAMES, "fps": FPS,
            "width": WIDTH, "height": HEIGHT, "steps": 2, "guidance": 5.0, "seed": 7}
    line.update(overrides)
    return line
