"""The output folder: a marker file says the product owns it, and each run (or writer) holds an OS lock on a
file in `.campaign-work/`, so cleanup touches only abandoned work of the product itself.

The lock is flock(2): the kernel releases it when its process dies, whatever PID namespace or host the
process ran in, so a run in another container sharing the folder is never mistaken for a dead one. Over NFS,
Linux (since 2.6.12) emulates flock as a whole-file byte-range lock, which the server arbitrates between
hosts (flock(2), "NFS details"; https://git.tldp.org/LDP/man-pages/commit/50bfd0b3e2a7678939988ec15c37081a1cb42aab)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import OutputFolderRefused

MARKER = ".campaign-out"
WORK_DIR = ".campaign-work"
LOCK_SUFFIX = ".lock"
# What a folder without the marker may hold and still be taken as new: the lock folder a writer makes first.
# Folders merely named cache/ or runs/ may be anybody's (a home folder's cache/pip/): only the marker says ours.
PRODUCT_ENTRIES = frozenset({MARKER, WORK_DIR})
_MARKER_TEXT = ("This folder is written by `campaign run`. Its cache/ holds content-addressed outputs, runs/ the\n"
                "reports; `campaign` only ever removes its own temporary files and abandoned work in here.\n")


def check_out_name(out: Path) -> None:
    """Refuse an --out whose name the video tools cannot be given (ffmpeg's concat lists are line based and
    UTF-8): a newline or bytes that are not UTF-8."""
    text = str(out)
    if "\n" in text or "\r" in text:
        raise OutputFolderRefused(f"--out {text!r}: the folder name contains a line break; choose another name")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputFolderRefused(f"--out {text!r}: the folder name is not valid UTF-8; choose another name") from None


def prepare_out_dir(out: Path, *, force: bool = False) -> None:
    """Make `out` ours: create it, or accept it when it carries the marker or is empty; refuse any other
    folder (one holding cache/ and runs/ of its own too) unless `force`, and refuse a file."""
    check_out_name(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderRefused(f"--out {out}: this is a file, not a folder; choose a folder (it is created "
                                  "when missing)")
    if out.is_dir() and not (out / MARKER).is_file():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in PRODUCT_ENTRIES)
        if foreign and not force:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise OutputFolderRefused(
                f"--out {out}: the folder is not empty ({shown}) and was not made by `campaign run` (no {MARKER} "
                "file); choose a new or empty folder, or pass --force to write into it (nothing of yours is "
                "removed, the cache and runs are added beside it)")
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if not marker.is_file():
        marker.write_text(_MARKER_TEXT, encoding="utf-8")


def owns(out: Path) -> bool:
    return (out / MARKER).is_file()


@dataclass
class WorkLease:
    """A held lock file `<root>/.campaign-work/<token>.lock`, and the work folder beside it when asked for.
    Temporary files the holder writes carry its token, so a sweep keeps them while the lock is held."""

    root: Path
    token: str
    fd: int
    folder: Path | None = None
    released: bool = field(default=False)

    @property
    def lock_path(self) -> Path:
        return self.root / WORK_DIR / f"{self.token}{LOCK_SUFFIX}"

    def release(self) -> None:
        """Remove the work folder and the lock file, then let go of the lock (in that order, so a sweep
        never sees a lock file free while its folder is still in use)."""
        if self.released:
            return
        self.released = True
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(self.fd)


def acquire_lease(root: Path, *, folder: bool = False) -> WorkLease:
    """Hold a new lock in `root`'s work folder (and make a work folder for it when `folder`)."""
    work = root / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    while True:
        token = secrets.token_hex(6)
        path = work / f"{token}{LOCK_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # a sweep may have taken the lock between create and flock and unlinked the file: then ours is a
        # lock on a file nobody can find; start again under a new name
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    lease = WorkLease(root=root, token=token, fd=fd)
    if folder:
        lease.folder = work / token
        lease.folder.mkdir()
    return lease


def _try_lock(path: Path) -> int | None:
    """The fd of `path` locked by us when nobody holds it, else None."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live process, here or elsewhere
        os.close(fd)
        return None
    return fd


def lease_alive(root: Path, token: str) -> bool:
    """Whether the holder of `token` is still running (its lock is held)."""
    path = root / WORK_DIR / f"{token}{LOCK_SUFFIX}"
    if not path.is_file():
        return False
    fd = _try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def sweep_work(root: Path) -> int:
    """Remove the work folders and lock files of holders that are gone. Returns how many."""
    work = root / WORK_DIR
    if not work.is_dir():
        return 0
    removed = 0
    for lock in sorted(work.glob(f"*{LOCK_SUFFIX}")):
        fd = _try_lock(lock)
        if fd is None:
            continue
        try:
            shutil.rmtree(work / lock.name[: -len(LOCK_SUFFIX)], ignore_errors=True)
            with contextlib.suppress(OSError):
                lock.unlink()
            removed += 1
        finally:
            os.close(fd)
    for folder in sorted(p for p in work.iterdir() if p.is_dir()):
        # a lease makes its lock file before its folder, so a folder whose lock file is gone is abandoned
        if not (work / f"{folder.name}{LOCK_SUFFIX}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def delivered_mode(base: int) -> int:
    """`base` (0o666, or 0o444 for read-only cache entries) less the process umask, as open(2) would give.
    Temp files come from mkstemp, which always makes them 0600, so the mode is set before the rename."""
    return base & ~_umask()


def _umask() -> int:
    # /proc/self/status has the umask since Linux 4.7; reading it avoids os.umask's set-and-restore, which
    # would briefly change the mask for every other thread
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return _UMASK_AT_IMPORT


def _umask_at_import() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = _umask_at_import()
