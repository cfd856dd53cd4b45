"""ruff and mypy as two tests of the suite, so xdist runs them beside the others instead of before them all
(mypy alone is about 19 s of one core on a cold cache, 44 s before it stopped following torch and transformers:
pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LINTED = ("pipeline", "tasks", "container", "infra", "tests", "benchmarks", "state_machines", "cdk_app.py")
TYPED = ("pipeline", "tasks", "state_machines")


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    done = _run(str(BIN / "ruff"), "check", *LINTED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    done = _run(sys.executable, "-m", "mypy", *TYPED)
    assert done.returncode == 0, done.stdout + done.stderr
