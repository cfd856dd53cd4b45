"""Content keys: every job's output is named by a hash of everything that decides it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

KEY_VERSION = "1"  # bump to invalidate every cache entry when the key recipe itself changes
KEY_CHARS = 32


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)


def content_key(kind: str, *, params: Any, inputs: list[str] | tuple[str, ...] = (), backend: str) -> str:
    """hash(kind, parameters, input keys, backend + model version)."""
    doc = {"v": KEY_VERSION, "kind": kind, "params": params, "inputs": list(inputs), "backend": backend}
    return hashlib.sha256(canonical(doc).encode()).hexdigest()[:KEY_CHARS]


_file_memo: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, memoised on (path, size, mtime) so re-planning does not re-read assets."""
    st = path.stat()
    memo_key = (str(path), st.st_size, st.st_mtime_ns)
    found = _file_memo.get(memo_key)
    if found is not None:
        return found
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()[:KEY_CHARS]
    _file_memo[memo_key] = digest
    return digest
