"""container/clip_writer.py: uint8 on the device matches the float32 host path, the background writer gives
byte-identical files to the synchronous one, raw frame dumps, encode failures, and eval mode everywhere."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny_cogvideo as tiny
import torch

gen = tiny.load_generate()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny.save_tiny_models(tmp_path_factory.mktemp("models"))


def run(models: Path, out: Path, *, background: bool, dump: bool = True):
    jobs = out.parent / f"{out.name}.jsonl"
    jobs.write_text("".join(json.dumps(tiny.job(k, seed=s)) + "\n" for k, s in (("c1", 1), ("c2", 2), ("c3", 3))))
    return gen.run_batch(jobs, models, out, background_write=background, dump_raw_frames=dump, log=lambda _: None)


def host_uint8(frames: np.ndarray) -> np.ndarray:
    """The float32 numpy conversion generate.py used before frames stayed on the device."""
    return (np.clip(np.asarray(frames, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_uint8_on_the_device_equals_the_float32_host_path(dtype):
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(5, 3, 8, 12, generator=g) * 1.4 - 0.2).to(dtype)  # values outside [0, 1] too
    frames[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0])  # rounding boundaries
    expected = host_uint8(frames.float().permute(0, 2, 3, 1).numpy())
    got = gen.frames_to_uint8(frames)
    assert got.dtype == np.uint8 and got.shape == (5, 8, 12, 3)
    np.testing.assert_array_equal(got, expected)


def test_background_writer_gives_byte_identical_files(models, tmp_path):
    sync = run(models, tmp_path / "sync", background=False)
    background = run(models, tmp_path / "background", background=True)
    assert sync.succeeded == background.succeeded == 3
    for key in ("c1", "c2", "c3"):
        for suffix in (".mp4", ".frames.npy"):
            a = (tmp_path / "sync" / f"{key}{suffix}").read_bytes()
            b = (tmp_path / "background" / f"{key}{suffix}").read_bytes()
            assert a == b, (key, suffix)
        records = [json.loads((tmp_path / d / f"{key}.json").read_text()) for d in ("sync", "background")]
        assert [r["settings"]["background_write"] for r in records] == [False, True]
        assert records[0]["output"] == records[1]["output"]
        assert {"render_s", "encode_s", "clip_s"} <= set(records[1]["timings"])
    assert [r.key for r in background.results] == ["c1", "c2", "c3"]  # render order kept


def test_dumped_frames_are_the_encoded_frames(models, tmp_path):
    run(models, tmp_path / "out", background=True)
    record = json.loads((tmp_path / "out" / "c2.json").read_text())
    frames = np.load(tmp_path / "out" / "c2.frames.npy", allow_pickle=False)
    assert frames.dtype == np.uint8 and frames.shape == (tiny.FRAMES, tiny.HEIGHT, tiny.WIDTH, 3)
    assert hashlib.sha256(frames.tobytes()).hexdigest() == record["output"]["frames_sha256"]
    assert record["output"]["raw_frames"] == "c2.frames.npy"
    assert not [p for p in (tmp_path / "out").iterdir() if "partial" in p.name]


def test_no_frame_dump_unless_asked(models, tmp_path):
    run(models, tmp_path / "out", background=True, dump=False)
    assert not list((tmp_path / "out").glob("*.npy"))
    assert json.loads((tmp_path / "out" / "c1.json").read_text())["output"]["raw_frames"] is None


def test_an_encode_failure_in_the_background_fails_that_clip_only(models, tmp_path, monkeypatch):
    real = gen.write_mp4

    def broken_for_c2(frames, path, *, fps):
        if path.stem == "c2":
            raise OSError("disk full (simulated)")
        real(frames, path, fps=fps)

    monkeypatch.setattr(gen, "write_mp4", broken_for_c2)
    result = run(models, tmp_path / "out", background=True, dump=False)
    assert {r.key: r.ok for r in result.results} == {"c1": True, "c2": False, "c3": True}
    failed = json.loads((tmp_path / "out" / "c2.json").read_text())
    assert (failed["status"], failed["stage"], failed["error"]) == ("failed", "encode", "disk full (simulated)")
    assert not (tmp_path / "out" / "c2.mp4").exists()


def test_every_module_is_in_eval_mode(models):
    """Modules built in train mode (as nn.Module defaults to) run without dropout after setup."""
    from diffusers import CogVideoXPipeline

    components = tiny.tiny_components(i2v=False)
    for component in components.values():
        if isinstance(component, torch.nn.Module):
            component.train()
    pipe = CogVideoXPipeline(**components)
    job = gen.parse_job(tiny.job("a"), source="j:1", base_dir=Path("."))
    gen.setup_pipeline(pipe, folder="tiny", settings=gen.MODEL_SETTINGS["cogvideox-5b"], i2v=False, device="cpu",
                       dtype="float32", jobs=[job], memory_mode=None, speed=gen.SpeedOptions(),
                       identity={}, log=lambda _: None)
    training = [name for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)
                for _, m in c.named_modules() if m.training]
    assert training == []


def test_benchmark_builds_its_components_in_eval_mode():
    sys.path.insert(0, str(tiny.ROOT / "benchmarks"))
    try:
        import gpu_clip
    finally:
        sys.path.remove(str(tiny.ROOT / "benchmarks"))
    components = gpu_clip.build_components(tiny=True, device="cpu", dtype=torch.float32)
    assert not components["text_encoder"].training  # T5's dropout was active before
    assert not any(m.training for name in ("text_encoder", "vae", "transformer") for m in components[name].modules())


def test_pending_writes_do_not_keep_a_released_pipeline_alive(models, tmp_path, monkeypatch):
    """Step 5 releases each folder's pipeline before the next loads, while its clips may still be encoding."""
    import gc
    import weakref

    real_load, earlier, alive_at_next_load = gen.load_pipeline, [], []

    def load_and_watch(*args, **kwargs):
        gc.collect()
        alive_at_next_load.extend(ref() is not None for ref in earlier)
        loaded = real_load(*args, **kwargs)
        earlier.append(weakref.ref(loaded.pipe))
        return loaded

    monkeypatch.setattr(gen, "load_pipeline", load_and_watch)
    tiny.start_image(tmp_path / "start.png")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(tiny.job("t")) + "\n" + json.dumps(tiny.job("i", image="start.png")) + "\n")
    result = gen.run_batch(jobs, models, tmp_path / "out", background_write=True, log=lambda _: None)
    assert result.succeeded == 2 and len(earlier) == 2
    assert alive_at_next_load == [False]
