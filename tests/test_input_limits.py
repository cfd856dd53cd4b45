"""Small things an attacker (or a bad copy) hands in: an MP3 cut short is refused at validation, locally and in
the cloud's plan step, so it never reaches a run; a huge value is echoed in errors cut to about 200 characters."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fake_aws.validate import model_checked
from moto import mock_aws

from pipeline.cli import main
from pipeline.cloud.events import ManifestSource, PlanEvent
from pipeline.cloud.plan_step import plan_run
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import ECHO_MAX, MESSAGE_MAX, Problem, clip_echoes, shown
from pipeline.storage.store import LocalStore

ASSETS = Path(__file__).resolve().parents[1] / "manifests" / "assets"
MUSIC = ASSETS / "music.mp3"  # 24 s, with a Xing header that says so
HUGE = 100_000


def campaign(folder: Path, *, name: str = "sound-check", extra_asset: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSETS / "sofa.png", folder / "sofa.png")
    path = folder / "m.yaml"
    path.write_text(f"campaign: {name}\nassets:\n  sofa: sofa.png\n  music: music.mp3\n{extra_asset}videos:\n"
                    "  - id: v\n    audio: {asset: music}\n    shots: [{prompt: A sofa., image: sofa, frames: 9}]\n",
                    encoding="utf-8")
    return path


def cut(folder: Path, size: int) -> None:
    (folder / "music.mp3").write_bytes(MUSIC.read_bytes()[:size])


# --- a truncated MP3 ------------------------------------------------------------------------------------------


def test_a_truncated_mp3_is_refused_at_validation_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = campaign(tmp_path)
    shutil.copy(MUSIC, tmp_path / "music.mp3")
    assert main(["validate", str(manifest)]) == 0  # the whole file passes
    capsys.readouterr()
    cut(tmp_path, MUSIC.stat().st_size // 2)  # half the bytes: its header still says 24 s
    assert main(["validate", str(manifest)]) == 2
    out = capsys.readouterr().out
    assert f"{manifest}:4:10: error: assets.music: 'music.mp3' is cut short: its header says 24.0 s but only" in out
    cut(tmp_path, 3000)  # a few frames
    assert main(["validate", str(manifest)]) == 2
    assert "'music.mp3' is cut short" in capsys.readouterr().out
    cut(tmp_path, 200)  # not even one frame
    assert main(["validate", str(manifest)]) == 2
    assert "assets.music: 'music.mp3' has no audio" in capsys.readouterr().out


def test_a_run_of_a_truncated_mp3_never_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = campaign(tmp_path)
    cut(tmp_path, MUSIC.stat().st_size // 2)
    out = tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 2
    assert "assets.music: 'music.mp3' is cut short" in capsys.readouterr().err
    assert not (out / "cache").exists()  # no job ran


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws(), model_checked():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="campaign-in")
        yield client


def cloud_plan(s3: Any, tmp_path: Path, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    for f in folder.iterdir():
        s3.upload_file(str(f), "campaign-in", f"manifests/team-a/{f.name}")
    settings = CloudSettings(enhancer="passthrough", images="local", video="preview", clips_per_batch=8)
    out = tmp_path / "out"
    summary = plan_run(PlanEvent(ManifestSource("campaign-in", "manifests/team-a/m.yaml"), run_id="r1", started=0.0),
                       store=LocalStore(out), s3=s3, settings=settings, workdir=tmp_path / "w")
    reports = list(out.glob("runs/*/r1/report.json"))  # none when the plan is valid
    return summary, json.loads(reports[0].read_text()) if reports else {}


def test_the_cloud_plan_step_refuses_a_truncated_mp3_located(s3: Any, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    campaign(folder)
    cut(folder, MUSIC.stat().st_size // 2)
    summary, report = cloud_plan(s3, tmp_path, folder)
    assert summary["valid"] is False
    [error] = report["errors"]
    assert (error["path"], error["line"], error["col"]) == ("assets.music", 4, 10)
    assert "'music.mp3' is cut short" in error["message"]


def test_the_cloud_plan_step_decodes_an_s3_audio_asset_too(s3: Any, tmp_path: Path) -> None:
    """A manifest dropped into the bucket by hand may name its music by s3:// address: decoded all the same."""
    folder = tmp_path / "c"
    path = campaign(folder)
    path.write_text(path.read_text().replace("music: music.mp3",
                                             "music: s3://campaign-in/manifests/team-a/music.mp3"), encoding="utf-8")
    shutil.copy(MUSIC, folder / "music.mp3")
    assert cloud_plan(s3, tmp_path / "whole", folder)[0]["valid"] is True
    cut(folder, MUSIC.stat().st_size // 2)
    summary, report = cloud_plan(s3, tmp_path / "cut", folder)
    assert summary["valid"] is False
    [error] = report["errors"]
    assert error["path"] == "assets.music" and "is cut short" in error["message"]


# --- long values are cut where errors echo them ---------------------------------------------------------------


@pytest.mark.parametrize("case", ["name", "spaced-name", "asset-id", "asset-path", "unknown-key", "schedule"])
def test_a_huge_value_gives_a_short_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    long = "x" * HUGE
    manifest = {
        "name": lambda: campaign(tmp_path, name=long),
        "spaced-name": lambda: campaign(tmp_path, name="ab " * (HUGE // 3)),
        # explicit keys (`? key`): a plain YAML key stops at 1024 characters
        "asset-id": lambda: campaign(tmp_path, extra_asset=f"  ? {long}\n  : sofa.png\n"),
        "asset-path": lambda: campaign(tmp_path, extra_asset=f"  other: {long}.png\n"),
        "unknown-key": lambda: campaign(tmp_path, extra_asset=f"? {long}\n: 1\n"),
        "schedule": lambda: campaign(tmp_path, extra_asset=f"schedule: rate({long})\n"),
    }[case]()
    shutil.copy(MUSIC, tmp_path / "music.mp3")
    code = main(["validate", str(manifest)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2 and "Traceback" not in text, text[:2000]
    problems = [ln for ln in captured.out.splitlines() if ": error: " in ln]
    assert problems, text[:2000]
    for line in problems:
        assert len(line) <= len(str(manifest)) + MESSAGE_MAX + 2 * ECHO_MAX + 100, (len(line), line[:300])
    assert len(text) < 8000  # not 100 KB
    assert "characters" in text  # the cut says how long the value was


def test_a_huge_asset_id_in_the_cloud_gives_a_short_report(s3: Any, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    campaign(folder, extra_asset=f"  ? {'y' * HUGE}\n  : ../../{'z' * HUGE}.png\n")
    shutil.copy(MUSIC, folder / "music.mp3")
    summary, report = cloud_plan(s3, tmp_path, folder)
    assert summary["valid"] is False
    assert len(json.dumps(report)) < 10_000
    assert all(len(e["message"]) <= MESSAGE_MAX + 100 for e in report["errors"])


def test_echo_helpers_cut_long_values_and_say_how_long() -> None:
    assert shown("short") == "'short'"
    cut_value = shown("q" * HUGE)
    assert len(cut_value) < ECHO_MAX + 40 and cut_value.endswith(f"... ({HUGE} characters)")
    assert clip_echoes("plain words") == "plain words"
    message = clip_echoes(f"bad {'w' * HUGE} here")
    assert message.startswith("bad " + "w" * ECHO_MAX + "...") and message.endswith(" here") and len(message) < 300
    problem = Problem("f" * HUGE, 1, 1, "p" * HUGE, "m " * HUGE)
    assert max(len(problem.file), len(problem.path), len(problem.message)) <= MESSAGE_MAX + 40
