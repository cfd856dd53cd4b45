"""`campaign studio`: start Streamlit on app.py with the studio's config in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.storage.outdir import prepare_out_dir
from pipeline.studio.config import ENV_VAR, StudioConfig

APP = Path(__file__).with_name("app.py")


def streamlit_command(*, port: int, address: str) -> list[str]:
    # headless: no browser is opened and no e-mail prompt; no usage statistics; the script is not watched
    # for changes (it is installed code, not a notebook being edited); no "Deploy" button in the toolbar
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--server.maxUploadSize", "50", "--client.toolbarMode", "minimal"]


def serve(config: StudioConfig, *, port: int, address: str) -> int:
    prepare_out_dir(config.out_dir)  # the studio writes there as `campaign run` does: ours, or refused before it starts
    host = "localhost" if address in ("0.0.0.0", "::", "") else address
    print(f"campaign studio: http://{host}:{port}  (outputs in {config.out_dir}; Ctrl-C stops it)", flush=True)
    env = dict(os.environ, **{ENV_VAR: config.to_env()})
    proc = subprocess.Popen(streamlit_command(port=port, address=address), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached Streamlit too; let it shut down
        return proc.wait()
