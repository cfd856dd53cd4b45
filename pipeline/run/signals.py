"""How `campaign` meets signals and its own standard streams: SIGINT and SIGTERM stop a run in order however
many arrive, and output nobody reads any more never changes what a command does."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

JOB_THREAD_PREFIX = "job"  # pipeline.run.runner names its pool's threads so: those still running after a stop


class Stop:
    """SIGINT and SIGTERM (Ctrl-C; a timeout, container stop, CI cancel) stop a run the same way: the first raises
    KeyboardInterrupt, so the queue is cancelled and the report written; the exit code (130, 143) tells the two
    apart. Any more while that goes on are held, so no traceback and no half-written report; once the one-line
    message is out, one more ends the wait for jobs still in flight at once, with the same code."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.terminated: list[bool] = []  # [True] when the first was SIGTERM (what _dispatch reads)
        self.code: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        if len(self.signals) == 1:
            if signum == signal.SIGTERM:
                self.terminated.append(True)
            raise KeyboardInterrupt
        if self.code is not None:  # the message is out and the report written: nothing left worth waiting for
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os._exit(self.code)

    def finish(self, code: int) -> None:
        """Wait for the runner's jobs still in flight (a render cannot be stopped mid-call); a signal ends it."""
        self.code = code
        for thread in threading.enumerate():
            if thread.name.startswith(JOB_THREAD_PREFIX) and thread is not threading.current_thread():
                thread.join()


@contextlib.contextmanager
def stop_signals() -> Iterator[Stop]:
    """Handle SIGINT and SIGTERM as _Stop says while a command runs. SIGINT left ignored by whoever started us
    (`nohup`, a shell without job control) stays ignored. Only the main thread can set handlers."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, before in previous.items():
        if not (sig == signal.SIGINT and before == signal.SIG_IGN):
            signal.signal(sig, stop.handle)
    try:
        yield stop
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


class ReaderGone:
    """A standard stream whose reader may go away (`campaign run m.yaml 2>&1 | head -1`): a write or flush that
    fails points its descriptor at /dev/null and is dropped, so what a command does and the exit code it returns
    never depend on whether anyone still reads its output."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._drop()

    def _drop(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())  # what is still buffered goes there at exit, not to a closed pipe
            os.close(null)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def forgiving_output() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    wrapped = [ReaderGone(s) if s is not None else None for s in saved]
    sys.stdout, sys.stderr = wrapped
    try:
        yield
    finally:
        for w in wrapped:
            if w is not None:
                w.flush()
        sys.stdout, sys.stderr = saved
