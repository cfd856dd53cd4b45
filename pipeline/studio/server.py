"""`campaign studio`: start Streamlit on the gated app (asgi.py), isolated from the workspace, with its config; on
SIGTERM or SIGINT stop it and the renders in flight in order."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pipeline.storage.outdir import prepare_out_dir
from pipeline.studio.config import ENV_VAR, StudioConfig
from pipeline.studio.gate import GATE_ENV, LOOPBACK_HOSTS, TOKEN_ENV, TOKEN_PARAM, USER_HEADER, USER_KEY, GateSettings, host_name
from pipeline.studio.jobs import list_jobs

ASGI = Path(__file__).with_name("asgi.py")
ANY_ADDRESS = ("0.0.0.0", "::", "")


def streamlit_command(*, port: int, address: str, hosts: tuple[str, ...]) -> list[str]:
    # -I: the server imports nothing from its working folder, PYTHONPATH or the user site (Python docs, -I).
    # headless: no browser is opened and no e-mail prompt; no usage statistics; the script is not watched
    # for changes (it is installed code, not a notebook being edited); no "Deploy" button in the toolbar.
    # allowedHosts: Streamlit's own Host check on its websocket, behind the gate's on every request.
    # trustedUserHeaders: the gate's user header becomes st.user["name"] (read once per websocket).
    command = [sys.executable, "-I", "-m", "streamlit", "run", str(ASGI), "--server.port", str(port),
               "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--global.developmentMode", "false",
               "--server.maxUploadSize", "50", "--client.toolbarMode", "minimal",
               "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
               "--server.trustedUserHeaders", json.dumps({USER_HEADER: USER_KEY})]
    for host in hosts:
        command += ["--server.allowedHosts", host]
    return command


def gate_settings(*, auth: str, port: int, address: str, extra_hosts: tuple[str, ...] = ()) -> GateSettings:
    """Locally: loopback names, the address listened on, and any --allowed-host. Behind the ALB: any Host (the
    load balancer's sign-in is the door; its cookie belongs to the studio's own name)."""
    if auth == "alb":
        return GateSettings(mode="alb", port=port, hosts=tuple(h.lower() for h in extra_hosts))
    hosts = [*LOOPBACK_HOSTS]
    named = host_name(address if ":" not in address else f"[{address}]")
    if address not in ANY_ADDRESS and named and named not in hosts:
        hosts.append(named)
    hosts += [h.lower() for h in extra_hosts if h.lower() not in hosts]
    return GateSettings(mode="token", port=port, local_user=getpass.getuser(), hosts=tuple(hosts))


def serve(config: StudioConfig, *, port: int, address: str, auth: str = "token",
          allowed_hosts: tuple[str, ...] = ()) -> int:
    prepare_out_dir(config.out_dir)  # the studio writes there as `campaign run` does: ours, or refused before it starts
    gate = gate_settings(auth=auth, port=port, address=address, extra_hosts=allowed_hosts)
    if auth == "token" and gate.local_user not in config.admins:
        # the person who started it may cancel anything in it (only they hold the token)
        config = replace(config, admins=(*config.admins, gate.local_user))
    env = dict(os.environ, **{ENV_VAR: config.to_env(), GATE_ENV: gate.to_env()})
    if auth == "token":
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)  # as Jupyter: given, or 256 random bits
        env[TOKEN_ENV] = token
        host = "127.0.0.1" if address in ANY_ADDRESS else (f"[{address}]" if ":" in address else address)
        print(f"campaign studio: http://{host}:{port}/?{TOKEN_PARAM}={token}\n  (the link holds the token: keep it to "
              f"yourself; outputs in {config.out_dir}; manifests in {config.workspace}; Ctrl-C stops it)", flush=True)
    else:
        print(f"campaign studio: serving on {address}:{port} behind the load balancer's sign-in "
              f"(outputs in {config.out_dir}; manifests in {config.workspace})", flush=True)
    # Started in an empty folder of its own: Streamlit reads .streamlit/ (config, secrets) and pages/ from its
    # working folder, and the workspace is no place to take settings from.
    with tempfile.TemporaryDirectory(prefix="campaign-studio-") as cwd, _held_signals() as stop:
        proc = subprocess.Popen(streamlit_command(port=port, address=address, hosts=gate.hosts), env=env, cwd=cwd)
        while proc.poll() is None and not stop:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_S)
        if not stop:  # Streamlit ended by itself
            return proc.returncode
        shut_down(proc, config, deadline=time.monotonic() + STOP_S)
        return 0


STOP_S = 8.0  # SIGTERM to exit: inside the 10 s that `docker stop` and ECS give before SIGKILL
POLL_S = 0.1


@contextlib.contextmanager
def _held_signals() -> Iterator[list[int]]:
    """SIGINT and SIGTERM recorded (in the list yielded) instead of raised: the server then stops in order."""
    got: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is threading.main_thread():
        for sig in previous:
            signal.signal(sig, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, before in previous.items():
                signal.signal(sig, before)


def shut_down(proc: subprocess.Popen[bytes], config: StudioConfig, *, deadline: float) -> None:
    """Stop Streamlit (SIGTERM: its own orderly shutdown) and every render in flight (SIGTERM: each ends as an
    interrupted run and writes its report, as `campaign run` does), then wait, until `deadline`, for Streamlit to
    exit and each render to have written its result. Renders run in sessions of their own, so a signal to the
    studio never reaches them by itself; in a container they die with it, hence the wait. Streamlit still there
    at the deadline is killed."""
    _signal(proc.pid, signal.SIGTERM)
    told: set[str] = set()
    while True:
        active = [j for j in list_jobs(config) if j.active]  # again each time: Streamlit may start one as it stops
        for job in active:
            if job.id not in told and job.pid is not None:
                _signal(job.pid, signal.SIGTERM)
                told.add(job.id)
        if (proc.poll() is not None and not active) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
