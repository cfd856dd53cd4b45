"""Cache integrity: each output's size and sha256 sit in its provenance; a cache hit is checked, a damaged entry
is moved to quarantine/ (never deleted) so its job is made again, and `campaign cache verify` checks them all.

The same checks run on the local store and on S3: there a half-finished copy cannot happen (one PutObject),
but a provenance or output edited or replaced by hand, or an object of a failed run, can be wrong. On S3 the
output's size is checked on every hit (a HEAD) and its hash when asked (`--verify`: a read of the object), and
a damaged entry is copied to quarantine/ (S3 has no rename) before its job overwrites it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import AssetChanged, OutputFolderRefused
from pipeline.plan.keys import KEY_CHARS
from pipeline.storage.outdir import MARKER, owns
from pipeline.storage.store import LocalStore, Store

# Outputs up to this size are hashed on every cache hit (prompts, images, most preview clips: a few ms);
# larger ones have their size checked, and their hash with `campaign run --verify` or `campaign cache verify`.
HASH_ON_HIT_MAX_BYTES = 8 * 1024 * 1024
_ENTRY_NAME = re.compile(rf"[0-9a-f]{{{KEY_CHARS}}}\.json")  # cache/<kind>/<content key>.json (pipeline.plan.keys)
QUARANTINE_DIR = "quarantine"
CHECK_FIELD = "output_check"  # the provenance field holding {"size", "sha256"} of the output
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    """What an output's bytes must be to count as the output its provenance describes."""

    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}


def fingerprint_bytes(data: bytes) -> Fingerprint:
    return Fingerprint(len(data), hashlib.sha256(data).hexdigest())


def fingerprint_file(path: Path) -> Fingerprint:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return Fingerprint(size, h.hexdigest())


def with_fingerprint(prov: dict[str, Any], fp: Fingerprint) -> dict[str, Any]:
    return {**prov, CHECK_FIELD: fp.to_dict()}


@dataclass(frozen=True)
class EntryCheck:
    """The state of one cache entry (an output and its provenance)."""

    done: bool  # both present and they check
    problem: str | None = None  # why a present entry is damaged; None when fine or simply absent
    provenance: dict[str, Any] | None = None
    verified: str = "none"  # none | size | sha256 | legacy (written before fingerprints were recorded)


def check_entry(store: Store, *, provenance_key: str, output_key: str, full: bool = False) -> EntryCheck:
    """Check one entry: provenance parses, output exists with the recorded size (and hash: when `full`, and on
    a local store for small files). An output without provenance is an unfinished write, not damage: its job
    simply runs. On a local store, anything but a regular file at either name (a folder, a link, a pipe) is
    damage: the job could never write its file there."""
    if isinstance(store, LocalStore):
        for key in (provenance_key, output_key):
            kind = _odd_kind(store.path(key))
            if kind:
                return EntryCheck(False, f"{key} is {kind}, not a file")
    if store.size(provenance_key) is None:
        return EntryCheck(False)
    try:
        doc = json.loads(store.read_bytes(provenance_key))
    except (ValueError, OSError) as exc:
        return EntryCheck(False, f"provenance {provenance_key} is unreadable ({type(exc).__name__})")
    if not isinstance(doc, dict):
        return EntryCheck(False, f"provenance {provenance_key} is not a JSON object")
    size = store.size(output_key)
    if size is None:
        return EntryCheck(False, f"output {output_key} is missing", doc)
    record = doc.get(CHECK_FIELD)
    if record is None:  # written by an older version: only emptiness can be judged
        if size == 0:
            return EntryCheck(False, f"output {output_key} is empty", doc)
        return EntryCheck(True, provenance=doc, verified="legacy")
    if not isinstance(record, dict) or not isinstance(record.get("size"), int) or not isinstance(record.get("sha256"), str):
        return EntryCheck(False, f"provenance {provenance_key} has a malformed {CHECK_FIELD}", doc)
    if size != record["size"]:
        return EntryCheck(False, f"output {output_key} is {size} bytes; its provenance records {record['size']}", doc)
    if full or (isinstance(store, LocalStore) and size <= HASH_ON_HIT_MAX_BYTES):
        actual = _sha256(store, output_key)
        if actual != record["sha256"]:
            return EntryCheck(False, f"output {output_key} has sha256 {actual[:12]}…; its provenance records "
                                     f"{record['sha256'][:12]}…", doc)
        return EntryCheck(True, provenance=doc, verified="sha256")
    return EntryCheck(True, provenance=doc, verified="size")


def _odd_kind(path: Path) -> str | None:
    """What occupies `path` when it is there and is not a regular file (symbolic links are not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    return ("a folder" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode)
            else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device")


def _sha256(store: Store, key: str) -> str:
    if isinstance(store, LocalStore):
        return fingerprint_file(store.path(key)).sha256
    return hashlib.sha256(store.read_bytes(key)).hexdigest()


@dataclass(frozen=True)
class Repair:
    """A damaged entry moved aside; its job is made again."""

    entry: str  # the provenance key
    problem: str
    moved_to: str  # folder under the store's root

    def to_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "problem": self.problem, "moved_to": self.moved_to}


_repairs_lock = threading.Lock()


def quarantine(store: Store, *, provenance_key: str, output_key: str, problem: str) -> Repair | None:
    """Move an entry's files (and any sibling with the same key, e.g. a video's poster) to quarantine/, so
    the entry is absent and is made again; nothing is deleted. Records the repair on the store."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = f"{QUARANTINE_DIR}/{stamp}-{secrets.token_hex(3)}"
    if not isinstance(store, LocalStore):  # S3: a copy; the job's new output then replaces the damaged one
        copied = [k for k in (provenance_key, output_key) if store.size(k) is not None]
        for key in copied:
            store.copy(key, f"{folder}/{key}")
        if not copied:
            return None
        store.write_bytes(f"{folder}/reason.txt", f"{provenance_key}: {problem}\n".encode())
        repair = Repair(provenance_key, problem, folder)
        with _repairs_lock:
            store.repairs.append(repair)
        return repair
    prov_path = store.path(provenance_key)
    stem = prov_path.name[: -len(".json")] if prov_path.name.endswith(".json") else prov_path.stem
    moved = False
    for src in sorted({prov_path, store.path(output_key), *prov_path.parent.glob(f"{stem}.*")}):
        # whatever occupies the name moves, a folder or a link too: left there, it would fail every later write
        if not os.path.lexists(src) or src.name.startswith("."):
            continue
        rel = src.relative_to(store.root)
        dest = store.root / folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dest)
            moved = True
        except FileNotFoundError:  # another thread moved it first
            continue
    if not moved:
        return None
    (store.root / folder / "reason.txt").write_text(f"{provenance_key}: {problem}\n", encoding="utf-8")
    repair = Repair(provenance_key, problem, folder)
    with _repairs_lock:
        store.repairs.append(repair)
    return repair



def check_and_repair(store: Store, *, provenance_key: str, output_key: str) -> EntryCheck:
    """The check a cache hit gets: a damaged entry is quarantined and reported as not done."""
    check = check_entry(store, provenance_key=provenance_key, output_key=output_key,
                        full=store.verify)
    if check.problem:
        quarantine(store, provenance_key=provenance_key, output_key=output_key, problem=check.problem)
    return check


# --- `campaign cache verify` ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    by_level: dict[str, int]
    repairs: tuple[Repair, ...]


def _entries(store: LocalStore) -> Iterator[tuple[str, str]]:
    """(provenance key, output key) of every entry in cache/; the output is the sibling with another suffix
    (a video's poster frame sits beside its mp4 under the same key; the mp4 is the output)."""
    cache = store.root / "cache"
    if not cache.is_dir():
        return
    for prov in sorted(cache.glob("*/*.json")):
        if not _ENTRY_NAME.fullmatch(prov.name):  # not a name the product writes: someone else's file
            continue
        stem, kind = prov.name[: -len(".json")], prov.parent.name
        outputs = sorted((p for p in prov.parent.glob(f"{stem}.*") if p != prov and not p.name.startswith(".")),
                         key=lambda p: (p.suffix != ".mp4", p.name))
        name = outputs[0].name if outputs else f"{stem}.missing"
        yield f"cache/{kind}/{prov.name}", f"cache/{kind}/{name}"


def verify_cache(store: LocalStore) -> VerifyReport:
    """Hash every entry in the cache; quarantine the damaged ones. Only an output folder the product made (its
    marker) is checked, and in it only files named as the product names its entries."""
    if not owns(store.root):
        raise OutputFolderRefused(f"--out {store.root}: not an output folder of `campaign run` (no {MARKER} file); "
                                  "nothing was checked or moved")
    checked, levels = 0, {"sha256": 0, "legacy": 0}
    before = len(store.repairs)
    for pk, ok in _entries(store):
        checked += 1
        check = check_entry(store, provenance_key=pk, output_key=ok, full=True)
        if check.problem:
            quarantine(store, provenance_key=pk, output_key=ok, problem=check.problem)
        elif check.done:
            levels[check.verified] = levels.get(check.verified, 0) + 1
    return VerifyReport(checked, levels, tuple(store.repairs[before:]))


# --- input assets --------------------------------------------------------------------------------------


def snapshot_asset(src: Path, *, digest: str, dest_dir: Path, what: str) -> Path:
    """A copy of `src` in `dest_dir`, made once per run, whose bytes hash to `digest` (the plan's key input).
    Every reader in the run uses the copy, so editing the asset mid-run changes nothing; an asset changed
    between planning and its first read fails its jobs instead of being stored under the old key."""
    dest = dest_dir / f"{digest}-{src.name}"
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest_dir)
    tmp = Path(name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        if not h.hexdigest().startswith(digest):
            raise AssetChanged(f"{what}: {src} changed after the run was planned (its outputs are keyed by the "
                               "bytes read at planning); run again to use the new file")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def put_asset_copy(store: Store, key: str, src: Path, *, digest: str, what: str) -> None:
    """Store a copy of an input asset (a report's step-0 source picture) only when its bytes, read once, are
    still those the run was planned with: a file edited mid-run never sits beside outputs made from the old one."""
    data = src.read_bytes()
    if not hashlib.sha256(data).hexdigest().startswith(digest):
        raise AssetChanged(f"{what}: {src} changed while the run went on (its outputs were made from the version "
                           "read at planning); run again to use the new file")
    store.write_bytes(key, data)
