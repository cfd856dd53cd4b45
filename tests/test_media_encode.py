"""The one H.264 profile: the container's copy is identical, and clips from both writers join by stream copy."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputRejected
from pipeline.media.encode import H264_PROFILE, PROFILE_ID, SegmentWriter, write_clip
from pipeline.media.probe import probe_video

GENERATE_PY = Path(__file__).resolve().parents[1] / "container" / "generate.py"


def container_constant(name: str) -> object:
    """A constant as container/generate.py defines it (read from its source: importing it loads torch)."""
    for node in ast.parse(GENERATE_PY.read_text(encoding="utf-8")).body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            assert node.value is not None
            return ast.literal_eval(node.value)
    raise AssertionError(f"{GENERATE_PY} defines no {name}")


def test_the_container_carries_an_identical_copy_of_the_profile() -> None:
    assert container_constant("H264_PROFILE") == H264_PROFILE
    assert f"comment={PROFILE_ID}" in H264_PROFILE  # files say which profile wrote them
    assert container_constant("H264_PROFILE_ID") == PROFILE_ID  # and so does each clip's provenance


def test_written_clips_are_tagged_h264_with_exact_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(9)]
    assert write_clip(tmp_path / "c.mp4", frames, width=64, height=48, fps=8) == 9
    info = probe_video(tmp_path / "c.mp4")
    assert (info.width, info.height, info.frames, info.rate, info.codec, info.encoding) == (64, 48, 9, 8, "h264", PROFILE_ID)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]
    with pytest.raises(InputRejected, match="63x48"):
        SegmentWriter(tmp_path / "odd.mp4", width=63, height=48, fps=8)
