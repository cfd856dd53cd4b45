"""benchmarks/clip_quality.py on CPU: PSNR and SSIM on inputs with known answers, the LPIPS and CLIP-score code
paths with tiny random-weight networks built in code and loaded from a weights folder, and the gate end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import clip_quality as cq
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def frames(value: float | np.ndarray, shape=(3, 32, 48, 3)) -> np.ndarray:
    return np.broadcast_to(np.asarray(value), shape).astype(np.uint8).copy()


def test_psnr_on_known_inputs():
    ref = frames(100)
    assert cq.psnr_db(ref, ref) == math.inf
    assert cq.psnr_db(ref, frames(101)) == pytest.approx(10 * math.log10(255**2 / 1.0), abs=1e-12)  # 48.13 dB
    half = ref.copy()
    half[:, :16] += 4  # half the pixels off by 4: MSE 8
    assert cq.psnr_db(ref, half) == pytest.approx(10 * math.log10(255**2 / 8.0), abs=1e-12)


def test_ssim_of_constant_frames_is_the_luminance_term():
    a, b = 100.0, 110.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # no variance: the structure term is c2/c2 = 1
    assert cq.ssim(frames(a), frames(b)) == pytest.approx(expected, abs=1e-9)
    assert cq.ssim(frames(a), frames(a)) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_a_direct_sum_over_windows():
    """An independent loop over every 11x11 window position, for a small random grey image."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(13, 14)).astype(np.uint8)
    other = np.clip(grey.astype(int) + rng.integers(-30, 31, size=grey.shape), 0, 255).astype(np.uint8)
    x = np.repeat(grey[None, :, :, None], 3, axis=3)
    y = np.repeat(other[None, :, :, None], 3, axis=3)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    lx = grey.astype(np.float64) * (0.299 + 0.587 + 0.114)
    ly = other.astype(np.float64) * (0.299 + 0.587 + 0.114)
    scores = []
    for i in range(13 - 10):
        for j in range(14 - 10):
            px, py = lx[i:i + 11, j:j + 11], ly[i:i + 11, j:j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
            cov = (w * px * py).sum() - mx * my
            scores.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert cq.ssim(x, y) == pytest.approx(float(np.mean(scores)), abs=1e-9)
    with pytest.raises(ValueError, match="smaller than the 11x11 SSIM window"):
        cq.ssim(frames(0, (1, 8, 8, 3)), frames(0, (1, 8, 8, 3)))


# --- LPIPS and CLIP with random weights built in code -----------------------------------------------


@pytest.fixture(scope="module")
def lpips_folder(tmp_path_factory) -> Path:
    """alexnet.pth in torchvision's key layout and lpips_alex_v0.1.pth in the lpips wheel's, random weights."""
    torch.manual_seed(0)
    model = cq.Lpips()
    folder = tmp_path_factory.mktemp("lpips")
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()} |
               {"classifier.1.weight": torch.zeros(1)}, folder / "alexnet.pth")  # a classifier is ignored
    torch.save({f"lin{i}.model.1.weight": head.model[1].weight.detach().abs()  # LPIPS heads are non-negative
                for i, head in enumerate(model.heads)}, folder / "lpips_alex_v0.1.pth")
    return folder


def test_lpips_loads_both_files_and_behaves(lpips_folder):
    model = cq.Lpips.from_folder(lpips_folder)
    saved = torch.load(lpips_folder / "alexnet.pth", weights_only=True)
    assert torch.equal(model.features[0].weight, saved["features.0.weight"])
    assert not model.training
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 256, size=(4, 32, 48, 3)).astype(np.uint8)
    near = np.clip(ref.astype(int) + rng.integers(-3, 4, size=ref.shape), 0, 255).astype(np.uint8)
    far = rng.integers(0, 256, size=ref.shape).astype(np.uint8)
    assert cq.lpips_distance(model, ref, ref) == 0.0
    d_near, d_far = cq.lpips_distance(model, ref, near), cq.lpips_distance(model, ref, far)
    assert 0 < d_near < d_far
    assert cq.lpips_distance(model, near, ref) == pytest.approx(d_near, rel=1e-5)


def test_lpips_without_its_files_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing alexnet.pth, lpips_alex_v0.1.pth .*nothing is downloaded"):
        cq.Lpips.from_folder(tmp_path)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """A tiny random CLIP (transformers) with a character-level BPE vocabulary, saved like a hub folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip")
    chars = "abcdefghijklmnopqrstuvwxyz.,"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_score_runs_offline_and_is_a_bounded_score(clip_folder):
    scorer = cq.ClipScorer(clip_folder)
    rng = np.random.default_rng(2)
    clip = rng.integers(0, 256, size=(9, 32, 48, 3)).astype(np.uint8)
    score = scorer.score(clip, "a bee on a flower.")
    assert 0.0 <= score <= 100.0
    assert scorer.score(clip, "a bee on a flower.") == score  # deterministic: eval mode, no sampling
    assert scorer.score(rng.integers(0, 256, size=clip.shape).astype(np.uint8), "a bee on a flower.") != score


def test_clip_without_a_model_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json .*nothing is downloaded"):
        cq.ClipScorer(tmp_path)


# --- the gate end to end -----------------------------------------------------------------------------


def write_run(folder: Path, clips: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for key, data in clips.items():
        np.save(folder / f"{key}.frames.npy", data)
        (folder / f"{key}.json").write_text(json.dumps({"job": {"prompt": f"a bee on a flower {key}."}}))
    return folder


def test_gate_end_to_end(tmp_path, lpips_folder, clip_folder, capsys):
    rng = np.random.default_rng(3)
    ref = {f"k{i}": rng.integers(0, 256, size=(5, 32, 48, 3)).astype(np.uint8) for i in range(2)}
    near = {k: np.clip(v.astype(int) + rng.integers(-1, 2, size=v.shape), 0, 255).astype(np.uint8) for k, v in ref.items()}
    far = {k: rng.integers(0, 256, size=v.shape).astype(np.uint8) for k, v in ref.items()}
    runs = {name: write_run(tmp_path / name, clips) for name, clips in
            (("eager", ref), ("again", ref), ("near", near), ("far", far))}
    common = ["--reference", str(runs["eager"]), "--noise-floor", str(runs["again"]), "--min-clips", "2",
              "--lpips-weights", str(lpips_folder), "--clip-weights", str(clip_folder),
              "--candidate", f"near={runs['near']}", "--candidate", f"far={runs['far']}"]
    assert cq.main([*common, "--gate", "near", "--report", str(tmp_path / "report.json")]) == 0
    out = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert out["noise_floor.psnr_db"] == "inf (identical)" and out["noise_floor.lpips"] == "0.0000"
    assert out["noise_floor.clip_score_delta"] == "0.000"
    assert float(out["near.psnr_db"]) > 48 and out["near.verdict"] == "pass"  # |error| <= 1 grey level
    assert out["far.verdict"].startswith("fail") and float(out["far.psnr_db"]) < 12
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["key"] for r in report["far"]] == ["k0", "k1"] and "lpips" in report["far"][0]

    assert cq.main([*common, "--gate", "far"]) == 1
    assert "gate: FAILED for far" in capsys.readouterr().out


def test_gate_refuses_too_few_clips_and_needs_lpips_to_pass(tmp_path, capsys):
    ref = {"k0": np.zeros((3, 32, 48, 3), dtype=np.uint8)}
    eager, again = write_run(tmp_path / "eager", ref), write_run(tmp_path / "again", ref)
    assert cq.main(["--reference", str(eager), "--noise-floor", str(again)]) == 2
    assert "the gate needs at least 32" in capsys.readouterr().err
    code = cq.main(["--reference", str(eager), "--noise-floor", str(again), "--min-clips", "1",
                    "--candidate", f"same={again}", "--gate", "same"])
    out = capsys.readouterr().out
    assert code == 1 and "same.lpips: not computed" in out and "same.verdict: incomplete" in out


def test_gate_jobs_are_16_prompts_by_2_seeds_that_generate_accepts(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_cogvideo

    gen = tiny_cogvideo.load_generate()
    assert cq.main(["--write-jobs", str(tmp_path / "gate.jsonl")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "gate.jsonl").read_text().splitlines()]
    assert len(lines) == 32 and len({j["prompt"] for j in lines}) == 16 and {j["seed"] for j in lines} == {42, 7}
    for number, line in enumerate(lines, 1):
        gen.parse_job(line, source=f"gate.jsonl:{number}", base_dir=tmp_path)
