"""Stage 4's sound: each shot's voice placed in its window (moviepy), the music ducked under the speech (ffmpeg's
sidechaincompress), the mix normalised to a loudness target (ffmpeg's loudnorm, two passes) as AAC 48 kHz stereo,
and the loudness and true peak of any file measured with an EBU R128 meter (ffmpeg's ebur128).

How the mix is made (`render_mix`):
1. The voice bed: every utterance at its start time in one 48 kHz stereo track as long as the video (moviepy).
2. The music (already trimmed, faded and scaled by assembly) ducked by a compressor keyed on the voice bed: a
   short attack brings it down as speech starts, a longer release holds it through the gaps between words.
3. Voice and ducked music summed, measured (loudnorm pass 1), then normalised with those measurements in linear
   mode (pass 2), so the whole mix moves by one gain and the target is met to within a fraction of a LU.
4. The result is measured again from the encoded file; the figures go into the report.
"""

from __future__ import annotations

import json
import re
import subprocess
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import InputRejected, JobFailed
from pipeline.manifest.voices import TRUE_PEAK_DBTP, VOICE_LEAD_S, VOICE_TAIL_S
from pipeline.media.encode import AUDIO_BITRATE, ffmpeg_exe

RATE = 48_000
# The ducking compressor (ffmpeg's sidechaincompress, https://ffmpeg.org/ffmpeg-filters.html#sidechaincompress):
# speech 20 dB above the threshold is turned down by 20 * (1 - 1/RATIO) = 17.5 dB; attack and release in ms.
DUCK = {"threshold": 0.01, "ratio": 8, "attack": 20, "release": 300, "makeup": 1}
# loudnorm aims a little under the ceiling: AAC encoding can raise the true peak by a few tenths of a dB
PEAK_MARGIN_DB = 0.5
SPEECH_FLOOR_DB = -30.0  # audio more than 30 dB under its loudest 10 ms is silence, for speech timing
MIN_SENTENCE_PAUSE_S = 0.12  # a pause this long or longer may end a sentence (espeak-ng pauses ~0.3 s there)


@dataclass(frozen=True)
class PlacedVoice:
    path: Path  # the utterance's WAV
    start_s: float  # where it starts in the video
    window: tuple[float, float]  # the shot's window it must lie in (seconds)
    shot: int


@dataclass(frozen=True)
class MixRequest:
    voices: tuple[PlacedVoice, ...]
    loudness: float | None  # LUFS; None: no normalisation (the audio as before)


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in asdict(self).items()}


def _ffmpeg(args: list[str], what: str) -> str:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *args], capture_output=True,
                          text=True, errors="replace")
    if proc.returncode != 0:
        raise JobFailed(f"ffmpeg could not {what}: {proc.stderr.strip()[-1500:]}")
    return proc.stderr


# --- speech timing ---------------------------------------------------------------------------------------


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples in [-1, 1] and the rate, of a 16-bit PCM WAV (what both voice backends write)."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise JobFailed(f"{path.name}: expected 16-bit PCM, got {8 * width}-bit")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate


def speech_bounds(path: Path) -> tuple[float, float, float]:
    """(first sound, end of the last sound, file length) in seconds: 10 ms frames within SPEECH_FLOOR_DB of the
    loudest frame count as speech (the voice engines pad their audio with silence)."""
    speech, frame_s, length_s = _speech_frames(path)
    loud = np.nonzero(speech)[0]
    return float(loud[0] * frame_s), float((loud[-1] + 1) * frame_s), length_s


def _speech_frames(path: Path) -> tuple[np.ndarray, float, float]:
    """Which 10 ms frames of an utterance are speech (within SPEECH_FLOOR_DB of the loudest), a frame's length
    and the file's length, in seconds."""
    samples, rate = read_wav(path)
    hop = max(1, rate // 100)
    n = len(samples) // hop
    if n == 0:
        raise JobFailed(f"{path.name} holds no audio")
    rms = np.sqrt(np.mean(samples[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    return np.asarray(20 * np.log10(rms / rms.max()) > SPEECH_FLOOR_DB), hop / rate, len(samples) / rate


def sentence_onsets(path: Path, sentences: list[str]) -> tuple[list[float], str]:
    """Where each of an utterance's sentences starts in its audio (seconds), for voices without speech marks,
    and how that was found: "pauses" where the audio has at least one pause of MIN_SENTENCE_PAUSE_S per sentence
    break (the longest ones are the breaks: speech engines pause longer between sentences than between words),
    else "proportional" (the speech split by the sentences' lengths in characters)."""
    speech, frame_s, _ = _speech_frames(path)
    loud = np.nonzero(speech)[0]
    first, last = int(loud[0]), int(loud[-1]) + 1
    if len(sentences) <= 1:
        return [first * frame_s], "audio"
    gaps: list[tuple[int, int]] = []  # (length, index of the first speech frame after it), inside the speech
    run_start = None
    for i in range(first, last):
        if not speech[i] and run_start is None:
            run_start = i
        elif speech[i] and run_start is not None:
            gaps.append((i - run_start, i))
            run_start = None
    breaks = sorted(sorted(gaps, reverse=True)[: len(sentences) - 1], key=lambda g: g[1])
    if len(breaks) == len(sentences) - 1 and all(g[0] * frame_s >= MIN_SENTENCE_PAUSE_S for g in breaks):
        return [first * frame_s] + [g[1] * frame_s for g in breaks], "pauses"
    weights = np.cumsum([0] + [len(t) for t in sentences[:-1]]) / max(1, sum(len(t) for t in sentences))
    return [float((first + w * (last - first)) * frame_s) for w in weights], "proportional"


def place(path: Path, *, shot: int, window: tuple[float, float]) -> PlacedVoice:
    """Speech in its shot's window: it starts VOICE_LEAD_S after the window opens (its leading silence
    trimmed by starting the file earlier) and must end VOICE_TAIL_S before it closes; else refused with figures."""
    onset, offset, _ = speech_bounds(path)
    start = window[0] + VOICE_LEAD_S - onset
    room = window[1] - window[0] - VOICE_LEAD_S - VOICE_TAIL_S
    if offset - onset > room:
        raise InputRejected(f"shot {shot + 1}: its voiceover speaks for {offset - onset:.2f} s, the shot leaves "
                            f"{room:.2f} s ({window[1] - window[0]:.2f} s window less {VOICE_LEAD_S:g} s lead and "
                            f"{VOICE_TAIL_S:g} s tail); shorten the text or lengthen the shot")
    return PlacedVoice(path=path, start_s=start, window=window, shot=shot)


# --- the mix ---------------------------------------------------------------------------------------------


def voice_bed(voices: tuple[PlacedVoice, ...], duration: float, out: Path) -> None:
    """Every utterance at its start in one 48 kHz stereo WAV of the video's length (moviepy)."""
    from moviepy import AudioFileClip, CompositeAudioClip

    sources = [AudioFileClip(str(v.path), fps=RATE) for v in voices]
    try:
        parts = []
        for v, src in zip(voices, sources, strict=True):
            clip = src.with_start(v.start_s) if v.start_s >= 0 else src.subclipped(-v.start_s).with_start(0)
            parts.append(clip)
        bed = CompositeAudioClip(parts).with_duration(duration)
        bed.write_audiofile(str(out), fps=RATE, nbytes=2, codec="pcm_s16le", logger=None)
    finally:
        for s in sources:
            s.close()


def duck_music(music: Path, voice: Path, duration: float, out: Path) -> None:
    """The music (padded or cut to the video) with a compressor keyed on the voice bed, as a 48 kHz stereo WAV."""
    opts = ":".join(f"{k}={v}" for k, v in DUCK.items())
    graph = (f"[0:a]aresample={RATE},aformat=channel_layouts=stereo,apad,atrim=0:{duration:.6f}[m];"
             f"[1:a]aresample={RATE},aformat=channel_layouts=stereo[sc];[m][sc]sidechaincompress={opts}[out]")
    _ffmpeg(["-y", "-i", str(music), "-i", str(voice), "-filter_complex", graph, "-map", "[out]",
             "-c:a", "pcm_s16le", "-ar", str(RATE), str(out)], "duck the music under the voice")


def _loudnorm_args(target: float) -> str:
    return f"I={target:g}:TP={TRUE_PEAK_DBTP - PEAK_MARGIN_DB:g}:LRA=20"


def render_mix(req: MixRequest, *, music: Path | None, duration: float, out: Path, work: Path) -> dict[str, object]:
    """The video's sound track as AAC 48 kHz stereo at `out`; returns what the report records about it."""
    inputs: list[Path] = []
    info: dict[str, object] = {}
    if req.voices:
        bed = work / "voice-bed.wav"
        voice_bed(req.voices, duration, bed)
        inputs.append(bed)
        if music is not None:
            ducked = work / "music-ducked.wav"
            duck_music(music, bed, duration, ducked)
            inputs.append(ducked)
            info["music_ducked_db"] = round(duck_depth(music, ducked, req.voices, duration, work), 2)
    elif music is not None:
        inputs.append(music)
    if not inputs:
        raise JobFailed("nothing to mix: no voice and no music")
    args: list[str] = []
    for p in inputs:
        args += ["-i", str(p)]
    pre = ("[0:a][1:a]amix=inputs=2:normalize=0:duration=first," if len(inputs) == 2 else "[0:a]") + \
        f"aresample={RATE},aformat=channel_layouts=stereo,apad,atrim=0:{duration:.6f}"
    if req.loudness is None:
        _ffmpeg(["-y", *args, "-filter_complex", pre + "[out]", "-map", "[out]", "-c:a", "aac", "-b:a", AUDIO_BITRATE,
                 "-ar", str(RATE), "-ac", "2", str(out)], "mix the sound")
    else:
        # pass 1: measure; pass 2: one linear gain to the target with those measurements (loudnorm's documented
        # two-pass use, https://ffmpeg.org/ffmpeg-filters.html#loudnorm); it resamples, so the rate is set after
        err = _ffmpeg(["-y", *args, "-filter_complex", pre + f",loudnorm={_loudnorm_args(req.loudness)}:print_format=json"
                       "[out]", "-map", "[out]", "-f", "null", "-"], "measure the mix's loudness")
        m = json.loads(err[err.rindex("{"):err.rindex("}") + 1])
        measured = (f"measured_I={m['input_i']}:measured_TP={m['input_tp']}:measured_LRA={m['input_lra']}:"
                    f"measured_thresh={m['input_thresh']}:offset={m['target_offset']}:linear=true")
        _ffmpeg(["-y", *args, "-filter_complex", pre + f",loudnorm={_loudnorm_args(req.loudness)}:{measured},"
                 f"aresample={RATE}[out]", "-map", "[out]", "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(RATE),
                 "-ac", "2", str(out)], "normalise the mix's loudness")
        info["loudness_target_lufs"] = req.loudness
        info["true_peak_limit_dbtp"] = TRUE_PEAK_DBTP
    info["voices"] = [{"shot": v.shot, "start_s": round(v.start_s, 3), "window": [round(w, 3) for w in v.window]}
                      for v in req.voices]
    return info


# --- measurement -------------------------------------------------------------------------------------------

_SUMMARY_I = re.compile(r"Integrated loudness:\s*\n\s*I:\s*(-?[\d.]+|-inf) LUFS")
_SUMMARY_PEAK = re.compile(r"True peak:\s*\n\s*Peak:\s*(-?[\d.]+|-inf) dBFS")


def measure_loudness(path: Path) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file's first audio stream: ffmpeg's EBU R128 meter."""
    err = _ffmpeg(["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"],
                  f"measure the loudness of {path.name}")
    i, p = _SUMMARY_I.search(err), _SUMMARY_PEAK.search(err)
    if i is None or p is None:
        raise JobFailed(f"no EBU R128 summary for {path.name}")
    return Loudness(float(i.group(1)), float(p.group(1)))


def _rms_db(samples: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-20))


def decode_mono(path: Path, duration: float) -> np.ndarray:
    """Any audio file as mono float samples at RATE, cut or padded to `duration`."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                           "-af", f"apad,atrim=0:{duration:.6f}", "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                          capture_output=True)
    if proc.returncode != 0:
        raise JobFailed(f"ffmpeg could not decode {path.name}: {proc.stderr.decode(errors='replace')[-500:]}")
    return np.frombuffer(proc.stdout, dtype="<f4")


def speech_spans(voices: tuple[PlacedVoice, ...]) -> list[tuple[float, float]]:
    """Where speech sounds in the video (seconds), from each utterance's own bounds."""
    spans = []
    for v in voices:
        onset, offset, _ = speech_bounds(v.path)
        spans.append((v.start_s + onset, v.start_s + offset))
    return spans


def duck_depth(music: Path, ducked: Path, voices: tuple[PlacedVoice, ...], duration: float, work: Path) -> float:
    """How much lower the music is under speech than between utterances (dB), as the ducked track's gain
    against the original music in each region (so the music's own loudness changes do not count)."""
    del work
    orig, duck = decode_mono(music, duration), decode_mono(ducked, duration)
    n = min(len(orig), len(duck))  # the decoders may round the last sample differently
    orig, duck = orig[:n], duck[:n]
    under = np.zeros(n, dtype=bool)
    near = np.zeros(n, dtype=bool)
    # between utterances: away from speech by the compressor's release and more, so the gap measured is settled
    settle = int((float(DUCK["release"]) / 1000 + 0.2) * RATE)
    for a, b in speech_spans(voices):
        under[int(a * RATE):int(b * RATE)] = True
        near[max(0, int(a * RATE) - settle):int(b * RATE) + settle] = True
    between = ~near
    if not under.any() or not between.any():
        return 0.0
    gain_under = _rms_db(duck[under]) - _rms_db(orig[under])
    gain_between = _rms_db(duck[between]) - _rms_db(orig[between])
    return gain_between - gain_under
