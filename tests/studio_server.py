"""`campaign studio` as a real server for the browser tests: started on a free port, waited for by its health
endpoint, stopped as Ctrl-C would; and the headless Chromium those tests drive."""

from __future__ import annotations

import os
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def running_studio(out: Path, *, log_path: Path, flags: tuple[str, ...] = (),
                   env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`campaign studio --out OUT FLAGS` on 127.0.0.1; yields its URL."""
    port = free_port()
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "studio", "--out", str(out), "--port", str(port),
                                 "--address", "127.0.0.1", *flags], env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + LONG / 1000
            while not healthy(url):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the studio did not come up"
                time.sleep(0.3)
            yield url
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
