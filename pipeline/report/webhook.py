"""The run's summary POSTed to the manifest's webhook when a run ends or awaits approval: signed with HMAC-SHA256
of the raw body, a delivery id for de-duplication, retried with backoff on 5xx and timeouts. A webhook that keeps
failing is reported in the summary; it never fails the run."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.manifest.notify import webhook_problem
from pipeline.report.summary import Notification
from pipeline.report.write import AWAITING_APPROVAL, record_webhook
from pipeline.storage.store import Store

SECRET_ENV = "CAMPAIGN_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Campaign-Signature"
DELIVERY_HEADER = "X-Campaign-Delivery"
EVENT_HEADER = "X-Campaign-Event"
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 1.0  # waits 1, 2, 4 s between attempts
TIMEOUT_S = 10.0
MAX_BODY_BYTES = 256 * 1024


def shown_url(url: str) -> str:
    """The URL as reports and summaries show it: without its query and fragment, where receivers often put a
    token (`?key=...`), so a report reader never learns it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + ("?..." if parts.query else "")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Delivery:
    url: str
    delivery_id: str
    attempts: int
    ok: bool
    status: int | None  # the last HTTP status, None when no answer came
    error: str | None
    time: str = ""  # when the last attempt ended (or the delivery was given up before any), UTC ISO 8601

    def line(self) -> str:
        """One line for the run's summary."""
        url = shown_url(self.url)
        if self.ok:
            return f"webhook: delivered to {url} (HTTP {self.status}, attempt {self.attempts}, id {self.delivery_id})\n"
        return f"webhook: NOT delivered to {url} after {self.attempts} attempt(s): {self.error}\n"

    def to_json(self) -> dict[str, Any]:
        """The report's `webhook` section (report.json); the URL without its query."""
        return {"url": shown_url(self.url), "delivery_id": self.delivery_id, "attempts": self.attempts,
                "ok": self.ok, "status": self.status, "error": self.error, "time": self.time}


def payload(report: Mapping[str, Any], notification: Notification) -> bytes:
    """The body: the summary as the SNS topic receives it (subject and text) and its facts as fields."""
    status = str(report.get("status", "?"))
    doc = {"event": "run.awaiting_approval" if status == AWAITING_APPROVAL else "run.finished",
           "campaign": report.get("campaign"), "run_id": report.get("run_id"), "status": status,
           "jobs": report.get("jobs") or {}, "errors": len(report.get("errors") or []),
           "subject": notification.subject, "text": notification.text}
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
    if len(body) > MAX_BODY_BYTES:  # a summary is short; cut the text, never the facts
        doc["text"] = notification.text[:4000] + "\n..."
        body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
    return body


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer (3xx), not followed: the signed body goes only where configured


def deliver(url: str, body: bytes, *, secret: str | None, event: str = "run.finished",
            sleep: Callable[[float], None] = time.sleep, attempts: int = MAX_ATTEMPTS,
            missing_secret: str | None = None) -> Delivery:
    """POST `body` to `url` until a 2xx, a 4xx other than 408/429 (not retried: the receiver refuses it) or
    `attempts` tries; 5xx, 408, 429, timeouts and connection errors are retried after 1, 2, 4 s. Without a
    secret nothing is sent, and the delivery says why (`missing_secret`)."""
    delivery_id = str(uuid.uuid4())  # the same on every retry: the receiver de-duplicates on it
    bad = webhook_problem(url)
    if bad:
        return Delivery(url, delivery_id, 0, False, None, "the URL is refused: " + bad.replace(url, shown_url(url)),
                        _now())
    if not secret:
        why = missing_secret or f"{SECRET_ENV} is not set: summaries are sent signed only"
        return Delivery(url, delivery_id, 0, False, None, why, _now())
    headers = {"Content-Type": "application/json", "User-Agent": "campaign-webhook/1",
               SIGNATURE_HEADER: signature(body, secret), DELIVERY_HEADER: delivery_id, EVENT_HEADER: event}
    opener = urllib.request.build_opener(_NoRedirect())
    status: int | None = None
    error = "no attempt made"
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            sleep(BACKOFF_BASE_S * 2 ** (attempt - 2))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=TIMEOUT_S) as answer:
                status = answer.status
            return Delivery(url, delivery_id, attempt, True, status, None, _now())
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
            exc.close()
            if exc.code < 500 and exc.code not in (408, 429):
                return Delivery(url, delivery_id, attempt, False, status, error, _now())
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            status = None
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            error = f"no answer ({reason})"
    return Delivery(url, delivery_id, attempts, False, status, error, _now())


def send_summary(url: str, report: Mapping[str, Any], notification: Notification, *, secret: str | None,
                 store: Store, sleep: Callable[[float], None] = time.sleep, missing_secret: str | None = None) -> Delivery:
    """Send a run's summary and record the delivery in its report.json and report.html (the `webhook`
    section). Both runners call this; a report that cannot be rewritten is said on stderr, never raised: the
    run's outcome does not depend on its webhook."""
    body = payload(report, notification)
    event = json.loads(body)["event"]
    delivery = deliver(url, body, secret=secret, event=event, sleep=sleep, missing_secret=missing_secret)
    try:
        record_webhook(store, str(report["prefix"]), delivery.to_json())
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"webhook delivery not recorded in the report: {type(exc).__name__}: {exc}", file=sys.stderr)
    return delivery


def notify_webhook(url: str, report: Mapping[str, Any], notification: Notification, *, store: Store,
                   sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Send a local run's summary, signed with CAMPAIGN_WEBHOOK_SECRET from the environment."""
    return send_summary(url, report, notification, secret=os.environ.get(SECRET_ENV), store=store, sleep=sleep)
