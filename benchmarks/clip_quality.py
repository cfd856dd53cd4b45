"""Quality gate for the container's speed options: raw uint8 frames of each option against the bf16 eager
frames of the same job and seed (PSNR, SSIM, LPIPS, change in CLIP score), after a measured noise floor.

    python container/generate.py --jobs gate.jsonl --models M --out runs/eager --dump-frames
    python container/generate.py --jobs gate.jsonl --models M --out runs/eager-again --dump-frames --attention math
    python container/generate.py --jobs gate.jsonl --models M --out runs/fast --dump-frames --compile --fp8 auto
    python benchmarks/clip_quality.py --reference runs/eager --noise-floor runs/eager-again \
        --candidate fast=runs/fast --gate fast --lpips-weights W/lpips --clip-weights W/clip
    python benchmarks/clip_quality.py --write-jobs gate.jsonl          # 16 prompts x 2 seeds, 49 frames 720x480

Runs on CPU on the saved `<key>.frames.npy` (written by generate.py --dump-frames before encoding). The
noise floor compares two settings that should agree (eager twice, or eager under another exact attention
kernel), measured first: a candidate's figures mean something only well outside it. A gated candidate
passes at LPIPS <= 0.05 and PSNR >= 30 dB (mean over clips); exit status 1 when one does not.

Metric weights are never downloaded: LPIPS (AlexNet, v0.1) reads `alexnet.pth` (torchvision's ImageNet
AlexNet state dict) and `lpips_alex_v0.1.pth` (the linear heads shipped inside the `lpips` wheel, at
lpips/weights/v0.1/alex.pth) from --lpips-weights; the CLIP score reads a transformers CLIP folder
(e.g. openai/clip-vit-base-patch32, saved with save_pretrained) from --clip-weights. Without them those
two metrics are reported as not computed, and a gated candidate cannot pass.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LPIPS_MAX = 0.05
PSNR_MIN_DB = 30.0
MIN_CLIPS = 32  # issue 16: at least 16 prompts x 2 seeds
CLIP_FRAMES = 8  # frames per clip the CLIP score averages over (evenly spaced)

GATE_PROMPTS = (
    "A bee lands on a sunflower, macro shot, soft morning light.",
    "A navy velvet sofa in a sunlit loft, the camera slowly orbits it.",
    "Waves roll onto a rocky beach at sunset, slow motion spray.",
    "A city street at night in the rain, neon reflections on wet asphalt.",
    "A red fox trots through fresh snow in a pine forest.",
    "Steam rises from a cup of coffee on a wooden table by a window.",
    "A hot air balloon drifts over green hills at dawn.",
    "A chef tosses vegetables in a flaming wok, close up.",
    "A golden retriever runs across a meadow toward the camera.",
    "Time-lapse of clouds moving over snowy mountain peaks.",
    "A paper boat floats down a small stream after the rain.",
    "A dancer spins in a flowing white dress in an empty studio.",
    "Aerial shot of a winding river through an autumn forest.",
    "A vintage car drives along a coastal road, sun flares.",
    "Colorful ink drops swirl and bloom in clear water.",
    "A cat watches birds through a window, its tail twitching.",
)
GATE_SEEDS = (42, 7)


# --- pixel metrics ----------------------------------------------------------------------------------


def psnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """PSNR over a whole clip of uint8 frames (one MSE over every pixel); inf when identical."""
    mse = np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def luma(frames: np.ndarray) -> torch.Tensor:
    """[F, H, W, 3] uint8 -> [F, 1, H, W] float64 BT.601 luma in 0..255 (SSIM is defined on one channel)."""
    rgb = torch.from_numpy(frames.astype(np.float64))
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return y[:, None]


def ssim(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean SSIM over frames (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255),
    on luma, over the positions where the window fits."""
    window = _gaussian_window()
    if min(reference.shape[1:3]) < window.shape[-1]:
        raise ValueError(f"frames of {reference.shape[2]}x{reference.shape[1]} are smaller than the 11x11 SSIM window")
    x, y = luma(reference), luma(candidate)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(score.mean())


# --- LPIPS (AlexNet, v0.1) ---------------------------------------------------------------------------


class _Head(nn.Module):
    """One LPIPS linear head; named like the lpips package's (`linN.model.1.weight`) so its file loads as is."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class Lpips(nn.Module):
    """Zhang et al. 2018: unit-normalised AlexNet activations at its five ReLUs, squared differences weighted
    per channel by learned heads, averaged over space and summed over layers. Same layer layout and names as
    torchvision's AlexNet features, so its state dict loads with strict checking."""

    TAPS = (1, 4, 7, 9, 11)  # the ReLU after each conv in AlexNet's `features`
    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )
        self.heads = nn.ModuleList(_Head(c) for c in self.CHANNELS)
        # LPIPS's input scaling layer (inputs in [-1, 1])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (images - self.shift) / self.scale
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in self.TAPS:
                out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: [N, 3, H, W] in [-1, 1] -> [N] distances."""
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for head, fa, fb in zip(self.heads, self.taps(a), self.taps(b), strict=True):
            total = total + head.model((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_folder(cls, folder: Path) -> Lpips:
        """Load from --lpips-weights: alexnet.pth (torchvision) + lpips_alex_v0.1.pth (the lpips wheel's heads)."""
        backbone, heads = folder / "alexnet.pth", folder / "lpips_alex_v0.1.pth"
        missing = [p.name for p in (backbone, heads) if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"--lpips-weights {folder}: missing {', '.join(missing)} (alexnet.pth: torchvision's ImageNet AlexNet "
                "state dict; lpips_alex_v0.1.pth: lpips/weights/v0.1/alex.pth from the lpips wheel); nothing is downloaded")
        model = cls()
        state = torch.load(backbone, map_location="cpu", weights_only=True)
        model.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                        if k.startswith("features.")})
        head_state = torch.load(heads, map_location="cpu", weights_only=True)
        for index, head in enumerate(model.heads):
            head.load_state_dict({k.removeprefix(f"lin{index}."): v for k, v in head_state.items()
                                  if k.startswith(f"lin{index}.")})
        return model.eval()


def lpips_distance(model: Lpips, reference: np.ndarray, candidate: np.ndarray, *, batch: int = 8) -> float:
    """Mean LPIPS over a clip's frames."""
    def to_input(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    values = []
    with torch.no_grad():
        for start in range(0, len(reference), batch):
            values.append(model(to_input(reference[start:start + batch]), to_input(candidate[start:start + batch])))
    return float(torch.cat(values).mean())


# --- CLIP score ------------------------------------------------------------------------------------


class ClipScorer:
    """100 x max(cosine(image, text), 0), averaged over evenly spaced frames (Hessel et al. 2021's CLIPScore
    without its 2.5 factor); a transformers CLIP folder, loaded offline."""

    def __init__(self, folder: Path) -> None:
        from transformers import CLIPModel, CLIPProcessor

        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"--clip-weights {folder}: no config.json (a transformers CLIP folder saved with "
                                    "save_pretrained, e.g. openai/clip-vit-base-patch32); nothing is downloaded")
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)

    def score(self, frames: np.ndarray, prompt: str) -> float:
        picks = np.unique(np.linspace(0, len(frames) - 1, min(CLIP_FRAMES, len(frames))).round().astype(int))
        inputs = self.processor(text=[prompt], images=[frames[i] for i in picks], return_tensors="pt",
                                padding=True, truncation=True)
        with torch.no_grad():
            image = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            text = self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        image = getattr(image, "pooler_output", image)  # transformers 5 may return an output object
        text = getattr(text, "pooler_output", text)
        cosine = F.cosine_similarity(image, text.expand_as(image), dim=-1)
        return float((100.0 * cosine.clamp(min=0)).mean())


# --- comparing runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    name: str
    clips: int
    psnr_db: float
    ssim: float
    lpips: float | None
    clip_score_delta: float | None
    per_clip: list[dict[str, Any]]

    def verdict(self) -> str:
        if self.lpips is None:
            return "incomplete (no LPIPS weights)"
        ok = self.lpips <= LPIPS_MAX and self.psnr_db >= PSNR_MIN_DB
        return "pass" if ok else f"fail (needs LPIPS <= {LPIPS_MAX} and PSNR >= {PSNR_MIN_DB} dB)"


def read_run(folder: Path) -> dict[str, tuple[np.ndarray, str]]:
    """key -> (raw uint8 frames, prompt) for every clip of a generate.py output folder with --dump-frames."""
    clips = {}
    for npy in sorted(folder.glob("*.frames.npy")):
        key = npy.name.removesuffix(".frames.npy")
        record_path = folder / f"{key}.json"
        if not record_path.is_file():
            raise FileNotFoundError(f"{npy} has no provenance {record_path.name} beside it")
        prompt = json.loads(record_path.read_text(encoding="utf-8"))["job"]["prompt"]
        clips[key] = (np.load(npy, allow_pickle=False), prompt)
    if not clips:
        raise FileNotFoundError(f"{folder}: no <key>.frames.npy (run generate.py with --dump-frames)")
    return clips


def compare(name: str, reference: dict[str, tuple[np.ndarray, str]], candidate: dict[str, tuple[np.ndarray, str]],
            *, lpips: Lpips | None, clip: ClipScorer | None) -> Comparison:
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise ValueError(f"{name}: no frames for {missing} (every reference clip needs its counterpart)")
    rows = []
    for key, (ref, prompt) in reference.items():
        cand = candidate[key][0]
        if ref.shape != cand.shape:
            raise ValueError(f"{name}: {key} has frames {cand.shape}, the reference {ref.shape}")
        row: dict[str, Any] = {"key": key, "psnr_db": psnr_db(ref, cand), "ssim": ssim(ref, cand)}
        if lpips is not None:
            row["lpips"] = lpips_distance(lpips, ref, cand)
        if clip is not None:
            row["clip_score_delta"] = clip.score(cand, prompt) - clip.score(ref, prompt)
        rows.append(row)

    def mean(field: str) -> float | None:
        values = [r[field] for r in rows if field in r]
        return float(np.mean(values)) if values else None

    # PSNR: the mean over the clips that differ (an identical clip's PSNR is infinite); inf when none differ
    finite = [r["psnr_db"] for r in rows if math.isfinite(r["psnr_db"])]
    psnr = float(np.mean(finite)) if finite else math.inf
    return Comparison(name=name, clips=len(rows), psnr_db=psnr, ssim=float(mean("ssim") or 0.0), lpips=mean("lpips"),
                      clip_score_delta=mean("clip_score_delta"), per_clip=rows)


def gate_jobs(*, frames: int = 49, width: int = 720, height: int = 480, steps: int = 50) -> list[dict[str, Any]]:
    return [{"key": f"gate-{p:02d}-s{seed}", "model": "cogvideox-5b", "prompt": prompt, "frames": frames, "fps": 8,
             "width": width, "height": height, "steps": steps, "guidance": 6.0, "seed": seed}
            for p, prompt in enumerate(GATE_PROMPTS) for seed in GATE_SEEDS]


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "not computed (no weights given)"
    return "inf (identical)" if math.isinf(value) else f"{value:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-jobs", type=Path, help="write the gate's jobs file (16 prompts x 2 seeds) and stop")
    parser.add_argument("--reference", type=Path, help="generate.py output with --dump-frames: bf16 eager")
    parser.add_argument("--noise-floor", type=Path, help="a second run that should agree with the reference")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=DIR", help="a speed option's run")
    parser.add_argument("--gate", action="append", default=[], metavar="NAME", help="a candidate that must pass")
    parser.add_argument("--lpips-weights", type=Path, help="folder with alexnet.pth and lpips_alex_v0.1.pth")
    parser.add_argument("--clip-weights", type=Path, help="a transformers CLIP model folder")
    parser.add_argument("--min-clips", type=int, default=MIN_CLIPS, help="refuse a gate over fewer clips")
    parser.add_argument("--report", type=Path, help="write every per-clip figure here as JSON")
    args = parser.parse_args(argv)

    if args.write_jobs:
        args.write_jobs.write_text("".join(json.dumps(j) + "\n" for j in gate_jobs()), encoding="utf-8")
        print(f"jobs: {len(gate_jobs())} written to {args.write_jobs}")
        return 0
    if args.reference is None or args.noise_floor is None:
        parser.error("--reference and --noise-floor are required (or --write-jobs)")
    candidates: dict[str, Path] = {}
    for spec in args.candidate:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--candidate {spec!r}: expected NAME=DIR")
        candidates[name] = Path(folder)
    unknown = sorted(set(args.gate) - set(candidates))
    if unknown:
        parser.error(f"--gate {unknown}: not among the candidates {sorted(candidates)}")
    try:
        lpips = Lpips.from_folder(args.lpips_weights) if args.lpips_weights else None
        clip = ClipScorer(args.clip_weights) if args.clip_weights else None
        reference = read_run(args.reference)
        if len(reference) < args.min_clips:
            raise ValueError(f"{args.reference}: {len(reference)} clips, the gate needs at least {args.min_clips}")
        runs = {"noise_floor": read_run(args.noise_floor), **{n: read_run(f) for n, f in candidates.items()}}
        comparisons = [compare(name, reference, run, lpips=lpips, clip=clip) for name, run in runs.items()]
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"clips: {len(reference)}")
    failed = []
    for c in comparisons:  # the noise floor first: the other figures are read against it
        print(f"{c.name}.psnr_db: {fmt(c.psnr_db, 2)}")
        print(f"{c.name}.ssim: {fmt(c.ssim)}")
        print(f"{c.name}.lpips: {fmt(c.lpips)}")
        print(f"{c.name}.clip_score_delta: {fmt(c.clip_score_delta, 3)}")
        if c.name != "noise_floor":
            print(f"{c.name}.verdict: {c.verdict()}")
            if c.name in args.gate and c.verdict() != "pass":
                failed.append(c.name)
    if args.report:
        args.report.write_text(json.dumps({c.name: c.per_clip for c in comparisons}, indent=2, default=str) + "\n")
    if failed:
        print(f"gate: FAILED for {', '.join(failed)}")
        return 1
    print("gate: passed" if args.gate else "gate: no candidate gated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
