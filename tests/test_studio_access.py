"""What a studio user may touch, tried as an attacker would through the real pages (AppTest) and functions: Load
and Save only *.yaml files in the workspace (/etc/passwd, ../, links out, binary files refused with one line); a
report's paths never reach outside its run; only a render's owner (or an administrator) cancels it; a render never
imports code from the workspace; typed text is shown as text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pipeline.cli import main
from pipeline.studio import engine, jobs, runs, shots, workspace
from pipeline.studio.config import ENV_VAR, StudioConfig
from pipeline.studio.plain import literal

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "pipeline" / "studio" / "app.py"
T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = 240.0) -> T:
    deadline = time.monotonic() + timeout  # a guard against a hang; nothing is timed
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StudioConfig]:
    (tmp_path / "workspace").mkdir()
    cfg = StudioConfig(out_dir=tmp_path / "out", workspace=tmp_path / "workspace", admins=("root-admin",))
    monkeypatch.setenv(ENV_VAR, cfg.to_env())
    yield cfg


def page(name: str, *, user: str = "ana") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.user = {"name": user}
    at.run()
    at.sidebar.radio(key="page").set_value(name).run()
    assert not at.exception, at.exception
    return at


def shown(markdown: str) -> str:
    """The text a reader sees of an element's Markdown body (the page escapes what users typed: plain.literal)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def click(at: AppTest, label: str) -> None:
    [button] = [b for b in at.button if b.label == label]
    button.click().run()
    assert not at.exception, at.exception  # a refusal is a message on the page, never a traceback


# --- the workspace -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, says", [
    ("/etc/passwd", "outside the workspace"), ("../outside.yaml", "outside the workspace"),
    ("/proc/self/environ", "outside the workspace"), ("notes.txt", "not a .yaml file"), ("", "give a name"),
    ("missing/x.yaml", "does not exist in the workspace"), ("a\x00.yaml", "give a name"),
])
def test_names_that_leave_the_workspace_or_are_not_manifests_are_refused(tmp_path: Path, name: str, says: str) -> None:
    with pytest.raises(workspace.WorkspaceError, match=says) as exc:
        workspace.manifest_path(tmp_path, name)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("Manifest file: ")


def test_a_link_out_of_the_workspace_and_unreadable_files_are_refused_with_one_line(tmp_path: Path) -> None:
    outside = tmp_path / "secret.yaml"
    outside.write_text("campaign: secret\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "link.yaml").symlink_to(outside)
    with pytest.raises(workspace.WorkspaceError, match="outside the workspace"):
        workspace.read_manifest(ws, "link.yaml")
    (ws / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(workspace.WorkspaceError, match="not UTF-8 text .* a binary file"):
        workspace.read_manifest(ws, "binary.yaml")
    (ws / "folder.yaml").mkdir()
    with pytest.raises(workspace.WorkspaceError, match="is a folder"):
        workspace.read_manifest(ws, "folder.yaml")
    (ws / "huge.yaml").write_bytes(b"#" * (workspace.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(workspace.WorkspaceError, match="larger than"):
        workspace.read_manifest(ws, "huge.yaml")
    (ws / "ok.yaml").write_text("campaign: ok\n")
    assert workspace.read_manifest(ws, str(ws / "ok.yaml"))[1] == "campaign: ok\n"  # an absolute path inside is fine


def test_load_of_etc_passwd_and_save_outside_the_workspace_are_refused_on_the_page(config: StudioConfig,
                                                                                    tmp_path: Path) -> None:
    at = page("Manifest")
    at.text_input(key="manifest_path").input("/etc/passwd").run()
    click(at, "Load")
    assert at.session_state["manifest_text"] == engine.STARTER_MANIFEST  # nothing was read
    assert any("outside the workspace" in e.value for e in at.error)
    assert all("root:" not in m.value for m in [*at.markdown, *at.error, *at.caption])
    [save] = [b for b in at.button if b.label == "Save"]
    assert save.disabled

    at.text_input(key="manifest_path").input("../escaped.yaml").run()
    assert any("outside the workspace" in e.value for e in at.error)
    assert not (tmp_path / "escaped.yaml").exists()

    (config.workspace / "binary.yaml").write_bytes(bytes(range(256)))
    at.text_input(key="manifest_path").input("binary.yaml").run()
    click(at, "Load")
    assert any("not UTF-8 text" in shown(e.value) for e in at.error)

    at.text_input(key="manifest_path").input("mine.yaml").run()
    click(at, "Save")
    assert (config.workspace / "mine.yaml").read_text() == engine.STARTER_MANIFEST
    assert not list(config.workspace.glob(".*.tmp"))


def test_save_as_manifest_outside_the_workspace_is_refused_and_the_run_names_who_started_it(config: StudioConfig, tmp_path: Path) -> None:
    job = jobs.start_job(config, campaign="studio", shot=shots.ShotSpec(prompt="A bee", frames=9), owner="ana")
    done = wait_for(lambda: (j := jobs.read_job(jobs.jobs_dir(config) / job.id)).active is False and j, what="the shot")
    assert done.state == "succeeded", done.message
    at = page("Shot")
    at.text_input(key="save_path").input(str(tmp_path / "elsewhere.yaml")).run()
    click(at, "Save as manifest")
    assert any("outside the workspace" in e.value for e in at.error)
    assert not (tmp_path / "elsewhere.yaml").exists()
    # the run records who started it: its request, and the Runs page
    assert json.loads((jobs.jobs_dir(config) / job.id / "request.json").read_text())["owner"] == "ana"
    runs_page = page("Runs", user="bob")
    assert any("started by ana" in m.value for m in runs_page.markdown)


# --- a report's paths ----------------------------------------------------------------------------------------


def crafted_run(config: StudioConfig, write_campaign: Callable[..., Path], secret: Path) -> runs.RunSummary:
    """A real run whose report.json was then edited to point its video and image out of the run folder."""
    manifest = write_campaign("""
        campaign: crafted
        description: "[click me](http://evil.invalid/x) ![pixel](http://evil.invalid/p.png) <b>bold</b>"
        videos:
          - id: v
            shots:
              - prompt: A bee
                frames: 9
                enhance: false
        """, name="crafted.yaml")
    assert main(["run", str(manifest), "--out", str(config.out_dir), "--quiet"]) == 0
    [run] = runs.list_runs(config.out_dir)
    report_path = config.out_dir / run.key
    report = json.loads(report_path.read_text())
    depth = len(run.prefix.split("/")) + len(config.out_dir.parts)
    report["videos"][0]["path"] = "../" * depth + str(secret).lstrip("/")
    report["images"] = [{"id": "i", "path": str(secret), "steps": [], "status": "executed"}]
    report_path.write_text(json.dumps(report))
    return run


def test_a_crafted_report_path_downloads_and_shows_nothing_outside_its_run(
        config: StudioConfig, write_campaign: Callable[..., Path], tmp_path: Path) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    run = crafted_run(config, write_campaign, secret)
    with pytest.raises(runs.OutsideRun):
        run.file("../../../../" + str(secret))
    with pytest.raises(runs.OutsideRun):
        run.file(str(secret))
    source = runs.FolderRuns(config.out_dir)
    assert source.read(f"{run.prefix}/../../../{secret.name}") is None
    # a link inside the run folder that leads out of it is refused too
    (config.out_dir / run.prefix / "escape.mp4").symlink_to(secret)
    assert source.read(run.file("escape.mp4")) is None

    at = page("Runs")
    assert [d for d in at.get("download_button") if d.proto.label == "Download"] == []  # no video download
    assert len(at.get("video")) == 0 and len(at.get("imgs")) == 0
    assert sum("outside its run" in e.value for e in at.error) == 2  # the video and the image, said once each
    # report.html is still offered: it is inside the run
    assert [d.proto.label for d in at.get("download_button")] == ["Download report.html"]
    # the description is shown as the text it is
    [caption] = [c for c in at.caption if "click me" in c.value]
    assert caption.value == literal(json.loads((config.out_dir / run.key).read_text())["description"], limit=2000)


# --- whose render ------------------------------------------------------------------------------------------


STAND_IN_WORKER = ("import signal, sys, time\n"
                   "signal.signal(signal.SIGINT, lambda *_: sys.exit(130))\n"
                   "print('ready', flush=True)\n"
                   "time.sleep(600)\n")


@pytest.fixture
def anas_render(config: StudioConfig) -> Iterator[tuple[jobs.StudioJob, subprocess.Popen[bytes]]]:
    """A render Ana started, still running (a sleeping process stands in for its worker)."""
    folder = jobs.jobs_dir(config) / "20261207T120000Z-a1b2"
    folder.mkdir(parents=True)
    (folder / "request.json").write_text(json.dumps({"id": folder.name, "campaign": "studio", "manifest": "m.yaml",
                                                     "owner": "ana", "shot": shots.ShotSpec(prompt="Ana's bee").to_dict()}))
    (folder / "status.json").write_text(json.dumps({"state": "running", "done": 0, "total": 2, "message": "rendering"}))
    # a stand-in that, like pipeline/studio/worker.py, installs its own SIGINT handler: a bare `sleep` inherits an
    # ignored SIGINT from a suite started in the background (`cmd &` in a non-interactive shell), and Cancel then
    # could not stop it. It says when the handler is in place, so Cancel can never come first.
    worker = subprocess.Popen([sys.executable, "-c", STAND_IN_WORKER], stdout=subprocess.PIPE)
    assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
    (folder / "pid").write_text(str(worker.pid))
    try:
        yield jobs.read_job(folder), worker
    finally:
        worker.kill()
        worker.wait()
        worker.stdout.close()


def test_user_b_cannot_cancel_user_as_render_but_watches_it(config: StudioConfig, anas_render: tuple) -> None:
    job, worker = anas_render
    assert job.owner == "ana"
    bob = page("Shot", user="bob")
    assert not [b for b in bob.button if b.label == "Cancel"]  # no Cancel for Bob: he watches
    assert any("started by ana" in m.value for m in bob.markdown)
    assert any("only ana or an administrator can cancel it" in c.value for c in bob.caption)
    with pytest.raises(jobs.NotAllowed, match="started by ana"):
        jobs.cancel_job(config, job.id, user="bob")
    with pytest.raises(jobs.NotAllowed):
        jobs.cancel_job(config, job.id, user=None)
    with pytest.raises(jobs.NotAllowed, match="no such render"):
        jobs.cancel_job(config, "../../elsewhere", user="ana")
    assert worker.poll() is None  # still rendering

    ana = page("Shot", user="ana")
    click(ana, "Cancel")
    worker.wait(timeout=60)  # it stopped (a `sleep 600` only does when signalled; its status may be reaped by the page)


def test_an_administrator_may_cancel_anyones_render(config: StudioConfig, anas_render: tuple) -> None:
    job, worker = anas_render
    admin = page("Shot", user="root-admin")
    click(admin, "Cancel")
    worker.wait(timeout=60)  # stopped: the administrator's Cancel signalled it


# --- no code from the workspace ------------------------------------------------------------------------------


def test_a_render_never_imports_a_yaml_py_from_the_working_folder_or_pythonpath(
        config: StudioConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    planted = f"open({str(marker)!r}, 'w').write('yaml.py ran')\n"
    for folder in (config.workspace, tmp_path / "on-path"):
        folder.mkdir(exist_ok=True)
        (folder / "yaml.py").write_text(planted)
        (folder / "sitecustomize.py").write_text(planted)
    monkeypatch.chdir(config.workspace)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "on-path"))
    monkeypatch.setenv("PYTHONSTARTUP", str(config.workspace / "yaml.py"))
    manifest = workspace.write_manifest(config.workspace, "bee.yaml", engine.STARTER_MANIFEST)
    job = jobs.start_job(config, campaign="my-campaign", manifest=manifest, owner="ana")
    done = wait_for(lambda: (j := jobs.read_job(jobs.jobs_dir(config) / job.id)).active is False and j, what="the run")
    assert done.state == "succeeded", done.message
    assert not marker.exists()
    # and the planted file would have run had the worker been started the old way
    old = subprocess.run([sys.executable, "-c", "import yaml"], cwd=config.workspace, env=dict(os.environ),
                         capture_output=True)
    assert old.returncode == 0 and marker.read_text() == "yaml.py ran"
