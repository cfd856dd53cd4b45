"""`make bench`: run every benchmark script and print its `name: value` lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["bench_local_run.py", "bench_assembly.py"]

failed = 0
for name in SCRIPTS:
    print(f"# {name}", flush=True)
    rc = subprocess.run([sys.executable, str(HERE / name)]).returncode
    failed += rc != 0
sys.exit(1 if failed else 0)
