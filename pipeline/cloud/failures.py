"""Errors as the cloud sees them: a Catch's {"Error", "Cause"} made readable, and a botocore error's code."""

from __future__ import annotations

import json

from pipeline.cloud.contract import ERROR_MESSAGE_MAX
from pipeline.cloud.events import StepError


def describe_failure(error: StepError) -> tuple[str, str]:
    """(error name, readable message) from a Catch's {"Error", "Cause"}: a Lambda error's errorMessage,
    a processing job's FailureReason, else the cause text."""
    name, message = error.error, error.cause
    try:
        doc = json.loads(message) if message else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        if "errorMessage" in doc:
            name = str(doc.get("errorType") or name)
            message = str(doc["errorMessage"])
        elif "ProcessingJobStatus" in doc:
            message = (f"processing job {doc.get('ProcessingJobName')} {doc.get('ProcessingJobStatus')}: "
                       f"{doc.get('FailureReason') or 'no reason given'}")
    return name, message[:ERROR_MESSAGE_MAX]


def client_error_code(exc: Exception) -> str:
    """A botocore ClientError's code (NoSuchKey, AccessDenied, ...), else the exception's type and text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return f"{type(exc).__name__}: {exc}"
