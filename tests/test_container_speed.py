"""container/clip_speed.py through generate.py on tiny CogVideoX models (CPU): regional compile equals eager
and fails loudly past its recompile limit, the compile cache's key, FP8 wiring, the attention kernel that
really runs, and that each offered feature cache skips attention calls and starts every attempt empty."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import tiny_cogvideo as tiny
import torch
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
from torch.profiler import ProfilerActivity, profile

gen = tiny.load_generate()
speed = gen.clip_speed
SETTINGS = gen.MODEL_SETTINGS["cogvideox-5b"]
STEPS = 8  # enough steps for every cache's timestep window to open (trailing DPM: 999, 874, ..., 124)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny.save_tiny_models(tmp_path_factory.mktemp("models2"), num_layers=2)  # FirstBlockCache needs 2 blocks


def job(key: str = "a", **overrides):
    return gen.parse_job(tiny.job(key, steps=STEPS, **overrides), source="j:1", base_dir=Path("."))


def load(models: Path, **options):
    return gen.load_pipeline(models / "cogvideox-5b", settings=SETTINGS, i2v=False, jobs=[job()], memory_mode=None,
                             speed=gen.SpeedOptions(**options), log=lambda _: None)


def render(loaded, out: Path, the_job=None):
    out.mkdir(parents=True, exist_ok=True)
    future = gen.render_clip(loaded, the_job or job(), out, {}, log=lambda _: None,
                             writer=gen.ClipWriter(background=False))
    return future.result().provenance


class AttentionCalls:
    """Counts CogVideoXAttnProcessor2_0 calls (and the batch rows they attend) while calling through."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[int] = []
        original = CogVideoXAttnProcessor2_0.__call__

        def counting(processor, attn, hidden_states, *args, **kwargs):
            self.calls.append(hidden_states.shape[0])
            return original(processor, attn, hidden_states, *args, **kwargs)

        monkeypatch.setattr(CogVideoXAttnProcessor2_0, "__call__", counting)


def transformer_inputs(transformer, *, frames: int = 3, seed: int = 0):
    config = transformer.config
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(2, frames, config.in_channels, config.sample_height, config.sample_width, generator=g),
        encoder_hidden_states=torch.randn(2, config.max_text_seq_length, config.text_embed_dim, generator=g),
        timestep=torch.tensor([500, 500]), return_dict=False,
    )


# --- feature caches -------------------------------------------------------------------------------


@pytest.mark.parametrize("cache", ["fastercache", "pab", "firstblock"])
def test_each_feature_cache_skips_attention_calls(models, tmp_path, monkeypatch, cache):
    counter = AttentionCalls(monkeypatch)
    render(load(models), tmp_path)
    eager_calls, eager_rows = len(counter.calls), sum(counter.calls)
    assert eager_calls == STEPS * 2  # 2 blocks, one joint attention each, every step; CFG: 2 rows per call
    counter.calls.clear()
    # threshold 1.0: random tiny weights have no meaningful residual change, so make FirstBlockCache's skip happen
    loaded = load(models, cache=cache, cache_threshold=1.0)
    record = render(loaded, tmp_path)
    cached_calls, cached_rows = len(counter.calls), sum(counter.calls)
    print(f"{cache}: {cached_calls}/{eager_calls} attention calls, {cached_rows}/{eager_rows} batch rows")
    assert cached_calls < eager_calls and cached_rows < eager_rows
    assert record["settings"]["feature_cache"]["cache"] == cache
    assert record["settings"]["speed"]["cache"] == cache
    # the same clip again: the cache was reset in between, so the same calls and the same frames
    counter.calls.clear()
    again = render(loaded, tmp_path)
    assert len(counter.calls) == cached_calls
    assert again["output"]["frames_sha256"] == record["output"]["frames_sha256"]


def test_a_retry_after_out_of_memory_starts_from_an_empty_cache(models, tmp_path, monkeypatch):
    """The first attempt dies mid-denoise with the cache half filled; the retry must equal a clean run."""
    clean = render(load(models, cache="pab"), tmp_path / "clean")["output"]["frames_sha256"]

    def retried_sha(out: Path) -> str:
        real_load, real_callback = gen.load_pipeline, gen.progress_callback
        failed = []

        def load_as_if_on_a_gpu(*args, **kwargs):
            loaded = real_load(*args, **kwargs)
            loaded.memory_mode = "none"  # so the out-of-memory path has a safer mode to step to
            return loaded

        def callback_that_runs_out_once(the_job, log, on_step=None):
            inner = real_callback(the_job, log, on_step)

            def on_step_end(pipe, step, timestep, kwargs):
                if step == 2 and not failed:  # 3 steps done: an odd PAB iteration count
                    failed.append(step)
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated at step 2)")
                return inner(pipe, step, timestep, kwargs)

            return on_step_end

        with monkeypatch.context() as mp:
            mp.setattr(gen, "load_pipeline", load_as_if_on_a_gpu)
            mp.setattr(gen, "progress_callback", callback_that_runs_out_once)
            jobs = out.parent / f"{out.name}.jsonl"
            jobs.write_text(json.dumps(tiny.job("a", steps=STEPS)) + "\n")
            result = gen.run_batch(jobs, models, out, speed=gen.SpeedOptions(cache="pab"), log=lambda _: None)
        assert failed == [2] and result.succeeded == 1
        record = json.loads((out / "a.json").read_text())
        assert record["settings"]["memory_mode_changes"] == ["none -> vae-tiling after out of memory"]
        return record["output"]["frames_sha256"]

    assert retried_sha(tmp_path / "retry") == clean
    # Without the reset the retry would continue the dead attempt's PAB schedule: a different clip.
    monkeypatch.setattr(speed, "reset_cache", lambda pipe: None)
    assert retried_sha(tmp_path / "stale") != clean


def _fake_5b_pipe():
    def module(numel: int) -> torch.nn.Module:
        m = torch.nn.Module()
        m.weight = torch.nn.Parameter(torch.empty(numel, dtype=torch.bfloat16, device="meta"))
        return m

    return SimpleNamespace(components={"transformer": module(5_570_000_000), "text_encoder": module(4_760_000_000),
                                       "vae": module(220_000_000)})


def test_memory_mode_estimate_counts_the_feature_cache(monkeypatch):
    """An L40S (44.4 GiB free) keeps the untiled decode without a cache, but not beside FasterCache's 16 GB."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (int(44.4 * 2**30), int(48 * 2**30)))
    clip = job(width=720, height=480, frames=49)
    plain, _ = gen.choose_memory_mode(_fake_5b_pipe(), device="cuda", jobs=[clip], requested=None)
    cached, info = gen.choose_memory_mode(_fake_5b_pipe(), device="cuda", jobs=[clip], requested=None, cache="fastercache")
    assert (plain, cached) == ("none", "vae-tiling")
    assert info["cache"] == "fastercache" and info["estimate_gib"]["none"] > 44.4


# --- regional compile -----------------------------------------------------------------------------


def test_regional_compile_equals_eager_and_compiles_every_block(models):
    eager = load(models).pipe.transformer
    compiled = load(models, compile="regional", compile_backend="aot_eager").pipe.transformer
    blocks = compiled.transformer_blocks
    assert compiled._repeated_blocks == ["CogVideoXBlock"]
    assert all(block._compiled_call_impl is not None for block in blocks)  # nn.Module.compile, in place
    assert compiled._compiled_call_impl is None  # the blocks, not the whole model
    inputs = transformer_inputs(eager)
    with torch.no_grad():
        torch.testing.assert_close(compiled(**inputs)[0], eager(**inputs)[0], rtol=1e-5, atol=1e-5)


def test_inductor_compiled_block_equals_eager():
    """The production backend (inductor, C++ codegen on CPU here): one block, so one graph to build."""
    torch._dynamo.reset()
    eager = tiny.tiny_components(i2v=False)["transformer"].eval()
    compiled = tiny.tiny_components(i2v=False)["transformer"].eval()
    info = speed.compile_regional(compiled, gen.SpeedOptions(compile="regional"), lambda _: None)
    assert (info["backend"], info["fullgraph"], info["blocks"]) == ("inductor", True, "CogVideoXBlock")
    inputs = transformer_inputs(eager)
    try:
        with torch.no_grad():
            torch.testing.assert_close(compiled(**inputs)[0], eager(**inputs)[0], rtol=1e-4, atol=1e-5)
    finally:
        torch._dynamo.reset()


def test_a_recompile_past_the_limit_fails_loudly_and_is_logged(models):
    torch._dynamo.reset()
    lines: list[str] = []
    loaded = gen.load_pipeline(models / "cogvideox-5b", settings=SETTINGS, i2v=False, jobs=[job()], memory_mode=None,
                               speed=gen.SpeedOptions(compile="regional", compile_backend="aot_eager", recompile_limit=2),
                               log=lines.append)
    transformer = loaded.pipe.transformer
    try:
        with torch.no_grad():
            # one clip shape takes 2 graphs: block 0's input has other strides than the blocks after it
            transformer(**transformer_inputs(transformer, frames=3))
            transformer(**transformer_inputs(transformer, frames=3, seed=1))  # same shape: no recompile
            # torch 2.13 raises Unsupported("Dynamo recompile limit exceeded") under fail_on_recompile_limit_hit
            with pytest.raises((torch._dynamo.exc.FailOnRecompileLimitHit, torch._dynamo.exc.Unsupported),
                               match="recompile.limit"):
                transformer(**transformer_inputs(transformer, frames=2))  # a new clip length: a recompile
        assert any(line.startswith("torch recompiled:") for line in lines), lines
        assert gen.public_setup(loaded.setup)["compile"]["recompiles"]
    finally:
        torch._dynamo.config.recompile_limit = 8
        torch._dynamo.reset()


def test_clips_of_one_size_render_together(models, tmp_path):
    jobs = [tiny.job("small-1", steps=1), tiny.job("other-size", steps=1, width=64), tiny.job("small-2", steps=1)]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    lines: list[str] = []
    gen.run_batch(path, models, tmp_path / "out", log=lines.append)
    written = [line.split(":")[0] for line in lines if ": written in" in line]
    assert written == ["small-1", "small-2", "other-size"]


def test_compile_cache_is_used_only_for_the_same_torch_triton_and_gpu(tmp_path):
    lines: list[str] = []
    key = speed.compile_key("cpu")
    assert set(key) == {"torch", "triton", "gpu", "capability"} and key["torch"] == torch.__version__
    missing = speed.load_compile_cache(tmp_path / "none", key, lines.append)
    assert not missing["loaded"] and "no compile-cache.bin" in missing["reason"]

    torch._dynamo.reset()
    fn = torch.compile(lambda x: torch.sin(x) * 2 + 1)  # inductor: something to cache
    fn(torch.randn(8))
    saved = speed.save_compile_cache(tmp_path / "cache", key, lines.append)
    assert saved["saved"] and saved["bytes"] > 0
    other = {**key, "gpu": "NVIDIA H100 80GB HBM3", "capability": [9, 0]}
    ignored = speed.load_compile_cache(tmp_path / "cache", other, lines.append)
    assert not ignored["loaded"] and "made for" in ignored["reason"] and "H100" in ignored["reason"]
    assert any(line.startswith("compile cache ignored: made for") for line in lines)
    loaded = speed.load_compile_cache(tmp_path / "cache", key, lines.append)
    assert loaded["loaded"] and len(loaded["sha256"]) == 64
    torch._dynamo.reset()


# --- FP8 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requested", "device", "capability", "torchao", "expected"), [
    ("off", "cuda", (9, 0), "0.18.0", "off"),
    ("auto", "cuda", (9, 0), "0.18.0", "dynamic-per-row"),  # H100
    ("auto", "cuda", (8, 9), "0.18.0", "dynamic-per-row"),  # L40S
    ("auto", "cuda", (8, 6), "0.18.0", "off"),  # A10G: no FP8 matmul
    ("auto", "cpu", None, "0.18.0", "off"),
    ("auto", "cuda", (9, 0), None, "off"),  # torchao missing
    ("weight-only", "cpu", None, "0.18.0", "weight-only"),
])
def test_fp8_is_chosen_by_compute_capability(requested, device, capability, torchao, expected):
    mode, reason = speed.fp8_decision(requested, device=device, capability=capability, torchao_version=torchao)
    assert mode == expected, reason
    if expected == "off" and requested != "off":
        assert ("8.9" in reason) or ("torchao" in reason)


def test_fp8_weight_only_converts_every_linear_layer_on_cpu(models):
    pytest.importorskip("torchao")
    eager = load(models).pipe.transformer
    loaded = load(models, fp8="weight-only")
    transformer = loaded.pipe.transformer
    linears = [m for m in eager.modules() if isinstance(m, torch.nn.Linear)]
    assert loaded.setup["fp8"]["linear_layers"] == len(linears) > 0
    assert loaded.setup["fp8"]["mode"] == "weight-only"
    inputs = transformer_inputs(eager)
    with torch.no_grad():
        ref, out = eager(**inputs)[0], transformer(**inputs)[0]
    assert not torch.equal(ref, out)  # the weights really are float8 now
    assert (out - ref).norm() / ref.norm() < 0.1  # and still the same network


def test_fp8_auto_is_off_on_cpu_with_the_reason_recorded(models, tmp_path):
    record = render(load(models, fp8="auto"), tmp_path)
    assert record["settings"]["fp8"] == {"mode": "off", "linear_layers": 0,
                                         "reason": "no CUDA GPU: FP8 dynamic activation needs compute capability >= 8.9"}


# --- attention kernel -----------------------------------------------------------------------------


def sdpa_ops(transformer, kernel: str) -> set[str]:
    inputs = transformer_inputs(transformer)
    with torch.no_grad(), speed.attention_kernel(kernel), profile(activities=[ProfilerActivity.CPU]) as prof:
        transformer(**inputs)
    return {e.name for e in prof.events() if "scaled_dot_product" in e.name or "softmax" in e.name}


def test_the_chosen_attention_kernel_is_the_one_that_runs(models):
    """In CogVideoX's own processor, which set_attention_backend() would not reach."""
    transformer = load(models).pipe.transformer
    assert "aten::_scaled_dot_product_attention_math" in sdpa_ops(transformer, "math")
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" not in sdpa_ops(transformer, "math")
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in sdpa_ops(transformer, "auto")


@pytest.mark.parametrize(("kernel", "fused"), [("math", False), ("auto", True)])
def test_compiled_blocks_keep_the_kernel_they_were_compiled_under(models, kernel, fused):
    """Dynamo bakes the SDPA choice into the block's graph at the first call (no guard on it, measured here):
    generate.py wraps every call of a loaded pipeline, the first included, in the same kernel choice."""
    torch._dynamo.reset()
    transformer = load(models, compile="regional", compile_backend="aot_eager").pipe.transformer
    try:
        first = sdpa_ops(transformer, kernel)
        other = sdpa_ops(transformer, "auto" if kernel == "math" else "math")
        for ops in (first, other):
            assert ("aten::_scaled_dot_product_flash_attention_for_cpu" in ops) is fused, ops
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize(("kernel", "ran"), [("auto", "flash-cpu"), ("math", "math"), ("flash", "flash-cpu")])
def test_provenance_records_the_kernel_that_ran(models, tmp_path, kernel, ran):
    assert render(load(models, attention=kernel), tmp_path)["settings"]["attention_kernel_ran"] == ran


def test_speed_options_reject_unknown_names():
    with pytest.raises(ValueError, match=r"cache 'teacache' is not one of"):
        gen.SpeedOptions(cache="teacache")
    with pytest.raises(ValueError, match=r"attention 'sage' is not one of"):
        gen.SpeedOptions(attention="sage")
