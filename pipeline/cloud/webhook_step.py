"""The cloud side of webhooks: the report and approval steps POST the run's summary to the manifest's
`notify: {webhook: URL}` (or the stack's default URL), signed with a secret read from AWS Secrets Manager, and
record the delivery in report.json. Nothing here fails a run: a secret that cannot be read is a delivery that
was not made, said in the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.cloud.settings import ENV_NAMES, CloudSettings
from pipeline.report.summary import Notification
from pipeline.report.webhook import Delivery, send_summary
from pipeline.storage.store import Store


class SecretUnavailable(Exception):
    """The signing secret could not be read; the message says why, without the secret."""


def read_secret(secrets: Any, secret_id: str) -> str:
    """The webhook's signing secret: the current version of `secret_id` (its ARN or name).

    GetSecretValue (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html):
    `SecretId` is "the ARN or name of the secret to retrieve"; with neither VersionId nor VersionStage,
    "Secrets Manager returns the AWSCURRENT version". The value is in `SecretString` when it was stored as text
    (or through the console) and in `SecretBinary` when stored as bytes (SecretValueEntry,
    https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_SecretValueEntry.html); boto3 gives
    SecretBinary as bytes, already decoded from base64. The whole value is the HMAC key (a console "key/value"
    secret is a JSON text and would be used as that text: store the secret as plaintext)."""
    try:
        answer = secrets.get_secret_value(SecretId=secret_id)
    except Exception as exc:  # noqa: BLE001 - botocore's ClientError and connection errors alike: said, not raised
        response = getattr(exc, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        raise SecretUnavailable(f"the signing secret {secret_id} could not be read "
                                f"({code or type(exc).__name__})") from None
    value = answer.get("SecretString")
    if value is None and answer.get("SecretBinary") is not None:
        try:
            value = bytes(answer["SecretBinary"]).decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailable(f"the signing secret {secret_id} is binary, not UTF-8 text") from None
    if not value:
        raise SecretUnavailable(f"the signing secret {secret_id} has no value")
    return str(value)


def webhook_url(manifest_url: str | None, settings: CloudSettings) -> str | None:
    """Where a run's summary goes: the manifest's `notify.webhook`, else the stack's default (context
    webhook_url), else nowhere."""
    return manifest_url or settings.webhook_url


def send_cloud_webhook(*, url: str | None, report: Mapping[str, Any], notification: Notification, store: Store,
                       settings: CloudSettings, secrets: Any | None,
                       sleep: Callable[[float], None] | None = None) -> Delivery | None:
    """Deliver the summary to `url` (None: no webhook, nothing done) and record it in the report. The secret is
    read on every call, so a rotated secret is used from the next run on."""
    if not url:
        return None
    secret, missing = None, None
    if not settings.webhook_secret_id:
        missing = (f"{ENV_NAMES['webhook_secret_id']} is not set: the stack has no webhook signing secret "
                   "(deploy with -c webhook_secret=<secret ARN or name>)")
    elif secrets is None:
        missing = "no Secrets Manager client was given to this step"
    else:
        try:
            secret = read_secret(secrets, settings.webhook_secret_id)
        except SecretUnavailable as exc:
            missing = str(exc)
    return send_summary(url, report, notification, secret=secret, store=store, missing_secret=missing,
                        sleep=sleep or time.sleep)
