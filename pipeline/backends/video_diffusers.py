"""The `diffusers` video backend: the self-hosted models (CogVideoX, Wan2.2) in this process, through the
container's own generation code.

For a workstation with a GPU and local weights. It writes the batch as a jobs file and calls
container/generate.py's `run_batch` in-process (imported by path: the container cannot import `pipeline`,
so the dependency points this way), which loads each pipeline folder once per `render` call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.backends.base import ClipOutcome, ClipRequest, report_step
from pipeline.catalog import VIDEO_MODELS
from pipeline.errors import BackendUnavailable
from pipeline.media.encode import H264_PROFILE, PROFILE_ID
from pipeline.plan.schedule import I2V_SUFFIX

GENERATE_PY = Path(__file__).resolve().parents[2] / "container" / "generate.py"
_MODULE_NAME = "campaign_container_generate"
_import_lock = threading.Lock()


def load_generate_module() -> ModuleType:
    """Import container/generate.py once (it pulls in torch and diffusers, so only when first needed)."""
    with _import_lock:
        module = sys.modules.get(_MODULE_NAME)
        if module is not None:
            return module
        try:
            spec = importlib.util.spec_from_file_location(_MODULE_NAME, GENERATE_PY)
            if spec is None or spec.loader is None:
                raise BackendUnavailable(f"cannot import {GENERATE_PY}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[_MODULE_NAME] = module
            spec.loader.exec_module(module)
        except ImportError as exc:
            sys.modules.pop(_MODULE_NAME, None)
            raise BackendUnavailable(
                f"the diffusers video backend needs torch, diffusers, transformers and accelerate ({exc})"
            ) from exc
        return module


def _precision() -> str:
    """What numbers the model will run in here: bf16 models fall back to fp16 on GPUs without bf16, and to
    fp32 on a CPU, and the clips differ accordingly."""
    import torch

    if not torch.cuda.is_available():
        return "cpu-fp32"
    return "cuda-bf16" if torch.cuda.is_bf16_supported() else "cuda-fp16"


class DiffusersVideoBackend:
    """Renders clips in-process from `models_dir/<model>` (and CogVideoX's `models_dir/<model>-i2v`) pipeline folders."""

    name = "diffusers"

    def __init__(self, models_dir: Path, *, compile_transformer: bool = False, memory_mode: str | None = None,
                 max_batch: int = 16) -> None:
        self.models_dir = Path(models_dir)
        self.max_batch = max_batch  # clips per render call: the runner fills batches so the model loads once
        self.compile_transformer = compile_transformer
        self.memory_mode = memory_mode
        self._lock = threading.Lock()  # one GPU: batches from a thread pool run one after another

    def identity(self, model: str) -> str:
        """`diffusers/<model>@<hash of the folder's configs>[+i2v@<hash>]`: changes when the weights' configs do."""
        generate = load_generate_module()
        parts = []
        entry = VIDEO_MODELS.get(model)
        folders = list(entry.folders()) if entry is not None else [model]
        for folder, label in ((f, "i2v" if f == model + I2V_SUFFIX else "") for f in folders):
            path = self.models_dir / folder
            if (path / "model_index.json").is_file():
                digest = hashlib.sha256(generate.folder_identity(path)["sha256"].encode())
                # the weights themselves: name, size and modification time of every weights file (hashing
                # gigabytes per run would cost more than it saves; replacing weights re-makes the clips)
                for weights in sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt")):
                    st = weights.stat()
                    digest.update(f"{weights.relative_to(path).as_posix()}:{st.st_size}:{st.st_mtime_ns}".encode())
                tag = digest.hexdigest()[:16]
                parts.append(f"{label}@{tag}" if label else f"@{tag}")
        if not parts:
            raise BackendUnavailable(f"no pipeline folder for model {model!r} in {self.models_dir} "
                                     f"(expected {self.models_dir / model}/model_index.json)")
        return f"diffusers/{model}" + "+".join(parts) + f"/{_precision()}"

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        if not requests:
            return []
        generate = load_generate_module()
        out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, tempfile.TemporaryDirectory(prefix="clips-") as tmp:
            jobs_path = Path(tmp) / "jobs.jsonl"
            lines = []
            for request in requests:
                job = request.to_job()
                if request.image is not None:
                    job["image"] = str(Path(request.image).resolve())
                lines.append(json.dumps(job))
            jobs_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            generate.quiet_libraries()
            batch = generate.run_batch(jobs_path, self.models_dir, out_dir, compile_transformer=self.compile_transformer,
                                       memory_mode=self.memory_mode,
                                       on_step=report_step)
        by_key = {result.key: result for result in batch.results if result.key is not None}
        return [self._outcome(request, by_key.get(request.key)) for request in requests]

    def _outcome(self, request: ClipRequest, result: Any) -> ClipOutcome:
        if result is None:  # cannot happen unless generate.py drops a job; say so rather than guess
            return ClipOutcome(key=request.key, path=None, backend=self.name, error="no result from generate.py",
                               error_type="JobFailed")
        provenance = result.provenance
        if not result.ok:
            return ClipOutcome(key=request.key, path=None, backend=self.name, error=result.error,
                               error_type=result.error_type, extra={"provenance": provenance})
        # the container's writer encodes in the product's profile while its copy matches ours (a test keeps it so):
        # saying so in the outcome lets assembly join the clip without probing it
        same = tuple(getattr(load_generate_module(), "H264_PROFILE", ())) == H264_PROFILE
        return ClipOutcome(key=request.key, path=result.mp4, backend=self.name,
                           timings=dict(provenance.get("timings", {})),
                           extra={"provenance": provenance, **({"encoding": PROFILE_ID} if same else {})})
