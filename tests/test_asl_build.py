"""state_machines/build.py: the committed ASL is exactly its output, and what it takes from the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline import cloud, errors
from state_machines import build

ROOT = Path(__file__).resolve().parents[1]
ASL_FILE = ROOT / "state_machines" / "campaign.asl.json"


def test_the_committed_asl_is_the_builders_output_byte_for_byte() -> None:
    assert ASL_FILE.read_text(encoding="utf-8") == build.render(), (
        "state_machines/campaign.asl.json was edited by hand or the builder changed: "
        "run `python -m state_machines.build --write`")


def test_the_module_prints_the_asl_and_checks_the_file(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT)}
    printed = subprocess.run([sys.executable, "-m", "state_machines.build"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=True)
    assert printed.stdout == ASL_FILE.read_text(encoding="utf-8")
    assert json.loads(printed.stdout)["StartAt"] == "Read settings"
    checked = subprocess.run([sys.executable, "-m", "state_machines.build", "--check"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_retryable_error_names_are_the_pipelines_transient_error_classes() -> None:
    def subclasses(base: type) -> set[type]:
        return {base} | {c for sub in base.__subclasses__() for c in subclasses(sub)}

    transient = {c.__name__ for c in subclasses(errors.TransientError)}
    retried = {name for r in build.LAMBDA_RETRY for name in r["ErrorEquals"]}
    assert transient <= retried
    # each in exactly one retrier: throttling backs off from 2 s, the rest from 5 s
    assert sum(name in r["ErrorEquals"] for r in build.LAMBDA_RETRY for name in transient) == len(transient)
    assert "Throttled" in build.THROTTLED_RETRY["ErrorEquals"]
    assert "TransientError" in build.TRANSIENT_RETRY["ErrorEquals"]


def test_the_builder_covers_the_codes_stages() -> None:
    assert [s.name for s in build.STAGE_SPECS] == list(cloud.STAGES)
    assert {s.name for s in build.STAGE_SPECS if s.in_waves} == set(cloud.WAVE_STAGES)
