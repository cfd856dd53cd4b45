"""Install Debian's chromium for the report test, when it is missing and we may (root with apt-get)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

if shutil.which("chromium") or shutil.which("chromium-browser"):
    sys.exit(0)
if not shutil.which("apt-get") or os.geteuid() != 0:
    print("chromium not found and cannot be installed here; the report browser test will be skipped", file=sys.stderr)
    sys.exit(0)
env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
rc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-dejavu-core"],
                    env=env, stdout=subprocess.DEVNULL).returncode
if rc != 0:
    print("apt-get could not install chromium; the report browser test will be skipped", file=sys.stderr)
