"""A real HTTP receiver on 127.0.0.1 (port 0) for webhook tests: it records each POST's headers and body and
answers with scripted statuses (tests/conftest.py's `receiver` fixture; parametrize it indirectly with a list of statuses);
`verify` checks a POST's signature as a receiver would."""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "s3cret-for-tests"


class Receiver:
    """Answers each POST with the next scripted status (the last one repeats); 0 drops the connection."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.posts: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses[min(len(receiver.posts), len(receiver.statuses)) - 1]
                if status == 0:
                    self.close_connection = True
                    return  # no answer at all
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-campaign-signature"], want)
