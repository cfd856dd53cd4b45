"""End to end on this machine: real edits, real encodes read back, cache, partial failure, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.storage.store import TMP_MARK

pytestmark = pytest.mark.slow


def read_report(out: Path, campaign: str) -> tuple[dict, Path]:  # type: ignore[type-arg]
    latest = json.loads((out / "runs" / campaign / "latest.json").read_text())
    path = out / "runs" / campaign / latest["report"]
    return json.loads(path.read_text()), path.parent


def probe(path: Path) -> tuple[int, float]:
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    return frames, secs


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path, int]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("out")
    manifest = Path(__file__).resolve().parents[1] / "manifests" / "spring-sofa-launch.yaml"
    rc = main(["run", str(manifest), "--out", str(out), "--quiet"])
    report, run_dir = read_report(out, "spring-sofa-launch")
    return out, report, run_dir, rc


def test_example_campaign_succeeds_with_the_report_contract(example_run) -> None:  # type: ignore[no-untyped-def]
    out, report, run_dir, rc = example_run
    assert rc == 0, report["errors"]
    assert report["status"] == "succeeded" and report["errors"] == []
    for k in ("campaign", "run_id", "status", "videos", "images", "jobs", "errors"):
        assert k in report
    assert report["jobs"] == {"total": 14, "executed": 14, "cached": 0, "failed": 0, "skipped": 0}
    clip_keys = {"prompt", "enhanced_prompt", "seed", "backend", "cached"}
    for v in report["videos"]:
        assert {"id", "path", "duration_s", "width", "height", "fps", "clips"} <= set(v)
        for c in v["clips"]:
            assert clip_keys <= set(c) and c["backend"] == "preview" and c["placeholder"] is True
    for im in report["images"]:
        assert {"id", "path", "edits", "backend"} <= set(im) and (run_dir / im["path"]).is_file()
    assert (run_dir / "report.html").is_file()


def test_every_delivered_file_of_the_demo_reads_back_with_c2pa(example_run) -> None:  # type: ignore[no-untyped-def]
    from credentials_check import assert_every_delivered_file_signed

    _, report, run_dir, _ = example_run
    assert assert_every_delivered_file_signed(report, run_dir) == len(report["credentials"]["files"])


def test_videos_have_exact_durations_sizes_and_fps(example_run) -> None:  # type: ignore[no-untyped-def]
    _, report, run_dir, _ = example_run
    videos = {v["id"]: v for v in report["videos"]}
    teaser = videos["teaser"]
    assert teaser["expected_duration_s"] == pytest.approx(49 / 8 + 49 / 8 + 33 / 8 - 2 * 0.5)
    for v in videos.values():
        frames, _ = probe(run_dir / v["path"])
        assert frames == round(v["expected_duration_s"] * 8)
        assert (v["width"], v["height"], v["fps"]) == (720, 480, 8)
        assert v["duration_s"] == pytest.approx(v["expected_duration_s"], abs=1e-6)
        assert (run_dir / v["poster"]).is_file()
    for c in teaser["clips"]:
        frames, _ = probe(run_dir / c["path"])
        assert frames == c["frames"]


def test_continuity_video_has_no_jump_at_the_clip_boundary(example_run) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    _, report, run_dir, _ = example_run
    video = {v["id"]: v for v in report["videos"]}["living-room"]
    assert video["continuity"] == "last-frame"
    reader = imageio_ffmpeg.read_frames(str(run_dir / video["path"]))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3).astype(np.int16) for f in reader]
    boundary = video["clips"][0]["frames"]  # first frame of the second clip
    jump = np.abs(frames[boundary] - frames[boundary - 1]).mean()
    within = np.mean([np.abs(frames[i] - frames[i - 1]).mean() for i in range(1, boundary)])
    assert jump < 4.0 and jump < 3 * within + 1.0, (jump, within)


def test_images_keep_the_real_tools_geometry(example_run) -> None:  # type: ignore[no-untyped-def]
    _, report, run_dir, _ = example_run
    images = {i["id"]: i for i in report["images"]}
    with Image.open(run_dir / images["sofa-navy"]["path"]) as im:
        assert im.size == (640 * 4, 427 * 4)  # upscale-fast: exactly 4x
    with Image.open(run_dir / images["sofa-cutout"]["path"]) as im:
        assert im.size == (640 + 80 + 80, 427) and im.mode == "RGBA"  # outpaint after remove-background
    assert [s["tool"] for s in images["sofa-navy"]["steps"]] == ["erase-object", "search-recolor", "upscale-fast"]
    for step in images["sofa-navy"]["steps"]:
        assert (run_dir / step["path"]).is_file() and step["backend"] == "local"


def test_every_cache_output_has_provenance(example_run) -> None:  # type: ignore[no-untyped-def]
    out, *_ = example_run
    outputs = [p for p in (out / "cache").rglob("*") if p.is_file() and p.suffix != ".json"]
    assert outputs
    for p in outputs:
        if p.suffix == ".png" and p.parent.name == "video":
            continue  # the poster travels with its video's provenance
        prov = json.loads(p.with_suffix(".json").read_text())
        assert prov["key"] == p.stem or prov["info"]["step"]["key"] == p.stem
    assert not list(out.rglob(f"*{TMP_MARK}*"))


def test_unchanged_rerun_executes_nothing(example_run) -> None:  # type: ignore[no-untyped-def]
    out, *_ = example_run
    manifest = Path(__file__).resolve().parents[1] / "manifests" / "spring-sofa-launch.yaml"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    report, _ = read_report(out, "spring-sofa-launch")
    assert report["jobs"]["executed"] == 0 and report["jobs"]["cached"] == 14
    assert all(c["cached"] for v in report["videos"] for c in v["clips"])


def test_invalid_manifest_exits_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign: x!\n")
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    assert not out.exists()
    assert f"{bad}:1:11: error: campaign:" in capsys.readouterr().err


def test_one_failed_job_gives_a_partial_run_and_keeps_the_rest(write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: partial
        assets:
          sofa: assets/sofa.png
        images:
          - {id: good, from: sofa, edits: [{upscale-fast: {}}]}
          - {id: bad, from: sofa, edits: [{inpaint: {prompt: a cat}}]}
        videos:
          - id: ok-video
            shots: [{prompt: A bee on a flower., frames: 9}]
          - id: needs-bad
            shots: [{prompt: A sofa, image: bad, frames: 9}]
        """)
    # an opaque image and no mask: nothing to inpaint, found only when the job runs
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 1
    report, run_dir = read_report(out, "partial")
    assert report["status"] == "partial"
    errors = {e["job"]: e for e in report["errors"]}
    assert set(errors) == {"image:bad", "clip:needs-bad/01", "video:needs-bad"}
    assert errors["image:bad"]["error"] == "InputRejected" and "mask" in errors["image:bad"]["message"]
    assert errors["clip:needs-bad/01"]["error"] == "DependencyFailed"
    videos = {v["id"]: v for v in report["videos"]}
    assert videos["ok-video"]["path"] and (run_dir / videos["ok-video"]["path"]).is_file()
    assert {i["id"]: i["status"] for i in report["images"]} == {"good": "executed", "bad": "failed"}


def test_kill_9_mid_run_then_resume(example_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(example_manifest), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    clips = out / "cache" / "clip"
    while time.time() < deadline and len(list(clips.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "runs").exists(), "the run finished before it could be killed; slow the test down"
    finished_before = {p.stem for p in (out / "cache").rglob("*.json")}
    # nothing empty or half-written under a final name: every output with provenance is complete
    for p in (out / "cache").rglob("*"):
        if p.is_file() and TMP_MARK not in p.name:
            assert p.stat().st_size > 0
            if p.suffix == ".mp4" and p.with_suffix(".json").exists():
                assert probe(p)[0] > 0
    assert main(["run", str(example_manifest), "--out", str(out), "--quiet"]) == 0
    report, _ = read_report(out, "spring-sofa-launch")
    assert report["jobs"]["executed"] + report["jobs"]["cached"] == 14
    assert report["jobs"]["cached"] >= 2 and report["jobs"]["executed"] >= 1
    assert len(finished_before) >= 2
    assert not list(out.rglob(f"*{TMP_MARK}*")) and not list(out.glob(".work-*"))


def test_s3_assets_are_keyed_by_their_version(write_campaign, tmp_path: Path, offline_aws: None,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sofa = (Path(__file__).resolve().parents[1] / "manifests" / "assets" / "sofa.png").read_bytes()
    path = write_campaign("""\
        campaign: s3-assets
        assets: {sofa: s3://campaign-assets/products/sofa.png}
        images:
          - {id: big, from: sofa, edits: [{upscale-fast: {}}]}
        """)
    out = tmp_path / "out"
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="campaign-assets")
        s3.put_object(Bucket="campaign-assets", Key="products/sofa.png", Body=sofa)
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
        report, _ = read_report(out, "s3-assets")
        assert report["jobs"]["cached"] == 1  # unchanged object: nothing re-made
        s3.put_object(Bucket="campaign-assets", Key="products/sofa.png", Body=sofa + b"\0")  # a new version
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
        report, run_dir = read_report(out, "s3-assets")
        assert report["jobs"]["executed"] == 1
        with Image.open(run_dir / report["images"][0]["path"]) as im:
            assert im.size == (2560, 1708)
