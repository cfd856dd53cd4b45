"""benchmarks/gpu_clip.py in its tiny configuration on CPU: the script runs end to end and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_clip.py"


def test_gpu_benchmark_tiny_smoke():
    done = subprocess.run([sys.executable, str(BENCH), "--tiny", "--clips", "2", "--steps", "2"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    figures = dict(re.findall(r"^(\w+): (.*)$", done.stdout, flags=re.M))
    for name in ("seconds_per_clip", "load_setup_s", "peak_gpu_gib", "ratio_vs_thudm_h100", "setup_share_of_batch"):
        assert name in figures, done.stdout
    assert float(figures["seconds_per_clip"]) > 0
    assert figures["batch_clips"] == "2"
    assert figures["clip"] == "48x32x9 frames, 2 steps"
    ratio = float(figures["ratio_vs_thudm_h100"].split()[0])
    assert abs(ratio - float(figures["seconds_per_clip"]) / 90.0) < 1e-3
    share = float(figures["setup_share_of_batch"].split()[0])
    assert 0 < share < 1


def test_full_size_architecture_matches_cogvideox_5b():
    """The benchmark's full-size configs, built on the meta device (no memory): CogVideoX-5b's parameter counts."""
    import torch

    sys.path.insert(0, str(BENCH.parent))
    try:
        import gpu_clip
    finally:
        sys.path.remove(str(BENCH.parent))
    counts = gpu_clip.parameter_counts(gpu_clip.build_components(tiny=False, device="meta", dtype=torch.bfloat16))
    # reference/toolchain.md: transformer 5.57 B, T5-XXL encoder 4.76 B, VAE 0.22 B
    assert round(counts["transformer"] / 1e9, 2) == 5.57
    assert round(counts["text_encoder"] / 1e9, 2) == 4.76
    assert round(counts["vae"] / 1e9, 2) == 0.22
