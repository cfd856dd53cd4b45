"""The tail of each clip (generate.py step 4c-4d) off the GPU's critical path: frames become uint8 on the
device, then one background thread encodes the mp4, dumps raw frames when asked and writes provenance
while the next clip denoises.

Part of the container image beside generate.py. One worker thread, so clips are written in render order
and at most one clip's frames wait in host memory beside the one being rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[F, C, H, W] floats in [0, 1] (any dtype, any device) -> [F, H, W, 3] uint8 on the host.

    The same arithmetic as the float32 numpy path (clip, x255, round half to even) so the bytes agree,
    but only the uint8 frames cross to the host: a quarter of the float32 copy.
    """
    as_uint8 = (frames.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return as_uint8.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def dump_frames(frames: np.ndarray, path: Path) -> None:
    """Raw uint8 frames before encoding, for the quality gate (benchmarks/clip_quality.py)."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as handle:
        np.save(handle, frames, allow_pickle=False)
    partial.replace(path)


class ClipWriter:
    """Runs each clip's write step in order, in the background (or inline when `background` is False)."""

    def __init__(self, *, background: bool) -> None:
        self.background = background
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-writer") if background else None
        self._pending: list[Future[Any]] = []

    def submit(self, write: Callable[[], Any]) -> Future[Any]:
        if self._pool is None:
            done: Future[Any] = Future()
            try:
                done.set_result(write())
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller through the future
                done.set_exception(exc)
            return done
        future = self._pool.submit(write)
        self._pending.append(future)
        return future

    def drain(self) -> None:
        """Wait for every submitted write (their results and errors stay in their futures)."""
        for future in self._pending:
            future.exception()
        self._pending.clear()

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
