"""The preview video backend: real encodes, read back; exact size, frame count and fps for every model."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from pipeline.backends.base import ClipRequest
from pipeline.backends.video_preview import VERSION, PreviewVideoBackend
from pipeline.catalog import VIDEO_MODELS
from pipeline.media.encode import PROFILE_ID
from pipeline.media.probe import probe_video


def read_frames(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in reader]


def request(key: str, model: str = "cogvideox-5b", *, frames: int | None = None, seed: int = 42,
            prompt: str = "A bee on a flower, the camera slowly pushes in", image: Path | None = None) -> ClipRequest:
    m = VIDEO_MODELS[model]
    return ClipRequest(key=key, model=model, prompt=prompt, frames=frames or m.default_frames, fps=m.fps,
                       width=m.width, height=m.height, steps=50, guidance=6.0, seed=seed, image=image)


def assert_clip(path: Path, *, width: int, height: int, frames: int, fps: int) -> None:
    counted, _ = imageio_ffmpeg.count_frames_and_secs(str(path))  # decodes every frame
    info = probe_video(path)
    assert counted == frames
    assert (info.width, info.height, info.frames, info.fps) == (width, height, frames, fps)
    assert info.duration == pytest.approx(frames / fps)
    assert (info.codec, info.encoding) == ("h264", PROFILE_ID)
    meta = next(imageio_ffmpeg.read_frames(str(path)))
    assert "yuv420p" in meta["codec"] or "yuv420p" in str(meta)


@pytest.fixture
def start_image(tmp_path: Path) -> Path:
    """An odd-sized RGBA image: red, with a transparent hole over its middle 40%."""
    rgba = np.zeros((301, 517, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 220, 255
    rgba[90:210, 155:362, 3] = 0
    path = tmp_path / "start.png"
    Image.fromarray(rgba).save(path)
    return path


@pytest.mark.parametrize("model", sorted(VIDEO_MODELS))
def test_text_to_video_has_the_models_exact_geometry(model: str, tmp_path: Path) -> None:
    m = VIDEO_MODELS[model]
    frames = m.frame_choices[0]  # 9 or 17: the shortest the rule allows
    (out,) = PreviewVideoBackend().render([request("t2v", model, frames=frames)], tmp_path)
    assert out.error is None and out.path == tmp_path / "t2v.mp4"
    assert out.placeholder and out.backend == "preview"
    assert_clip(out.path, width=m.width, height=m.height, frames=frames, fps=m.fps)
    video = read_frames(out.path)
    assert not np.array_equal(video[0], video[-1])  # the gradient moves


@pytest.mark.parametrize("model", sorted(name for name, m in VIDEO_MODELS.items() if m.image_to_video))
def test_image_to_video_cover_fits_an_rgba_image(model: str, tmp_path: Path, start_image: Path) -> None:
    m = VIDEO_MODELS[model]
    frames = m.frame_choices[0]
    (out,) = PreviewVideoBackend().render([request("i2v", model, frames=frames, image=start_image)], tmp_path)
    assert out.error is None and out.path is not None
    assert out.extra["mode"] == "image-to-video"
    assert_clip(out.path, width=m.width, height=m.height, frames=frames, fps=m.fps)
    first = read_frames(out.path)[0].astype(int)
    # cover-fit: the red image reaches the edges (no letterbox bars); the transparent hole shows dark grey
    for edge in (first[m.height // 3, 2], first[m.height // 3, -3], first[2, m.width * 3 // 4]):
        assert edge[0] > 150 and edge[1] < 80 and edge[2] < 80, edge
    assert first[m.height // 2, m.width // 2].max() < 90


def test_default_clip_is_49_frames_at_8_fps(tmp_path: Path) -> None:
    (out,) = PreviewVideoBackend().render([request("default")], tmp_path)
    assert out.path is not None
    assert_clip(out.path, width=720, height=480, frames=49, fps=8)
    assert probe_video(out.path).duration == 6.125
    assert out.timings["render_s"] < 5  # about 0.3 s on 2 cores; generous for loaded machines


def test_same_request_gives_identical_clips_and_the_seed_matters(tmp_path: Path) -> None:
    backend = PreviewVideoBackend()
    req = request("same", frames=9, seed=7)
    (a,) = backend.render([req], tmp_path / "a")
    (b,) = backend.render([req], tmp_path / "b")
    (c,) = backend.render([request("same", frames=9, seed=8)], tmp_path / "c")
    assert a.path is not None and b.path is not None and c.path is not None
    assert a.path.read_bytes() == b.path.read_bytes()
    frames_a, frames_c = read_frames(a.path), read_frames(c.path)
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, read_frames(b.path), strict=True))
    assert not np.array_equal(frames_a[0], frames_c[0])


def test_a_failing_request_does_not_stop_the_batch(tmp_path: Path, start_image: Path) -> None:
    reqs = [
        request("good-1", frames=9),
        request("missing-image", frames=9, image=tmp_path / "nope.png"),
        ClipRequest(key="odd-size", model="cogvideox-5b", prompt="x", frames=9, fps=8, width=721, height=480,
                    steps=50, guidance=6.0, seed=1),
        request("good-2", frames=9, image=start_image),
    ]
    out_dir = tmp_path / "clips"
    outcomes = PreviewVideoBackend().render(reqs, out_dir)
    assert [o.key for o in outcomes] == [r.key for r in reqs]
    good1, missing, odd, good2 = outcomes
    assert good1.error is None and good2.error is None
    assert missing.path is None and missing.error_type == "InputRejected" and "nope.png" in (missing.error or "")
    assert odd.path is None and odd.error_type == "InputRejected" and "721x480" in (odd.error or "")
    assert all(o.placeholder for o in outcomes)
    assert sorted(p.name for p in out_dir.iterdir()) == ["good-1.mp4", "good-2.mp4"]  # no partial files


def test_identity_names_backend_version_and_model() -> None:
    assert PreviewVideoBackend().identity("cogvideox-5b") == f"preview:{VERSION}:cogvideox-5b"
