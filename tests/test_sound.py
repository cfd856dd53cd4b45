"""Sound (issue 25): located manifest errors for voices and speech that cannot fit; utterances keyed and shared;
Polly requests as botocore's model takes them (Stubber); the music ducked under the voice; and one campaign run
whose every delivered file is measured with an EBU R128 meter."""

from __future__ import annotations

import io
import json
import re
import subprocess
import textwrap
import wave
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from pipeline.backends.voice_local import EspeakVoiceBackend
from pipeline.backends.voice_polly import PollyVoiceBackend, RateLimiter
from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest, load_manifest_text
from pipeline.manifest.voices import ENGINES, POLLY_VOICES
from pipeline.media.encode import ffmpeg_exe
from pipeline.media.mix import RATE, PlacedVoice, decode_mono, duck_music, measure_loudness, speech_bounds
from pipeline.plan.build import KeySource, build_plan

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(not EspeakVoiceBackend()._exe, reason="espeak-ng is not installed (make install)")

HEAD = """\
campaign: sound-check
defaults: {enhance: false, video: {model: cogvideox-5b, frames: 17}}
videos:
"""


def _problems(body: str) -> list[str]:
    with pytest.raises(ManifestInvalid) as err:
        load_manifest_text(HEAD + textwrap.dedent(body), file="m.yaml", base_dir=ROOT, check_files=False)
    return [str(p) for p in err.value.problems]


def test_voice_and_speech_errors_are_located_with_the_figures() -> None:
    probs = _problems("""\
      - id: a
        voice: {id: Jonna}
        shots: [{prompt: x, voiceover: Hello.}]
      - id: b
        language: de
        voice: {id: Joanna}
        shots: [{prompt: x, voiceover: Hallo.}]
      - id: c
        voice: {id: Kendra, engine: generative}
        shots: [{prompt: x, voiceover: Hi.}]
      - id: d
        shots:
          - prompt: x
            voiceover: This sentence is far too long to be spoken inside a two second shot by anyone at all.
      - id: e
        caption_from: voiceover
        shots: [{prompt: x}]
    """)
    assert probs[0].startswith("m.yaml:5:15: error: videos[0].voice.id: unknown Polly voice 'Jonna'; neural voices "
                               "for en-US: Joanna, Matthew"), probs
    assert probs[1] == ("m.yaml:9:15: error: videos[1].voice.id: voice 'Joanna' speaks en-US, not de-DE; neural voices "
                        "for de-DE: Vicki, Daniel")
    assert probs[2].startswith("m.yaml:12:15: error: videos[2].voice.id: voice 'Kendra' has no generative engine (it "
                               "has standard, neural)")
    assert probs[3].startswith("m.yaml:17:18: error: videos[3].shots[0].voiceover: the voiceover cannot fit its shot: "
                               "85 characters take at least 4.2 s even at a fast 20 characters/s, and the shot leaves "
                               "1.9 s for speech (2.12 s shot)")
    assert probs[4] == "m.yaml:19:17: error: videos[4].caption_from: no shot of this video has a `voiceover`"
    assert len(probs) == 5


def test_polly_voice_table_agrees_with_botocore_model() -> None:
    polly = boto3.client("polly", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    shapes = polly.meta.service_model
    assert {v.id for v in POLLY_VOICES} <= set(shapes.shape_for("VoiceId").enum)
    assert set(ENGINES) == set(shapes.shape_for("Engine").enum)
    assert {v.language for v in POLLY_VOICES} <= set(shapes.shape_for("LanguageCode").enum)


def test_utterances_are_keyed_on_text_voice_and_language_and_shared() -> None:
    text = HEAD + textwrap.dedent("""\
      - id: a
        language: de
        shots: [{prompt: x, voiceover: Hallo.}, {prompt: y, voiceover: Hallo.}]
      - id: b
        language: fr
        shots: [{prompt: x, voiceover: Hallo.}]
      - id: c
        shots: [{prompt: x}]
    """)
    campaign = load_manifest_text(text, file="m.yaml", base_dir=ROOT, check_files=False)
    plan = build_plan(campaign, KeySource(enhancer="e", images="i", video="v", voice="espeak-ng:test"), backends={})
    voices = plan.by_kind("voice")
    assert [(j.voice.voice_id, j.voice.language) for j in voices] == [("Vicki", "de-DE"), ("Lea", "fr-FR")]
    a = plan.job("video:a")
    assert a.video.voices == (voices[0].id, voices[0].id) and voices[0].id in a.deps  # one job for both shots
    assert a.video.loudness == -14.0 and plan.job("video:c").video.loudness is None
    other = build_plan(campaign, KeySource(enhancer="e", images="i", video="v", voice="polly:v1"), backends={})
    assert other.by_kind("voice")[0].key != voices[0].key and other.job("video:c").key == plan.job("video:c").key


def _stream(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_polly_requests_pass_botocore_validation_and_time_captions(tmp_path: Path) -> None:
    client = boto3.client("polly", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    pcm = (np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes()
    marks = b'{"time":120,"type":"sentence","start":0,"end":6,"value":"Hallo."}\n'
    base = {"Engine": "neural", "LanguageCode": "de-DE", "VoiceId": "Vicki", "Text": "Hallo.", "TextType": "text"}
    with Stubber(client) as stub:  # the Stubber checks each request against botocore's model of Polly
        stub.add_response("synthesize_speech", {"AudioStream": _stream(pcm), "ContentType": "audio/pcm"},
                          {**base, "OutputFormat": "pcm", "SampleRate": "16000"})
        stub.add_response("synthesize_speech", {"AudioStream": _stream(marks)},
                          {**base, "OutputFormat": "json", "SpeechMarkTypes": ["sentence"]})
        stub.add_response("synthesize_speech", {"AudioStream": _stream(pcm)},
                          {**base, "Engine": "generative", "OutputFormat": "pcm", "SampleRate": "16000"})
        backend = PollyVoiceBackend(client=client, limiter=RateLimiter(1e9))
        neural = backend.synthesize(text="Hallo.", voice_id="Vicki", engine="neural", language="de-DE", out=tmp_path / "n.wav")
        gen = backend.synthesize(text="Hallo.", voice_id="Vicki", engine="generative", language="de-DE",
                                 out=tmp_path / "g.wav")
        stub.assert_no_pending_responses()
    assert (neural.timing, neural.marks[0].time_s, neural.requests) == ("speech-marks:sentence", 0.12, 2)
    assert (gen.timing, gen.marks, gen.requests) == ("audio", (), 1)  # generative voices give no speech marks
    with wave.open(str(tmp_path / "n.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 16000)


def test_rate_limiter_spaces_requests_at_eight_a_second() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(8.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        limiter.wait()
    assert now[0] == pytest.approx(1.0) and len(slept) == 8  # 9 calls: the ninth a full second after the first


@needs_espeak
def test_music_is_ducked_at_least_8_db_under_speech(tmp_path: Path) -> None:
    voice = tmp_path / "v.wav"
    EspeakVoiceBackend().synthesize(text="Meet the sofa.", voice_id="x", engine="neural", language="en-US", out=voice)
    onset, offset, _ = speech_bounds(voice)
    duration = 4.0
    bed, music, ducked = tmp_path / "bed.wav", tmp_path / "music.wav", tmp_path / "ducked.wav"
    from pipeline.media.mix import voice_bed

    voice_bed((PlacedVoice(voice, 1.0, (0.0, duration), 0),), duration, bed)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=220:duration={duration}",
                    "-ar", str(RATE), str(music)], check=True)
    duck_music(music, bed, duration, ducked)
    d = decode_mono(ducked, duration)

    def level(a: float, b: float) -> float:
        seg = d[int(a * RATE):int(b * RATE)]
        return float(10 * np.log10(np.mean(seg.astype(np.float64) ** 2)))

    under = level(1.0 + onset + 0.1, 1.0 + offset)
    between = level(0.0, 0.8)  # before the first word: the steady tone at its own level
    assert between - under >= 8.0, (between, under)
    assert level(1.0 + offset + 0.9, duration) - under >= 8.0  # the music comes back after the speech


@needs_espeak
def test_campaign_with_voiceover_delivers_every_file_at_minus_14_lufs(tmp_path: Path, write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: sound-e2e
        defaults: {enhance: false, video: {model: cogvideox-5b, frames: 17}}
        assets: {music: assets/music.mp3}
        videos:
          - id: ad
            language: de
            formats: ["16:9", "1:1"]
            caption_from: voiceover
            audio: {asset: music}
            shots:
              - {prompt: A bee, voiceover: Das neue Sofa.}
              - {prompt: A sofa, voiceover: Für helle Lofts.}
        """)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    run = next(p for p in (out / "runs" / "sound-e2e").iterdir() if p.is_dir())
    report = json.loads((run / "report.json").read_text())
    (video,) = report["videos"]
    assert [v["placeholder"] for v in video["voiceover"]] == [True, True] and video["voiceover"][0]["voice"] == "Vicki"
    for fmt in video["formats"]:
        f = run / fmt["path"]
        loud = measure_loudness(f)  # ffmpeg's EBU R128 meter on the delivered file
        assert abs(loud.integrated_lufs + 14) <= 1.0 and loud.true_peak_dbtp <= -1.0, loud
        assert fmt["sound"]["measured"] == loud.to_json()
        probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(f)], capture_output=True, text=True).stderr
        assert re.search(r"Audio: aac \(LC\).*, 48000 Hz, stereo", probe), probe
        assert fmt["sound"]["music_ducked_db"] >= 8.0
        # each cue starts within 0.25 s of its speech, and the speech lies inside its shot's window
        cues = re.findall(r"(\d\d):(\d\d):(\d\d\.\d+) --> ", (run / fmt["captions"]).read_text())
        placed = fmt["sound"]["voices"]
        assert len(cues) == len(placed) == 2
        for (h, m, s), v, rec in zip(cues, placed, video["voiceover"], strict=True):
            speech = [v["start_s"] + t for t in rec["speech_s"]]
            assert v["window"][0] <= speech[0] and speech[1] <= v["window"][1], (speech, v)
            assert abs(int(h) * 3600 + int(m) * 60 + float(s) - speech[0]) <= 0.25


def test_example_manifest_speaks_three_languages_over_music() -> None:
    campaign = load_manifest(ROOT / "manifests" / "voiceover.yaml")
    assert {v.voice.language for v in campaign.videos if v.voice} == {"en-US", "de-DE", "fr-FR"}
    assert all(v.audio and all(s.voiceover for s in v.shots) for v in campaign.videos)
