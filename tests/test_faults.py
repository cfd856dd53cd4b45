"""The fault-injection list of issue 24, one test each: interrupted runs account for every planned job, Ctrl-C
any number of times is one line and 130, progress nobody reads stops nothing, a cache entry of the wrong kind is
quarantined and made again, only a marked folder is ours, an asset edited mid-run never mixes versions,
assembly scratch lives in the output folder's work area, and a writer that loses a publish race cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pipeline.backends import Backends, PassThroughEnhancer, make_image_editor, select_backends
from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.cli import main
from pipeline.manifest.campaign import load_manifest
from pipeline.plan.build import KeySource, Plan, build_plan
from pipeline.run.runner import run_local
from pipeline.storage import store as store_module
from pipeline.storage.outdir import MARKER, WORK_DIR, prepare_out_dir
from pipeline.storage.store import TMP_MARK, LocalStore

# one edited image, and two videos of two shots: 7 jobs, of which the image job runs first (the clips start from it)
SEVEN = """\
campaign: faults
assets:
  sofa: assets/sofa.png
images:
  - {id: big-sofa, from: sofa, edits: [{upscale-fast: {}}]}
videos:
  - id: a
    shots:
      - {prompt: A sofa., image: big-sofa, frames: 9}
      - {prompt: A bee on a flower., frames: 9}
  - id: b
    shots:
      - {prompt: A sofa at dusk., image: big-sofa, frames: 9}
      - {prompt: A meadow., frames: 9}
"""

ONE_CLIP = """\
campaign: tiny
videos:
  - id: v
    shots: [{prompt: A bee on a flower., frames: 9}]
"""

TWO_CLIPS = """\
campaign: tiny
videos:
  - id: v
    shots: [{prompt: A bee on a flower., frames: 9}, {prompt: A meadow., frames: 9}]
"""

# `campaign run` (argv[3:]) that stops in the middle, at argv[2] ("render": the first clip; "assemble": a video's
# join, after its scratch folder is made), writes argv[1] to say so and waits until the test closes standard
# input: every signal arrives mid-run however slow the machine (no race).
GATED = """
import signal
import sys
from pathlib import Path

import pipeline.backends as b
import pipeline.backends.options as options
import pipeline.media.assemble as assemble
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.cli import main


def hold():
    Path(sys.argv[1]).write_text("held")
    sys.stdin.read()
    raise RuntimeError("released")


class Gate(PreviewVideoBackend):
    def render(self, requests, out_dir):
        hold()


signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even where pytest inherited it ignored
if sys.argv[2] == "render":
    select = b.select_backends
    options.select_backends = lambda **kw: b.Backends(select(**kw).enhancer, select(**kw).images, Gate())
else:
    assemble.ffmpeg_exe = hold
sys.exit(main(sys.argv[3:]))
"""

BOUND = 300  # seconds: only a bound on a broken run, never part of the outcome


def _gated(tmp_path: Path, manifest: Path, out: Path, at: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
    gate, script = tmp_path / f"gate-{at}", tmp_path / "gated.py"
    script.write_text(GATED)
    proc = subprocess.Popen([sys.executable, str(script), str(gate), at, "run", str(manifest), "--out", str(out),
                             "--workers", "1", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + BOUND
    while not gate.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, gate


def _plan(manifest: Path) -> Plan:
    backends = select_backends()
    keys = KeySource(enhancer=backends.enhancer.identity(), images=backends.images.identity, video=backends.video.identity)
    return build_plan(load_manifest(manifest), keys, backends=backends.names())


def _latest(out: Path, campaign: str) -> dict:  # type: ignore[type-arg]
    latest = json.loads((out / "runs" / campaign / "latest.json").read_text())
    return json.loads((out / "runs" / campaign / latest["report"]).read_text())  # type: ignore[no-any-return]


def test_an_interrupted_runs_report_accounts_for_every_planned_job(write_campaign: Callable[[str], Path],
                                                                   tmp_path: Path) -> None:
    manifest, out = write_campaign(SEVEN), tmp_path / "out"
    proc, _ = _gated(tmp_path, manifest, out, "render")
    try:
        os.kill(proc.pid, signal.SIGTERM)
        err = ""
        assert proc.stderr is not None
        for line in proc.stderr:  # printed once the report is written
            err += line
            if line.startswith("campaign: "):
                break
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
    assert proc.wait(timeout=BOUND) == 143, err
    report = _latest(out, "faults")
    jobs = report["jobs"]
    assert report["status"] == "interrupted" and report["errors"][0]["error"] == "Interrupted"
    plan = _plan(manifest)
    finished = {r["job"] for r in report["job_results"]}
    assert jobs["total"] == len(plan.jobs) and "image:big-sofa" in finished
    assert not any(j.startswith(("clip:", "video:")) for j in finished)  # the first clip was in flight
    assert jobs["not_run"] == len(plan.jobs) - len(finished) >= 5
    assert sum(jobs[k] for k in ("executed", "cached", "failed", "skipped", "not_run")) == jobs["total"]


def test_any_number_of_ctrl_c_is_the_one_line_message_and_130(write_campaign: Callable[[str], Path],
                                                             tmp_path: Path) -> None:
    """The first Ctrl-C stops the queue and writes the report; the next ones arrive while the run waits for the
    render still in flight (it never returns here): before, they printed KeyboardInterrupt tracebacks."""
    manifest, out = write_campaign(TWO_CLIPS), tmp_path / "out"
    proc, _ = _gated(tmp_path, manifest, out, "render")
    assert proc.stderr is not None and proc.stdin is not None
    try:
        os.kill(proc.pid, signal.SIGINT)
        first = proc.stderr.readline()  # the message: the report is written by then
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGINT)
    finally:
        proc.stdin.close()  # lets the render return (had the process not ended already)
    code = proc.wait(timeout=BOUND)
    rest = proc.stderr.read()
    assert code == 130, first + rest
    assert first.startswith("campaign: interrupted;") and rest == ""
    assert _latest(out, "tiny")["status"] == "interrupted"


@pytest.mark.parametrize("how", ["reader-gone", "stderr-closed"])
def test_progress_output_failing_stops_neither_the_run_nor_its_report(write_campaign: Callable[[str], Path],
                                                                      tmp_path: Path, how: str) -> None:
    """`campaign run m.yaml 2>&1 | head -1` once head has gone (the pipe's reader closed before the first line,
    so every write fails: no race), and `2>&-`."""
    manifest, out = write_campaign(ONE_CLIP), tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(manifest), "--out", str(out)]
    if how == "reader-gone":
        read, write = os.pipe()
        os.close(read)
        try:
            code = subprocess.run(cmd, stdout=write, stderr=write, timeout=BOUND).returncode
        finally:
            os.close(write)
    else:
        code = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *cmd], stdout=subprocess.DEVNULL,
                              timeout=BOUND).returncode
    assert code == 0
    report = _latest(out, "tiny")
    assert report["status"] == "succeeded" and (out / report["prefix"] / report["videos"][0]["path"]).is_file()


def test_a_cache_entry_of_another_kind_is_quarantined_and_made_again(write_campaign: Callable[[str], Path],
                                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, out = write_campaign(ONE_CLIP), tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    first = _latest(out, "tiny")
    clip = next((out / "cache" / "clip").glob("*.mp4"))
    clip.unlink()
    (clip / "inside").mkdir(parents=True)  # a folder where the clip was
    video_prov = out / "cache" / "video" / f"{first['videos'][0]['key']}.json"
    video_prov.unlink()
    video_prov.mkdir()  # and a folder where a provenance was
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    report = _latest(out, "tiny")
    problems = sorted(r["problem"] for r in report["cache_repairs"])
    assert len(problems) == 2 and all("is a folder, not a file" in p for p in problems), problems
    assert clip.is_file() and video_prov.is_file() and report["status"] == "succeeded"
    assert any(list((out / r["moved_to"]).rglob("inside")) for r in report["cache_repairs"])  # moved, not deleted
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    again = _latest(out, "tiny")
    assert again["cache_repairs"] == [] and again["jobs"]["executed"] == 0


def test_only_a_marked_folder_is_ours_and_verify_touches_nothing_else(write_campaign: Callable[[str], Path],
                                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, home = write_campaign(ONE_CLIP), tmp_path / "home"
    selfcheck = home / "cache" / "pip" / "selfcheck.json"
    selfcheck.parent.mkdir(parents=True)
    selfcheck.write_text("{}")
    (home / "runs").mkdir()
    assert main(["run", str(manifest), "--out", str(home), "--quiet"]) == 2  # --out refused: a usage error
    assert "not empty (cache, runs)" in capsys.readouterr().err and not (home / MARKER).exists()
    assert main(["cache", "verify", "--out", str(home)]) == 2  # not an output folder of ours: refused, as README says
    assert f"no {MARKER} file" in capsys.readouterr().err
    assert selfcheck.read_text() == "{}" and not (home / "quarantine").exists()
    # ours, and a file of the user's own dropped into its cache/: verify leaves it where it is
    out = tmp_path / "out"
    prepare_out_dir(out)
    (out / "cache" / "pip").mkdir(parents=True)
    (out / "cache" / "pip" / "selfcheck.json").write_text("{}")
    assert main(["cache", "verify", "--out", str(out)]) == 0
    assert "0 cache entries" in capsys.readouterr().out
    assert (out / "cache" / "pip" / "selfcheck.json").read_text() == "{}" and not (out / "quarantine").exists()


class EditsTheAssetMidRun(PreviewVideoBackend):
    """The preview renderer, while a person overwrites the campaign's picture in place (after the image job read it)."""

    def __init__(self, asset: Path, new: bytes) -> None:
        super().__init__()
        self.asset, self.new = asset, new

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        self.asset.write_bytes(self.new)
        return super().render(requests, out_dir)


def test_an_asset_overwritten_mid_run_never_mixes_versions_in_what_is_delivered(write_campaign: Callable[[str], Path],
                                                                                tmp_path: Path) -> None:
    manifest = write_campaign(SEVEN.split("  - id: b")[0])  # the image, and one video whose first clip starts from it
    sofa = manifest.parent / "assets" / "sofa.png"
    old, new = sofa.read_bytes(), (manifest.parent / "assets" / "sofa-mask.png").read_bytes()
    video = EditsTheAssetMidRun(sofa, new)
    backends = Backends(PassThroughEnhancer(), make_image_editor("local"), video)
    keys = KeySource(enhancer="passthrough", images=backends.images.identity, video=video.identity)
    plan = build_plan(load_manifest(manifest), keys, backends=backends.names())
    outcome = run_local(plan, backends, out_dir=tmp_path / "out", workers=1, show_progress=False)
    report, run_dir = outcome.report, Path(outcome.report_path).parent
    assert sofa.read_bytes() == new  # it was edited while the run went on
    [image] = report["images"]
    assert image["path"] and image["source_path"] is None  # the edited image, made from the old bytes, is delivered
    [changed] = [e for e in report["errors"] if e["error"] == "AssetChanged"]
    assert changed["job"] == "image:big-sofa" and "asset 'sofa'" in changed["message"] and str(sofa) in changed["message"]
    assert report["status"] == "partial"
    delivered = [p.read_bytes() for p in run_dir.rglob("step-0-source.*")]
    assert new not in delivered and not delivered
    assert old != new


def test_assembly_scratch_lives_in_the_work_area_and_the_next_run_clears_it(write_campaign: Callable[[str], Path],
                                                                           tmp_path: Path) -> None:
    """SIGKILL while a video is being joined: nothing was put in $TMPDIR, and the next run removes the scratch."""
    manifest, out, tmpdir = write_campaign(ONE_CLIP), tmp_path / "out", tmp_path / "tmpdir"
    tmpdir.mkdir()
    proc, _ = _gated(tmp_path, manifest, out, "assemble", env=dict(os.environ, TMPDIR=str(tmpdir)))
    try:
        scratch = list((out / WORK_DIR).rglob(".assemble-*"))
        assert len(scratch) == 1 and (scratch[0] / "join.txt").is_file()
        assert not list(tmpdir.glob("*assemble*"))
    finally:
        proc.kill()
        proc.communicate(timeout=BOUND)
    assert scratch[0].is_dir()  # SIGKILL: nobody cleaned up
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    assert not list(out.rglob(".assemble-*")) and not list((out / WORK_DIR).iterdir())


def test_a_writer_that_loses_the_race_to_publish_removes_its_temporary_file(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs copy one cache entry to the same name (a video's first format to its job's key). The interleaving
    is forced: B links its temporary name, then A publishes the entry, then B renames onto a name that is
    already the same file, which rename(2) leaves in place."""
    root = tmp_path / "out"
    a, b = LocalStore(root), LocalStore(root)
    a.write_bytes("cache/video/first.mp4", b"the video")
    real_link = os.link

    def link_then_let_a_publish(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_link(src, dst)
        monkeypatch.setattr(store_module.os, "link", real_link)
        a.copy("cache/video/first.mp4", "cache/video/job.mp4")  # A wins the race meanwhile

    monkeypatch.setattr(store_module.os, "link", link_then_let_a_publish)
    b.copy("cache/video/first.mp4", "cache/video/job.mp4")
    names = sorted(p.name for p in (root / "cache" / "video").iterdir())
    assert names == ["first.mp4", "job.mp4"], names
    assert (root / "cache" / "video" / "job.mp4").read_bytes() == b"the video"
    assert not [p for p in root.rglob(f"*{TMP_MARK}*")]
