"""Nothing damaged is delivered: cache entries are checked on every hit, damaged ones are quarantined (kept)
and made again; `campaign cache verify` checks them all; assets edited mid-run never poison the cache."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.backends import select_backends
from pipeline.cli import main
from pipeline.manifest.campaign import load_manifest
from pipeline.media.probe import probe_video
from pipeline.plan.build import KeySource, build_plan
from pipeline.run.runner import run_plan
from pipeline.storage import integrity
from pipeline.storage.store import LocalStore

SMALL = """\
campaign: small
assets:
  sofa: assets/sofa.png
images:
  - {id: big-sofa, from: sofa, edits: [{upscale-fast: {}}]}
videos:
  - id: teaser
    shots:
      - {prompt: A bee on a flower., frames: 9}
      - {prompt: A sofa., image: sofa, frames: 9}
"""


def _report(out: Path, campaign: str = "small") -> dict:  # type: ignore[type-arg]
    latest = json.loads((out / "runs" / campaign / "latest.json").read_text())
    return json.loads((out / "runs" / campaign / latest["report"]).read_text())  # type: ignore[no-any-return]


def _damage(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # cache entries are read-only
    path.write_bytes(data)


def test_a_truncated_video_and_an_unreadable_provenance_are_quarantined_remade_and_reported(
        write_campaign: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, out = write_campaign(SMALL), tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    first = _report(out)
    video_key = first["videos"][0]["key"]
    video = out / "cache" / "video" / f"{video_key}.mp4"
    good = video.read_bytes()
    _damage(video, good[:1000])  # no moov atom any more
    clip_prov = sorted((out / "cache" / "clip").glob("*.json"))[0]
    _damage(clip_prov, b"{")
    capsys.readouterr()

    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    report = _report(out)
    repairs = {r["entry"]: r for r in report["cache_repairs"]}
    assert set(repairs) == {f"cache/video/{video_key}.json", f"cache/clip/{clip_prov.name}"}
    assert "1000 bytes" in repairs[f"cache/video/{video_key}.json"]["problem"]
    assert "unreadable" in repairs[f"cache/clip/{clip_prov.name}"]["problem"]
    assert "repaired cache/video/" in said
    # moved aside, not deleted: the damaged bytes are still there to look at
    kept = out / repairs[f"cache/video/{video_key}.json"]["moved_to"] / "cache" / "video" / f"{video_key}.mp4"
    assert kept.read_bytes() == good[:1000]
    # made again, and what is delivered is a whole video of the reported length
    statuses = {r["job"]: r["status"] for r in report["job_results"]}
    assert statuses["video:teaser"] == "executed"
    delivered = out / report["prefix"] / report["videos"][0]["path"]
    remade = out / "cache" / "video" / f"{video_key}.mp4"
    assert remade.read_bytes() == good  # made again to the same bytes (the delivered copy adds its credentials)
    assert probe_video(delivered).duration == pytest.approx(report["videos"][0]["duration_s"], abs=0.01)
    # and the next run finds nothing to repair
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    assert _report(out)["cache_repairs"] == [] and _report(out)["jobs"]["executed"] == 0


def test_large_outputs_get_a_size_check_and_verify_hashes_them(
        write_campaign: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, out = write_campaign(SMALL), tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    image = next((out / "cache" / "image").glob("*.png"))
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    _damage(image, bytes(data))
    monkeypatch.setattr(integrity, "HASH_ON_HIT_MAX_BYTES", 0)  # every output counts as large: size only
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    assert _report(out)["cache_repairs"] == []  # a size check cannot see a flipped byte
    assert main(["run", str(manifest), "--out", str(out), "--quiet", "--verify"]) == 0
    [repair] = _report(out)["cache_repairs"]
    assert repair["entry"] == f"cache/image/{image.stem}.json" and "sha256" in repair["problem"]
    assert image.read_bytes() != bytes(data)  # made again


def test_cache_verify_checks_every_entry(write_campaign: Callable[[str], Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest, out = write_campaign(SMALL), tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    entries = len(list((out / "cache").glob("*/*.json")))
    clip = next((out / "cache" / "clip").glob("*.mp4"))
    data = bytearray(clip.read_bytes())
    data[-10] ^= 0x01
    _damage(clip, bytes(data))
    capsys.readouterr()
    assert main(["cache", "verify", "--out", str(out)]) == 1
    said = capsys.readouterr().out
    assert f"{entries} cache entries" in said and f"{entries - 1} match their recorded sha256" in said
    assert f"damaged cache/clip/{clip.stem}.json" in said and "1 damaged" in said
    assert not clip.exists() and list((out / "quarantine").glob(f"*/cache/clip/{clip.name}"))
    assert main(["cache", "verify", "--out", str(out)]) == 0
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    assert _report(out)["jobs"]["executed"] == 1  # the clip; the video is keyed by the clip keys, still good


def test_an_asset_changed_after_planning_fails_its_jobs_instead_of_poisoning_the_cache(
        write_campaign: Callable[[str], Path], tmp_path: Path) -> None:
    manifest = write_campaign(SMALL)
    backends = select_backends()
    keys = KeySource(enhancer=backends.enhancer.identity(), images=backends.images.identity,
                     video=backends.video.identity)
    plan = build_plan(load_manifest(manifest), keys, backends=backends.names())
    sofa = manifest.parent / "assets" / "sofa.png"
    shutil.copyfile(manifest.parent / "assets" / "sofa-mask.png", sofa)  # edited while the run goes on
    store, work = LocalStore(tmp_path / "out"), tmp_path / "work"
    work.mkdir()
    results = {r.job_id: r for r in run_plan(plan, store, backends, workdir=work, workers=1)}
    assert results["image:big-sofa"].error_type == "AssetChanged"
    assert "changed after the run was planned" in (results["image:big-sofa"].message or "")
    assert results["clip:teaser/02"].error_type == "AssetChanged"
    image_job = plan.job("image:big-sofa")
    assert not store.exists(image_job.output_key)  # nothing stored under the key of the old bytes


def test_each_asset_is_read_once_per_run_so_a_later_edit_changes_nothing(
        write_campaign: Callable[[str], Path], tmp_path: Path) -> None:
    manifest = write_campaign(SMALL)
    backends = select_backends()
    keys = KeySource(enhancer=backends.enhancer.identity(), images=backends.images.identity,
                     video=backends.video.identity)
    plan = build_plan(load_manifest(manifest), keys, backends=backends.names())
    from pipeline.tasks import TaskContext

    work = tmp_path / "work"
    ctx = TaskContext(plan=plan, store=LocalStore(tmp_path / "out"), backends=backends, workdir=work)
    first = ctx.asset_path("sofa")
    original = first.read_bytes()
    sofa = manifest.parent / "assets" / "sofa.png"
    sofa.write_bytes(b"edited")
    assert ctx.asset_path("sofa") == first and first.read_bytes() == original
    assert first.parent.parent == work and os.path.samefile(first.parent, work / "assets")


def test_an_s3_cache_entry_is_checked_and_a_damaged_one_copied_to_quarantine_before_it_is_remade() -> None:
    """The cloud's store gets the same checks: the recorded size on every hit, the hash with verify, and a
    damaged entry copied (S3 has no rename) to quarantine/ with its reason, then reported as not done."""
    import boto3
    from moto import mock_aws

    from pipeline.storage.store import S3Store

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="out")
        store = S3Store("out", client=s3)
        data = b"\x00\x01 a clip's bytes " * 100
        prov = integrity.with_fingerprint({"job": "clip:v/01"}, integrity.fingerprint_bytes(data))
        store.write_bytes("cache/clip/k1.mp4", data)
        store.write_bytes("cache/clip/k1.json", json.dumps(prov).encode())
        keys = {"provenance_key": "cache/clip/k1.json", "output_key": "cache/clip/k1.mp4"}

        assert integrity.check_and_repair(store, **keys).verified == "size"
        store.verify = True
        assert integrity.check_and_repair(store, **keys).verified == "sha256"

        store.write_bytes("cache/clip/k1.mp4", data[:1000])  # replaced by something shorter
        check = integrity.check_and_repair(store, **keys)
        assert not check.done and check.problem == f"output cache/clip/k1.mp4 is 1000 bytes; its provenance records {len(data)}"
        [repair] = store.repairs
        assert store.read_bytes(f"{repair.moved_to}/cache/clip/k1.mp4") == data[:1000]  # kept, not deleted
        assert b"1000 bytes" in store.read_bytes(f"{repair.moved_to}/reason.txt")

        store.write_bytes("cache/clip/k1.json", b"{")  # a provenance that is not JSON
        assert integrity.check_and_repair(store, **keys).problem == "provenance cache/clip/k1.json is unreadable (JSONDecodeError)"
