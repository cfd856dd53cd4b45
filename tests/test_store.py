"""The local store: atomic writes, hard-link copies, and the sweep of temp files and work left by a killed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.storage.outdir import WORK_DIR, sweep_work
from pipeline.storage.store import TMP_MARK, LocalStore


def test_write_read_copy(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write_bytes("cache/x/a.txt", b"hello")
    assert store.exists("cache/x/a.txt") and store.read_bytes("cache/x/a.txt") == b"hello"
    store.copy("cache/x/a.txt", "runs/c/r/a.txt")
    assert (tmp_path / "runs/c/r/a.txt").read_bytes() == b"hello"
    assert not list(tmp_path.rglob(f"*{TMP_MARK}*"))


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(RuntimeError), store._atomic("cache/x/b.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash in the middle")
    assert not (tmp_path / "cache/x/b.bin").exists()
    assert not list(tmp_path.rglob(f"*{TMP_MARK}*"))


def test_empty_file_does_not_count_as_present(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "e.json").write_bytes(b"")
    assert not LocalStore(tmp_path).exists("cache/e.json")


def test_unsafe_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalStore(tmp_path).write_bytes("../escape.txt", b"x")


# A process that holds a work lease on a folder until its standard input closes, and prints the lease's token.
HOLDER = ("import sys; from pathlib import Path; from pipeline.storage.outdir import acquire_lease; "
          "lease = acquire_lease(Path(sys.argv[1]), folder=True); print(lease.token, flush=True); sys.stdin.read()")


def _holder(root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_sweep_keeps_work_of_live_holders_and_removes_abandoned_work(tmp_path: Path) -> None:
    """Liveness is the OS lock, not a PID: a holder whose PID means nothing here (another container) keeps
    its files while it lives; once it is gone (its lock released by the kernel) its files are swept."""
    live, live_token = _holder(tmp_path)
    gone, gone_token = _holder(tmp_path)
    assert gone.stdin is not None
    gone.stdin.close()
    assert gone.wait(timeout=60) == 0  # exits without releasing: lock file and work folder stay behind
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / f".a.mp4{TMP_MARK}{gone_token}-xyz"
    stale.write_bytes(b"half")
    alive = tmp_path / "cache" / f".b.mp4{TMP_MARK}{live_token}-xyz"
    alive.write_bytes(b"in progress")
    pid_named = tmp_path / "cache" / f".c.mp4{TMP_MARK}{os.getpid()}-xyz"  # an old PID-named file: no lock holds it
    pid_named.write_bytes(b"old")
    try:
        assert LocalStore(tmp_path).sweep_temp() == 2
        assert not stale.exists() and not pid_named.exists() and alive.exists()
        assert sweep_work(tmp_path) == 1
        work = tmp_path / WORK_DIR
        assert (work / live_token).is_dir() and not (work / gone_token).exists()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        live.wait(timeout=60)


def test_temp_files_outside_the_stores_folders_are_never_touched(tmp_path: Path) -> None:
    mine = tmp_path / "notes" / f"draft.txt{TMP_MARK}1-keep"
    mine.parent.mkdir()
    mine.write_text("a user's file that happens to match the pattern")
    top = tmp_path / f".work-{2**22 + 7}-abc"  # looks like an old work folder of a dead PID
    top.mkdir()
    assert LocalStore(tmp_path).sweep_temp() == 0 and sweep_work(tmp_path) == 0
    assert mine.exists() and top.is_dir()


def test_cache_outputs_are_read_only_and_run_copies_share_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write_bytes("cache/video/k.mp4", b"video")
    store.copy("cache/video/k.mp4", "runs/c/r/videos/v.mp4")
    delivered = tmp_path / "runs/c/r/videos/v.mp4"
    assert not os.access(tmp_path / "cache/video/k.mp4", os.W_OK) or os.geteuid() == 0
    assert (delivered.stat().st_mode & 0o222) == 0  # editing it in place fails instead of changing the cache
    store.write_bytes("cache/video/k.mp4", b"video again")  # the store itself can still replace an entry
    assert store.read_bytes("cache/video/k.mp4") == b"video again"
