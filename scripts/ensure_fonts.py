"""Install Debian's Noto fonts for burned captions (Latin, Greek, Cyrillic, Arabic: fonts-noto-core; Chinese,
Japanese, Korean: fonts-noto-cjk) when they are missing and we may (root with apt-get). Without them, captions in
a script no installed font covers are refused at validation with the script named (pipeline/manifest/fonts.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = {"fonts-noto-core": "NotoSans-Regular.ttf", "fonts-noto-cjk": "NotoSansCJK-Regular.ttc",
            "fonts-dejavu-core": "DejaVuSans.ttf"}
missing = [pkg for pkg, name in PACKAGES.items() if not any(Path("/usr/share/fonts").rglob(name))]
if not missing:
    sys.exit(0)
if not shutil.which("apt-get") or os.geteuid() != 0:
    print(f"fonts missing ({', '.join(missing)}) and cannot be installed here; captions in scripts they cover "
          "cannot be burned in", file=sys.stderr)
    sys.exit(0)
env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
rc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env,
                    stdout=subprocess.DEVNULL).returncode
if rc != 0:
    print(f"apt-get could not install {', '.join(missing)}; captions in scripts they cover cannot be burned in",
          file=sys.stderr)
