"""The cloud's reader of data files (`variables: {name: {from: ...}}`): from the input bucket, relative to the
manifest's key or at an s3:// address `campaign submit` wrote, within the manifest's tenancy and size limit."""

from __future__ import annotations

import posixpath
from typing import Any

from pipeline.cloud.failures import client_error_code
from pipeline.cloud.tenancy import Tenancy, asset_key_problem
from pipeline.errors import shown
from pipeline.manifest.data_files import MAX_DATA_BYTES, DataFileUnreadable, Reader
from pipeline.storage.store import parse_s3_uri


def s3_data_reader(s3: Any, *, bucket: str, manifest_key: str, tenancy: Tenancy) -> Reader:
    """A Reader over the input bucket for the manifest at s3://bucket/manifest_key."""

    def read(location: str) -> bytes:
        if location.startswith("s3://"):
            try:
                src_bucket, key = parse_s3_uri(location)
            except ValueError:
                raise DataFileUnreadable(f"data file {shown(location)} is not a valid s3://bucket/key address") from None
        else:
            src_bucket = bucket
            key = posixpath.normpath(posixpath.join(posixpath.dirname(manifest_key), location))
            if location.startswith("/") or key == ".." or key.startswith("../"):
                raise DataFileUnreadable(f"data file {shown(location)} leaves the bucket (relative to "
                                         f"s3://{bucket}/{manifest_key})")
        refused = asset_key_problem(bucket, manifest_key, src_bucket, key, location, tenancy)
        if refused:
            raise DataFileUnreadable(refused.replace("asset", "data file", 1))
        try:
            # Range bounds what is read, whatever the object's size (AmazonS3/latest/API/API_GetObject.html)
            body = s3.get_object(Bucket=src_bucket, Key=key, Range=f"bytes=0-{MAX_DATA_BYTES}")["Body"].read()
        except Exception as exc:  # noqa: BLE001 - reported as a located manifest problem
            raise DataFileUnreadable(f"data file {shown(location)} not found (looked for s3://{src_bucket}/{key}: "
                                     f"{client_error_code(exc)})") from None
        if len(body) > MAX_DATA_BYTES:
            raise DataFileUnreadable(f"data file {shown(location)} is larger than {MAX_DATA_BYTES // (1024 * 1024)} MiB")
        return bytes(body)

    return read
