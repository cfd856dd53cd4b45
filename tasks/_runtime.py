"""What every handler shares: its settings (from the environment the CDK stack writes), AWS clients made on
first use and kept for the container's life, the output store and a scratch folder per invocation."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.cloud.settings import CloudSettings
from pipeline.storage.store import S3Store


@functools.cache
def settings() -> CloudSettings:
    return CloudSettings.from_env(os.environ)


@functools.cache
def client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def output_store() -> S3Store:
    return S3Store(settings().need("output_bucket"), client=client("s3"))


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder under /tmp, removed afterwards: a warm container must not fill its ephemeral storage."""
    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        yield Path(tmp)


def reset() -> None:
    """Forget settings and clients (tests change the environment between cases)."""
    settings.cache_clear()
    client.cache_clear()
