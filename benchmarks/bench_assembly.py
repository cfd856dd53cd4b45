"""Assembly speed against baselines measured in the same run: plain ffmpeg stream copy, and moviepy's re-encode.

Run: python benchmarks/bench_assembly.py [--repeats N]
Prints `name: value` lines; the ratios are the project's time over the baseline's (lower is better).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.assemble import AssemblyRequest, assemble_video, ffmpeg_exe, probe_video  # noqa: E402
from pipeline.backends.base import ClipRequest  # noqa: E402
from pipeline.backends.video_preview import PreviewVideoBackend  # noqa: E402

CLIPS, SECONDS, FPS, WIDTH, HEIGHT, CROSSFADE = 8, 2, 16, 720, 480, 0.5


def make_clips(folder: Path) -> list[Path]:
    requests = [
        ClipRequest(key=f"clip{i}", model="preview-bench", prompt=f"Shot {i}: a slow drift over coloured light",
                    frames=SECONDS * FPS, fps=FPS, width=WIDTH, height=HEIGHT, steps=1, guidance=0.0, seed=i)
        for i in range(CLIPS)
    ]
    outcomes = PreviewVideoBackend().render(requests, folder)
    failed = [o for o in outcomes if o.path is None]
    if failed:
        raise SystemExit(f"preview clips failed: {failed}")
    return [o.path for o in outcomes if o.path is not None]


def paired_medians(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time of each, run alternately so that load changes on the machine hit both alike."""
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times_a), statistics.median(times_b)


def ffmpeg_concat_copy(clips: list[Path], folder: Path) -> None:
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{c.resolve()}'\n" for c in clips), encoding="utf-8")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-c", "copy", str(folder / "ffmpeg-copy.mp4")], check=True)


def moviepy_crossfade(clips: list[Path], folder: Path) -> None:
    from moviepy import VideoFileClip, concatenate_videoclips, vfx

    sources = [VideoFileClip(str(c)) for c in clips]
    try:
        faded = [sources[0]] + [c.with_effects([vfx.CrossFadeIn(CROSSFADE)]) for c in sources[1:]]
        video = concatenate_videoclips(faded, method="compose", padding=-CROSSFADE)
        video.write_videofile(str(folder / "moviepy-crossfade.mp4"), codec="libx264", fps=FPS, audio=False, logger=None)
    finally:
        for c in sources:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs of each fast case; the median is reported")
    parser.add_argument("--slow-repeats", type=int, default=3, help="runs of each re-encoding case")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-assembly-") as tmp:
        folder = Path(tmp)
        clips = make_clips(folder / "clips")
        hard = AssemblyRequest(clips=tuple(clips))
        fade = AssemblyRequest(clips=tuple(clips), crossfade=CROSSFADE)

        # warm-up (page cache, the cached encoder signature), and checks that the outputs are what is compared
        result = assemble_video(hard, folder / "hard.mp4", folder / "hard.png")
        assert result.method == "stream-copy", result.method
        result = assemble_video(fade, folder / "fade.mp4", folder / "fade.png")
        expected = CLIPS * SECONDS - (CLIPS - 1) * CROSSFADE
        assert abs(result.duration_s - expected) < 1e-9, result
        ffmpeg_concat_copy(clips, folder)

        copy_project, copy_ffmpeg = paired_medians(
            lambda: assemble_video(hard, folder / "hard.mp4", folder / "hard.png"),
            lambda: ffmpeg_concat_copy(clips, folder), args.repeats)
        fade_project, fade_moviepy = paired_medians(
            lambda: assemble_video(fade, folder / "fade.mp4", folder / "fade.png"),
            lambda: moviepy_crossfade(clips, folder), args.slow_repeats)
        mp = probe_video(folder / "moviepy-crossfade.mp4")

    print(f"clips: {CLIPS} x {SECONDS} s {WIDTH}x{HEIGHT} {FPS} fps (preview backend)")
    print(f"concat_project_s: {copy_project:.4f}")
    print(f"concat_ffmpeg_copy_s: {copy_ffmpeg:.4f}")
    print(f"concat_vs_ffmpeg_copy: {copy_project / copy_ffmpeg:.2f}")
    print(f"crossfade_project_s: {fade_project:.4f}")
    print(f"crossfade_moviepy_s: {fade_moviepy:.4f}")
    print(f"crossfade_vs_moviepy: {fade_project / fade_moviepy:.2f}")
    print(f"crossfade_frames: project {result.frames} ({result.duration_s:g} s, {result.frames_encoded} re-encoded), "
          f"moviepy {mp.frames} ({mp.duration:g} s)")


if __name__ == "__main__":
    main()
