"""benchmarks/gpu_clip.py in its tiny configuration on CPU: the script runs end to end and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_clip.py"


def test_gpu_benchmark_tiny_smoke():
    """Eager and two configurations in one run: every figure printed, ratios against the same run's eager."""
    done = subprocess.run([sys.executable, str(BENCH), "--tiny", "--clips", "2", "--steps", "2",
                           "--compile-backend", "aot_eager", "--configs", "compile+math,fp8+pab"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = dict(re.findall(r"^([\w.+-]+): (.*)$", done.stdout, flags=re.M))
    assert figures["clip"] == "48x32x9 frames, 2 steps" and figures["batch_clips"] == "2"
    for config in ("eager", "compile+math", "fp8+pab"):
        for name in ("seconds_per_clip", "load_setup_s", "first_clip_s", "peak_gpu_gib", "ratio_vs_eager",
                     "ratio_vs_thudm_h100", "setup_share_of_batch", "batch_wall_s"):
            assert f"{config}.{name}" in figures, (config, name, done.stdout)
        seconds = float(figures[f"{config}.seconds_per_clip"])
        ratio = float(figures[f"{config}.ratio_vs_thudm_h100"].split()[0])
        assert seconds > 0 and abs(ratio - seconds / 90.0) < 6e-4  # both printed to 3 decimals
        # ratio_vs_eager comes from the unrounded times: it must lie within the printed times' rounding
        vs_eager, eager = float(figures[f"{config}.ratio_vs_eager"]), float(figures["eager.seconds_per_clip"])
        assert (seconds - 5e-4) / (eager + 5e-4) - 5e-4 <= vs_eager <= (seconds + 5e-4) / (eager - 5e-4) + 5e-4
        assert 0 < float(figures[f"{config}.setup_share_of_batch"].split()[0]) < 1
    assert figures["eager.ratio_vs_eager"] == "1.000"
    # what really ran, as each configuration's first clip recorded it
    assert (figures["compile+math.compile"], figures["compile+math.attention_kernel"]) == ("regional", "math")
    assert figures["eager.attention_kernel"] == "flash-cpu"  # the CPU's fused kernel under the default priority
    assert figures["fp8+pab.fp8"].startswith("off (no CUDA GPU") and figures["fp8+pab.cache"] == "pab"


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
