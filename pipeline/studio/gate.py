"""The studio's door: an ASGI middleware in front of Streamlit that checks every request and websocket (Host, the
token locally, the load balancer's sign-in deployed) and tells Streamlit who the user is."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

GATE_ENV = "CAMPAIGN_STUDIO_GATE"  # the settings below, as JSON (no secret in it)
TOKEN_ENV = "CAMPAIGN_STUDIO_TOKEN"  # the token: given by the person, or made by `campaign studio`
# Streamlit copies this header into st.user["name"] (server.trustedUserHeaders, set by server.py). The gate
# removes any copy a client sent and writes its own, so only the gate names the user.
USER_HEADER = "x-campaign-user"
USER_KEY = "name"
# With authentication on an ALB listener, the load balancer adds the user's subject (the IdP's `sub` claim) as
# this header ("Authenticate users using an Application Load Balancer", ELB User Guide: User claims encoding and
# signature verification). The task's security group admits the load balancer only, so no one else can send it.
ALB_IDENTITY_HEADER = "x-amzn-oidc-identity"
TOKEN_PARAM = "token"
OPEN_PATHS = ("/_stcore/health", "/_stcore/script-health-check")  # health checks: nothing in them to read
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
MODES = ("token", "alb")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class GateSettings:
    """`token`: requests need the token (once in the URL, then a cookie) and a loopback or named Host; the user is
    the person who started the studio. `alb`: the load balancer has signed the user in; its header names them."""

    mode: str
    port: int
    local_user: str = ""
    hosts: tuple[str, ...] = ()  # allowed Host names (ports ignored); empty: any, where the ALB guards the door

    @property
    def cookie(self) -> str:
        # cookies are shared by every port of a host: one name per studio, so two studios do not mix tokens
        return f"campaign-studio-{self.port}"

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> GateSettings:
        env = os.environ if environ is None else environ
        d = json.loads(env[GATE_ENV])
        return cls(**{**d, "hosts": tuple(d.get("hosts") or ())})


@dataclass(frozen=True)
class Decision:
    """What the gate does with one request: refuse it (status, message), redirect it (dropping the token from
    the URL, setting the cookie), or pass it on as `user`."""

    status: int = 200
    message: str = ""
    user: str | None = None
    location: str | None = None
    set_cookie: str | None = None

    @property
    def passes(self) -> bool:
        return self.status == 200


def host_name(host: str | None) -> str | None:
    """The name in a Host header, lowercased, without its port; None when it is not a plain host[:port]."""
    if not host:
        return None
    try:
        parts = urlsplit(f"//{host}")
        name = parts.hostname
        _ = parts.port  # a port that is not a number is refused
    except ValueError:
        return None
    if not name or parts.username is not None or parts.password is not None or parts.path or parts.query:
        return None
    return name.rstrip(".")


def decide(settings: GateSettings, *, path: str, query: str, headers: MutableMapping[str, str], token: str | None,
           scheme: str = "http") -> Decision:
    """The gate's rule for one request (headers: lowercase names, first value)."""
    name = host_name(headers.get("host"))
    if settings.hosts and name not in settings.hosts:
        # DNS rebinding: a page on another site whose name now points at this machine sends its own name as Host
        return Decision(403, f"campaign studio: Host {(headers.get('host') or '')[:80]!r} is not this studio's "
                             f"(open it as {settings.hosts[0]})")
    if path in OPEN_PATHS:
        return Decision(user=None)
    if settings.mode == "alb":
        identity = (headers.get(ALB_IDENTITY_HEADER) or "").strip()
        if not identity:
            return Decision(401, "campaign studio: not signed in (the load balancer's sign-in did not run)")
        return Decision(user=identity[:200])
    if not token:
        return Decision(500, "campaign studio: started without a token")
    params = parse_qsl(query, keep_blank_values=True)
    given = [v for k, v in params if k == TOKEN_PARAM]
    if given:
        if len(given) != 1 or not hmac.compare_digest(given[0].encode(), token.encode()):
            return Decision(403, "campaign studio: wrong token; open the link `campaign studio` printed")
        if scheme != "http":  # a websocket carrying the token in its URL: take it, no redirect possible
            return Decision(user=settings.local_user)
        rest = urlencode([(k, v) for k, v in params if k != TOKEN_PARAM])
        # HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it (a request it makes here,
        # a websocket it opens); Path=/: every route of this studio
        # one leading slash and every odd character quoted: never "//elsewhere" (a link to another site)
        here = "/" + quote(path.lstrip("/\\"), safe="/-._~")
        return Decision(303, "signed in", location=here + (f"?{rest}" if rest else ""),
                        set_cookie=f"{settings.cookie}={token}; HttpOnly; SameSite=Strict; Path=/")
    try:
        jar = SimpleCookie(headers.get("cookie") or "")
    except CookieError:
        jar = SimpleCookie()
    morsel = jar.get(settings.cookie)
    if morsel is None or not hmac.compare_digest(morsel.value.encode(), token.encode()):
        return Decision(403, "campaign studio: this page needs the token; open the link `campaign studio` printed "
                             "(http://...?token=...)")
    return Decision(user=settings.local_user)


class Gate:
    """Starlette middleware (st.App's `middleware=`): runs before Streamlit's routes, websocket included."""

    def __init__(self, app: ASGIApp, settings: GateSettings | None = None, token: str | None = None) -> None:
        self.app = app
        self.settings = settings or GateSettings.from_env()
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        headers: dict[str, str] = {}
        for k, v in raw:
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        decision = decide(self.settings, path=scope.get("path", ""), query=scope.get("query_string", b"").decode("latin-1"),
                          headers=headers, token=self.token, scheme="http" if scope["type"] == "http" else "ws")
        if decision.passes:
            kept = [(k, v) for k, v in raw if k.lower() != USER_HEADER.encode()]
            if decision.user is not None:
                kept.append((USER_HEADER.encode(), decision.user.encode("utf-8", "replace")))
            await self.app({**scope, "headers": kept}, receive, send)
            return
        if scope["type"] == "websocket":
            # closing before accepting: the server answers the handshake with 403 (ASGI spec, websocket.close)
            await send({"type": "websocket.close", "code": 1008})
            return
        response_headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
                            (b"referrer-policy", b"no-referrer")]
        if decision.location is not None:
            response_headers.append((b"location", decision.location.encode("latin-1", "replace")))
        if decision.set_cookie is not None:
            response_headers.append((b"set-cookie", decision.set_cookie.encode("latin-1")))
        body = (decision.message + "\n").encode()
        await send({"type": "http.response.start", "status": decision.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
