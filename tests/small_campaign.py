"""One small campaign several test files run: an edited image and one video of two shots (one from the edited
image): 2 prompts, 1 image, 2 clips, 1 video, with small preview clips."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "manifests" / "assets"


def write_small_campaign(folder: Path, *, name: str, file_name: str = "campaign.yaml", extra: str = "",
                         prompt: str = "A bee on a flower.") -> Path:
    """Write it into `folder` (with a copy of the example assets) as `file_name`; `extra` is appended YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "assets").exists():
        shutil.copytree(ASSETS, folder / "assets")
    path = folder / file_name
    path.write_text(textwrap.dedent(f"""\
        campaign: {name}
        defaults:
          video: {{model: cogvideox-5b, steps: 2, seed: 7, frames: 9}}
        assets:
          sofa: assets/sofa.png
        images:
          - id: sofa-big
            from: sofa
            edits:
              - upscale-fast: {{}}
        videos:
          - id: intro
            shots:
              - prompt: {prompt}
              - prompt: The sofa in a sunlit loft.
                image: sofa-big
        """) + extra, encoding="utf-8")
    return path


def plan_keys(manifest: Path, out: Path, capsys: Any) -> dict[str, str]:
    """Each job's content key, as `campaign plan --json` prints them (capsys: the test's CaptureFixture)."""
    from pipeline.cli import main

    capsys.readouterr()
    assert main(["plan", str(manifest), "--json", "--out", str(out)]) == 0
    return {j["id"]: j["key"] for j in json.loads(capsys.readouterr().out)["plan"]["jobs"]}
