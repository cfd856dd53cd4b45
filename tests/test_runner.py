"""The local runner's scheduling: clips fill batches for GPU backends; Ctrl-C and SIGTERM stop the queue and still report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.backends import Backends, PassThroughEnhancer, make_image_editor
from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.manifest.campaign import load_manifest
from pipeline.plan.build import KeySource, build_plan
from pipeline.run.runner import run_plan
from pipeline.storage.store import LocalStore


class SlowEnhancer(PassThroughEnhancer):
    """Prompts that come back one by one, as from a remote model."""

    def enhance(self, prompt: str) -> str:
        time.sleep(0.05)
        return prompt


class BatchingPreview(PreviewVideoBackend):
    """The preview renderer, declaring a GPU backend's batch size and recording the batches it is sent."""

    max_batch = 4

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        with self._lock:
            self.batches.append(len(requests))
        return super().render(requests, out_dir)


def test_clips_fill_batches_while_their_prompts_arrive(write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shots = "\n".join(f"      - {{prompt: Shot number {i}., frames: 9}}" for i in range(10))
    path = write_campaign(f"campaign: batches\nvideos:\n  - id: v\n    shots:\n{shots}\n")
    video = BatchingPreview()
    backends = Backends(SlowEnhancer(), make_image_editor("local"), video)
    keys = KeySource(enhancer="slow", images=backends.images.identity, video=video.identity)
    plan = build_plan(load_manifest(path), keys, backends=backends.names())
    work = tmp_path / "work"
    work.mkdir()
    results = run_plan(plan, LocalStore(tmp_path / "out"), backends, workdir=work, workers=2)
    assert all(r.ok for r in results)
    assert sorted(video.batches, reverse=True) == [4, 4, 2]  # 10 clips, one model: three loads, not ten


# `campaign run` whose video backend blocks inside its first batch until the test closes standard input: the
# signal always arrives while the run is in the middle, however slow or loaded the machine is (no race).
GATED_RUN = """
import signal
import sys
from pathlib import Path

import pipeline.backends as b
import pipeline.backends.options as options
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.cli import main


class Gate(PreviewVideoBackend):
    def render(self, requests, out_dir):
        Path(sys.argv[1]).write_text("rendering")  # tell the test the run is mid-way
        sys.stdin.read()  # wait until the test has sent its signal and seen the run stop
        raise RuntimeError("released after the run stopped")


# Ctrl-C in a terminal, even when this test runs where SIGINT is ignored and inherited so (pytest started in the
# background by a shell without job control)
signal.signal(signal.SIGINT, signal.default_int_handler)
select = b.select_backends
options.select_backends = lambda **kw: b.Backends(select(**kw).enhancer, select(**kw).images, Gate())
sys.exit(main(sys.argv[2:]))
"""


def _interrupt_mid_run(manifest: Path, out: Path, tmp_path: Path, sig: int) -> tuple[int, str]:
    gate = tmp_path / "gate"
    script = tmp_path / "gated_run.py"
    script.write_text(GATED_RUN)
    cmd = [sys.executable, str(script), str(gate), "run", str(manifest), "--out", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        deadline = time.monotonic() + 300  # only a bound on a broken run, never part of the outcome
        while not gate.exists():  # the backend holds the run mid-way until stdin closes
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        lines = []
        for line in proc.stderr:  # printed after the report is written
            lines.append(line)
            if line.startswith("campaign: "):
                break
    finally:
        proc.stdin.close()  # now let the blocked backend return
    rest = proc.stderr.read()
    return proc.wait(timeout=120), "".join(lines) + rest


def _latest_report(out: Path) -> dict:  # type: ignore[type-arg]
    latest = json.loads((out / "runs" / "spring-sofa-launch" / "latest.json").read_text())
    return json.loads((out / "runs" / "spring-sofa-launch" / latest["report"]).read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(("sig", "code", "words"), [(signal.SIGINT, 130, "interrupted"),
                                                    (signal.SIGTERM, 143, "stopped by SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_queue_writes_a_report_and_a_rerun_finishes(
        example_manifest: Path, tmp_path: Path, sig: int, code: int, words: str) -> None:
    out = tmp_path / "out"
    returncode, err = _interrupt_mid_run(example_manifest, out, tmp_path, sig)
    assert returncode == code, err
    assert f"campaign: {words}" in err
    report = _latest_report(out)
    assert report["errors"][0]["error"] == "Interrupted"
    done = report["jobs"]["executed"]
    assert 0 < done < 14  # the prompts were enhanced before the clip batch blocked; no video was made
    assert not any(v["path"] for v in report["videos"])
    rerun = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(example_manifest), "--out", str(out),
                            "--quiet"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = _latest_report(out)
    assert report["status"] == "succeeded" and report["jobs"]["cached"] >= done
