"""Signing at publication: a cached (unsigned) output gets its Content Credentials on its way to runs/..., so the
cache stays unsigned and a new key re-signs without re-making anything."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.credentials.claims import FileClaim, file_claims
from pipeline.credentials.keys import SigningKey, signing_key
from pipeline.errors import SigningFailed
from pipeline.plan.build import Plan
from pipeline.storage.integrity import CHECK_FIELD
from pipeline.storage.store import LocalStore, Store

# c2pa's settings for signing: no thumbnail (a poster or the file itself is the picture; a PNG thumbnail
# costs more than the signature) and no network (no timestamp authority, no remote manifests).
SIGN_SETTINGS: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}


def sign_file(src: Path, dst: Path, definition: dict[str, Any], key: SigningKey, *, mime: str) -> None:
    """Sign `src` into `dst`. The library writes its output before it checks it, so it writes to a temporary
    name beside `dst` that is renamed only on success (reference/toolchain.md)."""
    import c2pa

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.signing-", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        signer = _signer(c2pa, key)
        try:
            with c2pa.Context.from_dict(SIGN_SETTINGS) as context, c2pa.Builder(definition, context=context) as builder, \
                    open(src, "rb") as source, open(tmp, "w+b") as dest:
                builder.sign(signer, mime, source, dest)
        finally:
            signer.close()
        os.replace(tmp, dst)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, SigningFailed):
            raise
        raise SigningFailed(f"{type(exc).__name__}: {exc}") from exc


def _signer(c2pa: Any, key: SigningKey) -> Any:
    """A new Signer per file: the library's signers are not shared between threads."""
    alg = c2pa.C2paSigningAlg.ES256
    if key.sign is not None:
        return c2pa.Signer.from_callback(key.sign, alg, key.chain_pem.decode(), None)
    assert key.key_pem is not None
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, key.chain_pem, key.key_pem, None))


@dataclass
class Publisher:
    """Publishes a run's outputs: each file with a claim is signed on the way, the rest copied as before."""

    store: Store
    key: SigningKey | None  # None: `credentials: off`
    claims: dict[str, FileClaim]
    campaign: str
    run_id: str
    include_prompts: bool
    workdir: Path
    key_error: str | None = None  # the key could not be had: every file with a claim fails with this
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, src_key: str, rel: str, dst_key: str) -> dict[str, str] | None:
        """Copy or sign one file; a signing failure is an error of its item (the file is not published)."""
        claim = self.claims.get(rel)
        if claim is not None and self.key_error:
            self._state(rel, {"state": "failed", "reason": self.key_error})
            return {"job": claim.job, "error": "SigningFailed", "message": f"{rel}: not delivered: {self.key_error}"}
        if claim is None or self.key is None:
            self.store.copy(src_key, dst_key)
            if claim is not None:
                self._state(rel, {"state": "unsigned", "reason": "credentials: off"})
            return None
        try:
            with tempfile.TemporaryDirectory(dir=self.workdir, prefix="sign-") as tmp:
                src = self.store.materialize(src_key, Path(tmp))
                signed = Path(tmp) / f"signed{Path(rel).suffix}"
                definition = claim.definition(campaign=self.campaign, run_id=self.run_id,
                                              include_prompts=self.include_prompts, signed_at=_now())
                sign_file(src, signed, definition, self.key, mime=claim.mime)
                self.store.put_file(dst_key, signed)  # atomic: a temp name renamed, or one PutObject
        except SigningFailed as exc:
            self._state(rel, {"state": "failed", "reason": str(exc)})
            return {"job": claim.job, "error": "SigningFailed", "message": f"{rel}: not delivered: {exc}"}
        self._state(rel, {"state": "signed", "digital_source_type": claim.source_type})
        return None

    def _state(self, rel: str, state: dict[str, Any]) -> None:
        with self._lock:
            self.states[rel] = state

    def finish(self, report: dict[str, Any]) -> dict[str, Any]:
        """Take the files that were not delivered out of the report's records (their paths become None), mark a
        succeeded run partial when any was, and return the report's `credentials` section."""
        failed = {rel for rel, st in self.states.items() if st["state"] == "failed"}
        if failed:
            records: list[dict[str, Any]] = [*report.get("images", []), *report.get("videos", [])]
            for r in list(records):
                records += [*(r.get("steps") or []), *(r.get("formats") or []), *(r.get("clips") or [])]
            for r in records:
                for k in ("path", "poster"):
                    if r.get(k) in failed:
                        r[k] = None
            if report.get("status") == "succeeded":
                report["status"] = "partial"
        return self.section()

    def section(self) -> dict[str, Any]:
        """The report's `credentials`: the signer and each delivered file's state."""
        return {"enabled": self.key is not None or self.key_error is not None, "include_prompts": self.include_prompts,
                "signer": self.key.describe() if self.key else None,
                "files": dict(sorted(self.states.items()))}


def cache_digest(store: Store) -> Callable[[str], str | None]:
    """sha256 of a cached output: the one its provenance records (pipeline.storage.integrity), else the file's
    own for a local store, else None (an S3 object is not downloaded just to name it)."""

    def digest(key: str) -> str | None:
        prov = key.rsplit(".", 1)[0] + ".json"
        with contextlib.suppress(Exception):
            if store.exists(prov):
                record = json.loads(store.read_bytes(prov)).get(CHECK_FIELD) or {}
                # a poster shares its video's provenance: the record names this file only if the sizes agree
                if isinstance(record.get("sha256"), str) and record.get("size") == store.size(key):
                    return str(record["sha256"])
        if isinstance(store, LocalStore) and store.path(key).is_file():
            h = hashlib.sha256()
            with open(store.path(key), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            return h.hexdigest()
        return None

    return digest


def open_publisher(plan: Plan, info: Mapping[str, Mapping[str, Any]], store: Store, *, report: Mapping[str, Any],
                   run_id: str, key: SigningKey | None = None, workdir: Path | None = None) -> Publisher:
    """The run's publisher. With credentials on and no `key` given, the key comes from the environment
    (keys.signing_key: CAMPAIGN_SIGN_CERT/KEY, the stack's KMS key, else the development chain)."""
    spec = plan.credentials
    claims = file_claims(plan, report, info, cache_digest(store))
    error = None
    if spec.enabled and key is None:
        try:
            key = signing_key()
        except Exception as exc:  # noqa: BLE001 - a key that cannot be had fails each file, never the report
            error = f"no signing key: {type(exc).__name__}: {exc}"
    return Publisher(store=store, key=key if spec.enabled else None, claims=claims, campaign=plan.campaign,
                     run_id=run_id, include_prompts=spec.include_prompts, key_error=error if spec.enabled else None,
                     workdir=workdir or Path(tempfile.gettempdir()))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
