"""The local store: atomic writes, hard-link copies, and the sweep of temp files left by a killed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store import TMP_MARK, LocalStore


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


def test_sweep_removes_temp_files_of_dead_processes_only(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / f".a.mp4{TMP_MARK}{dead_pid}-xyz"
    stale.write_bytes(b"half")
    live = tmp_path / "cache" / f".b.mp4{TMP_MARK}{os.getppid()}-xyz"
    live.write_bytes(b"in progress")
    assert LocalStore(tmp_path).sweep_temp() == 1
    assert not stale.exists() and live.exists()


def test_cache_outputs_are_read_only_and_run_copies_share_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write_bytes("cache/video/k.mp4", b"video")
    store.copy("cache/video/k.mp4", "runs/c/r/videos/v.mp4")
    delivered = tmp_path / "runs/c/r/videos/v.mp4"
    assert not os.access(tmp_path / "cache/video/k.mp4", os.W_OK) or os.geteuid() == 0
    assert (delivered.stat().st_mode & 0o222) == 0  # editing it in place fails instead of changing the cache
    store.write_bytes("cache/video/k.mp4", b"video again")  # the store itself can still replace an entry
    assert store.read_bytes("cache/video/k.mp4") == b"video again"
