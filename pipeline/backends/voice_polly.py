"""`--voice polly`: Amazon Polly speaks each utterance (SynthesizeSpeech; StartSpeechSynthesisTask for text over
one request's limit), with sentence speech marks for caption timing where the engine gives them.

AWS behaviour relied on (AWS doc pages named):
- "SynthesizeSpeech" (API reference): OutputFormat pcm is signed 16-bit little-endian mono at SampleRate 8000 or
  16000; OutputFormat json with SpeechMarkTypes returns speech marks (one JSON object a line) and no audio.
- "Speech marks" / "Using speech marks": sentence marks carry `time` in milliseconds from the audio's start;
  speech marks are available for the neural, long-form and standard engines, not generative — a generative
  utterance is timed from its audio (the report says which).
- "Quotas in Amazon Polly": 3,000 billed characters per SynthesizeSpeech, 100,000 per StartSpeechSynthesisTask;
  8 SynthesizeSpeech transactions per second for neural (and generative, long-form) voices.
- "StartSpeechSynthesisTask" / "GetSpeechSynthesisTask": the task writes its output to S3 (OutputUri) and reports
  TaskStatus scheduled | inProgress | completed | failed.
- "Quotas in Amazon Polly": a request over the quota is throttled with "HTTP status 400, and a response header
  indicating ThrottlingException"; the SynthesizeSpeech API reference lists ServiceFailureException (HTTP 500) for
  the service's own failures. Both become the pipeline's retryable errors (Throttled, TransientError), so the state
  machine's Retry backs off with jitter.
"""

from __future__ import annotations

import json
import os
import threading
import time
import wave
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.backends.base import Speech, SpeechMark
from pipeline.errors import BackendUnavailable, JobFailed, Throttled, TransientError
from pipeline.manifest.voices import SYNTHESIZE_MAX_CHARS

SAMPLE_RATE = 16000  # pcm's highest rate (the SynthesizeSpeech page)
REQUESTS_PER_SECOND = 8.0  # neural/generative/long-form SynthesizeSpeech quota ("Quotas in Amazon Polly")
NO_MARKS_ENGINES = ("generative",)  # "Speech marks": not available for generative voices
TASK_POLL_S = 2.0
TASK_TIMEOUT_S = 600.0


class RateLimiter:
    """At most `rate` calls a second from this process: each call waits for its slot (a Lambda speaks one
    utterance; the state machine's voice Map bounds how many run at once)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)

    def hold(self) -> None:
        """Wait until the next request may go (a no-op before the first): a caller that holds one of N slots
        does this before giving its slot up, so whoever takes the slot next (another Lambda, with a limiter
        of its own) cannot send sooner than this limiter would have."""
        with self._lock:
            now = self._clock()
            until = self._next
        if until > now:
            self._sleep(until - now)


_LIMITER = RateLimiter(REQUESTS_PER_SECOND)


class PollyVoiceBackend:
    name = "polly"

    def __init__(self, *, client: Any = None, task_bucket: str | None = None, limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep, hold_slot: bool = False,
                 max_attempts: int | None = None) -> None:
        """`hold_slot`: after each utterance, wait out the limiter's interval (the cloud's voice Lambdas, each
        one slot of the voice Map: pipeline/cloud/contract.py voice_pacing). `max_attempts`: botocore's attempts
        per request (1 in the cloud: a retry botocore made would not wait for the limiter; the state machine
        retries instead)."""
        self._client = client
        self.task_bucket = task_bucket
        self._limiter = limiter or _LIMITER
        self._sleep = sleep
        self._hold_slot = hold_slot
        self._max_attempts = max_attempts
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> PollyVoiceBackend:
        """The bucket for long text's synthesis tasks: CAMPAIGN_OUTPUT_BUCKET (set by the stack), if any."""
        return cls(task_bucket=env.get("CAMPAIGN_OUTPUT_BUCKET") or None)

    def identity(self) -> str:
        return "polly:v1"

    @property
    def client(self) -> Any:
        with self._lock:  # one client, made on first use (never at import)
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(retries={"mode": "standard", "total_max_attempts": self._max_attempts}) \
                    if self._max_attempts else None
                self._client = boto3.client("polly", config=config)
            return self._client

    def synthesize(self, *, text: str, voice_id: str, engine: str, language: str, out: Path) -> Speech:
        from botocore.exceptions import ClientError

        try:
            return self._synthesize(text=text, voice_id=voice_id, engine=engine, language=language, out=out)
        except ClientError as exc:
            raise _mapped(exc, f"Polly {voice_id} ({engine}, {language})") from exc
        finally:
            if self._hold_slot:
                self._limiter.hold()

    def _synthesize(self, *, text: str, voice_id: str, engine: str, language: str, out: Path) -> Speech:
        common = {"Engine": engine, "LanguageCode": language, "VoiceId": voice_id, "Text": text, "TextType": "text"}
        requests = 0
        if len(text) > SYNTHESIZE_MAX_CHARS:
            pcm = self._task(common)
            requests += 1
        else:
            self._limiter.wait()
            resp = self.client.synthesize_speech(**common, OutputFormat="pcm", SampleRate=str(SAMPLE_RATE))
            pcm = resp["AudioStream"].read()
            requests += 1
        if not pcm:
            raise JobFailed(f"Polly returned no audio for voice {voice_id} ({engine}, {language})")
        _write_wav(out, pcm)
        marks: tuple[SpeechMark, ...] = ()
        timing = "audio"
        if engine not in NO_MARKS_ENGINES and len(text) <= SYNTHESIZE_MAX_CHARS:
            self._limiter.wait()
            resp = self.client.synthesize_speech(**common, OutputFormat="json", SpeechMarkTypes=["sentence"])
            requests += 1
            marks = parse_marks(resp["AudioStream"].read())
            timing = "speech-marks:sentence"
        return Speech(path=out, backend=f"polly:{engine}", placeholder=False, marks=marks, timing=timing,
                      requests=requests, extra={"voice": voice_id, "engine": engine, "language": language})

    def _task(self, common: dict[str, Any]) -> bytes:
        """Text over one request's limit: a synthesis task writes the audio to S3; poll it, then read it."""
        if not self.task_bucket:
            raise BackendUnavailable(f"text over {SYNTHESIZE_MAX_CHARS} characters needs a Polly synthesis task, which "
                                     "writes to S3: set CAMPAIGN_OUTPUT_BUCKET (the cloud's voice stage calls "
                                     "SynthesizeSpeech only)")
        task = self.client.start_speech_synthesis_task(**common, OutputFormat="pcm", SampleRate=str(SAMPLE_RATE),
                                                       OutputS3BucketName=self.task_bucket,
                                                       OutputS3KeyPrefix="polly-tasks/")["SynthesisTask"]
        waited = 0.0
        while task["TaskStatus"] in ("scheduled", "inProgress"):
            if waited >= TASK_TIMEOUT_S:
                raise JobFailed(f"Polly task {task['TaskId']} still {task['TaskStatus']} after {TASK_TIMEOUT_S:g} s")
            self._sleep(TASK_POLL_S)
            waited += TASK_POLL_S
            task = self.client.get_speech_synthesis_task(TaskId=task["TaskId"])["SynthesisTask"]
        if task["TaskStatus"] != "completed":
            raise JobFailed(f"Polly task {task['TaskId']} {task['TaskStatus']}: {task.get('TaskStatusReason', '')}")
        import boto3

        bucket, _, key = task["OutputUri"].split("://", 1)[1].split("/", 1)[1].partition("/")
        body: bytes = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling"})


def _mapped(exc: Any, what: str) -> Exception:
    """A Polly ClientError -> Throttled (throttling, HTTP 429), TransientError (ServiceFailureException, 5xx), else
    JobFailed with the service's message (a voice or language Polly refuses fails its utterance alone)."""
    err = exc.response.get("Error", {})
    code, message = str(err.get("Code", "")), str(err.get("Message", "")) or str(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in THROTTLE_CODES or status == 429:
        return Throttled(f"{what}: throttled ({code or status}): {message}")
    if code == "ServiceFailureException" or status >= 500:
        return TransientError(f"{what}: service error ({code or status}): {message}")
    return JobFailed(f"{what}: {code or status}: {message}")


def parse_marks(stream: bytes) -> tuple[SpeechMark, ...]:
    """Sentence marks from a json speech-marks stream (one object a line)."""
    marks = []
    for line in stream.decode("utf-8").splitlines():
        if line.strip():
            m = json.loads(line)
            if m.get("type") == "sentence":
                marks.append(SpeechMark(time_s=float(m["time"]) / 1000.0, text=str(m.get("value", ""))))
    return tuple(marks)


def _write_wav(out: Path, pcm: bytes) -> None:
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
