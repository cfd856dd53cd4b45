"""container/clip_workers.py: a batch split over one worker per GPU (logic on CPU), and generate.py's
--workers path end to end with two CPU worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tiny_cogvideo as tiny

gen = tiny.load_generate()
split_jobs = gen.clip_workers.split_jobs


@dataclass(frozen=True)
class Clip:
    key: str
    folder: str = "cogvideox-5b"
    width: int = 720
    height: int = 480
    frames: int = 49
    steps: int = 50


def keys_of(shares) -> list[list[str]]:
    return [list(s.keys) for s in shares]


def test_eight_identical_clips_on_eight_gpus_get_one_each():
    clips = [Clip(f"c{i}") for i in range(8)]
    shares = split_jobs(clips, 8)
    assert sorted(len(s.keys) for s in shares) == [1] * 8
    assert sorted(k for s in shares for k in s.keys) == sorted(c.key for c in clips)


def test_groups_of_one_folder_and_size_stay_on_one_worker_when_balanced():
    clips = [Clip(f"t2v-{i}") for i in range(4)] + [Clip(f"i2v-{i}", folder="cogvideox-5b-i2v") for i in range(4)]
    shares = split_jobs(clips, 2)
    assert sorted(keys_of(shares)) == [[f"i2v-{i}" for i in range(4)], [f"t2v-{i}" for i in range(4)]]


def test_cost_is_balanced_by_pixels_frames_and_steps():
    big = Clip("big", width=1360, height=768, frames=81)  # ~4.9x a 720x480x49 clip
    small = [Clip(f"s{i}", width=720, height=480, frames=49) for i in range(5)]
    shares = split_jobs([big, *small], 2)
    assert sorted(keys_of(shares)) == [["big"], [f"s{i}" for i in range(5)]]
    costs = sorted(s.cost for s in shares)
    assert costs[1] / costs[0] < 1.1


def test_split_is_deterministic_and_never_loses_or_repeats_a_clip():
    clips = [Clip(f"k{i}", width=720 if i % 3 else 1360, frames=49 if i % 2 else 81, steps=50 - i) for i in range(11)]
    for workers in (1, 2, 3, 4, 16):
        shares = split_jobs(clips, workers)
        assert keys_of(shares) == keys_of(split_jobs(clips, workers))
        assert sorted(k for s in shares for k in s.keys) == sorted(c.key for c in clips)
        assert len(shares) == min(workers, len(clips))
    with pytest.raises(ValueError, match="workers must be >= 1"):
        split_jobs(clips, 0)


def test_worker_count_and_option_stripping():
    count = gen.clip_workers.worker_count
    assert (count("3", gpu_count=0), count("auto", gpu_count=8), count("auto", gpu_count=0)) == (3, 8, 1)
    with pytest.raises(ValueError, match="--workers must be 'auto' or a whole number"):
        count("0", gpu_count=8)
    argv = ["--jobs", "j", "--compile", "--out=o", "--workers", "2", "--cache", "pab", "--models", "m"]
    assert gen.clip_workers.strip_options(argv, {"--jobs", "--out", "--workers", "--models"}) == ["--compile", "--cache", "pab"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny.save_tiny_models(tmp_path_factory.mktemp("models"))


def test_two_workers_render_their_own_clips_into_one_output(models, tmp_path):
    jobs_dir = tmp_path / "jobs"
    (jobs_dir / "images").mkdir(parents=True)
    tiny.start_image(jobs_dir / "images" / "k.png")
    lines = [tiny.job("a", seed=1), tiny.job("b", seed=2), tiny.job("c", seed=3),
             tiny.job("i", image="images/k.png"), tiny.job("bad", frames=0)]
    (jobs_dir / "batch.jsonl").write_text("".join(json.dumps(j) + "\n" for j in lines))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(tiny.GENERATE_PY), "--jobs", str(jobs_dir), "--models", str(models),
                           "--out", str(out), "--workers", "2", "--cache", "pab"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "_batch.json").read_text())
    assert (summary["jobs"], summary["succeeded"], summary["failed"]) == (5, 4, 1)
    workers = summary["workers"]
    assert [w["worker"] for w in workers] == [0, 1] and all(w["exit_code"] == 0 for w in workers)
    assert sorted(k for w in workers for k in w["keys"]) == ["a", "b", "c", "i"]
    assert all(w["keys"] for w in workers)  # both did work
    for key in ("a", "b", "c", "i"):
        assert (out / f"{key}.mp4").is_file()
        assert json.loads((out / f"{key}.json").read_text())["settings"]["feature_cache"]["cache"] == "pab"
    assert json.loads((out / "bad.json").read_text())["stage"] == "check"
    assert "over 2 worker(s)" in done.stdout
