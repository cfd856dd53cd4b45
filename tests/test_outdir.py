"""The output folder and the CLI's edges: a folder that is not ours is refused, nothing of the user's is
removed, files follow the umask, and the user's environment problems and bad input are said plainly."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.storage.outdir import MARKER
from pipeline.storage.store import TMP_MARK

ONE_CLIP = """\
campaign: tiny
assets:
  sofa: assets/sofa.png
videos:
  - id: v
    shots: [{prompt: A bee on a flower., frames: 9}]
"""


def test_a_folder_that_is_not_ours_is_refused_and_force_removes_nothing_of_the_users(
        write_campaign: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, home = write_campaign(ONE_CLIP), tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    notes = home / "notes.txt"
    notes.write_text("mine")
    draft = home / "docs" / f"draft.odt{TMP_MARK}999999-x"  # matched the old sweep's pattern
    draft.write_text("mine too")
    old_style = home / ".work-999999-abc"  # looked like a dead run's work folder to the old sweep
    old_style.mkdir()
    assert main(["run", str(manifest), "--out", str(home), "--quiet"]) == 2  # --out refused: a usage error
    err = capsys.readouterr().err
    assert "not empty (.work-999999-abc, docs, notes.txt)" in err and "--force" in err and MARKER in err
    assert not (home / "cache").exists() and not (home / MARKER).exists()
    assert main(["run", str(manifest), "--out", str(home), "--quiet", "--force"]) == 0
    assert notes.read_text() == "mine" and draft.read_text() == "mine too" and old_style.is_dir()
    assert (home / MARKER).is_file()
    assert main(["run", str(manifest), "--out", str(home), "--quiet"]) == 0  # ours now: no --force needed
    assert draft.exists() and old_style.is_dir()


def test_an_empty_folder_or_a_new_one_is_fine(write_campaign: Callable[[str], Path], tmp_path: Path) -> None:
    manifest = write_campaign(ONE_CLIP)
    (tmp_path / "empty").mkdir()
    assert main(["run", str(manifest), "--out", str(tmp_path / "empty"), "--quiet"]) == 0
    assert main(["run", str(manifest), "--out", str(tmp_path / "new" / "deeper"), "--quiet"]) == 0


@pytest.mark.parametrize(("name", "message"), [
    ("line\nbreak", "contains a line break"),
    ("bad-\udcff-bytes", "not valid UTF-8"),
])
def test_an_out_name_the_video_tools_cannot_take_is_refused(
        write_campaign: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        name: str, message: str) -> None:
    manifest = write_campaign(ONE_CLIP)
    assert main(["run", str(manifest), "--out", str(tmp_path / name), "--quiet"]) == 2  # --out refused: a usage error
    assert message in capsys.readouterr().err


def test_environment_problems_are_said_plainly(write_campaign: Callable[[str], Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_campaign(ONE_CLIP)
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    assert main(["run", str(manifest), "--out", str(a_file), "--quiet"]) == 2  # --out refused: a usage error
    assert "this is a file, not a folder" in capsys.readouterr().err
    assert main(["run", str(manifest), "--out", str(a_file / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "a part of the path is a file, not a folder" in err and "internal error" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_said_plainly(write_campaign: Callable[[str], Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest, locked = write_campaign(ONE_CLIP), tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["run", str(manifest), "--out", str(locked / "out"), "--quiet"]) == 1
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert "permission denied" in err and "internal error" not in err


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_delivered_files_follow_the_umask(write_campaign: Callable[[str], Path], tmp_path: Path, umask: int) -> None:
    manifest, out = write_campaign(ONE_CLIP), tmp_path / "out"
    old = os.umask(umask)
    try:
        assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    finally:
        os.umask(old)
    [run] = list((out / "runs" / "tiny").glob("*/report.json"))
    for name in ("report.json", "report.html"):
        assert stat.S_IMODE((run.parent / name).stat().st_mode) == 0o666 & ~umask, name
    [video] = list(run.parent.glob("videos/*.mp4"))
    # a signed copy of the cache entry (Content Credentials are written into each delivered file), not a link to
    # it: editing it cannot change the cache, so it is an ordinary file under the umask
    assert video.stat().st_nlink == 1
    assert stat.S_IMODE(video.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("workers", ["0", "-3", "two"])
def test_workers_must_be_a_positive_number(example_manifest: Path, capsys: pytest.CaptureFixture[str],
                                           workers: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["run", str(example_manifest), "--workers", workers])
    assert stop.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_a_manifest_from_standard_input_resolves_assets_from_the_working_directory(
        write_campaign: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_campaign(ONE_CLIP)  # puts assets/ in tmp_path
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(ONE_CLIP))
    assert main(["validate", "-"]) == 0
    assert "-: ok (0 image(s), 1 video(s), 1 shot(s))" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path / "assets")  # now assets/sofa.png is not where the text says
    monkeypatch.setattr("sys.stdin", io.StringIO(ONE_CLIP))
    assert main(["validate", "-"]) == 2
    assert "<stdin>:3:9: error: assets.sofa: asset file 'assets/sofa.png' not found" in capsys.readouterr().out
