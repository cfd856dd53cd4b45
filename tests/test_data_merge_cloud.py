"""Data files in the cloud: the Plan step reads a manifest's CSV from S3 (moto, every request checked against
botocore's model) and plans exactly what `campaign plan` plans locally; `campaign submit` uploads the CSV beside
the assets and rewrites `from:` to its s3:// address; a data file outside the manifest's prefixes is refused."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from fake_aws.cloud import INPUT_BUCKET, Cloud, cloud_for_tasks

from pipeline.cli import main as campaign_cli
from pipeline.cloud import commands

MANIFEST = """\
    campaign: sheet-teasers
    defaults: {enhance: false, video: {frames: 9, steps: 2, seed: 3}}
    variables:
      product: {from: %s, where: {line: sofa}}
    videos:
      - id: ad-{product}
        shots:
          - prompt: "A {product.fabric} sofa in a loft"
    """
CSV = "id,fabric,line\nnavy,navy velvet,sofa\nlamp,brass,light\nsage,sage cord,sofa\n"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)


def campaign_folder(folder: Path, source: str = "data/products.csv") -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "products.csv").write_text(CSV, encoding="utf-8")
    (folder / "sheet.yaml").write_text(textwrap.dedent(MANIFEST % source), encoding="utf-8")
    return folder / "sheet.yaml"


def local_jobs(manifest: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str]]:
    capsys.readouterr()
    assert campaign_cli(["plan", str(manifest), "--json", "--out", str(out), "--enhancer", "passthrough",
                         "--images", "local", "--video", "preview"]) == 0
    return [(j["id"], j["key"]) for j in json.loads(capsys.readouterr().out)["plan"]["jobs"]]


def plan(cloud: Cloud, key: str, run_id: str) -> dict[str, Any]:
    from tasks import plan as plan_task

    head = cloud.s3.head_object(Bucket=INPUT_BUCKET, Key=key)
    summary: dict[str, Any] = plan_task.handler({"source": {"bucket": INPUT_BUCKET, "key": key,
                                                            "version_id": head["VersionId"]},
                                                 "run_id": run_id, "started": "2026-11-25T10:00:00Z"})
    return summary


def test_the_plan_step_reads_the_csv_from_s3_as_the_local_run_reads_it(
        cloud: Cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = campaign_folder(tmp_path / "c")
    local = local_jobs(manifest, tmp_path / "out", capsys)
    assert [i for i, _ in local if i.startswith("video:")] == ["video:ad-navy", "video:ad-sage"]  # where: line=sofa
    cloud.upload_folder(manifest.parent)  # manifests/sheet.yaml and manifests/data/products.csv
    assert plan(cloud, "manifests/sheet.yaml", "r1")["valid"] is True
    doc = cloud.json("runs/sheet-teasers/r1/plan.json")
    assert [(j["id"], j["key"]) for j in doc["plan"]["jobs"]] == local


def test_submit_uploads_the_data_file_and_the_plan_step_reads_it_back(
        cloud: Cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = campaign_folder(tmp_path / "c")
    local = local_jobs(manifest, tmp_path / "out", capsys)
    out = commands.submit(manifest, bucket=INPUT_BUCKET, s3=cloud.s3, sts=boto3.client("sts", region_name="us-east-1"))
    assert out["assets_uploaded"] == "1 of 0"  # the data file (the manifest has no assets)
    key = "manifests/sheet-teasers.yaml"
    sent = yaml.safe_load(cloud.s3.get_object(Bucket=INPUT_BUCKET, Key=key)["Body"].read())
    where = sent["variables"]["product"]
    assert where["where"] == {"line": "sofa"} and where["from"].startswith(f"s3://{INPUT_BUCKET}/assets/sheet-teasers/")
    data_key = where["from"].removeprefix(f"s3://{INPUT_BUCKET}/")
    assert cloud.s3.get_object(Bucket=INPUT_BUCKET, Key=data_key)["Body"].read().decode() == CSV
    assert plan(cloud, key, "r2")["valid"] is True
    doc = cloud.json("runs/sheet-teasers/r2/plan.json")
    assert [(j["id"], j["key"]) for j in doc["plan"]["jobs"]] == local


def test_a_data_file_outside_the_manifests_prefixes_is_a_located_problem(cloud: Cloud, tmp_path: Path) -> None:
    cloud.s3.put_object(Bucket=INPUT_BUCKET, Key="private/other-team.csv", Body=CSV.encode())
    manifest = campaign_folder(tmp_path / "c", source=f"s3://{INPUT_BUCKET}/private/other-team.csv")
    cloud.upload_folder(manifest.parent)
    assert plan(cloud, "manifests/sheet.yaml", "r3")["valid"] is False
    report = cloud.json("runs/sheet-teasers/r3/report.json")
    [problem] = [e for e in report["errors"] if not e["message"].endswith("so more problems may follow")]
    assert (problem["line"], problem["col"], problem["path"]) == (4, 19, "variables.product.from")
    assert problem["message"].startswith(
        "s3://campaign-input/manifests/sheet.yaml:4:19: error: variables.product.from: data file "
        "'s3://campaign-input/private/other-team.csv'")
    assert "is outside this manifest's prefixes" in problem["message"]
