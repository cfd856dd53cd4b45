"""`make bench`: run every benchmark script and print its `name: value` lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["bench_local_run.py", "bench_assembly.py", "bench_signing.py"]


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


failed = 0
for name in SCRIPTS:
    print(f"# {name}", flush=True)
    failed += subprocess.run([sys.executable, str(HERE / name)]).returncode != 0
print("# gpu_clip.py", flush=True)
if has_cuda():
    failed += subprocess.run([sys.executable, str(HERE / "gpu_clip.py")]).returncode != 0
else:
    print("gpu_clip: skipped (no CUDA GPU here; see docs/benchmarks.md)")
sys.exit(1 if failed else 0)
