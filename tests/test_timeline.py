"""One timeline rule: the duration the report expects is the duration assembly makes, frame for frame, also for
crossfades and cards that are not a whole number of frames."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import pytest

from pipeline.cli import main as campaign_cli
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest


def run_and_read_back(manifest: Path, out: Path) -> tuple[dict, int]:
    assert campaign_cli(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    latest = json.loads((out / "runs" / "timeline-check" / "latest.json").read_text())
    report_path = out / "runs" / "timeline-check" / latest["report"]
    [video] = json.loads(report_path.read_text())["videos"]
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(report_path.parent / video["path"]))
    return video, frames


@pytest.mark.slow
@pytest.mark.parametrize("model, frames, crossfade, title", [
    ("cogvideox-5b", 9, 0.3, None),  # 2.4 frames -> 2: the case that reported 2.775 s for a 2.875 s video
    ("cogvideox-5b", 17, 0.45, 0.7),  # 3.6 frames -> 4; a 5.6-frame title -> 6
    ("cogvideox1.5-5b", 17, 0.23, None),  # 3.68 frames -> 4 at 16 fps
    ("cogvideox1.5-5b", 33, 0.53125, 1.03),  # exactly 8.5 frames rounds half up -> 9; 16.48-frame title -> 16
])
def test_expected_duration_is_the_assembled_duration(write_campaign, tmp_path: Path, model: str, frames: int,  # type: ignore[no-untyped-def]
                                                     crossfade: float, title: float | None) -> None:
    lines = ["campaign: timeline-check", "videos:", "  - id: v", f"    transition: {{crossfade: {crossfade}}}"]
    if title:
        lines.append(f"    title: {{text: Spring, duration: {title}}}")
    lines.append("    shots:")
    lines += [f"      - {{prompt: Shot {i}., frames: {frames}, model: {model}}}" for i in range(3)]
    manifest = write_campaign("\n".join(lines) + "\n")
    video, frames_read = run_and_read_back(manifest, tmp_path / "out")
    assert video["frames"] == frames_read
    assert video["duration_s"] == pytest.approx(frames_read / video["fps"], abs=1e-9)
    assert video["expected_duration_s"] == pytest.approx(video["duration_s"], abs=1e-6)


def test_validation_counts_a_crossfade_in_the_same_frames(write_campaign) -> None:  # type: ignore[no-untyped-def]
    """9-frame clips at 8 fps: a middle clip gives 4 frames a side. 0.55 s is 4.4 -> 4 frames and fits; 0.57 s
    is 4.56 -> 5 frames and does not, though 0.57 s is less than half of the 1.125 s clip."""
    def manifest(crossfade: float) -> Path:
        return write_campaign(f"""\
            campaign: timeline-check
            videos:
              - id: v
                transition: {{crossfade: {crossfade}}}
                shots:
                  - {{prompt: One., frames: 9}}
                  - {{prompt: Two., frames: 9}}
                  - {{prompt: Three., frames: 9}}
            """)
    load_manifest(manifest(0.55))
    with pytest.raises(ManifestInvalid, match=r"a 0.57 s crossfade is 5 frames at 8 fps.*\(4 frames a side\)"):
        load_manifest(manifest(0.57))
