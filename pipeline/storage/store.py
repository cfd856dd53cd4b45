"""Where outputs live: a local folder or an S3 bucket, with the same keys and atomic writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from pipeline.storage.outdir import delivered_mode

TMP_MARK = ".tmp-"


class Store(Protocol):
    """Key/value storage of files. Keys are '/'-separated relative paths (cache/clip/<key>.mp4)."""

    verify: bool  # hash every cached output on a cache hit, not only check its size
    repairs: list[Any]  # pipeline.storage.integrity.Repair: damaged entries moved (or copied) to quarantine/ this run

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def put_file(self, key: str, src: Path) -> None: ...

    def materialize(self, key: str, workdir: Path) -> Path:
        """A local path holding the object's bytes (the file itself for a local store)."""
        ...

    def copy(self, src_key: str, dst_key: str) -> None: ...

    def copy_from_uri(self, uri: str, dst_key: str) -> None:
        """Copy an s3:// object (an input asset) into the store."""
        ...

    def location(self, key: str) -> str:
        """Where a person finds the object: a path or an s3:// address."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a folder-like prefix ending in '/'), sorted."""
        ...


class LocalStore:
    """A folder. Writes go to a temporary sibling and are renamed into place, so a crash leaves no half file."""

    def __init__(self, root: Path, *, lease: Any = None, verify: bool = False) -> None:
        self.root = Path(root)
        # the lock (pipeline.storage.outdir.WorkLease) that marks this writer's temp files as alive; made on the
        # first write when the runner does not hand one over
        self._lease = lease
        self._lease_lock = threading.Lock()
        self.verify = verify  # hash every cached output on a cache hit, not only small ones
        self.repairs: list[Any] = []  # pipeline.storage.integrity.Repair: damaged entries moved to quarantine/

    def _owner(self) -> str:
        with self._lease_lock:
            if self._lease is None:
                from pipeline.storage.outdir import acquire_lease

                self._lease = acquire_lease(self.root)
            return str(self._lease.token)

    def path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"unsafe store key {key!r}")
        return self.root / key

    def exists(self, key: str) -> bool:
        p = self.path(key)
        return p.is_file() and p.stat().st_size > 0

    def size(self, key: str) -> int | None:
        p = self.path(key)
        return p.stat().st_size if p.is_file() else None

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._atomic(key) as tmp:
            tmp.write_bytes(data)

    def put_file(self, key: str, src: Path) -> None:
        with self._atomic(key) as tmp:
            shutil.copyfile(src, tmp)

    def materialize(self, key: str, workdir: Path) -> Path:
        p = self.path(key)
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing from the store")
        return p

    def copy(self, src_key: str, dst_key: str) -> None:
        src, dst = self.path(src_key), self.path(dst_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with self._atomic(dst_key) as tmp:
            try:  # a hard link costs no space; outputs in cache/ are never modified in place
                tmp.unlink(missing_ok=True)
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)

    def copy_from_uri(self, uri: str, dst_key: str) -> None:
        import boto3

        bucket, key = parse_s3_uri(uri)
        with self._atomic(dst_key) as tmp:
            boto3.client("s3").download_file(bucket, key, str(tmp))

    def location(self, key: str) -> str:
        return str(self.path(key))

    def list_keys(self, prefix: str) -> list[str]:
        base = self.path(prefix.rstrip("/")) if prefix.rstrip("/") else self.root
        return sorted(str(p.relative_to(self.root)).replace(os.sep, "/") for p in base.rglob("*")
                      if p.is_file() and TMP_MARK not in p.name)

    @contextlib.contextmanager
    def _atomic(self, key: str) -> Iterator[Path]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}{TMP_MARK}{self._owner()}-", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            # content-addressed outputs never change in place; the run folders hard-link them, so a
            # read-only mode keeps an edit of a delivered file from silently changing the cache. Either
            # way the umask applies, as for any file a program creates (mkstemp's 0600 would not).
            if tmp.stat().st_nlink == 1:  # a hard link into cache/ (copy) keeps the entry's mode
                os.chmod(tmp, delivered_mode(0o444 if key.startswith("cache/") else 0o666))
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # rename(2) does nothing when both names are hard links to one file (another writer published this very
        # link first: store.copy of one cache entry by two runs); the temp name is then still there
        tmp.unlink(missing_ok=True)

    def sweep_temp(self) -> int:
        """Remove temporary files left by writers that are gone (their lock is free), in the store's own
        folders only. Returns how many."""
        from pipeline.storage.outdir import lease_alive

        removed = 0
        for folder in (self.root / "cache", self.root / "runs"):
            if not folder.is_dir():
                continue
            for p in folder.rglob(f".*{TMP_MARK}*"):
                token = p.name.split(TMP_MARK, 1)[1].split("-", 1)[0]
                if not p.is_file() or lease_alive(self.root, token):
                    continue
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed += 1
        return removed


class S3Store:
    """An S3 bucket (optionally under a prefix). Each object is one PutObject, so a reader never sees half."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client
        self._lock = threading.Lock()
        self.verify = False  # hash every cached output on a cache hit (reads it), not only check its size
        self.repairs: list[Any] = []  # pipeline.storage.integrity.Repair: damaged entries copied to quarantine/

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                self._client = boto3.client("s3")
            return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def exists(self, key: str) -> bool:
        return bool(self.size(key))

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head.get("ContentLength", 0))

    def read_bytes(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        return body

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, src: Path) -> None:
        self.client.upload_file(str(src), self.bucket, self._key(key))

    def materialize(self, key: str, workdir: Path) -> Path:
        dest = Path(workdir) / key.replace("/", "__")
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + TMP_MARK + "dl")
            self.client.download_file(self.bucket, self._key(key), str(tmp))
            os.replace(tmp, dest)
        return dest

    def copy(self, src_key: str, dst_key: str) -> None:
        self.client.copy_object(Bucket=self.bucket, Key=self._key(dst_key),
                                CopySource={"Bucket": self.bucket, "Key": self._key(src_key)})

    def copy_from_uri(self, uri: str, dst_key: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self.client.copy_object(Bucket=self.bucket, Key=self._key(dst_key), CopySource={"Bucket": bucket, "Key": key})

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list_keys(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys += [o["Key"][len(full) - len(prefix):] for o in page.get("Contents", [])]
        return sorted(keys)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// address: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def s3_etag(client: Any, uri: str) -> str:
    """The ETag (without quotes) of an s3:// object: what an asset's cache keys are made from."""
    bucket, key = parse_s3_uri(uri)
    return str(client.head_object(Bucket=bucket, Key=key).get("ETag", "")).strip('"')


def current_etags(uris: Mapping[str, str], *, client: Any = None) -> dict[str, str]:
    """The current version (ETag) of each s3:// asset by id: outputs are keyed by it, so a changed object is
    re-made. The S3 client is made only when there is an s3:// asset."""
    from pipeline.errors import BackendUnavailable

    if not uris:
        return {}
    if client is None:
        import boto3

        client = boto3.client("s3")
    etags = {}
    for aid, uri in uris.items():
        try:
            etags[aid] = s3_etag(client, uri)
        except Exception as exc:
            raise BackendUnavailable(f"asset {aid!r}: cannot read {uri}: {exc}") from exc
    return etags
