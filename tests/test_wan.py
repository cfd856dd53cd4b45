"""Wan2.2 TI2V-5B beside CogVideoX: a tiny random-weight Wan pipeline (the real diffusers classes) through the
container's entrypoint and `--video diffusers`, the registry driving validation, preview, weights and cost."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
import tiny_cogvideo
import tiny_wan
from PIL import Image

from pipeline import catalog
from pipeline.backends.base import ClipRequest
from pipeline.backends.sagemaker_jobs import pipeline_folder, processing_job_request
from pipeline.backends.video_diffusers import DiffusersVideoBackend
from pipeline.backends.weights import model_repos, pull_model
from pipeline.cli import EXIT_INVALID, EXIT_OK
from pipeline.cli import main as campaign
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest_text

gen = tiny_cogvideo.load_generate()
WAN = tiny_wan.MODEL


def read_video(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return meta, np.stack([np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_wan.save_tiny_wan(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def entrypoint(models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One batch through generate.py's command line: text-to-video twice with one seed, once with another,
    and image-to-video from a start image; every WanPipeline load counted."""
    from diffusers import WanPipeline

    work = tmp_path_factory.mktemp("wan-batch")
    tiny_cogvideo.start_image(work / "start.png")
    jobs = [tiny_wan.job("t2v"), tiny_wan.job("t2v-again"), tiny_wan.job("t2v-seed8", seed=8),
            tiny_wan.job("i2v", image="start.png")]
    (work / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
    loads: list[str] = []
    original = WanPipeline.from_pretrained.__func__  # type: ignore[attr-defined]

    def counted(cls: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(f"{cls.__name__}:{Path(path).name}")
        return original(cls, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WanPipeline, "from_pretrained", classmethod(counted))
        code = gen.main(["--jobs", str(work / "jobs.jsonl"), "--models", str(models), "--out", str(work / "out"),
                         "--attention", "math"])
    out = work / "out"
    return {"code": code, "loads": loads, "out": out, "work": work,
            "prov": {j["key"]: json.loads((out / f"{j['key']}.json").read_text()) for j in jobs}}


def test_text_and_image_to_video_come_from_one_load_of_one_folder(entrypoint: dict[str, Any]) -> None:
    assert entrypoint["code"] == 0
    assert entrypoint["loads"] == [f"WanPipeline:{WAN}"]  # one folder, loaded once, for T2V and I2V alike
    batch = json.loads((entrypoint["out"] / "_batch.json").read_text())
    assert batch["succeeded"] == 4 and [load["folder"] for load in batch["loads"]] == [WAN]
    for key in ("t2v", "i2v"):
        meta, frames = read_video(entrypoint["out"] / f"{key}.mp4")
        assert frames.shape == (tiny_wan.FRAMES, tiny_wan.HEIGHT, tiny_wan.WIDTH, 3)
        assert meta["fps"] == tiny_wan.FPS
        prov = entrypoint["prov"][key]
        assert prov["model"]["family"] == "wan" and prov["model"]["class"] == "WanPipeline"
        assert prov["model"]["i2v"] is (key == "i2v")
        # the folder's own flow sampler is kept; the SDPA kernel choice reaches Wan's attention
        assert prov["settings"]["scheduler"] == "UniPCMultistepScheduler"
        assert prov["settings"]["attention_kernel_ran"] == "math"
        assert prov["prompt_tokens"]["max_tokens"] == 512
    assert entrypoint["prov"]["i2v"]["image"]["size"] == [tiny_wan.WIDTH, tiny_wan.HEIGHT]


def test_the_same_seed_gives_the_same_frames(entrypoint: dict[str, Any]) -> None:
    digest = {key: p["output"]["frames_sha256"] for key, p in entrypoint["prov"].items()}
    assert digest["t2v"] == digest["t2v-again"]
    assert digest["t2v"] != digest["t2v-seed8"]
    assert digest["t2v"] != digest["i2v"]  # the start image changes the clip
    _, a = read_video(entrypoint["out"] / "t2v.mp4")
    _, b = read_video(entrypoint["out"] / "t2v-again.mp4")
    assert np.array_equal(a, b)


@pytest.mark.parametrize(("flags", "why"), [
    (["--cache", "fastercache"], "--cache fastercache has no settings for Wan"),
    (["--cache", "pab", "--compile"], "--cache pab cannot run inside --compile regional on Wan"),
])
def test_speed_options_that_do_not_fit_wan_are_refused_by_name(models: Path, tmp_path: Path, flags: list[str],
                                                                why: str) -> None:
    """Refused before the folder loads: its jobs fail with the reason, the exit status says none was made."""
    (tmp_path / "jobs.jsonl").write_text(json.dumps(tiny_wan.job("w")) + "\n", encoding="utf-8")
    code = gen.main(["--jobs", str(tmp_path / "jobs.jsonl"), "--models", str(models), "--out", str(tmp_path / "out"),
                     *flags])
    assert code == 1
    record = json.loads((tmp_path / "out" / "w.json").read_text())
    assert why in record["error"] and record["stage"] == "load", record


@pytest.mark.parametrize("speed", [dict(compile="regional", compile_backend="aot_eager"), dict(cache="pab")],
                         ids=["compile", "pab"])
def test_regional_compile_and_pab_apply_to_wan(models: Path, tmp_path: Path, speed: dict[str, Any]) -> None:
    """Each on its own: PAB's timestep check is data-dependent, so PAB under a fullgraph compile fails on Wan
    (torch GuardOnDataDependentSymNode, seen on CPU with aot_eager) and the clip says so."""
    (tmp_path / "jobs.jsonl").write_text(json.dumps(tiny_wan.job("w")) + "\n", encoding="utf-8")
    batch = gen.run_batch(tmp_path / "jobs.jsonl", models, tmp_path / "out", speed=gen.SpeedOptions(**speed),
                          log=lambda _: None)
    assert batch.succeeded == 1, batch.results[0].error
    settings = batch.results[0].provenance["settings"]
    if "compile" in speed:
        assert settings["compile"]["blocks"] == "WanTransformerBlock"  # Wan's own _repeated_blocks
    else:
        assert settings["feature_cache"] == {"cache": "pab"}


def test_diffusers_backend_makes_wan_clips_t2v_and_i2v(models: Path, tmp_path: Path) -> None:
    image = tiny_cogvideo.start_image(tmp_path / "start.png")
    backend = DiffusersVideoBackend(models)
    common = dict(model=WAN, prompt="a bee on a flower", frames=tiny_wan.FRAMES, fps=tiny_wan.FPS,
                  width=tiny_wan.WIDTH, height=tiny_wan.HEIGHT, steps=2, guidance=5.0, seed=3)
    outcomes = backend.render([ClipRequest(key="a", **common), ClipRequest(key="b", image=str(image), **common)],
                              tmp_path / "clips")
    assert [o.error for o in outcomes] == [None, None]
    for outcome in outcomes:
        _, frames = read_video(outcome.path)
        assert frames.shape == (tiny_wan.FRAMES, tiny_wan.HEIGHT, tiny_wan.WIDTH, 3)
    assert outcomes[1].extra["provenance"]["model"]["i2v"] is True
    identity = backend.identity(WAN)
    assert identity.startswith(f"diffusers/{WAN}@") and "+i2v@" not in identity  # one folder serves both


# --- the registry drives validation, preview, weights and cost ---------------------------------------------


def manifest(shots: str, *, top: str = "") -> str:
    return f"campaign: wan-test\n{top}videos:\n  - id: v\n    shots:\n{shots}"


def problems(text: str, tmp_path: Path) -> list[str]:
    (tmp_path / "start.png").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(tmp_path / "start.png")
    try:
        load_manifest_text(text, file="m.yaml", base_dir=tmp_path)
    except ManifestInvalid as exc:
        return [str(p) for p in exc.problems]
    return []


def test_wan_shots_follow_wan_rules_with_located_errors(tmp_path: Path) -> None:
    text = manifest("      - prompt: a bee\n        model: wan2.2-ti2v-5b\n        frames: 49\n"
                    "      - prompt: a bee\n        model: wan2.2-ti2v-5b\n        frames: 48\n"
                    "      - prompt: a bee\n        model: wan2.2-ti2v-5b\n        image: start\n"
                    "      - prompt: a bee\n        model: cogvideox-2b\n        image: start\n",
                    top="assets:\n  start: start.png\n")
    found = problems(text, tmp_path)
    # 49 = 4*12+1 is fine for Wan (not for CogVideoX-1.5's 16N+1); 48 is not; Wan starts from an image itself
    assert any(p.startswith("m.yaml:12:17: error: videos[0].shots[1].frames: wan2.2-ti2v-5b cannot make 48 frames: "
                            "the rule is 4N+1 with 1<=N<=30") and "1280x704 at 24 fps" in p for p in found), found
    assert not any("shots[0]" in p or "shots[2]" in p for p in found), found
    assert any("shots[3].model: this shot starts from an image, but cogvideox-2b has no image-to-video variant"
               in p and "wan2.2-ti2v-5b" in p for p in found), found


def test_commercial_manifests_refuse_models_whose_licence_forbids_it(tmp_path: Path) -> None:
    found = problems(manifest("      - prompt: a bee\n", top="commercial: true\n"), tmp_path)
    assert found == [f"m.yaml:2:1: error: commercial: cogvideox-5b is licensed under CogVideoX-License, which does not "
                     f"allow commercial use; {catalog.COGVIDEOX_LICENCE.condition}; this manifest declares commercial: "
                     f"true (line 2): use one of {', '.join(catalog.commercial_models())}"], found
    named = problems(manifest("      - prompt: a bee\n        model: cogvideox1.5-5b\n"
                              "      - prompt: a bee\n        model: wan2.2-ti2v-5b\n", top="commercial: true\n"), tmp_path)
    assert len(named) == 1 and named[0].startswith("m.yaml:7:16: error: videos[0].shots[0].model: cogvideox1.5-5b "
                                                   "is licensed under CogVideoX-License"), named
    assert problems(manifest("      - prompt: a bee\n", top="commercial: true\ndefaults:\n  video:\n"
                                                           "    model: wan2.2-ti2v-5b\n"), tmp_path) == []


def test_a_wan_shot_plans_at_its_true_size_and_is_priced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(manifest("      - prompt: a bee on a flower\n        model: wan2.2-ti2v-5b\n"), encoding="utf-8")
    assert campaign(["plan", str(path), "--json", "--out", str(tmp_path / "out")]) == EXIT_OK
    plan = json.loads(capsys.readouterr().out)
    clip = next(j for j in plan["plan"]["jobs"] if j["kind"] == "clip")
    text = json.dumps(clip["spec"])
    for fact in ('"width": 1280', '"height": 704', '"fps": 24', '"frames": 121', '"guidance": 5.0'):
        assert fact in text, (fact, text)
    cost = plan["cost"]
    assert any(item["what"] == f"clip {WAN} on ml.g6e.2xlarge" and item["usd"] > 0 for item in cost["items"]), cost
    assert any(f"{WAN}'s GPU time is an estimate" in u for u in cost["unknowns"]), cost["unknowns"]


def test_a_budget_knows_the_price_of_a_wan_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(manifest("      - prompt: a bee on a flower\n        model: wan2.2-ti2v-5b\n",
                             top="budget:\n  max_usd: 0.05\n"), encoding="utf-8")
    assert campaign(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "error: budget.max_usd: estimated $" in err and "is over the budget of $0.05" in err, err


def test_a_mixed_campaign_assembles_cogvideox_and_wan_in_one_video(tmp_path: Path) -> None:
    """A CogVideoX shot (720x480 at 8 fps) and a Wan shot (1280x704 at 24 fps) in one video, through the preview
    backend (each clip at its model's true size and fps) and assembly: one video of both clips' length."""
    path = tmp_path / "m.yaml"
    path.write_text(manifest("      - prompt: a bee\n        model: cogvideox-5b\n        frames: 9\n"
                             "      - prompt: a flower\n        model: wan2.2-ti2v-5b\n        frames: 25\n"),
                    encoding="utf-8")
    out = tmp_path / "out"
    assert campaign(["run", str(path), "--out", str(out), "--quiet"]) == EXIT_OK
    report_path = next(out.rglob("report.json"))
    (video,) = json.loads(report_path.read_text())["videos"]
    assert video["status"] == "executed", video["status"]
    shape = {c["model"]: (c["width"], c["height"], c["frames"], c["fps"]) for c in video["clips"]}
    assert shape == {"cogvideox-5b": (720, 480, 9, 8), WAN: (1280, 704, 25, 24)}
    for clip in video["clips"]:  # each clip file really is at its model's size and frame count
        meta, frames = read_video(report_path.parent / clip["path"])
        assert frames.shape[:3] == (clip["frames"], clip["height"], clip["width"]) and meta["fps"] == clip["fps"]
    _, seconds = imageio_ffmpeg.count_frames_and_secs(str(report_path.parent / video["path"]))
    assert seconds == pytest.approx(9 / 8 + 25 / 24, abs=0.1)


def test_models_list_shows_every_model_with_its_licence(capsys: pytest.CaptureFixture[str]) -> None:
    assert campaign(["models", "list", "--json"]) == EXIT_OK
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(catalog.all_video_model_names())
    wan = rows[WAN]
    assert wan["licence"]["id"] == "Apache-2.0" and wan["licence"]["commercial"] is True
    assert (wan["width"], wan["height"], wan["fps"], wan["max_prompt_tokens"]) == (1280, 704, 24, 512)
    assert wan["weights"] == {WAN: "Wan-AI/Wan2.2-TI2V-5B-Diffusers"} and wan["image_to_video"] is True
    assert wan["price"]["usd_per_clip"] > 0 and wan["unverified"]
    assert rows["cogvideox-5b"]["licence"]["commercial"] is False
    assert campaign(["models", "list"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "licence   Apache-2.0: commercial use allowed" in text
    assert "licence   CogVideoX-License: NO commercial use" in text


def test_wan_weights_are_one_folder_pulled_once_and_mounted_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[str] = []

    def snapshot_download(*, repo_id: str, revision: Any, cache_dir: Any) -> str:
        calls.append(repo_id)
        root = tmp_path / "hub" / repo_id.replace("/", "--")
        root.mkdir(parents=True)
        (root / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
        return str(root)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert model_repos(WAN) == {WAN: "Wan-AI/Wan2.2-TI2V-5B-Diffusers"}
    assert set(pull_model(WAN, tmp_path / "models", log=lambda _: None)) == {WAN}
    assert calls == ["Wan-AI/Wan2.2-TI2V-5B-Diffusers"]
    i2v = ClipRequest(key="k", model=WAN, prompt="p", frames=5, fps=24, width=64, height=32, steps=2, guidance=5.0,
                      seed=1, image="x.png")
    assert pipeline_folder(i2v) == WAN  # an image-to-video clip needs no -i2v folder
    request = processing_job_request(job_name="j", role_arn="arn:aws:iam::123456789012:role/r", image_uri="i",
                                     jobs_s3_uri="s3://b/jobs/", models_s3_uri="s3://b/models",
                                     output_s3_uri="s3://b/out/", model_folders=[pipeline_folder(i2v)],
                                     instance_type="ml.g6e.2xlarge", volume_gb=100, max_runtime_s=3600, environment={})
    uris = [i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]]
    assert "s3://b/models/wan2.2-ti2v-5b/" in uris and not any("-i2v" in u for u in uris)


def test_the_gpu_benchmark_runs_wan_beside_cogvideox_in_its_tiny_form(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/gpu_clip.py with both models (tiny, CPU, in this process): each model's figures under its prefix,
    and the configuration the Wan family refuses skipped with the reason instead of crashing the run."""
    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        import gpu_clip
    finally:
        sys.path.remove(str(bench_dir))
    assert gpu_clip.main(["--tiny", "--clips", "1", "--steps", "2", "--compile-backend", "aot_eager",
                          "--models", f"cogvideox-5b,{WAN}", "--configs", "fastercache"]) == 0
    figures = dict(re.findall(r"^([\w.+-]+): (.*)$", capsys.readouterr().out, flags=re.M))
    for model in ("cogvideox-5b", WAN):
        assert float(figures[f"{model}.eager.seconds_per_clip"]) > 0
        assert figures[f"{model}.eager.attention_kernel"] == "flash-cpu"
    assert figures[f"{WAN}.clip"] == "64x32x5 frames, 2 steps"
    assert figures["cogvideox-5b.fastercache.cache"] == "fastercache"
    assert figures[f"{WAN}.fastercache.skipped"].startswith("--cache fastercache has no settings for Wan")
