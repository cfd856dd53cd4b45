"""Who may enter the studio: a real `campaign studio` refuses requests and websockets without its token or with a
foreign Host (DNS rebinding), takes the token once from the printed link into an HttpOnly SameSite=Strict cookie;
the gate's rule itself, token and load-balancer modes; and a client cannot name itself through the user header."""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from studio_server import base_url, running_studio

from pipeline.studio.gate import ALB_IDENTITY_HEADER, USER_HEADER, Gate, GateSettings, decide
from pipeline.studio.server import gate_settings, streamlit_command

pytest.importorskip("streamlit")

TOKEN = "s3cret-token"
LOCAL = GateSettings(mode="token", port=8501, local_user="ana", hosts=("localhost", "127.0.0.1", "::1"))
ALB = GateSettings(mode="alb", port=8501)


# --- the rule -----------------------------------------------------------------------------------------------


def ask(settings: GateSettings, path: str = "/", query: str = "", **headers: str) -> Any:
    return decide(settings, path=path, query=query, headers={k.replace("_", "-"): v for k, v in headers.items()},
                  token=TOKEN)


def test_without_the_token_nothing_but_health_is_served() -> None:
    assert ask(LOCAL, host="127.0.0.1:8501").status == 403
    assert ask(LOCAL, "/static/js/main.js", host="localhost:8501").status == 403
    assert ask(LOCAL, "/media/abc.mp4", host="localhost:8501", cookie="campaign-studio-8501=wrong").status == 403
    assert ask(LOCAL, "/media/abc.mp4", host="localhost:8501", cookie="campaign-studio-9999=s3cret-token").status == 403
    assert ask(LOCAL, "/", "token=nope", host="localhost:8501").status == 403
    assert ask(LOCAL, "/", f"token={TOKEN}&token=x", host="localhost:8501").status == 403
    health = ask(LOCAL, "/_stcore/health", host="127.0.0.1:8501")
    assert health.passes and health.user is None


def test_the_token_in_the_link_becomes_a_strict_httponly_cookie_and_leaves_the_url() -> None:
    first = ask(LOCAL, "/", f"token={TOKEN}&page=Runs", host="127.0.0.1:8501")
    assert (first.status, first.location) == (303, "/?page=Runs")
    assert first.set_cookie == f"campaign-studio-8501={TOKEN}; HttpOnly; SameSite=Strict; Path=/"
    later = ask(LOCAL, "/_stcore/stream", host="127.0.0.1:8501", cookie=f"other=1; campaign-studio-8501={TOKEN}")
    assert later.passes and later.user == "ana"
    # never a redirect to another site, whatever path the link had
    odd = ask(LOCAL, "//evil.example/x", f"token={TOKEN}", host="127.0.0.1:8501")
    assert odd.location == "/evil.example/x"


@pytest.mark.parametrize("host", ["evil.example:8501", "evil.example", "127.0.0.1.evil.example", "localhost@evil.example",
                                  "", "127.0.0.1:notaport", "localhost/x"])
def test_a_foreign_host_is_refused_even_with_the_token(host: str) -> None:
    decision = ask(LOCAL, "/", host=host, cookie=f"campaign-studio-8501={TOKEN}")
    assert decision.status == 403 and "Host" in decision.message
    assert ask(LOCAL, "/_stcore/health", host=host).status == 403


def test_behind_the_load_balancer_its_signed_in_user_is_the_user() -> None:
    assert ask(ALB, host="studio.example.com").status == 401
    assert ask(ALB, host="studio.example.com", **{ALB_IDENTITY_HEADER: "  "}).status == 401
    signed = ask(ALB, host="studio.example.com", **{ALB_IDENTITY_HEADER: "8f0c-sub"})
    assert signed.passes and signed.user == "8f0c-sub"
    assert ask(ALB, "/_stcore/health", host="10.0.1.7:8501").passes  # the target group's health check


def test_local_settings_answer_to_loopback_names_the_address_and_named_hosts_only() -> None:
    assert gate_settings(auth="token", port=1, address="127.0.0.1").hosts == ("localhost", "127.0.0.1", "::1")
    assert "studio.lan" in gate_settings(auth="token", port=1, address="0.0.0.0", extra_hosts=("Studio.lan",)).hosts
    assert "0.0.0.0" not in gate_settings(auth="token", port=1, address="0.0.0.0").hosts
    command = streamlit_command(port=1, address="127.0.0.1", hosts=("localhost",))
    assert command[1] == "-I" and command[command.index("--server.allowedHosts") + 1] == "localhost"


# --- the middleware -----------------------------------------------------------------------------------------


def through_gate(settings: GateSettings, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(messages the gate sent, the scope the app behind it saw)."""
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def app(s: Any, receive: Any, send: Any) -> None:
        seen.update(s)

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(Gate(app, settings, TOKEN)(scope, receive, send))
    return sent, seen or None


def test_a_client_cannot_name_itself_through_the_user_header() -> None:
    scope = {"type": "websocket", "path": "/_stcore/stream", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8501"), (b"cookie", f"campaign-studio-8501={TOKEN}".encode()),
                         (USER_HEADER.encode(), b"admin"), (b"X-Campaign-User", b"root")]}
    sent, seen = through_gate(LOCAL, scope)
    assert sent == [] and seen is not None
    assert [v for k, v in seen["headers"] if k.lower() == USER_HEADER.encode()] == [b"ana"]


def test_refusals_are_a_403_page_or_a_closed_websocket() -> None:
    sent, seen = through_gate(LOCAL, {"type": "websocket", "path": "/_stcore/stream", "query_string": b"",
                                      "headers": [(b"host", b"evil.example")]})
    assert seen is None and sent == [{"type": "websocket.close", "code": 1008}]
    sent, seen = through_gate(LOCAL, {"type": "http", "path": "/", "query_string": b"", "headers": [(b"host", b"localhost")]})
    assert seen is None and sent[0]["status"] == 403 and b"token" in sent[1]["body"]


# --- a real studio, black-box --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("gate")
    with running_studio(root / "out", log_path=root / "studio.log") as link:
        yield link


def get(link: str, path: str, *, host: str | None = None, cookie: str | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(link)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    headers = {"Host": host or parts.netloc}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def websocket_status(link: str, *, host: str | None = None, cookie: str | None = None) -> int:
    """The status line's code for a websocket handshake on Streamlit's stream (101: accepted)."""
    parts = urlsplit(link)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /_stcore/stream HTTP/1.1", f"Host: {host or parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: streamlit",
             f"Origin: http://{host or parts.netloc}"] + ([f"Cookie: {cookie}"] if cookie else [])
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=60) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = s.recv(4096).split(b"\r\n", 1)[0]
    return int(status.split()[1])


def test_the_running_studio_wants_its_token_and_its_own_host(studio: str) -> None:
    token = parse_qs(urlsplit(studio).query)["token"][0]
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert get(studio, "/").status == 403
    assert get(studio, "/?token=guess").status == 403
    first = get(studio, "/?token=" + token + "&page=Runs")
    assert first.status == 303 and first.getheader("Location") == "/?page=Runs"
    cookie = first.getheader("Set-Cookie") or ""
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";", 1)[0]
    page = get(studio, "/?page=Runs", cookie=jar)
    assert page.status == 200 and "text/html" in (page.getheader("Content-Type") or "")
    port = urlsplit(studio).port
    # DNS rebinding: the browser sends the attacker's name as Host; refused, cookie or not
    assert get(studio, "/", host=f"rebind.example:{port}", cookie=jar).status == 403
    assert get(studio, "/_stcore/health", host=f"rebind.example:{port}").status == 403
    assert get(studio, "/_stcore/health").status == 200
    assert get(studio, "/media/anything.mp4").status == 403


def test_behind_the_load_balancer_the_studio_serves_only_signed_in_requests(tmp_path: Path) -> None:
    """`campaign studio --auth alb`, as the container runs it: no token; the load balancer's identity header is
    the way in (only the load balancer can reach the task: its security group)."""
    with running_studio(tmp_path / "out", log_path=tmp_path / "studio.log", flags=("--auth", "alb"),
                        link=False) as url:
        assert get(url, "/").status == 401
        assert get(url, "/_stcore/health").status == 200  # the target group's health check
        conn = http.client.HTTPConnection(urlsplit(url).hostname or "", urlsplit(url).port, timeout=60)
        conn.request("GET", "/", headers={ALB_IDENTITY_HEADER: "8f0c-sub", "Host": "studio.example.com"})
        signed = conn.getresponse()
        assert signed.status == 200 and b"<html" in signed.read().lower()
        conn.close()


def test_the_running_studio_opens_its_websocket_only_to_the_token_holder_on_its_host(studio: str) -> None:
    token = parse_qs(urlsplit(studio).query)["token"][0]
    jar = f"campaign-studio-{urlsplit(studio).port}={token}"
    assert websocket_status(studio) == 403
    assert websocket_status(studio, cookie=f"campaign-studio-{urlsplit(studio).port}=guess") == 403
    assert websocket_status(studio, host=f"rebind.example:{urlsplit(studio).port}", cookie=jar) == 403
    assert websocket_status(studio, cookie=jar) == 101
    assert base_url(studio).startswith("http://127.0.0.1:")
