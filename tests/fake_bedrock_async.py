"""Luma Ray2 behind the fake Bedrock (tests/fake_bedrock.py), over real HTTP: StartAsyncInvoke, GetAsyncInvoke
and the control plane's GetFoundationModel, each request checked against botocore's service model and the
documented Ray2 body; a completed job's MP4 is written to S3 (moto's server, also over HTTP).

    service = AsyncVideoService(s3)            # s3: a boto3 client of the S3 the backend reads
    fake.default = service.reply               # FakeBedrock: scripted replies (throttle()) still come first
    service.outcomes.append(failed("..."))     # the next started job's fate; "ok" when the queue is empty

The same service answers in process (`start_job`, `job_status`, raising `ServiceFault`): the moto Step Functions
route for `aws-sdk:bedrockruntime:*` (fake_aws/stepfunctions.py) calls those, so a campaign run by the state
machine and one run by `campaign run --video bedrock` get the same MP4 for the same request: the clip is a
function of the request's `modelInput` alone (the preview animatic of its prompt at its geometry).
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from fake_bedrock import Recorded, Reply, default_reply, error

from pipeline.backends.base import ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.catalog import RAY2, RAY2_ASPECT_RATIOS, RAY2_RESOLUTIONS, Ray2Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"
RAY2_BODY_FIELDS = {"prompt", "aspect_ratio", "loop", "duration", "resolution"}  # model-parameters-luma.html

_SESSION = botocore.session.get_session()
RUNTIME = _SESSION.get_service_model("bedrock-runtime")
CONTROL = _SESSION.get_service_model("bedrock")


@dataclass(frozen=True)
class Outcome:
    """How a started job ends: `status` after `polls` InProgress answers, with a clip `seconds` long."""

    status: str = "Completed"
    failure: str | None = None
    polls: int = 1
    seconds: int | None = None  # None: the asked duration


def ok(polls: int = 1) -> Outcome:
    return Outcome(polls=polls)


def failed(message: str, polls: int = 1) -> Outcome:
    return Outcome(status="Failed", failure=message, polls=polls)


def too_short(seconds: int = 2) -> Outcome:
    return Outcome(seconds=seconds)


@dataclass
class Invocation:
    arn: str
    token: str | None
    body: dict[str, Any]
    outcome: Outcome
    polls: int = 0
    written: str | None = None


@dataclass(frozen=True)
class Lifecycle:
    """GetFoundationModel's answer for one model: ACTIVE or LEGACY (with end of life), or no access."""

    status: str = "ACTIVE"
    end_of_life: float | None = None
    access: str = "granted"  # "denied" (AccessDeniedException) | "missing" (ResourceNotFoundException)


class ServiceFault(Exception):
    """An error answer: `code` as Bedrock names it, with its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class AsyncVideoService:
    s3: Any
    outcomes: deque[Outcome] = field(default_factory=deque)
    faults: deque[tuple[str, str]] = field(default_factory=deque)  # (operation, error code) answered first, in order
    by_prompt: dict[str, Outcome] = field(default_factory=dict)  # a job's fate by its prompt (jobs started side by side)
    models: dict[str, Lifecycle] = field(default_factory=dict)  # GetFoundationModel, by model id (ACTIVE if absent)
    problems: list[str] = field(default_factory=list)  # every request that broke the model or the documented body
    invocations: dict[str, Invocation] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, req: Recorded) -> Reply:
        handler = {"start-async-invoke": self._start, "get-async-invoke": self._get,
                   "get-foundation-model": self._foundation_model}.get(req.operation)
        return handler(req) if handler else default_reply(req)

    # --- StartAsyncInvoke -------------------------------------------------------------------------------

    def _start(self, req: Recorded) -> Reply:
        body = req.body if isinstance(req.body, dict) else {}
        found = self._check(RUNTIME, "StartAsyncInvoke", req, body)
        if found:
            self.problems += found
            return error(400, "ValidationException", "; ".join(found))(req)
        try:
            return _json(self.start_job(body))
        except ServiceFault as fault:
            return error(fault.status, fault.code, fault.message)(req)

    def start_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """StartAsyncInvoke's answer to a request botocore's model accepts: the documented Ray2 body is checked,
        the idempotency token makes a repeated start the same job."""
        self._fault("StartAsyncInvoke")
        found = _ray2_body_problems(body)
        if found:
            self.problems += found
            raise ServiceFault(400, "ValidationException", "; ".join(found))
        token = body.get("clientRequestToken")
        with self._lock:
            same = next((i for i in self.invocations.values() if token and i.token == token), None)
            if same is not None:  # the idempotency token: the same start again is the same job
                return {"invocationArn": same.arn}
            arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:async-invoke/inv{len(self.invocations):09d}"  # 12 of [a-z0-9], as the model requires
            prompt = str(body["modelInput"]["prompt"])
            outcome = self.by_prompt.get(prompt) or (self.outcomes.popleft() if self.outcomes else ok())
            self.invocations[arn] = Invocation(arn, token, body, outcome)
        return {"invocationArn": arn}

    def _fault(self, operation: str) -> None:
        with self._lock:
            if self.faults and self.faults[0][0] == operation:
                _, code = self.faults.popleft()
                raise ServiceFault(429 if code == "ThrottlingException" else 400, code, f"{code} (fake)")

    # --- GetAsyncInvoke ---------------------------------------------------------------------------------

    def _get(self, req: Recorded) -> Reply:
        arn = req.model_id  # the URL's last part, decoded
        found = self._check(RUNTIME, "GetAsyncInvoke", req, {"invocationArn": arn})
        if found:
            self.problems += found
            return error(400, "ValidationException", "; ".join(found))(req)
        try:
            return _json(self.job_status(arn))
        except ServiceFault as fault:
            return error(fault.status, fault.code, fault.message)(req)

    def job_status(self, arn: str) -> dict[str, Any]:
        """GetAsyncInvoke's answer: InProgress for the outcome's number of polls, then its status; a completed
        job's MP4 is in S3 by the time it says Completed."""
        self._fault("GetAsyncInvoke")
        with self._lock:
            inv = self.invocations.get(arn)
            if inv is None:
                raise ServiceFault(404, "ResourceNotFoundException", f"no invocation {arn}")
            inv.polls += 1
            status = "InProgress" if inv.polls <= inv.outcome.polls else inv.outcome.status
        if status == "Completed" and inv.written is None:
            inv.written = self._write_clip(inv)
        s3_uri = inv.body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        answer: dict[str, Any] = {
            "invocationArn": arn, "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{RAY2.model_id}",
            "status": status, "submitTime": time.time(), "lastModifiedTime": time.time(),
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": s3_uri}},
        }
        if inv.token:
            answer["clientRequestToken"] = inv.token
        if status == "Failed":
            answer["failureMessage"] = inv.outcome.failure
        if status != "InProgress":
            answer["endTime"] = time.time()
        return answer

    def _write_clip(self, inv: Invocation) -> str:
        """A real MP4 at the catalog's geometry for the request (the preview's animatic), at
        <s3Uri>/<invocation id>/output.mp4 (the layout Nova Reel documents)."""
        mi = inv.body["modelInput"]
        settings = Ray2Settings(int(str(mi["duration"]).rstrip("s")), mi["resolution"], mi["aspect_ratio"], bool(mi["loop"]))
        seconds = inv.outcome.seconds or settings.duration_s
        request = ClipRequest(key="fake", model=RAY2.name, prompt=mi["prompt"], frames=seconds * settings.fps,
                              fps=settings.fps, width=settings.width, height=settings.height, steps=1, guidance=0.0,
                              seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            out = PreviewVideoBackend().render([request], Path(tmp))[0]
            assert out.path is not None, out.error
            uri = inv.body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].rstrip("/")
            bucket, _, prefix = uri[len("s3://"):].partition("/")
            key = f"{prefix}/{inv.arn.rsplit('/', 1)[-1]}/output.mp4".lstrip("/")
            self.s3.upload_file(str(out.path), bucket, key)
        return f"s3://{bucket}/{key}"

    # --- GetFoundationModel (control plane) -----------------------------------------------------------------

    def _foundation_model(self, req: Recorded) -> Reply:
        model_id = req.model_id
        found = self._check(CONTROL, "GetFoundationModel", req, {"modelIdentifier": model_id})
        if found:
            self.problems += found
            return error(400, "ValidationException", "; ".join(found))(req)
        life = self.models.get(model_id, Lifecycle())
        if life.access == "denied":
            return error(403, "AccessDeniedException", f"You don't have access to the model {model_id}.")(req)
        if life.access == "missing":
            return error(404, "ResourceNotFoundException", f"Model {model_id} not found.")(req)
        lifecycle: dict[str, Any] = {"status": life.status}
        if life.end_of_life is not None:
            lifecycle["endOfLifeTime"] = life.end_of_life
        return _json({"modelDetails": {
            "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}", "modelId": model_id,
            "modelName": model_id, "providerName": model_id.split(".")[0], "modelLifecycle": lifecycle}})

    # --- checks -------------------------------------------------------------------------------------------

    @staticmethod
    def _check(service: Any, operation: str, req: Recorded, params: dict[str, Any]) -> list[str]:
        """The request against botocore's model: method, path, the input shape (types, required members,
        lengths) and each string member's pattern."""
        op = service.operation_model(operation)
        problems = []
        if req.method != op.http["method"]:
            problems.append(f"{operation}: method {req.method}, the model says {op.http['method']}")
        try:
            validate_parameters(params, op.input_shape)
        except ParamValidationError as exc:
            problems.append(f"{operation}: {exc}")
        for name, value in params.items():
            shape = op.input_shape.members.get(name)
            pattern = shape.metadata.get("pattern") if shape is not None else None
            if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
                problems.append(f"{operation}: {name} {value!r} does not match {pattern}")
        if req.method == "POST" and "application/json" not in req.headers.get("content-type", ""):
            problems.append(f"{operation}: content-type {req.headers.get('content-type')!r}")
        return problems


def _ray2_body_problems(body: dict[str, Any]) -> list[str]:
    """The documented Luma Ray2 `modelInput` (Bedrock user guide, model-parameters-luma)."""
    if body.get("modelId") != RAY2.model_id:
        return [f"modelId {body.get('modelId')!r} is not {RAY2.model_id}"]
    mi = body.get("modelInput")
    if not isinstance(mi, dict):
        return ["modelInput must be a JSON object"]
    problems = [f"modelInput has undocumented field {k!r}" for k in sorted(set(mi) - RAY2_BODY_FIELDS)]
    prompt = mi.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= RAY2.max_prompt_chars:
        problems.append(f"prompt must be 1..{RAY2.max_prompt_chars} characters")
    for name, allowed in (("aspect_ratio", RAY2_ASPECT_RATIOS), ("resolution", RAY2_RESOLUTIONS),
                          ("duration", ("5s", "9s"))):
        if name in mi and mi[name] not in allowed:
            problems.append(f"{name} {mi[name]!r} not in {allowed}")
    if "loop" in mi and not isinstance(mi["loop"], bool):
        problems.append("loop must be a boolean")
    uri = body.get("outputDataConfig", {}).get("s3OutputDataConfig", {}).get("s3Uri", "")
    if not str(uri).startswith("s3://"):
        problems.append(f"s3Uri {uri!r} is not an s3:// address")
    return problems


def _json(payload: Any) -> Reply:
    return Reply(200, json.dumps(payload).encode(), (("Content-Type", "application/json"),))
