"""`campaign studio` as a real server for the browser tests: started as a person starts it (the `campaign` command,
in the workspace folder) on a free port, waited for by its health endpoint, its tokened link read from what it
printed, stopped as Ctrl-C would; and the headless Chromium those tests drive."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Debian's chromium is not installed (make test installs it with apt-get when run as root)"
LONG = 240_000  # ms: a generous guard against a hang, never a measurement
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


_PORTS_PER_WORKER = 400
_next_port = itertools.count()


def free_port() -> int:
    """A free port that no other test process is handed: below Linux's ephemeral range (32768-60999, where every
    bind to port 0 draws from) and in a block of this xdist worker's own, so two workers never race for one port
    (a port picked from the ephemeral range and released could be given to another worker's server before the
    studio binds it, and a test could then talk to the wrong server)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base = 20000 + _PORTS_PER_WORKER * index
    for _ in range(_PORTS_PER_WORKER):
        port = base + next(_next_port) % _PORTS_PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # still held by something else on this machine: the next one
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + _PORTS_PER_WORKER - 1}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def campaign_command() -> list[str]:
    """The installed `campaign` script (what a person runs: its folder, not the working one, is on sys.path), or
    the same entry point isolated where no script was installed."""
    script = Path(sys.executable).with_name("campaign")
    return [str(script)] if script.is_file() else [sys.executable, "-I", "-m", "pipeline.cli"]


def studio_link(log: str) -> str:
    """The link `campaign studio` printed, token included."""
    found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+", log)
    assert found, log
    return found.group(0)


def base_url(link: str) -> str:
    return link.split("/?", 1)[0]


@contextmanager
def running_studio(out: Path, *, log_path: Path, workspace: Path | None = None, flags: tuple[str, ...] = (),
                   env: Mapping[str, str] | None = None, link: bool = True) -> Iterator[str]:
    """`campaign studio --out OUT FLAGS` on 127.0.0.1, started in `workspace` (default: a new folder beside OUT);
    yields the link it printed, with its token (`link=False`: its bare URL, for --auth alb)."""
    port = free_port()
    workspace = workspace or out.parent / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("CAMPAIGN_STUDIO_TOKEN", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*campaign_command(), "studio", "--out", str(out), "--port", str(port),
                                 "--address", "127.0.0.1", *flags], env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=workspace)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + LONG / 1000
            while not healthy(url):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the studio did not come up"
                time.sleep(0.3)
            yield studio_link(log_path.read_text()) if link else url
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in its terminal
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def video_duration(video: Any) -> float:
    """The <video>'s duration once its metadata has loaded (fails if the video cannot load)."""
    return float(video.evaluate("""v => new Promise((ok, fail) => {
        if (v.readyState >= 1) return ok(v.duration);
        v.addEventListener('loadedmetadata', () => ok(v.duration));
        v.addEventListener('error', () => fail(new Error('video failed to load'))); })"""))
