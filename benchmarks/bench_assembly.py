"""Assembly speed against baselines measured in the same run: plain ffmpeg stream copy, and moviepy's re-encode.

Run: python benchmarks/bench_assembly.py [--repeats N] [--slow-repeats N]
Prints `name: value` lines; the ratios are the project's time over the baseline's (lower is better):
- hard cuts of 8 preview clips vs `ffmpeg -f concat -c copy` (target <= 1.5);
- 0.5 s crossfades of 8 container-written clips (container/generate.py's write_mp4 on textured, moving frames)
  vs moviepy's whole re-encode (target <= 0.2), and the same with preview clips (target <= 0.2);
- a 60-clip, 4-minute video with crossfades: time and peak memory, beside a 15-clip one (memory must not grow);
- 3 formats (16:9, 9:16, 1:1, fit crop) of the 8-clip crossfade video (pipeline.media.deliver: one assembly,
  one decode feeding three encoders) vs moviepy's re-encode of each format (crossfades composited, cropped
  and resized, written once per format).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.backends.base import ClipRequest  # noqa: E402
from pipeline.backends.video_preview import PreviewVideoBackend  # noqa: E402
from pipeline.media.assemble import AssemblyRequest, AssemblyResult, assemble_video  # noqa: E402
from pipeline.media.encode import PROFILE_ID, ffmpeg_exe  # noqa: E402
from pipeline.media.probe import ClipInfo, probe_video  # noqa: E402

CLIPS, FRAMES, FPS, WIDTH, HEIGHT, CROSSFADE = 8, 49, 8, 720, 480, 0.5  # the default cogvideox-5b clip
LONG_FRAMES = 36  # 4.5 s: 60 clips with 0.5 s crossfades are 240.5 s


def preview_clips(folder: Path, count: int = CLIPS, frames: int = FRAMES) -> list[Path]:
    requests = [
        ClipRequest(key=f"clip{i}", model="preview-bench", prompt=f"Shot {i}: a slow drift over coloured light",
                    frames=frames, fps=FPS, width=WIDTH, height=HEIGHT, steps=1, guidance=0.0, seed=i)
        for i in range(count)
    ]
    outcomes = PreviewVideoBackend().render(requests, folder)
    failed = [o for o in outcomes if o.path is None]
    if failed:
        raise SystemExit(f"preview clips failed: {failed}")
    return [o.path for o in outcomes if o.path is not None]


def container_clips(folder: Path) -> list[Path]:
    """Clips written by the container's own writer from textured frames that pan and zoom (not flat colour)."""
    from pipeline.backends.video_diffusers import load_generate_module

    generate = load_generate_module()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(CLIPS):
        rng = np.random.default_rng(i)
        base = cv2.resize(rng.integers(0, 255, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8), (WIDTH * 2, HEIGHT * 2),
                          interpolation=cv2.INTER_CUBIC)
        frames = np.stack([cv2.resize(base[j * 4:j * 4 + HEIGHT + j * 2, j * 6:j * 6 + WIDTH + j * 3], (WIDTH, HEIGHT))
                           for j in range(FRAMES)])
        path = folder / f"clip{i}.mp4"
        generate.write_mp4(frames, path, fps=FPS)
        paths.append(path)
    return paths


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


def moviepy_crossfade(clips: list[Path], out: Path) -> None:
    from moviepy import VideoFileClip, concatenate_videoclips, vfx

    sources = [VideoFileClip(str(c)) for c in clips]
    try:
        faded = [sources[0]] + [c.with_effects([vfx.CrossFadeIn(CROSSFADE)]) for c in sources[1:]]
        video = concatenate_videoclips(faded, method="compose", padding=-CROSSFADE)
        video.write_videofile(str(out), codec="libx264", fps=FPS, audio=False, logger=None)
    finally:
        for c in sources:
            c.close()


def described(clips: list[Path], frames: int = FRAMES) -> tuple[ClipInfo, ...]:
    """What the clips' provenance says (the run passes this in from tasks._run_video)."""
    return (ClipInfo(WIDTH, HEIGHT, Fraction(FPS), frames, PROFILE_ID),) * len(clips)


def crossfade_case(name: str, clips: list[Path], folder: Path, repeats: int) -> None:
    fade = AssemblyRequest(clips=tuple(clips), crossfade=CROSSFADE, clip_info=described(clips))
    result = assemble_video(fade, folder / f"{name}.mp4", folder / f"{name}.png")
    expected = CLIPS * FRAMES / FPS - (CLIPS - 1) * CROSSFADE
    assert abs(result.duration_s - expected) < 1e-9 and result.method == "stream-copy+crossfade-windows", result
    project, moviepy = paired_medians(lambda: assemble_video(fade, folder / f"{name}.mp4", folder / f"{name}.png"),
                                      lambda: moviepy_crossfade(clips, folder / "moviepy.mp4"), repeats)
    mp = probe_video(folder / "moviepy.mp4")
    print(f"crossfade_{name}_project_s: {project:.4f}")
    print(f"crossfade_{name}_moviepy_s: {moviepy:.4f}")
    print(f"crossfade_{name}_vs_moviepy: {project / moviepy:.3f}")
    print(f"crossfade_{name}_frames: {result.frames} ({result.duration_s:g} s): {result.frames_copied} copied, "
          f"{result.frames_encoded} encoded; moviepy {mp.frames} frames, all encoded")


FORMATS = {"16:9": (854, 480), "9:16": (480, 854), "1:1": (480, 480)}


def moviepy_formats(clips: list[Path], folder: Path) -> None:
    """The baseline: each format made by moviepy on its own (centre crop to the ratio, resize, re-encode)."""
    from moviepy import VideoFileClip, concatenate_videoclips, vfx

    for fmt, (w, h) in FORMATS.items():
        sources = [VideoFileClip(str(c)) for c in clips]
        try:
            faded = [sources[0]] + [c.with_effects([vfx.CrossFadeIn(CROSSFADE)]) for c in sources[1:]]
            video = concatenate_videoclips(faded, method="compose", padding=-CROSSFADE)
            scale = max(w / WIDTH, h / HEIGHT)
            cw, ch = round(w / scale), round(h / scale)
            framed = video.with_effects([vfx.Crop(x_center=WIDTH / 2, y_center=HEIGHT / 2, width=cw, height=ch),
                                         vfx.Resize((w, h))])
            framed.write_videofile(str(folder / f"moviepy-{fmt.replace(':', 'x')}.mp4"), codec="libx264", fps=FPS,
                                   audio=False, logger=None)
        finally:
            for c in sources:
                c.close()


def formats_case(clips: list[Path], folder: Path, repeats: int) -> None:
    from pipeline.manifest.timeline import timeline
    from pipeline.media.deliver import make_outputs
    from pipeline.plan.jobs import VideoOutput

    req = AssemblyRequest(clips=tuple(clips), crossfade=CROSSFADE, clip_info=described(clips))
    tl = timeline([(FRAMES, FPS)] * len(clips), crossfade_s=CROSSFADE)
    outputs = [VideoOutput(format=f, width=w, height=h, key=f"bench-{i}", burn=False, captions_key=None)
               for i, (f, (w, h)) in enumerate(FORMATS.items())]
    work = folder / "formats"
    work.mkdir(exist_ok=True)

    def project() -> None:
        made = make_outputs(req, outputs=outputs, tl=tl, captions=(None,) * len(clips), fit="crop", workdir=work)
        assert [(m.info["width"], m.info["height"], m.info["frames"]) for m in made] == [
            (w, h, tl.frames) for w, h in FORMATS.values()]

    ours, theirs = paired_medians(project, lambda: moviepy_formats(clips, folder), repeats)
    print(f"formats_project_s: {ours:.4f}")
    print(f"formats_moviepy_s: {theirs:.4f}")
    print(f"formats_vs_moviepy: {ours / theirs:.3f}")
    print(f"formats_frames: {tl.frames} per format, {len(FORMATS)} formats")


def long_video(count: int) -> None:
    """One assembly of `count` clips (cycling 8 preview clips) with crossfades; prints JSON with time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        folder = Path(tmp)
        clips = preview_clips(folder / "clips", frames=LONG_FRAMES)
        paths = [clips[i % len(clips)] for i in range(count)]
        req = AssemblyRequest(clips=tuple(paths), crossfade=CROSSFADE, clip_info=described(paths, LONG_FRAMES))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        result: AssemblyResult = assemble_video(req, folder / "long.mp4", folder / "long.png")
        seconds = time.perf_counter() - t
    print(json.dumps({"clips": count, "duration_s": result.duration_s, "frames": result.frames, "seconds": seconds,
                      "frames_encoded": result.frames_encoded, "rss_before_mib": before / 1024,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "peak_child_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs of each fast case; the median is reported")
    parser.add_argument("--slow-repeats", type=int, default=3, help="runs of each re-encoding case")
    parser.add_argument("--long", type=int, help=argparse.SUPPRESS)  # one long assembly (run in a child process)
    parser.add_argument("--only-formats", action="store_true", help="run only the formats case")
    args = parser.parse_args()
    if args.long:
        long_video(args.long)
        return
    if args.only_formats:
        with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
            formats_case(preview_clips(Path(tmp) / "preview"), Path(tmp), args.slow_repeats)
        return

    print(f"clips: {CLIPS} x {FRAMES} frames {WIDTH}x{HEIGHT} {FPS} fps, crossfade {CROSSFADE} s")
    with tempfile.TemporaryDirectory(prefix="bench-assembly-") as tmp:
        folder = Path(tmp)
        clips = preview_clips(folder / "preview")
        hard = AssemblyRequest(clips=tuple(clips), clip_info=described(clips))
        result = assemble_video(hard, folder / "hard.mp4", folder / "hard.png")
        assert result.method == "stream-copy", result.method
        ffmpeg_concat_copy(clips, folder)
        copy_project, copy_ffmpeg = paired_medians(
            lambda: assemble_video(hard, folder / "hard.mp4", folder / "hard.png"),
            lambda: ffmpeg_concat_copy(clips, folder), args.repeats)
        print(f"concat_project_s: {copy_project:.4f}")
        print(f"concat_ffmpeg_copy_s: {copy_ffmpeg:.4f}")
        print(f"concat_vs_ffmpeg_copy: {copy_project / copy_ffmpeg:.2f}")
        crossfade_case("container", container_clips(folder / "container"), folder, args.slow_repeats)
        crossfade_case("preview", clips, folder, args.slow_repeats)
        formats_case(clips, folder, args.slow_repeats)

    for count in (15, 60):  # each in a fresh process, so its peak memory is its own
        out = subprocess.run([sys.executable, __file__, "--long", str(count)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"long_{count}_clips: {row['duration_s']:g} s video, {row['frames']} frames "
              f"({row['frames_encoded']} encoded) in {row['seconds']:.2f} s; peak RSS {row['peak_rss_mib']:.0f} MiB "
              f"(python), {row['peak_child_rss_mib']:.0f} MiB (largest ffmpeg child)")


if __name__ == "__main__":
    main()
