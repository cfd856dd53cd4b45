"""Speed options for the video transformer (generate.py step 3): regional compile with a persistent
compile cache, FP8 linear layers, the attention kernel and a feature cache; each returns what provenance records.

Part of the container image beside generate.py (it cannot import `pipeline`). Every option is off or exact
by default; the lossy ones (fp8, the feature caches) are opt-in until the quality gate
(benchmarks/clip_quality.py) has measured them on a GPU (container/README.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

Log = Callable[[str], None]

COMPILE_MODES = ("off", "regional")
FP8_MODES = ("off", "auto", "weight-only")
ATTENTION_KERNELS = ("auto", "cudnn", "flash", "efficient", "math")
FEATURE_CACHES = ("none", "fastercache", "pab", "firstblock")

# Extra GPU memory a feature cache holds at the reference clip size (720x480x49), added to the memory-mode
# estimate and scaled by the clip's size like the activations. FasterCache: "+16 GB" on CogVideoX-5b in
# diffusers PR #10163 (reference/models-and-services.md §7, published). PAB caches the same attention outputs:
# assumed the same (unverified). FirstBlockCache keeps one residual of the hidden states per branch: an
# estimate (unverified), not a measurement.
CACHE_HEADROOM_GIB = {"none": 0.0, "fastercache": 16.0, "pab": 16.0, "firstblock": 1.0}

# The fused kernels in the order we prefer them; torch takes the first that supports the inputs
# (sdpa_kernel(..., set_priority=True), torch >= 2.6; PR pytorch/pytorch#147768 makes torch.compile honour it).
KERNEL_PRIORITY = {
    "auto": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
# The aten op each kernel shows up as in a profile (CPU "flash" is its own op).
KERNEL_OPS = {
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash-cpu",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_attention_math": "math",
}
FP8_MIN_CAPABILITY = (8, 9)  # Ada (L40S) and Hopper (H100): torchao's float8 matmuls need sm_89+


@dataclass(frozen=True)
class SpeedOptions:
    """What the command line (or a test) asks for; recorded in every clip's provenance as given."""

    compile: str = "off"
    compile_backend: str = "inductor"  # tests pass "aot_eager" (no C++ build); production keeps inductor
    compile_cache: Path | None = None  # a folder with compile-cache.bin + compile-cache.json (an input)
    recompile_limit: int = 8
    fp8: str = "off"
    attention: str = "auto"
    cache: str = "none"
    cache_threshold: float = 0.05  # FirstBlockCache's residual threshold (diffusers' default)

    def __post_init__(self) -> None:
        for name, allowed in (("compile", COMPILE_MODES), ("fp8", FP8_MODES), ("attention", ATTENTION_KERNELS),
                              ("cache", FEATURE_CACHES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of {allowed}")
        if self.recompile_limit < 1:
            raise ValueError(f"recompile_limit must be >= 1, got {self.recompile_limit}")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compile_cache"] = str(self.compile_cache) if self.compile_cache else None
        return out


# --- FP8 ----------------------------------------------------------------------------------------------


def fp8_decision(requested: str, *, device: str, capability: tuple[int, int] | None,
                 torchao_version: str | None) -> tuple[str, str]:
    """(mode that will run, why): dynamic per-row FP8 only where the hardware has FP8 matmuls."""
    if requested == "off":
        return "off", "not requested"
    if torchao_version is None:
        return "off", "torchao is not installed"
    if requested == "weight-only":
        return "weight-only", f"requested (torchao {torchao_version})"
    if device != "cuda" or capability is None:
        return "off", "no CUDA GPU: FP8 dynamic activation needs compute capability >= 8.9"
    if capability < FP8_MIN_CAPABILITY:
        return "off", f"compute capability {capability[0]}.{capability[1]} < 8.9 has no FP8 matmul"
    return "dynamic-per-row", f"compute capability {capability[0]}.{capability[1]} (torchao {torchao_version})"


def torchao_version() -> str | None:
    try:
        return metadata.version("torchao")
    except metadata.PackageNotFoundError:
        return None


def apply_fp8(transformer: torch.nn.Module, mode: str) -> int:
    """Quantize the transformer's linear layers in place; returns how many were converted."""
    if mode == "off":
        return 0
    from torchao.quantization import (  # imported only when asked: torchao is optional on CPU
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        PerRow,
        quantize_,
    )

    config: Any = (Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()) if mode == "dynamic-per-row"
                   else Float8WeightOnlyConfig())
    before = {name for name, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    quantize_(transformer, config)
    return sum(1 for name, m in transformer.named_modules()
               if name in before and type(m.weight).__name__ == "Float8Tensor")


# --- attention kernel ---------------------------------------------------------------------------------


@contextlib.contextmanager
def attention_kernel(name: str) -> Iterator[None]:
    """CogVideoXAttnProcessor2_0 calls F.scaled_dot_product_attention directly, so diffusers'
    set_attention_backend() does not reach it (reference §7); the global SDPA kernel choice does, and it also
    reaches Wan's processor, whose default ("native") attention backend calls the same function."""
    with sdpa_kernel(KERNEL_PRIORITY[name], set_priority=True):
        yield


def probe_attention_kernel(name: str, *, device: str, dtype: torch.dtype, batch: int, heads: int, tokens: int,
                           head_dim: int) -> str:
    """Which kernel SDPA really runs for the clip's attention shape under `name`: one call, profiled.

    The probe keeps the clip's token count, head size, dtype and device but one batch entry and one head
    (`batch` and `heads` are recorded, not allocated): a math-kernel probe at 48 heads x 17,776 tokens
    would allocate a 30 GB score matrix. Kernel eligibility is decided by head size, dtype and sequence length.
    """
    from torch.profiler import ProfilerActivity, profile

    del batch, heads
    q = torch.randn(1, 1, tokens, head_dim, device=device, dtype=dtype)
    with attention_kernel(name), profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    seen = {event.name for event in prof.events()}
    ran = [kernel for op, kernel in KERNEL_OPS.items() if op in seen]
    return ran[0] if ran else "unknown"


# --- feature cache ------------------------------------------------------------------------------------


def apply_cache(pipe: Any, name: str, *, threshold: float, config: Callable[..., Any]) -> dict[str, Any]:
    """Hook a feature cache into the transformer; `config` is the model family's cache_config (its settings)."""
    if name == "none":
        return {"cache": "none"}

    def current_timestep() -> Any:
        # CogVideoX's and Wan's pipelines set _current_timestep inside their denoising loop; the hooks read it per step.
        timestep = pipe.current_timestep
        return int(timestep) if timestep is not None else -1

    pipe.transformer.enable_cache(config(name, current_timestep=current_timestep, threshold=threshold))
    return {"cache": name, **({"threshold": threshold} if name == "firstblock" else {})}


def reset_cache(pipe: Any) -> None:
    """Clear cached activations: a clip (or its out-of-memory retry) never starts from another call's state."""
    transformer = pipe.transformer
    if getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()


# --- regional compile and its cache -------------------------------------------------------------------


def compile_key(device: str) -> dict[str, Any]:
    """What a compile cache is only valid for: torch, Triton and the GPU."""
    key: dict[str, Any] = {"torch": torch.__version__, "triton": None, "gpu": None, "capability": None}
    with contextlib.suppress(metadata.PackageNotFoundError):
        key["triton"] = metadata.version("triton")
    if device == "cuda":
        key["gpu"] = torch.cuda.get_device_name(0)
        key["capability"] = list(torch.cuda.get_device_capability(0))
    return key


def load_compile_cache(folder: Path | None, key: dict[str, Any], log: Log) -> dict[str, Any]:
    """Hand a saved compile cache to torch before compiling; ignore it, saying why, when it does not fit."""
    if folder is None:
        return {"loaded": False, "reason": "no compile cache given"}
    artifacts, meta = folder / "compile-cache.bin", folder / "compile-cache.json"
    if not artifacts.is_file() or not meta.is_file():
        reason = f"no compile-cache.bin/.json in {folder}"
    else:
        saved = json.loads(meta.read_text(encoding="utf-8")).get("key")
        if saved != key:
            reason = f"made for {saved}, this is {key}"
        else:
            torch.compiler.load_cache_artifacts(artifacts.read_bytes())
            log(f"compile cache loaded from {folder}")
            return {"loaded": True, "sha256": hashlib.sha256(artifacts.read_bytes()).hexdigest()}
    log(f"compile cache ignored: {reason}")
    return {"loaded": False, "reason": reason}


def save_compile_cache(folder: Path, key: dict[str, Any], log: Log) -> dict[str, Any]:
    """Write what this process compiled, for the next job (upload it beside the weights)."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return {"saved": False, "reason": "nothing was compiled"}
    data, _info = saved
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compile-cache.bin").write_bytes(data)
    (folder / "compile-cache.json").write_text(json.dumps({"key": key}, indent=2) + "\n", encoding="utf-8")
    log(f"compile cache saved to {folder} ({len(data)} bytes)")
    return {"saved": True, "bytes": len(data), "folder": str(folder)}


class RecompileLog(logging.Handler):
    """Collects torch's recompile messages (TORCH_LOGS=recompiles) so provenance and the log can show them."""

    def __init__(self, log: Log) -> None:
        super().__init__(level=logging.DEBUG)
        self.log = log
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        self.log(f"torch recompiled: {message.strip().splitlines()[-1] if message.strip() else message}")


def compile_regional(transformer: Any, options: SpeedOptions, log: Log) -> dict[str, Any]:
    """Compile each transformer block (fullgraph) instead of the whole model: identical blocks (42 in CogVideoX-5b,
    30 in Wan2.2 TI2V-5B) share one compiled graph, so the compile is paid about once per shape, not per block."""
    if options.compile == "off":
        return {"compile": "off"}
    # CogVideoX declares no _repeated_blocks, so diffusers' compile_repeated_blocks() would raise (reference §7);
    # Wan declares ["WanTransformerBlock"] itself.
    declared = getattr(transformer, "_repeated_blocks", None)
    block_class = declared[0] if declared else type(transformer.transformer_blocks[0]).__name__
    transformer._repeated_blocks = [block_class]
    # Past the limit dynamo would fall back to eager without a word: make it raise instead, and log recompiles.
    torch._dynamo.config.recompile_limit = options.recompile_limit
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    handler = RecompileLog(log)
    torch._logging.set_logs(recompiles=True)
    # torch/_dynamo/guards.py logs through getArtifactLogger(__name__, "recompiles"): "<module>.__recompiles".
    logger = logging.getLogger("torch._dynamo.guards.__recompiles")
    for old in [h for h in logger.handlers if isinstance(h, RecompileLog)]:
        logger.removeHandler(old)  # one handler per loaded pipeline, not one more per load
    logger.addHandler(handler)
    transformer.compile_repeated_blocks(fullgraph=True, backend=options.compile_backend)
    return {"compile": "regional", "blocks": block_class, "fullgraph": True, "backend": options.compile_backend,
            "recompile_limit": options.recompile_limit, "recompile_handler": handler}
