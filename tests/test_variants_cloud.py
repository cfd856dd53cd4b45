"""Variables in the cloud: the Plan step expands a manifest exactly as `campaign run` does, and a campaign of
2,000 variants runs through the Distributed Map path of the real state machine under moto."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_aws.cloud import Cloud, cloud_for_tasks

from pipeline.cli import main as campaign_cli
from pipeline.cloud import DEFAULT_DISTRIBUTED_THRESHOLD
from pipeline.cloud.contract import MAX_SUMMARY_BYTES
from pipeline.manifest.variables import Variant
from pipeline.plan.jobs import Job

# 40 markets x 50 products: 2,000 videos of one shot each.
MARKETS, PRODUCTS = 40, 50


def _cloud(monkeypatch: pytest.MonkeyPatch, **options: int) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch, **options)


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """The stack's default Distributed Map threshold: a stage past it goes distributed on its own."""
    yield from _cloud(monkeypatch)


@pytest.fixture
def distributed_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """Threshold 0: every stage that has items runs as a Distributed Map reading its item list from S3."""
    yield from _cloud(monkeypatch, distributed_over=0)


def many_variants(folder: Path, *, markets: int, products: int) -> Path:
    """A campaign whose one video template expands to markets x products videos, each clip its own prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    market_list = ", ".join(f"m{i:02d}" for i in range(markets))
    product_list = "\n".join(f"    - {{id: p{i:02d}, noun: item {i}}}" for i in range(products))
    (folder / "many.yaml").write_text(textwrap.dedent("""\
        campaign: many-variants
        defaults: {enhance: false, video: {frames: 9, steps: 2, seed: 3}}
        variables:
          market: [%s]
          product:
        %s
        videos:
          - id: ad-{product}-{market}
            shots:
              - prompt: "The {product.noun} in market {market}"
        """) % (market_list, product_list), encoding="utf-8")
    return folder / "many.yaml"



def local_plan(manifest: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`campaign plan --json` with the backends the cloud plans with in these tests (fake_aws lambda_env)."""
    capsys.readouterr()
    assert campaign_cli(["plan", str(manifest), "--json", "--out", str(out), "--enhancer", "passthrough",
                         "--images", "local", "--video", "preview"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_the_plan_step_expands_2000_variants_as_the_local_loader_does_and_distributes_them(
        cloud: Cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real Plan handler on moto's S3, with the stack's default threshold: the 2,000 clips and 2,000
    videos pass it, so both stages go distributed and their item lists (what each Distributed Map's
    ItemReader reads) hold every expanded job, while the state carries only counts and keys."""
    from tasks import plan as plan_task

    manifest = many_variants(tmp_path / "many", markets=MARKETS, products=PRODUCTS)
    local = local_plan(manifest, tmp_path / "out", capsys)
    assert [g["count"] for g in local["variants"]] == [MARKETS * PRODUCTS]
    cloud.upload_folder(manifest.parent)
    head = cloud.s3.head_object(Bucket="campaign-input", Key="manifests/many.yaml")
    summary = plan_task.handler({"source": {"bucket": "campaign-input", "key": "manifests/many.yaml",
                                            "version_id": head["VersionId"]},
                                 "run_id": "many-plan", "started": "2026-11-25T10:00:00Z"})
    assert summary["valid"] is True
    assert MARKETS * PRODUCTS > DEFAULT_DISTRIBUTED_THRESHOLD
    stages = summary["stages"]
    assert {n: (s["mode"], s["count"]) for n, s in stages.items() if s["count"]} == {
        "clips": ("distributed", 2000), "videos": ("distributed", 2000)}
    assert len(json.dumps(summary)) <= MAX_SUMMARY_BYTES

    # the cloud's expansion is the local one: same jobs, same ids, same content keys, same variants
    prefix = "runs/many-variants/many-plan/"
    doc = cloud.json(prefix + "plan.json")
    assert [(j["id"], j["key"]) for j in doc["plan"]["jobs"]] == [(j["id"], j["key"]) for j in local["plan"]["jobs"]]
    videos = [Job.from_json(j) for j in doc["plan"]["jobs"] if j["kind"] == "video"]
    assert videos[0].video.variant == Variant("ad-{product}-{market}", (("market", "m00"), ("product", "p00")))
    assert videos[-1].video.video_id == f"ad-p{PRODUCTS - 1:02d}-m{MARKETS - 1:02d}"

    # the item lists the Distributed Maps read: every video job once; every clip in a batch of its model
    assert cloud.json(stages["videos"]["key"]) == [{"job_id": v.id} for v in videos]
    batches = cloud.json(stages["clips"]["key"])
    clip_ids = [c for b in batches for c in b["jobs"]]
    assert sorted(clip_ids) == sorted(j["id"] for j in local["plan"]["jobs"] if j["kind"] == "clip")
    assert len(clip_ids) == len(set(clip_ids)) == 2000


def test_variants_run_end_to_end_through_distributed_maps(distributed_cloud: Cloud, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A smaller expansion (3 markets x 2 products) through the real state machine with every stage a
    Distributed Map: the cloud report records and groups the variants as `campaign run` does."""
    cloud = distributed_cloud
    manifest = many_variants(tmp_path / "few", markets=3, products=2)
    cloud.upload_folder(manifest.parent)
    run = cloud.run("manifests/many.yaml", name="few-run")
    assert run.status == "SUCCEEDED", run.described
    assert run.output["jobs"] == {"total": 12, "executed": 12, "cached": 0, "failed": 0, "skipped": 0}
    stages = run.calls.named("campaign-report")[0][1]["run"]["stages"]
    assert {n: s["mode"] for n, s in stages.items() if s["count"]} == {"clips": "distributed", "videos": "distributed"}
    report = cloud.json("runs/many-variants/few-run/report.json")
    assert report["variants"] == [{"kind": "video", "template": "ad-{product}-{market}",
                                   "variables": ["market", "product"], "count": 6, "failed": 0,
                                   "ids": [f"ad-{p}-{m}" for m in ("m00", "m01", "m02") for p in ("p00", "p01")]}]
    by_id = {v["id"]: v for v in report["videos"]}
    assert by_id["ad-p01-m02"]["combination"] == {"market": "m02", "product": "p01"}
    assert by_id["ad-p01-m02"]["path"] == "videos/ad-p01-m02.mp4" and by_id["ad-p01-m02"]["errors"] == []
    assert cloud.bytes("runs/many-variants/few-run/videos/ad-p01-m02.mp4")[4:8] == b"ftyp"  # an MP4 was written


@pytest.mark.skipif(not os.environ.get("CAMPAIGN_SCALE_TESTS"), reason="13 min on the 2-core CI machine; set "
                    "CAMPAIGN_SCALE_TESTS=1 to run the 2,000-variant execution (docs/benchmarks.md has its last run)")
def test_2000_variants_run_through_the_distributed_maps_of_the_real_state_machine(
        cloud: Cloud, tmp_path: Path) -> None:
    """All 2,000 variants through the real state machine at the stack's default threshold: every clip and
    video job is an item of a Distributed Map, each item records its result, and the report lists every
    variant. The variants share one clip and one video (their content is the same: only their ids differ),
    so the GPU stand-in renders only while no output exists yet and the rest are cache hits: what this
    measures is the orchestration of 4,000 items."""
    folder = tmp_path / "shared"
    folder.mkdir()
    markets = "\n".join(f"    - m{i:02d}" for i in range(MARKETS))
    products = "\n".join(f"    - p{i:02d}" for i in range(PRODUCTS))
    (folder / "many.yaml").write_text(
        "campaign: many-variants\n"
        "defaults: {enhance: false, video: {frames: 9, steps: 2, seed: 3}}\n"
        f"variables:\n  market:\n{markets}\n  product:\n{products}\n"
        "videos:\n  - id: ad-{product}-{market}\n    shots:\n      - prompt: A sofa turns slowly in a sunlit loft\n",
        encoding="utf-8")
    cloud.upload_folder(folder)
    run = cloud.run("manifests/many.yaml", name="many-run", timeout_s=1800)
    assert run.status == "SUCCEEDED", run.described
    jobs = run.output["jobs"]
    assert jobs["total"] == 2 * MARKETS * PRODUCTS and jobs["failed"] == jobs["skipped"] == 0
    # one clip and one video are made; items that ran before the first output existed made it again (same
    # bytes, same key), every later item found it in the cache
    assert jobs["executed"] >= 2 and jobs["executed"] + jobs["cached"] == jobs["total"], jobs
    stages = run.calls.named("campaign-report")[0][1]["run"]["stages"]
    assert {n: s["mode"] for n, s in stages.items() if s["count"]} == {
        "clips": "distributed", "waiting_clips": "distributed", "videos": "distributed"}
    report = cloud.json("runs/many-variants/many-run/report.json")
    assert [(g["count"], g["failed"]) for g in report["variants"]] == [(MARKETS * PRODUCTS, 0)]
    assert all(v["path"] for v in report["videos"]) and len(report["videos"]) == MARKETS * PRODUCTS
