"""Install Debian's espeak-ng (the placeholder voice of `--voice local`) when it is missing and we may (root with
apt-get). Without it, a local run of a manifest with `voiceover:` fails its voice jobs with this same message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGE = "espeak-ng"
if shutil.which(PACKAGE):
    sys.exit(0)
if not shutil.which("apt-get") or os.geteuid() != 0:
    print(f"{PACKAGE} is missing and cannot be installed here (needs root and apt-get); voiceover with --voice local "
          f"fails until it is installed (apt-get install {PACKAGE})", file=sys.stderr)
    sys.exit(0)
env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
rc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE], env=env,
                    stdout=subprocess.DEVNULL).returncode
if rc != 0 or not shutil.which(PACKAGE):
    print(f"apt-get could not install {PACKAGE}; voiceover with --voice local fails until it is installed",
          file=sys.stderr)
