"""Time to sign delivered files with Content Credentials (c2pa-python, ES256, development chain), per MB of
video, against copying the same file (the publication it replaces), measured in the same run.

python benchmarks/bench_signing.py [--repeats 7]   -> `name: value` lines
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.credentials.keys import development_key  # noqa: E402
from pipeline.credentials.sign import sign_file  # noqa: E402
from pipeline.media.encode import write_clip  # noqa: E402

DEFINITION = {"claim_generator_info": [{"name": "campaign", "version": "bench"}], "title": "bench.mp4",
              "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                  {"action": "c2pa.created",
                   "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"}]}}]}


def make_video(path: Path, *, seconds: int) -> None:
    """720x480, 8 fps (cogvideox-5b's size and rate), noisy frames so the file is several MB."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (480, 720, 3), dtype=np.uint8)
    frames = (np.roll(base, 7 * i, axis=1) ^ rng.integers(0, 40, (480, 720, 3), dtype=np.uint8)
              for i in range(8 * seconds))
    write_clip(path, frames, width=720, height=480, fps=8)


def median_s(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=30, help="length of the test video")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sign-"))
    try:
        key = development_key(work / "config")
        video = work / "video.mp4"
        make_video(video, seconds=args.seconds)
        mb = video.stat().st_size / 1e6
        sign = median_s(lambda: sign_file(video, work / "signed.mp4", DEFINITION, key, mime="video/mp4"), args.repeats)
        copy = median_s(lambda: shutil.copyfile(video, work / "copy.mp4"), args.repeats)
        png = work / "still.png"
        from PIL import Image

        Image.fromarray(np.random.default_rng(1).integers(0, 255, (480, 720, 3), dtype=np.uint8)).save(png)
        sign_png = median_s(lambda: sign_file(png, work / "signed.png", DEFINITION, key, mime="image/png"), args.repeats)
        print(f"signing_video_mb: {mb:.2f}")
        print(f"signing_video_s: {sign:.4f}")
        print(f"signing_s_per_mb: {sign / mb:.5f}")
        print(f"copy_s_per_mb: {copy / mb:.5f}")
        print(f"signing_vs_copy: {sign / copy:.1f}")
        print(f"signing_png_720x480_s: {sign_png:.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
