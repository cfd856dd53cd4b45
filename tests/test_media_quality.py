"""Quality of an assembled video of container-written clips: every copied frame is bit-identical to its source
after decoding, every crossfade frame matches the expected blend of the decoded sources (PSNR >= 35 dB)."""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from pipeline.media.assemble import AssemblyRequest, assemble_video
from pipeline.media.encode import PROFILE_ID
from pipeline.media.probe import ClipInfo

pytest.importorskip("torch")  # container/generate.py imports torch and diffusers (the `gpu` extra)
W, H, FRAMES, FPS = 160, 96, 17, 8


def read_frames(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(buf, np.uint8).reshape(h, w, 3).astype(np.float64) for buf in reader]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def real_looking(seed: int) -> np.ndarray:
    """Smooth coloured texture panning, like a model's clip (not flat colour: the codec has work to do)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (H // 8, W // 4, 3), dtype=np.uint8), (2 * W, H), interpolation=cv2.INTER_CUBIC)
    return np.stack([np.ascontiguousarray(base[:, 3 * i:3 * i + W]) for i in range(FRAMES)])


@pytest.fixture(scope="module")
def container_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from pipeline.backends.video_diffusers import load_generate_module

    generate = load_generate_module()
    folder = tmp_path_factory.mktemp("container")
    paths = []
    for i in range(3):
        path = folder / f"clip{i}.mp4"
        generate.write_mp4(real_looking(i), path, fps=FPS)
        paths.append(path)
    return paths


def test_copied_frames_are_exact_and_blends_match(container_clips: list[Path], tmp_path: Path) -> None:
    info = ClipInfo(W, H, FPS, FRAMES, PROFILE_ID)  # what the diffusers backend's provenance says
    out = tmp_path / "video.mp4"
    result = assemble_video(AssemblyRequest(clips=tuple(container_clips), crossfade=0.5, clip_info=(info,) * 3), out,
                            tmp_path / "poster.png")
    k = 4
    assert result.frames == 3 * FRAMES - 2 * k
    assert result.method == "stream-copy+crossfade-windows"
    assert result.frames_encoded < 2 * (k + 2 * 3) and result.frames_copied + result.frames_encoded == result.frames

    video, sources = read_frames(out), [read_frames(p) for p in container_clips]
    assert len(video) == result.frames
    expected: list[tuple[np.ndarray, bool]] = []  # (expected frame, blended)
    for i, src in enumerate(sources):
        head, tail = (k if i else 0), (k if i < 2 else 0)
        if i:
            prev = sources[i - 1]
            for j in range(k):
                alpha = (j + 0.5) / k
                expected.append(((1 - alpha) * prev[FRAMES - k + j] + alpha * src[j], True))
        expected.extend((src[j], False) for j in range(head, FRAMES - tail))
    copied = 0
    for n, (frame, (want, blended)) in enumerate(zip(video, expected, strict=True)):
        score = psnr(frame, want)
        if blended:
            assert score >= 35, f"blended frame {n}: {score:.1f} dB"
        elif score == float("inf"):
            copied += 1
        else:  # a frame next to a window, re-encoded so the copied run can start on a keyframe
            assert score >= 35, f"frame {n}: {score:.1f} dB"
    assert copied == result.frames_copied  # every copied frame decodes bit for bit as its source
