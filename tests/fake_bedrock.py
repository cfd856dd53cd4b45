"""A fake Bedrock Runtime over real HTTP, for tests: boto3 talks to it exactly as to AWS (serialisation, signing,
error parsing, endpoint configuration), it records every request and answers from a script.

    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        fake.script(throttle(), image_ok())   # then the default reply for anything after
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from PIL import Image

IMAGE_FIELDS = ("image", "init_image")


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    raw_path: str  # as sent: the model id URL-encoded
    operation: str  # "invoke" | "converse" | "?"
    model_id: str  # decoded
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


Responder = Callable[[Recorded], Reply]


def _json(status: int, payload: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps(payload).encode(), (("Content-Type", "application/json"), *headers))


def png_bytes(size: tuple[int, int], color: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def input_size(req: Recorded) -> tuple[int, int]:
    """The size of the image a Stability request carries (64x64 if none)."""
    for name in IMAGE_FIELDS:
        if isinstance(req.body, dict) and name in req.body:
            return Image.open(io.BytesIO(base64.b64decode(req.body[name]))).size
    return (64, 64)


# --- responders ----------------------------------------------------------------------------------------------


def image_ok(size: tuple[int, int] | None = None, seed: int = 1234) -> Responder:
    """A successful Stability reply: a PNG of `size` (default: the input image's size)."""

    def reply(req: Recorded) -> Reply:
        image = base64.b64encode(png_bytes(size or input_size(req))).decode()
        return _json(200, {"seeds": [seed], "finish_reasons": [None], "images": [image]})

    return reply


def finish(reason: str) -> Responder:
    """A 200 reply whose finish reason is not null (a content filter or "Inference error"): no image."""
    return lambda req: _json(200, {"seeds": [0], "finish_reasons": [reason], "images": []})


def error(status: int, code: str, message: str = "") -> Responder:
    """An AWS error the way Bedrock Runtime (restJson1) sends it: botocore names it from x-amzn-ErrorType."""
    text = message or f"{code} (fake)"
    return lambda req: _json(status, {"message": text}, ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/"))


def throttle() -> Responder:
    return error(429, "ThrottlingException", "Too many requests, please wait before trying again.")


def converse_ok(text: str | None = None, stop_reason: str = "end_turn") -> Responder:
    def reply(req: Recorded) -> Reply:
        user = req.body["messages"][-1]["content"][0]["text"] if isinstance(req.body, dict) else ""
        answer = text if text is not None else f"A richly detailed cinematic scene: {user}"
        return _json(200, {
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": stop_reason,
            "usage": {"inputTokens": 180, "outputTokens": 120, "totalTokens": 300},
            "metrics": {"latencyMs": 12},
        })

    return reply


def default_reply(req: Recorded) -> Reply:
    if req.operation == "invoke":
        return image_ok()(req)
    if req.operation == "converse":
        return converse_ok()(req)
    return error(404, "UnknownOperationException", f"no such path {req.raw_path}")(req)


# --- the server --------------------------------------------------------------------------------------------


class FakeBedrock:
    """http.server on 127.0.0.1 (random port) in a thread. `script()` queues replies, used in order by every
    following request; once the queue is empty each request gets `default_reply`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.default: Responder = default_reply  # the reply once the script is used up
        self._script: deque[Responder] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - GetAsyncInvoke, GetFoundationModel
                self.do_POST()

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                req = fake._record(self.command, self.path, dict(self.headers.items()), body)
                reply = fake._next(req)(req)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("x-amzn-RequestId", f"fake-{len(fake.requests)}")
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-bedrock", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeBedrock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *responders: Responder) -> None:
        with self._lock:
            self._script.extend(responders)

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> Recorded:
        parts = path.split("?")[0].strip("/").split("/")  # model/<id>/<operation>
        operation, model_id = "?", ""
        if len(parts) == 3 and parts[0] == "model":
            model_id, operation = unquote(parts[1]), parts[2]
        elif parts == ["async-invoke"] and method == "POST":  # StartAsyncInvoke (bedrock-runtime)
            operation, model_id = "start-async-invoke", str((body or {}).get("modelId", ""))
        elif len(parts) == 2 and parts[0] == "async-invoke" and method == "GET":  # GetAsyncInvoke: the ARN
            operation, model_id = "get-async-invoke", unquote(parts[1])
        elif len(parts) == 2 and parts[0] == "foundation-models" and method == "GET":  # GetFoundationModel (bedrock)
            operation, model_id = "get-foundation-model", unquote(parts[1])
        req = Recorded(method, path, operation, model_id, {k.lower(): v for k, v in headers.items()}, body)
        with self._lock:
            self.requests.append(req)
        return req

    def _next(self, req: Recorded) -> Responder:
        with self._lock:
            return self._script.popleft() if self._script else self.default
