"""The example campaign run locally: cold run time, and an unchanged re-run against interpreter start.

python benchmarks/bench_local_run.py   -> `name: value` lines
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "spring-sofa-launch.yaml"


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="bench-run-"))
    try:
        run = [sys.executable, "-m", "pipeline.cli", "run", str(MANIFEST), "--out", str(out), "--quiet"]
        cold = timed(run)
        reruns = [timed(run) for _ in range(3)]
        latest = json.loads((out / "runs" / "spring-sofa-launch" / "latest.json").read_text())
        report = json.loads((out / "runs" / "spring-sofa-launch" / latest["report"]).read_text())
        interp = statistics.median(timed([sys.executable, "-c", "pass"]) for _ in range(3))
        imports = statistics.median(timed([sys.executable, "-c", "import pipeline.cli"]) for _ in range(3))
        rerun = statistics.median(reruns)
        print(f"local_run_cold_s: {cold:.2f}")
        print(f"local_rerun_s: {rerun:.3f}")
        print(f"local_rerun_jobs_executed: {report['jobs']['executed']}")
        print(f"local_rerun_beyond_interpreter_s: {rerun - interp:.3f}")
        print(f"local_rerun_beyond_cli_import_s: {rerun - imports:.3f}")
        print(f"local_rerun_vs_cold: {rerun / cold:.3f}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
