"""Voiceover in the cloud (issue 25): a spoken campaign run through the real ASL under moto (the `Speak voiceover`
Map beside images and clips, then `Assemble video` mixing what it cached), measured on the delivered file; the
Polly requests the cloud's voice step makes, checked by botocore's Stubber; and the pacing that keeps the voice
Map's Lambdas within Polly's requests-per-second quota; one execution whose voice Lambda speaks through Polly (a
Stubber on the Lambda's own client); and a cached utterance spoken again when its translation now says otherwise."""

from __future__ import annotations

import io
import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from fake_aws.cloud import INPUT_BUCKET, OUTPUT_BUCKET, Cloud, cloud_for_tasks
from fake_aws.stubbed import stubbed_clients

from pipeline.backends.voice_local import EspeakVoiceBackend
from pipeline.backends.voice_polly import SAMPLE_RATE, PollyVoiceBackend, RateLimiter
from pipeline.cloud.contract import DEFAULT_POLLY_TPS, POLLY_CONCURRENT_REQUESTS, voice_pacing
from pipeline.cloud.events import JobEvent
from pipeline.cloud.job_step import run_job_step
from pipeline.cloud.names import RunRef
from pipeline.cloud.settings import CloudSettings
from pipeline.errors import Throttled
from pipeline.media.encode import ffmpeg_exe
from pipeline.media.mix import RATE, decode_mono, measure_loudness
from pipeline.storage.store import S3Store
from pipeline.tasks.voice import run_voice

needs_espeak = pytest.mark.skipif(not EspeakVoiceBackend()._exe, reason="espeak-ng is not installed (make install)")

# Two 17-frame shots (2.125 s each at 8 fps): the first silent, the second spoken. No music and no captions, so
# every sound in the delivered file is the voice.
MANIFEST = """\
    campaign: spoken
    defaults: {enhance: false, video: {model: cogvideox-5b, frames: 17, steps: 2, seed: 3}}
    videos:
      - id: talk
        voice: {engine: neural, id: Joanna, language: en-US}
        shots:
          - prompt: A sofa in a loft
          - prompt: The sofa up close
            voiceover: Meet the sofa.
    """
SHOT_S = 17 / 8


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)


def upload(cloud: Cloud, folder: Path) -> str:
    folder.mkdir()
    (folder / "spoken.yaml").write_text(textwrap.dedent(MANIFEST), encoding="utf-8")
    cloud.upload_folder(folder)
    return "manifests/spoken.yaml"


@needs_espeak
def test_a_voiceover_campaign_runs_through_the_state_machine_and_speaks_in_its_shot(cloud: Cloud, tmp_path: Path) -> None:
    run = cloud.run(upload(cloud, tmp_path / "c"), name="spoken-1")
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "succeeded" and run.output["jobs"]["failed"] == 0, run.output
    prefix = "runs/spoken/spoken-1/"
    plan = cloud.json(prefix + "plan.json")["plan"]
    [voice_job] = [j for j in plan["jobs"] if j["kind"] == "voice"]

    # the voice stage ran the utterance in its own Map (one Lambda call), before the video that mixes it
    voice_calls = run.calls.named("campaign-voice")
    assert [(c[1]["job_id"], c[2]) for c in voice_calls] == [(voice_job["id"], "ok")]
    order = [c[0] for c in run.calls.calls]
    assert order.index("campaign-voice") < order.index("campaign-assemble")
    summary = run.calls.named("campaign-report")[0][1]["run"]
    assert summary["voices"] == [voice_job["id"]] and summary["stages"]["voices"] == {"mode": "inline", "count": 1}
    assert cloud.json(prefix + f"results/{voice_job['id']}.json")["status"] == "executed"
    assert f"cache/voice/{voice_job['key']}.wav" in cloud.keys("cache/voice/")

    # the report lists the voice job, its utterance and who spoke it
    report = cloud.json(prefix + "report.json")
    assert report["jobs"]["total"] == len(plan["jobs"]) and report["backends"]["voice"] == "local"
    [video] = report["videos"]
    [said] = video["voiceover"]
    assert (said["shot"], said["job"], said["status"], said["text"], said["voice"]) == (
        2, voice_job["id"], "executed", "Meet the sofa.", "Joanna")
    assert said["backend"] == "local:espeak-ng" and said["placeholder"] is True

    # the delivered file: an AAC stereo 48 kHz stream whose sound lies inside the second shot's window
    mp4 = tmp_path / "talk.mp4"
    mp4.write_bytes(cloud.bytes(prefix + video["path"]))
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(mp4)], capture_output=True, text=True).stderr
    assert re.search(r"Audio: aac \(LC\).*, 48000 Hz, stereo", probe), probe
    samples = decode_mono(mp4, 2 * SHOT_S)
    hop = RATE // 100  # 10 ms frames
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -30.0)[0] * hop / RATE
    assert len(loud) > 20, "less than 0.2 s of speech in the delivered file"  # "Meet the sofa." lasts about 1 s
    assert SHOT_S <= loud[0] and loud[-1] + 0.01 <= 2 * SHOT_S, (loud[0], loud[-1])
    measured = measure_loudness(mp4)  # the mix normalised as locally: -14 LUFS, at most -1 dBTP
    assert abs(measured.integrated_lufs + 14) <= 1.0 and measured.true_peak_dbtp <= -1.0, measured
    print(f"speech in the delivered file {loud[0]:.2f}-{loud[-1] + 0.01:.2f} s (shot 2: {SHOT_S:.3f}-{2 * SHOT_S:.3f} s);"
          f" {measured.integrated_lufs:.2f} LUFS, {measured.true_peak_dbtp:.2f} dBTP")


def polly_stream(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_the_cloud_voice_step_sends_polly_requests_botocore_accepts(cloud: Cloud, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's voice (Polly, the cloud default): the plan step keys the utterance for Polly; the voice step's
    requests go through a real Polly client whose Stubber checks each against botocore's model; the WAV and its
    provenance land in the bucket's cache; a throttled request is raised as Throttled for the state's Retry."""
    from tasks import _runtime
    from tasks import plan as plan_task

    monkeypatch.setenv("CAMPAIGN_VOICE", "polly")
    monkeypatch.setenv("CAMPAIGN_POLLY_TPS", "1000")  # 18 ms between requests: the test does not wait a second
    _runtime.reset()
    key = upload(cloud, tmp_path / "c")
    head = cloud.s3.head_object(Bucket=INPUT_BUCKET, Key=key)
    summary = plan_task.handler({"source": {"bucket": INPUT_BUCKET, "key": key, "version_id": head["VersionId"]},
                                 "run_id": "r1", "started": "2026-11-25T10:00:00Z"})
    assert summary["valid"] is True and len(summary["voices"]) == 1
    [job_id] = summary["voices"]
    event = JobEvent(job_id, RunRef("spoken", "r1"))
    settings = CloudSettings.from_env({"CAMPAIGN_OUTPUT_BUCKET": OUTPUT_BUCKET, "CAMPAIGN_ENHANCER": "passthrough",
                                       "CAMPAIGN_IMAGES": "local", "CAMPAIGN_VIDEO": "preview",
                                       "CAMPAIGN_POLLY_TPS": "1000"})
    store = S3Store(OUTPUT_BUCKET, client=cloud.s3)
    polly = boto3.client("polly", region_name="us-east-1")
    base = {"Engine": "neural", "LanguageCode": "en-US", "VoiceId": "Joanna", "Text": "Meet the sofa.", "TextType": "text"}
    pcm = (np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes()  # 1 s at Polly's pcm rate
    marks = b'{"time":85,"type":"sentence","start":0,"end":14,"value":"Meet the sofa."}\n'

    def step(work: str) -> dict[str, Any]:
        (tmp_path / work).mkdir()
        return run_job_step(event, kind="voice", task=run_voice, store=store, s3=cloud.s3, settings=settings,
                            workdir=tmp_path / work, polly=polly)

    with Stubber(polly) as stub:
        stub.add_client_error("synthesize_speech", service_error_code="ThrottlingException", http_status_code=400,
                              expected_params={**base, "OutputFormat": "pcm", "SampleRate": "16000"})
        with pytest.raises(Throttled, match="throttled"):  # re-raised by the step: the ASL's Retry matches its name
            step("w1")
        stub.add_response("synthesize_speech", {"AudioStream": polly_stream(pcm), "ContentType": "audio/pcm"},
                          {**base, "OutputFormat": "pcm", "SampleRate": "16000"})
        stub.add_response("synthesize_speech", {"AudioStream": polly_stream(marks)},
                          {**base, "OutputFormat": "json", "SpeechMarkTypes": ["sentence"]})
        assert step("w2") == {"job_id": job_id, "status": "executed"}
        stub.assert_no_pending_responses()
    result = cloud.json(f"runs/spoken/r1/results/{job_id}.json")
    info = result["info"]
    assert (info["backend"], info["placeholder"], info["timing"], info["requests"]) == (
        "polly:neural", False, "speech-marks:sentence", 2)
    assert info["marks"] == [{"time_s": 0.085, "text": "Meet the sofa."}] and info["duration_s"] == 1.0
    wav_key = result["output"]
    assert wav_key.startswith("cache/voice/") and cloud.bytes(wav_key)[:4] == b"RIFF"


def espeak_pcm(text: str, tmp_path: Path) -> tuple[bytes, int]:
    """Real speech in the format the backend asks Polly for (OutputFormat pcm, SampleRate 16000: signed 16-bit
    little-endian mono, the SynthesizeSpeech page), made by espeak-ng and resampled by ffmpeg; and where the
    speech starts (ms), for the sentence mark Polly would give."""
    wav = tmp_path / "espeak.wav"
    subprocess.run([str(EspeakVoiceBackend()._exe), "-w", str(wav), text], check=True, capture_output=True)
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(wav), "-f", "s16le", "-ac", "1",
                          "-ar", str(SAMPLE_RATE), "-"], check=True, capture_output=True).stdout
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    first = int(np.argmax(np.abs(samples) > 0.05 * np.abs(samples).max()))
    return pcm, round(first * 1000 / SAMPLE_RATE)


@needs_espeak
def test_one_execution_speaks_through_polly_and_every_polly_request_passes_botocore(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's own voice (Polly) inside the state machine: the voice Lambda (tasks/voice.py, unchanged) makes
    its Polly client as in AWS; a Stubber on that real client checks each SynthesizeSpeech against botocore's
    model (and model_checked's stricter constraints) and answers with espeak-ng's audio and a sentence mark in
    Polly's newline-delimited JSON. The delivered file carries that speech inside its shot."""
    from tasks import _runtime

    monkeypatch.setenv("CAMPAIGN_VOICE", "polly")
    monkeypatch.setenv("CAMPAIGN_POLLY_TPS", "1000")  # 18 ms between requests: the test does not wait a second
    _runtime.reset()
    text = "Meet the sofa."
    pcm, onset_ms = espeak_pcm(text, tmp_path)
    # speech marks: "a line-delimited JSON stream" of {time (ms), type, start, end (bytes), value}
    # (https://docs.aws.amazon.com/polly/latest/dg/output.html)
    marks = json.dumps({"time": onset_ms, "type": "sentence", "start": 0, "end": len(text.encode()),
                        "value": text}, separators=(",", ":")).encode() + b"\n"
    base = {"Engine": "neural", "LanguageCode": "en-US", "VoiceId": "Joanna", "Text": text, "TextType": "text"}

    # ContentType: audio/pcm (signed 16-bit, mono, little-endian) for pcm, application/x-json-stream for json
    # (SynthesizeSpeechOutput, e.g. https://docs.aws.amazon.com/sdk-for-sap-abap/v1/api/latest/ply/model/_AWS1_CL_PLYSYNTHESIZESPEECH01.html)
    def prepare(stub: Stubber) -> None:
        stub.add_response("synthesize_speech", {"AudioStream": polly_stream(pcm), "ContentType": "audio/pcm",
                                                "RequestCharacters": len(text)},
                          {**base, "OutputFormat": "pcm", "SampleRate": str(SAMPLE_RATE)})
        stub.add_response("synthesize_speech", {"AudioStream": polly_stream(marks),
                                                "ContentType": "application/x-json-stream",
                                                "RequestCharacters": len(text)},
                          {**base, "OutputFormat": "json", "SpeechMarkTypes": ["sentence"]})

    key = upload(cloud, tmp_path / "c")
    with stubbed_clients("polly", prepare) as stubbers:
        run = cloud.run(key, name="spoken-polly")
    assert run.status == "SUCCEEDED", run.described
    assert run.output["status"] == "succeeded" and run.output["jobs"]["failed"] == 0, run.output
    [stub] = stubbers  # one client, made by the one voice Lambda, and both its requests answered
    stub.assert_no_pending_responses()
    prefix = "runs/spoken/spoken-polly/"
    [voice_call] = run.calls.named("campaign-voice")
    assert voice_call[2] == "ok"
    report = cloud.json(prefix + "report.json")
    assert report["backends"]["voice"] == "polly"
    [video] = report["videos"]
    [said] = video["voiceover"]
    assert (said["status"], said["text"], said["backend"], said["placeholder"]) == (
        "executed", text, "polly:neural", False)
    info = cloud.json(prefix + f"results/{voice_call[1]['job_id']}.json")["info"]
    assert (info["timing"], info["requests"], info["marks"]) == (
        "speech-marks:sentence", 2, [{"time_s": onset_ms / 1000, "text": text}])
    assert info["duration_s"] == pytest.approx(len(pcm) / 2 / SAMPLE_RATE, abs=0.01)
    # the delivered file: Polly's (espeak's) speech inside the second shot's window, at the loudness target
    mp4 = tmp_path / "talk.mp4"
    mp4.write_bytes(cloud.bytes(prefix + video["path"]))
    samples = decode_mono(mp4, 2 * SHOT_S)
    hop = RATE // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -30.0)[0] * hop / RATE
    assert len(loud) > 20 and SHOT_S <= loud[0] and loud[-1] + 0.01 <= 2 * SHOT_S, (len(loud), loud[:1], loud[-1:])
    measured = measure_loudness(mp4)
    assert abs(measured.integrated_lufs + 14) <= 1.0 and measured.true_peak_dbtp <= -1.0, measured


def test_each_voice_lambda_holds_its_slot_so_the_map_stays_within_pollys_quota(tmp_path: Path) -> None:
    """With the quota's 8 requests/s and 8 slots, a slot sends at most one request a second: a job's two requests
    are 1 s apart and the job keeps its slot 1 s after its last, so the next job in that slot (another Lambda,
    with a limiter of its own) cannot send sooner."""
    assert voice_pacing(DEFAULT_POLLY_TPS) == (8, 1.0)
    assert voice_pacing(80) == (POLLY_CONCURRENT_REQUESTS, 18 / 80)  # never more than Polly's 18 requests at once
    now = [0.0]
    sent: list[float] = []

    def sleep(s: float) -> None:
        now[0] += s

    class Polly:  # stands in for the client here: the timing, not the request, is under test (Stubber above)
        def synthesize_speech(self, **request: Any) -> dict[str, Any]:
            sent.append(now[0])
            now[0] += 0.05  # Polly's latency
            body = b'{"time":0,"type":"sentence","value":"x"}\n' if request["OutputFormat"] == "json" else b"\x01\x00" * 1600
            return {"AudioStream": polly_stream(body)}

    for n in range(2):  # two jobs in one slot, each with a fresh backend (a fresh Lambda) as in the cloud
        _, interval = voice_pacing(DEFAULT_POLLY_TPS)
        backend = PollyVoiceBackend(client=Polly(), limiter=RateLimiter(1 / interval, clock=lambda: now[0], sleep=sleep),
                                    hold_slot=True)
        backend.synthesize(text="x", voice_id="Joanna", engine="neural", language="en-US", out=tmp_path / f"{n}.wav")
    gaps = np.diff(sent)
    assert len(sent) == 4 and (gaps >= 1.0 - 1e-9).all(), sent
