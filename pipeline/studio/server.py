"""`campaign studio`: start Streamlit on the gated app (asgi.py), isolated from the workspace, with its config."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from pipeline.storage.outdir import prepare_out_dir
from pipeline.studio.config import ENV_VAR, StudioConfig
from pipeline.studio.gate import GATE_ENV, LOOPBACK_HOSTS, TOKEN_ENV, TOKEN_PARAM, USER_HEADER, USER_KEY, GateSettings, host_name

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
    with tempfile.TemporaryDirectory(prefix="campaign-studio-") as cwd:
        proc = subprocess.Popen(streamlit_command(port=port, address=address, hosts=gate.hosts), env=env, cwd=cwd)
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached Streamlit too; let it shut down
            return proc.wait()
