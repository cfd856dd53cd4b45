"""Shared fixtures: the example campaign, and small campaigns written into a temporary folder."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "spring-sofa-launch.yaml"
EXAMPLE_ASSETS = ROOT / "manifests" / "assets"


@pytest.fixture
def example_manifest() -> Path:
    return EXAMPLE


@pytest.fixture
def write_campaign(tmp_path: Path) -> Callable[[str], Path]:
    """Write a manifest (dedented YAML) next to a copy of the example assets; return its path."""

    def write(text: str, name: str = "campaign.yaml") -> Path:
        assets = tmp_path / "assets"
        if not assets.exists():
            shutil.copytree(EXAMPLE_ASSETS, assets)
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
