"""The local runner's scheduling: clips fill batches for GPU backends; Ctrl-C stops the queue and still reports."""

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

from pipeline.backends import Backends, PassThroughEnhancer, make_image_editor
from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.manifest import load_manifest
from pipeline.plan import KeySource, build_plan
from pipeline.runner import run_plan
from pipeline.store import LocalStore


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


def test_ctrl_c_stops_the_queue_writes_a_report_and_a_rerun_finishes(example_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(example_manifest), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "cache" / "image").glob("*.json")) and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    latest = json.loads((out / "runs" / "spring-sofa-launch" / "latest.json").read_text())
    report = json.loads((out / "runs" / "spring-sofa-launch" / latest["report"]).read_text())
    assert report["errors"][0]["error"] == "Interrupted"
    done = report["jobs"]["executed"]
    assert 0 < done < 14
    rerun = subprocess.run(cmd[:-2] + ["--quiet"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    latest = json.loads((out / "runs" / "spring-sofa-launch" / "latest.json").read_text())
    report = json.loads((out / "runs" / "spring-sofa-launch" / latest["report"]).read_text())
    assert report["status"] == "succeeded" and report["jobs"]["cached"] >= done
