"""Assembly: real encodes, read back; exact durations and frame counts, stream copy where the rules allow."""

from __future__ import annotations

import hashlib
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import pipeline.media.assemble as assemble
import pipeline.media.probe as probe
from pipeline.backends.base import ClipOutcome, ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.catalog import VIDEO_MODELS
from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest.campaign import Card
from pipeline.media.assemble import AssemblyRequest, assemble_video
from pipeline.media.encode import KEYFRAME_INTERVAL
from pipeline.media.frames import last_frame, match_colors
from pipeline.media.probe import ClipInfo, clip_info_from_provenance, probe_video


def read_frames(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in reader]


def digests(path: Path) -> list[str]:
    return [hashlib.md5(f.tobytes()).hexdigest() for f in read_frames(path)]


def counted(path: Path) -> int:
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return frames


def audio_samples(path: Path) -> np.ndarray:
    """The audio track decoded to mono 16-bit at 44.1 kHz."""
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                          "-ar", "44100", "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.int16).astype(np.float64)


def write_tone(path: Path, seconds: float, rate: int = 44100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.4 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Preview clips: three default cogvideox-5b clips (720x480, 49 frames, 8 fps) and one cogvideox1.5 clip."""
    folder = tmp_path_factory.mktemp("clips")
    m5, m15 = VIDEO_MODELS["cogvideox-5b"], VIDEO_MODELS["cogvideox1.5-5b"]
    reqs = [ClipRequest(key=k, model=m5.name, prompt=f"Shot {k}", frames=49, fps=8, width=720, height=480,
                        steps=50, guidance=6.0, seed=seed) for seed, k in enumerate("abc")]
    reqs.append(ClipRequest(key="wide", model=m15.name, prompt="A wide shot", frames=17, fps=m15.fps, width=m15.width,
                            height=m15.height, steps=50, guidance=6.0, seed=9))
    outcomes = PreviewVideoBackend().render(reqs, folder)
    assert all(o.path for o in outcomes), outcomes
    return {o.key: o.path for o in outcomes if o.path}


def known(outcome: ClipOutcome, req: ClipRequest) -> ClipInfo:
    """What tasks.run_clip_batch stores for a clip (the request's geometry and the backend's extra), read back."""
    info = clip_info_from_provenance({"width": req.width, "height": req.height, "frames": req.frames, "fps": req.fps,
                                      "extra": outcome.extra})
    assert info is not None and info.stitchable
    return info


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small clips written the way diffusers' export_to_video writes them (imageio defaults: B-frames, long GOP)."""
    folder = tmp_path_factory.mktemp("foreign")
    paths = {}
    for name, shade in (("x", 60), ("y", 180)):
        path = folder / f"{name}.mp4"
        writer = imageio_ffmpeg.write_frames(str(path), (160, 96), fps=8, ffmpeg_log_level="error")
        writer.send(None)
        for i in range(17):
            frame = np.full((96, 160, 3), shade, np.uint8)
            frame[:, (i * 9) % 160:(i * 9) % 160 + 8] = 255
            writer.send(frame)
        writer.close()
        paths[name] = path
    return paths


def only_outputs(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temp files left behind


def test_hard_cuts_of_described_clips_are_a_pure_stream_copy_without_probing(
        clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = [ClipRequest(key=k, model="cogvideox-5b", prompt=f"Shot {k}", frames=49, fps=8, width=720, height=480,
                        steps=50, guidance=6.0, seed=seed) for seed, k in enumerate("abc")]
    outcomes = PreviewVideoBackend().render(reqs, tmp_path / "clips")
    info = tuple(known(o, r) for o, r in zip(outcomes, reqs, strict=True))
    paths = tuple(o.path for o in outcomes if o.path)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("hard cuts of clips the product described must not encode or probe")

    monkeypatch.setattr(assemble, "SegmentWriter", forbidden)
    monkeypatch.setattr(probe, "ffmpeg_parse_infos", forbidden)
    monkeypatch.setattr(probe, "probe_video", forbidden)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, poster = out_dir / "video.mp4", out_dir / "poster.png"
    result = assemble_video(AssemblyRequest(clips=paths, clip_info=info), out, poster)
    monkeypatch.undo()
    assert digests(paths[0]) == digests(clips["a"])  # the same request makes the same clip

    assert result.method == "stream-copy" and result.frames_encoded == 0
    assert (result.frames, result.duration_s, result.fps) == (147, 18.375, 8.0)
    assert (result.width, result.height) == (720, 480)
    assert counted(out) == 147
    # copied, not re-encoded: every decoded frame is bit-identical to its source
    assert digests(out) == digests(clips["a"]) + digests(clips["b"]) + digests(clips["c"])
    only_outputs(out_dir, "video.mp4", "poster.png")


def test_crossfades_are_frame_exact_and_re_encode_only_the_windows(clips: dict[str, Path], tmp_path: Path) -> None:
    out, poster = tmp_path / "video.mp4", tmp_path / "poster.png"
    result = assemble_video(AssemblyRequest(clips=(clips["a"], clips["b"], clips["c"]), crossfade=0.5), out, poster)

    assert result.duration_s == 17.375 and result.frames == 139  # 3 x 6.125 s - 2 x 0.5 s
    assert counted(out) == 139
    info = probe_video(out)
    assert (info.frames, info.duration, info.fps) == (139, 17.375, 8.0)
    assert result.method == "stream-copy+crossfade-windows"
    assert result.frames_encoded <= 2 * (4 + 2 * (KEYFRAME_INTERVAL - 1))
    video, a, b = read_frames(out), read_frames(clips["a"]), read_frames(clips["b"])
    # outside the windows frames are copied bit for bit: a[0:44] and b[4:44] (b[j] sits at 45 + j)
    assert all(np.array_equal(video[i], a[i]) for i in range(44))
    assert all(np.array_equal(video[45 + j], b[j]) for j in range(4, 44))
    # inside a window: a linear blend, a's weight falling
    for j in range(4):
        alpha = (j + 0.5) / 4
        expected = (1 - alpha) * a[45 + j].astype(float) + alpha * b[j].astype(float)
        assert np.abs(video[45 + j] - expected).mean() < 3
    only_outputs(tmp_path, "video.mp4", "poster.png")


def test_other_sizes_and_rates_are_normalised_to_the_first_clip(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "small-first.mp4"
    result = assemble_video(AssemblyRequest(clips=(clips["a"], clips["wide"])), out, tmp_path / "p1.png")
    # 17 frames at 16 fps are 8.5 frames at 8 fps: rounded to 9, and said so
    assert (result.width, result.height, result.fps, result.frames) == (720, 480, 8.0, 49 + 9)
    assert result.method == "stream-copy+normalised" and any("wide.mp4" in n for n in result.notes)
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.frames) == (720, 480, 8.0, 58)
    assert counted(out) == 58
    assert digests(out)[:49] == digests(clips["a"])  # the first clip is still copied

    out = tmp_path / "wide-first.mp4"
    result = assemble_video(AssemblyRequest(clips=(clips["wide"], clips["a"])), out, tmp_path / "p2.png")
    assert (result.width, result.height, result.fps, result.frames) == (1360, 768, 16.0, 17 + 98)
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.frames) == (1360, 768, 16.0, 115)
    frame = read_frames(out)[40]
    assert frame[384, 5].max() < 20 and frame[384, -5].max() < 20  # 3:2 in 16:9: letterboxed left and right
    only_outputs(tmp_path, "small-first.mp4", "p1.png", "wide-first.mp4", "p2.png")


def test_audio_is_trimmed_faded_and_muxed_without_touching_the_video(clips: dict[str, Path], tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone.wav", 20.0)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "video.mp4"
    req = AssemblyRequest(clips=(clips["a"], clips["b"]), audio=tone, audio_fade_in=1.0, audio_fade_out=1.0,
                          audio_volume=0.5)
    result = assemble_video(req, out, out_dir / "poster.png")

    assert result.method == "stream-copy" and result.duration_s == 12.25
    assert probe_video(out).has_audio
    assert len(audio_samples(out)) / 44100 == pytest.approx(12.25, abs=0.03)
    assert digests(out) == digests(clips["a"]) + digests(clips["b"])
    pcm = audio_samples(out)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    middle = rms(pcm[44100 * 5:44100 * 6])
    assert middle == pytest.approx(0.5 * 0.4 * 32767 / np.sqrt(2), rel=0.1)  # volume 0.5
    assert rms(pcm[:2205]) < 0.1 * middle and rms(pcm[-2205:]) < 0.1 * middle  # faded in and out
    only_outputs(out_dir, "video.mp4", "poster.png")

    short = write_tone(tmp_path / "short.wav", 3.0)
    assemble_video(AssemblyRequest(clips=(clips["a"],), audio=short), out, out_dir / "poster.png")
    assert len(audio_samples(out)) / 44100 == pytest.approx(3.0, abs=0.03)  # shorter audio just ends
    assert probe_video(out).frames == 49


def test_cards_add_their_duration(clips: dict[str, Path], tmp_path: Path) -> None:
    title = Card(text="Spring sofa launch — teaser", duration=1.0, color="#204080", text_color="#ffffff")
    end = Card(text="sofa.example", duration=0.5, color="black", text_color="white")
    out = tmp_path / "video.mp4"
    result = assemble_video(AssemblyRequest(clips=(clips["a"], clips["b"]), title=title, end_card=end), out,
                            tmp_path / "poster.png")
    assert (result.frames, result.duration_s) == (8 + 98 + 4, 13.75)
    assert result.method == "stream-copy+cards"
    video = read_frames(out)
    assert len(video) == 110 and counted(out) == 110
    assert np.abs(video[0][5:40, 5:40].mean(axis=(0, 1)) - (0x20, 0x40, 0x80)).max() < 6  # the card's colour
    assert video[0].max() > 200  # and its text
    assert video[-1][5:40, 5:40].max() < 10

    with_fades = assemble_video(AssemblyRequest(clips=(clips["a"], clips["b"], clips["c"]), crossfade=0.5, title=title),
                                out, tmp_path / "poster.png")
    assert (with_fades.frames, with_fades.duration_s) == (8 + 139, 18.375)
    assert counted(out) == 147
    only_outputs(tmp_path, "video.mp4", "poster.png")


def test_poster_is_the_frame_a_third_in(clips: dict[str, Path], tmp_path: Path) -> None:
    for name, fade in (("copied", 0.0), ("blended", 6.0)):  # 6 s crossfade: the poster falls in a window
        out, poster = tmp_path / f"{name}.mp4", tmp_path / f"{name}.png"
        result = assemble_video(AssemblyRequest(clips=(clips["a"], clips["b"]), crossfade=fade), out, poster)
        assert abs(result.poster_frame - result.frames / 3) <= 4
        image = Image.open(poster)
        assert image.format == "PNG" and image.size == (720, 480)
        expected = read_frames(out)[result.poster_frame]
        assert np.abs(np.asarray(image.convert("RGB")).astype(int) - expected).mean() < 2


def test_foreign_clips_are_normalised_into_the_profile(
        foreign: dict[str, Path], clips: dict[str, Path], tmp_path: Path) -> None:
    x, y = foreign["x"], foreign["y"]
    assert probe_video(x).encoding is None  # not the product's profile: its headers and keyframes are unknown
    hard = assemble_video(AssemblyRequest(clips=(x, y)), tmp_path / "hard.mp4", tmp_path / "hard.png")
    assert hard.method == "re-encode" and hard.frames == 34 and counted(tmp_path / "hard.mp4") == 34
    made, sources = read_frames(tmp_path / "hard.mp4"), read_frames(x) + read_frames(y)
    assert all(np.abs(m.astype(int) - s).mean() < 2 for m, s in zip(made, sources, strict=True))
    # a clip whose provenance does not name its encoding is checked by its tag: here it has none, so normalised
    described = ClipInfo(160, 96, probe_video(x).rate, 17)
    again = assemble_video(AssemblyRequest(clips=(x, y), clip_info=(described, None)), tmp_path / "hard.mp4",
                           tmp_path / "hard.png")
    assert again.method == "re-encode" and again.frames == 34

    faded = assemble_video(AssemblyRequest(clips=(x, y), crossfade=0.25), tmp_path / "fade.mp4", tmp_path / "fade.png")
    assert faded.method == "re-encode" and faded.frames == 32 and faded.duration_s == 4.0
    assert counted(tmp_path / "fade.mp4") == 32

    mixed = assemble_video(AssemblyRequest(clips=(clips["a"], x)), tmp_path / "mixed.mp4", tmp_path / "mixed.png")
    assert mixed.method == "stream-copy+normalised" and mixed.frames == 49 + 17
    assert probe_video(tmp_path / "mixed.mp4").width == 720


def test_bad_inputs_fail_naming_the_file_and_leave_nothing(clips: dict[str, Path], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    missing = tmp_path / "missing.mp4"
    with pytest.raises(JobFailed, match="missing.mp4"):
        assemble_video(AssemblyRequest(clips=(clips["a"], missing)), out_dir / "v.mp4", out_dir / "p.png")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_text("not a video")
    with pytest.raises(JobFailed, match="garbage.mp4"):
        assemble_video(AssemblyRequest(clips=(garbage,)), out_dir / "v.mp4", out_dir / "p.png")
    with pytest.raises(JobFailed, match="tone.wav"):
        assemble_video(AssemblyRequest(clips=(clips["a"],), audio=tmp_path / "tone.wav"), out_dir / "v.mp4",
                       out_dir / "p.png")
    with pytest.raises(InputRejected, match="b.mp4"):  # 4 s on both sides of a 6.125 s clip
        assemble_video(AssemblyRequest(clips=(clips["a"], clips["b"], clips["c"]), crossfade=4.0), out_dir / "v.mp4",
                       out_dir / "p.png")
    with pytest.raises(InputRejected, match="crossfade"):
        assemble_video(AssemblyRequest(clips=(clips["a"],), crossfade=-1.0), out_dir / "v.mp4", out_dir / "p.png")
    only_outputs(out_dir)


def test_last_frame_is_the_clips_final_frame(clips: dict[str, Path]) -> None:
    for key in ("a", "wide"):
        frame = last_frame(clips[key])
        assert frame.mode == "RGB"
        assert np.array_equal(np.asarray(frame), read_frames(clips[key])[-1])


def test_match_colors_moves_the_colour_statistics_to_the_reference() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 120, (64, 96, 3), dtype=np.uint8))
    reference = Image.fromarray(rng.integers(100, 255, (48, 80, 3), dtype=np.uint8))
    matched = np.asarray(match_colors(image, reference), float)
    ref = np.asarray(reference, float)
    assert np.abs(matched.mean(axis=(0, 1)) - ref.mean(axis=(0, 1))).max() < 6
    rgba = image.convert("RGBA")
    rgba.putalpha(77)
    assert match_colors(rgba, reference).getchannel("A").getextrema() == (77, 77)
