"""Webhooks: a real HTTP receiver on 127.0.0.1 (port 0) gets exactly one signed POST per `campaign run` whose
signature verifies; 5xx and dropped connections are retried with backoff (counted, not timed), 4xx is not; a
webhook that keeps failing is reported in the summary and the run still succeeds; only https (or localhost)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from webhook_receiver import SECRET, Receiver, verify

from pipeline.cli import main
from pipeline.manifest.notify import webhook_problem
from pipeline.report import webhook
from pipeline.report.summary import Notification


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_a_run_posts_its_summary_once_signed(receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    (tmp_path / "c.yaml").write_text(textwrap.dedent(f"""\
        campaign: hooked
        notify: {{webhook: "{receiver.url}"}}
        defaults: {{enhance: false, video: {{frames: 9}}}}
        videos:
          - id: one
            shots: [{{prompt: A bee}}]
        """), encoding="utf-8")
    before = stamp()
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    assert verify(headers, body) and headers["content-type"] == "application/json"
    doc = json.loads(body)
    latest = json.loads((tmp_path / "out" / "runs" / "hooked" / "latest.json").read_text())
    report = json.loads((tmp_path / "out" / "runs" / "hooked" / latest["report"]).read_text())
    assert (doc["event"], doc["campaign"], doc["run_id"], doc["status"]) == ("run.finished", "hooked",
                                                                             report["run_id"], "succeeded")
    assert doc["jobs"] == report["jobs"] and doc["text"] in out  # the summary the run printed, word for word
    assert f"webhook: delivered to {receiver.url} (HTTP 200, attempt 1, id {headers['x-campaign-delivery']})" in out
    assert not verify({"x-campaign-signature": headers["x-campaign-signature"]}, body + b" ")  # the body is signed
    # the delivery is recorded in the run's report.json and shown in report.html, as the receiver saw it
    recorded = report["webhook"]
    assert {k: recorded[k] for k in ("url", "delivery_id", "attempts", "ok", "status", "error")} == {
        "url": receiver.url, "delivery_id": headers["x-campaign-delivery"], "attempts": 1, "ok": True, "status": 200,
        "error": None}
    assert before <= recorded["time"] <= stamp()  # UTC, between the run's start and now
    html = (tmp_path / "out" / "runs" / "hooked" / report["run_id"] / "report.html").read_text()
    assert (f"<code>{receiver.url}</code>: delivered (HTTP 200) after 1 attempt(s), at {recorded['time']}; "
            f"delivery id <code>{headers['x-campaign-delivery']}</code>") in html


BODY = webhook.payload({"campaign": "c", "run_id": "r", "status": "succeeded", "jobs": {}}, Notification("s", "t\n"))


@pytest.mark.parametrize("receiver", [[500, 500, 200]], indirect=True)
def test_two_500s_then_the_third_try_gets_it(receiver: Receiver) -> None:
    waits: list[float] = []
    d = webhook.deliver(receiver.url, BODY, secret=SECRET, sleep=waits.append)
    assert (d.ok, d.attempts, d.status) == (True, 3, 200)
    assert len(receiver.posts) == 3 and waits == [1.0, 2.0]  # backoff doubles
    assert {h["x-campaign-delivery"] for h, _ in receiver.posts} == {d.delivery_id}  # one id: de-duplicable
    assert all(verify(h, b) and b == BODY for h, b in receiver.posts)


@pytest.mark.parametrize("receiver", [[0, 503]], indirect=True)
def test_a_webhook_that_keeps_failing_is_reported_not_raised(receiver: Receiver) -> None:
    d = webhook.deliver(receiver.url, BODY, secret=SECRET, sleep=lambda _: None)
    assert (d.ok, d.attempts, d.status, d.error) == (False, webhook.MAX_ATTEMPTS, 503, "HTTP 503")
    assert len(receiver.posts) == webhook.MAX_ATTEMPTS  # the dropped connection was retried too
    assert d.line() == f"webhook: NOT delivered to {receiver.url} after 4 attempt(s): HTTP 503\n"


@pytest.mark.parametrize("receiver", [[401]], indirect=True)
def test_a_refusal_is_not_retried_and_an_unset_secret_sends_nothing(receiver: Receiver) -> None:
    d = webhook.deliver(receiver.url, BODY, secret=SECRET, sleep=lambda _: None)
    assert (d.ok, d.attempts, d.status, len(receiver.posts)) == (False, 1, 401, 1)
    d = webhook.deliver(receiver.url, BODY, secret=None)
    assert not d.ok and d.attempts == 0 and "CAMPAIGN_WEBHOOK_SECRET is not set" in (d.error or "")
    assert len(receiver.posts) == 1


def test_only_https_or_localhost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert webhook_problem("https://hooks.example.com/x") is None
    assert webhook_problem("http://localhost:8080/x") is None and webhook_problem("http://[::1]/x") is None
    assert webhook_problem("http://hooks.example.com/x") == ("webhook 'http://hooks.example.com/x' must use https:// "
                                                             "(plain http:// only for localhost)")
    assert "no user or password" in (webhook_problem("https://u:p@example.com/") or "")
    (tmp_path / "c.yaml").write_text("campaign: hooked\nnotify: {webhook: 'http://example.com/h'}\nvideos: []\n",
                                     encoding="utf-8")
    assert main(["validate", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path / 'c.yaml'}:2:19: error: notify.webhook: webhook 'http://example.com/h' must use https:// "
        "(plain http:// only for localhost)"]


@pytest.mark.parametrize("receiver", [[500, 500, 200]], indirect=True)
def test_a_retried_delivery_is_recorded_in_the_report_without_the_urls_query(receiver: Receiver,
                                                                             tmp_path: Path) -> None:
    """What report.json and report.html say after two 500s: three attempts, the final 200, and the URL without
    its query (where a receiver's token often is); a failing one is recorded with its error, as text."""
    from pipeline.storage.store import LocalStore

    store = LocalStore(tmp_path)
    report = {"campaign": "c", "run_id": "r", "status": "succeeded", "jobs": {}, "errors": [], "prefix": "runs/c/r"}
    store.write_bytes("runs/c/r/report.json", json.dumps(report).encode())
    d = webhook.send_summary(receiver.url + "?token=hush", report, Notification("s", "t\n"), secret=SECRET,
                             store=store, sleep=lambda _: None)
    assert len(receiver.posts) == 3 and all(verify(h, b) for h, b in receiver.posts)
    recorded = json.loads(store.read_bytes("runs/c/r/report.json"))["webhook"]
    assert recorded == d.to_json() and (recorded["attempts"], recorded["status"], recorded["ok"]) == (3, 200, True)
    assert recorded["url"] == receiver.url + "?..." and "hush" not in store.read_bytes("runs/c/r/report.html").decode()
    assert "hush" not in d.line()

    d = webhook.send_summary("http://127.0.0.1:9/<b>", report, Notification("s", "t\n"), secret=None, store=store)
    recorded = json.loads(store.read_bytes("runs/c/r/report.json"))["webhook"]
    assert (recorded["ok"], recorded["attempts"], recorded["error"]) == (
        False, 0, "CAMPAIGN_WEBHOOK_SECRET is not set: summaries are sent signed only")
    html = store.read_bytes("runs/c/r/report.html").decode()
    assert "<code>http://127.0.0.1:9/&lt;b&gt;</code>: <b>not delivered</b> after 0 attempt(s)" in html
