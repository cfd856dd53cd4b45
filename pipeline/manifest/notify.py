"""`notify: {webhook: URL}`: where a run's summary is POSTed when it ends or awaits approval (the delivery itself
is pipeline/report/webhook.py). HTTPS only, except plain http:// to this machine."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import Problem, shown
from pipeline.manifest.yamlsrc import Source

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_URL_CHARS = 2048


def notify_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "description": "who hears about a run when it ends or awaits approval",
            "properties": {"webhook": {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS,
                                       "description": "an https:// URL that receives the run's summary as a signed "
                                                      "JSON POST (X-Campaign-Signature)"}}}


def webhook_problem(url: str) -> str | None:
    """Why `url` may not receive run summaries, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return f"webhook {shown(url)} is not a valid URL ({exc})"
    if not parts.hostname or parts.username or parts.password:
        return f"webhook {shown(url)} must be https://host/path (no user or password in it)"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return None  # a receiver on this machine (tests, a local relay): nothing crosses a network
    return f"webhook {shown(url)} must use https:// (plain http:// only for localhost)"


def notify_problems(src: Source) -> list[Problem]:
    data = src.data if isinstance(src.data, dict) else {}
    notify = data.get("notify")
    url = notify.get("webhook") if isinstance(notify, dict) else None
    bad = webhook_problem(url) if isinstance(url, str) else None
    return [src.problem(("notify", "webhook"), bad)] if bad else []


def webhook_of(data: Any) -> str | None:
    notify = data.get("notify") if isinstance(data, dict) else None
    url = notify.get("webhook") if isinstance(notify, dict) else None
    return url if isinstance(url, str) else None
