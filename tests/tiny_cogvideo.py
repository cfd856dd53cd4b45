"""Tiny random-weight CogVideoX pipelines (T2V and I2V) built in code and saved as diffusers folders.

A helper module, not a conftest: tests import it. The recipe follows diffusers' own fast tests
(../shared/reference/toolchain.md): components built after `torch.manual_seed(0)`, a T5 tokenizer
from an in-code vocabulary, `save_pretrained` into `<models>/<model>` and `<models>/<model>-i2v`, so
container/generate.py loads them through its real loading code with the hub offline.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers/transformers are imported anywhere in the test process

from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENERATE_PY = ROOT / "container" / "generate.py"

# The size the tiny models are built for: the I2V model's learned positional embedding only runs at
# its built resolution, and 48x32x9 keeps a 2-step clip around a second on a 2-core CPU (the VAE decode dominates).
WIDTH, HEIGHT, FRAMES, FPS = 48, 32, 9, 8
MAX_TEXT_TOKENS = 16  # the tiny transformer's max_text_seq_length; generate.py must read it from config
WORDS = ("a", "bee", "on", "flower", "sofa", "in", "sunlit", "loft", "the", "camera", "slowly", "orbits", "it",
         "navy", "blue", "velvet", "red", "cat", "dog", "sea", "wave", "city", "night", "light")


def load_generate() -> ModuleType:
    """container/generate.py as a module: the same module object the diffusers backend uses."""
    from pipeline.backends.video_diffusers import load_generate_module

    return load_generate_module()


def tiny_tokenizer():
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -3.0 - i * 0.01) for i, w in enumerate(WORDS)]
    vocab += [(ch, -8.0) for ch in "abcdefghijklmnopqrstuvwxyz.,"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_components(*, i2v: bool, num_layers: int = 1) -> dict:
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if i2v else 4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=num_layers,
        sample_width=WIDTH // 8, sample_height=HEIGHT // 8, sample_frames=FRAMES,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=MAX_TEXT_TOKENS,
        # like CogVideoX-5b(-I2V): rotary embeddings; the I2V model's positional embedding is learned
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=i2v,
    )
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
    ))
    scheduler = CogVideoXDDIMScheduler()
    return {"tokenizer": tiny_tokenizer(), "text_encoder": text_encoder, "vae": vae,
            "transformer": transformer, "scheduler": scheduler}


def save_tiny_models(models_dir: Path, model: str = "cogvideox-5b", *, num_layers: int = 1) -> Path:
    """Write `<models_dir>/<model>` (T2V) and `<models_dir>/<model>-i2v` (I2V); returns models_dir.
    FirstBlockCache needs a second block to skip: num_layers=2 for the cache tests."""
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

    t2v: Any = CogVideoXPipeline(**tiny_components(i2v=False, num_layers=num_layers))
    i2v: Any = CogVideoXImageToVideoPipeline(**tiny_components(i2v=True, num_layers=num_layers))
    t2v.save_pretrained(models_dir / model)
    i2v.save_pretrained(models_dir / f"{model}-i2v")
    return models_dir


def start_image(path: Path, size: tuple[int, int] = (200, 100)) -> Path:
    """A deterministic RGB test card of `size` (deliberately not the clip size, to exercise resize/crop)."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)), np.full((h, w), 128.0)], axis=-1)
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def job(key: str, **overrides) -> dict:
    """One jobs-file line for the tiny models."""
    line = {"key": key, "model": "cogvideox-5b", "prompt": "a bee on a flower", "frames": FRAMES, "fps": FPS,
            "width": WIDTH, "height": HEIGHT, "steps": 2, "guidance": 6.0, "seed": 7}
    line.update(overrides)
    return line
