"""Build the Lambda layer of the light task functions offline: `pip install --platform` of the pinned wheels.

    python infra/build_layer.py [--out build/lambda-layer] [--stub]

The light tasks (plan, enhance prompts, edit images with Bedrock, report, approval, starter) import only what
LAYER_PACKAGES lists; the versions come from pyproject.toml's dependencies, so they are pinned once.
boto3 is left out: the Lambda runtime carries it. `--stub` writes an empty layer for template tests.
No Docker and no network beyond the package index.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "lambda-layer"
LAYER_PACKAGES = ("pyyaml", "jsonschema", "pillow", "numpy",  # numpy: images are read exactly (16-bit modes)
                  "c2pa-python")  # the report and approval steps sign delivered files (brings cryptography)
PYTHON_VERSION = "3.12"  # the functions' runtime (infra/functions.py)
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")  # Amazon Linux 2023 (glibc 2.34) runs both
STAMP = ".requirements.txt"


def layer_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """`name==version` for each layer package, read from the project's pinned dependencies."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = {re.split(r"[=<>!~ \[]", d, maxsplit=1)[0].lower(): d for d in deps}
    missing = [p for p in LAYER_PACKAGES if p not in pins]
    if missing:
        raise SystemExit(f"{pyproject}: no pinned dependency for {missing}")
    for name in LAYER_PACKAGES:
        if "==" not in pins[name]:
            raise SystemExit(f"{pyproject}: {pins[name]!r} is not pinned with ==")
    return [pins[name] for name in LAYER_PACKAGES]


def build(out: Path, *, stub: bool = False) -> Path:
    """Install into <out>/python (the layout Lambda puts on sys.path); skip when already built for these pins."""
    site = out / "python"
    requirements = [] if stub else layer_requirements()
    wanted = "\n".join(requirements) + "\n"
    stamp = out / STAMP
    if stamp.is_file() and stamp.read_text() == wanted and site.is_dir():
        return out
    shutil.rmtree(out, ignore_errors=True)
    site.mkdir(parents=True)
    if requirements:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(site),
               "--implementation", "cp", "--python-version", PYTHON_VERSION, "--only-binary=:all:",
               *(arg for p in PLATFORMS for arg in ("--platform", p)), *requirements]
        subprocess.run(cmd, check=True)
        for cache in site.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    else:
        (site / "README.txt").write_text("stub layer for template tests: no packages\n")
    stamp.write_text(wanted)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--stub", action="store_true", help="an empty layer (template tests)")
    args = parser.parse_args(argv)
    out = build(args.out, stub=args.stub)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"layer: {out} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
